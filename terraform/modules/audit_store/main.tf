# The region's audit bucket: the control planes' closed audit files (xds_server/audit/ship.py), write-once.
# Child resources name the bucket by `.bucket` (known at plan time), as in model_store, so the infrastructure
# policy ties each setting (and the object lock) to its bucket in the plan.
resource "aws_s3_bucket" "this" {
  bucket = var.bucket_name
  # Object Lock can only be turned on when the bucket is created. It turns versioning on for good (S3 refuses
  # to suspend it), so there is no aws_s3_bucket_versioning here: destroying one suspends versioning, which
  # fails on this bucket (policy/infrastructure counts the lock as versioning).
  object_lock_enabled = true
  force_destroy       = var.force_destroy
  tags                = merge(var.tags, { "fairshare:role" = "audit" })
}

# Every object gets this retention unless its upload names one (the shipper names the same: it reads this
# rule). In COMPLIANCE mode no principal, the account root included, can delete or overwrite a record's
# version, nor shorten its retention, until the period has passed.
resource "aws_s3_bucket_object_lock_configuration" "this" {
  bucket = aws_s3_bucket.this.bucket
  rule {
    default_retention {
      mode = var.lock_mode
      days = var.retention_days
    }
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.bucket
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.bucket
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.bucket
  rule {
    object_ownership = "BucketOwnerEnforced" # no ACLs at all: access is IAM only
  }
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.bucket
  policy = data.aws_iam_policy_document.tls_only.json
  # A bucket policy is refused while the public access block is being written.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Records leave when policy/retention says, not never: once a record's lock has run out (it is locked for
# retention_days from its upload, and keep_days is at least that), S3 expires it, which with versioning puts
# a delete marker on it, and removes the version a day later. Nothing here can remove a record early: S3
# refuses to delete a locked version, the lifecycle's included. A multipart upload a stopped shipper left
# behind is aborted after a day, since it holds bytes nobody can see.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.bucket
  rule {
    id     = "expire-after-retention"
    status = "Enabled"
    filter {
      prefix = var.prefix
    }
    expiration {
      days = local.keep_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  # The lock rule must be in place first: a lifecycle on a bucket whose records are not locked yet could
  # only ever be as safe as the lock that follows it.
  depends_on = [aws_s3_bucket_object_lock_configuration.this]
}

locals {
  keep_days = coalesce(var.keep_days, var.retention_days)
}
