mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::fairshare-eu-west-1-models-123456789012"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

variables {
  bucket_name                = "fairshare-eu-west-1-models-123456789012"
  kms_key_arn                = "arn:aws:kms:eu-west-1:123456789012:key/example"
  tenant_writer_role_pattern = "arn:aws:iam::123456789012:role/fairshare-eu-west-1-model-writer-*"
}

run "bucket_is_kms_encrypted_versioned_and_private" {
  command = plan

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
    error_message = "objects must be encrypted with KMS"
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).kms_master_key_id == var.kms_key_arn
    error_message = "objects must be encrypted with the region key"
  }

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "the bucket must be versioned"
  }

  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.this.block_public_acls,
      aws_s3_bucket_public_access_block.this.block_public_policy,
      aws_s3_bucket_public_access_block.this.ignore_public_acls,
      aws_s3_bucket_public_access_block.this.restrict_public_buckets,
    ])
    error_message = "all four public access blocks must be on"
  }

  assert {
    condition     = aws_s3_bucket_server_side_encryption_configuration.this.bucket == var.bucket_name && aws_s3_bucket_versioning.this.bucket == var.bucket_name
    error_message = "settings must name the bucket by a value known at plan time (the infrastructure policy links them by name)"
  }

  assert {
    condition     = aws_s3_bucket.this.force_destroy == false
    error_message = "a bucket holding models must not be destroyable with its contents by default"
  }
}

run "an_invalid_bucket_name_is_refused" {
  command = plan

  variables {
    bucket_name = "Fairshare_Models"
  }

  expect_failures = [var.bucket_name]
}

run "an_alias_instead_of_a_key_arn_is_refused" {
  command = plan

  variables {
    kms_key_arn = "alias/aws/s3"
  }

  expect_failures = [var.kms_key_arn]
}
