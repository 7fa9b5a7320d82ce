mock_provider "aws" {}

variables {
  region      = "eu-west-1"
  kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/example"
  tenants = {
    acme    = { home = "us-east-1", allowed_regions = ["us-east-1", "eu-west-1"] }
    initech = { home = "eu-west-1", allowed_regions = ["eu-west-1"] }
  }
}

run "one_kms_encrypted_secret_per_tenant" {
  command = plan

  assert {
    condition     = toset(keys(module.tenant)) == toset(["acme", "initech"])
    error_message = "one secret per tenant given"
  }

  assert {
    condition     = output.secret_names["initech"] == "fairshare/tenants/initech/pseudonymisation-key"
    error_message = "secret names are <prefix>/<tenant>/pseudonymisation-key (what the runtimes read)"
  }

  assert {
    condition     = alltrue([for t in module.tenant : t.kms_key_id == var.kms_key_arn])
    error_message = "tenant secrets must be encrypted with the region key"
  }

  assert {
    condition     = module.tenant["acme"].tags["fairshare:allowed-regions"] == "us-east-1 eu-west-1"
    error_message = "each secret records its tenant's allowed regions for the infrastructure policy"
  }

  assert {
    condition     = alltrue([for t in module.tenant : t.key_versions == 0])
    error_message = "no secret version when keys are not generated"
  }
}

run "keys_are_written_write_only" {
  command = plan

  variables {
    generate_keys = true
    keys          = { acme = "key-a", initech = "key-i" }
  }

  assert {
    condition     = alltrue([for t in module.tenant : t.key_versions == 1])
    error_message = "one write-only key version per tenant when keys are generated"
  }
}

run "a_tenant_not_allowed_in_the_region_is_refused" {
  command = plan

  variables {
    tenants = {
      globex = { home = "us-east-1", allowed_regions = ["us-east-1"] }
    }
  }

  expect_failures = [var.tenants]
}

run "a_short_recovery_window_is_refused" {
  command = plan

  variables {
    recovery_window_days = 3
  }

  expect_failures = [var.recovery_window_days]
}
