mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::fairshare-eu-west-1-audit-123456789012"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

variables {
  bucket_name = "fairshare-eu-west-1-audit-123456789012"
  kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/audit"
}

run "records_are_locked_in_compliance_mode_for_400_days" {
  command = plan

  assert {
    condition     = aws_s3_bucket.this.object_lock_enabled == true
    error_message = "Object Lock must be on from the bucket's creation"
  }

  assert {
    condition = (one(one(aws_s3_bucket_object_lock_configuration.this.rule).default_retention).mode == "COMPLIANCE" &&
    one(one(aws_s3_bucket_object_lock_configuration.this.rule).default_retention).days == 400)
    error_message = "every record is locked in COMPLIANCE mode for the audit retention (400 days) by default"
  }

  assert {
    condition     = aws_s3_bucket.this.force_destroy == false && aws_s3_bucket.this.tags["fairshare:role"] == "audit"
    error_message = "the audit bucket is not destroyable with its records by default, and is tagged as the audit bucket (policy/infrastructure finds it by the tag)"
  }
}

run "bucket_is_kms_encrypted_private_and_tls_only" {
  command = plan

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).kms_master_key_id == var.kms_key_arn
    error_message = "records must be encrypted with the audit key"
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
    condition     = one(aws_s3_bucket_ownership_controls.this.rule).object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs must be disabled"
  }

  assert {
    condition     = aws_s3_bucket_object_lock_configuration.this.bucket == var.bucket_name && aws_s3_bucket_policy.this.bucket == var.bucket_name
    error_message = "settings must name the bucket by a value known at plan time (the infrastructure policy links them by name)"
  }
}

run "the_retention_is_a_variable" {
  command = plan

  variables {
    retention_days = 730
    lock_mode      = "GOVERNANCE"
  }

  assert {
    condition     = one(one(aws_s3_bucket_object_lock_configuration.this.rule).default_retention).days == 730 && output.retention == { mode = "GOVERNANCE", days = 730, keep_days = 730 }
    error_message = "retention_days and lock_mode set the default retention"
  }
}

run "an_unknown_lock_mode_is_refused" {
  command = plan

  variables {
    lock_mode = "LEGAL_HOLD"
  }

  expect_failures = [var.lock_mode]
}

run "a_retention_under_a_day_is_refused" {
  command = plan

  variables {
    retention_days = 0
  }

  expect_failures = [var.retention_days]
}

run "a_prefix_without_a_slash_or_with_a_wildcard_is_refused" {
  command = plan

  variables {
    prefix = "audit*"
  }

  expect_failures = [var.prefix]
}

run "records_expire_once_their_retention_has_passed" {
  command = plan

  assert {
    condition = (one(aws_s3_bucket_lifecycle_configuration.this.rule).status == "Enabled" &&
      one(one(aws_s3_bucket_lifecycle_configuration.this.rule).filter).prefix == "audit/" &&
      one(one(aws_s3_bucket_lifecycle_configuration.this.rule).expiration).days == 400 &&
    one(one(aws_s3_bucket_lifecycle_configuration.this.rule).noncurrent_version_expiration).noncurrent_days == 1)
    error_message = "records under the prefix expire after the retention (400 days), their versions a day later"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this.bucket == var.bucket_name
    error_message = "the lifecycle names the bucket by a value known at plan time (the infrastructure policy links it by name)"
  }
}

run "records_may_be_kept_longer_than_locked" {
  command = plan

  variables {
    keep_days = 1000
  }

  assert {
    condition     = one(one(aws_s3_bucket_lifecycle_configuration.this.rule).expiration).days == 1000 && output.retention.keep_days == 1000
    error_message = "keep_days sets when S3 removes a record"
  }
}

run "keeping_records_for_less_than_their_lock_is_refused" {
  command = plan

  variables {
    keep_days = 30
  }

  expect_failures = [var.keep_days]
}
