terraform {
  required_version = ">= 1.11.0" # write-only arguments keep tenant secrets out of state

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }

  # Remote state, one object per region: `make region-plan REGION=...` passes
  # bucket, key = fairshare/<region>/terraform.tfstate and region with -backend-config.
  backend "s3" {}
}
