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
