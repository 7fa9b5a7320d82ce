locals {
  # A set aws_endpoint points every AWS API at one local endpoint (a moto server in tests and benchmarks);
  # unset, the provider talks to real AWS with the ambient credentials.
  emulated = var.aws_endpoint != null
}

provider "aws" {
  region = var.region

  access_key                  = local.emulated ? "test" : null
  secret_key                  = local.emulated ? "test" : null
  skip_credentials_validation = local.emulated
  skip_requesting_account_id  = local.emulated
  skip_metadata_api_check     = local.emulated ? "true" : null
  s3_use_path_style           = local.emulated

  dynamic "endpoints" {
    for_each = local.emulated ? [var.aws_endpoint] : []
    content {
      ec2            = endpoints.value
      eks            = endpoints.value
      iam            = endpoints.value
      kms            = endpoints.value
      logs           = endpoints.value
      s3             = endpoints.value
      secretsmanager = endpoints.value
      sts            = endpoints.value
    }
  }

  default_tags {
    tags = merge(var.tags, {
      "fairshare:region"     = var.region
      "fairshare:managed-by" = "terraform"
    })
  }
}
