mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

variables {
  name                = "fairshare-eu-west-1"
  oidc_provider_arn   = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
  oidc_issuer_url     = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
  model_bucket_arn    = "arn:aws:s3:::fairshare-eu-west-1-models-123456789012"
  kms_key_arn         = "arn:aws:kms:eu-west-1:123456789012:key/models"
  secrets_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/secrets"
}

run "roles_named_for_the_region" {
  command = plan

  assert {
    condition     = aws_iam_role.inference.name == "fairshare-eu-west-1-model-reader" && aws_iam_role.gateway.name == "fairshare-eu-west-1-control-plane"
    error_message = "role names are <name>-model-reader and <name>-control-plane"
  }

  assert {
    condition     = local.pseudonymisation_keys_arn == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fairshare/tenants/*/pseudonymisation-key-??????"
    error_message = "the runtimes may read only the tenants' pseudonymisation keys of their own region and account"
  }

  assert {
    condition     = aws_iam_role_policy.inference_keys.name == "read-pseudonymisation-keys"
    error_message = "the pseudonymisation keys are read by the runtimes' role"
  }
}

run "a_malformed_oidc_provider_is_refused" {
  command = plan

  variables {
    oidc_provider_arn = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
  }

  expect_failures = [var.oidc_provider_arn]
}

run "the_runtime_reads_tenant_prefixes_only" {
  command = plan

  assert {
    condition     = local.model_read_arns == ["arn:aws:s3:::fairshare-eu-west-1-models-123456789012/tenants/*"]
    error_message = "the model reader may get objects under tenants/ only, never the whole bucket"
  }

  assert {
    condition     = length(aws_iam_role.tenant_writer) == 0
    error_message = "no tenant writer role unless a tenant pipeline is named"
  }
}

run "each_tenant_pipeline_writes_its_own_prefix_only" {
  command = plan

  variables {
    tenant_writers = {
      acme   = { principal_arns = ["arn:aws:iam::111111111111:role/acme-ci"] }
      globex = { principal_arns = ["arn:aws:iam::222222222222:role/globex-ci"] }
    }
  }

  assert {
    condition     = local.tenant_write_arns == { acme = "arn:aws:s3:::fairshare-eu-west-1-models-123456789012/tenants/acme/*", globex = "arn:aws:s3:::fairshare-eu-west-1-models-123456789012/tenants/globex/*" }
    error_message = "a tenant's writer may write under tenants/<tenant>/ only"
  }

  assert {
    condition     = aws_iam_role.tenant_writer["acme"].name == "fairshare-eu-west-1-model-writer-acme"
    error_message = "writer roles are <name>-model-writer-<tenant> (the model bucket policy admits only that name to tenant prefixes)"
  }
}

run "reading_the_whole_bucket_is_refused" {
  command = plan

  variables {
    model_read_prefixes = [""]
  }

  expect_failures = [var.model_read_prefixes]
}

run "no_config_bundle_no_bucket_access" {
  command = plan

  assert {
    condition     = length(aws_iam_role_policy.control_plane_config) == 0
    error_message = "without config_bundle the control plane gets no S3 access"
  }
}

run "the_control_plane_reads_its_config_bundle_only" {
  command = plan

  variables {
    config_bundle = { bucket_arn = "arn:aws:s3:::fairshare-config", key = "fairshare/config.tar.gz" }
  }

  assert {
    condition     = length(aws_iam_role_policy.control_plane_config) == 1 && local.config_object_arn == "arn:aws:s3:::fairshare-config/fairshare/config.tar.gz"
    error_message = "the control plane's role reads exactly the bundle's object"
  }
}

run "a_config_bundle_prefix_is_refused" {
  command = plan

  variables {
    config_bundle = { bucket_arn = "arn:aws:s3:::fairshare-config", key = "fairshare/" }
  }

  expect_failures = [var.config_bundle]
}

run "no_audit_store_no_audit_access" {
  command = plan

  assert {
    condition     = length(aws_iam_role_policy.control_plane_audit) == 0
    error_message = "without audit_store the control plane gets no audit bucket access"
  }
}

run "the_control_plane_ships_audit_records_and_deletes_none" {
  command = plan

  variables {
    audit_store = {
      bucket_arn  = "arn:aws:s3:::fairshare-eu-west-1-audit-123456789012"
      prefix      = "audit/"
      kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/audit"
    }
  }

  assert {
    condition     = length(aws_iam_role_policy.control_plane_audit) == 1 && aws_iam_role_policy.control_plane_audit[0].name == "ship-audit-records"
    error_message = "the control plane's role gets the audit shipping policy"
  }

  assert {
    condition = (one([for s in data.aws_iam_policy_document.ship_audit_records[0].statement : s.resources if s.sid == "ShipAuditRecords"]) == toset(["arn:aws:s3:::fairshare-eu-west-1-audit-123456789012/audit/*"]) &&
    one([for s in data.aws_iam_policy_document.ship_audit_records[0].statement : s.actions if s.sid == "ShipAuditRecords"]) == toset(["s3:PutObject", "s3:PutObjectRetention"]))
    error_message = "the control plane may only put objects (with their retention) under the audit prefix"
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.ship_audit_records[0].statement : s if anytrue([for a in s.actions : can(regex("(?i)delete|bypass|get(object)?$|list", a))])]) == 0
    error_message = "the control plane may not delete, bypass a lock, read or list audit records"
  }
}

run "an_audit_store_without_a_prefix_is_refused" {
  command = plan

  variables {
    audit_store = {
      bucket_arn  = "arn:aws:s3:::fairshare-eu-west-1-audit-123456789012"
      prefix      = "/"
      kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/audit"
    }
  }

  expect_failures = [var.audit_store]
}

run "no_audit_readers_no_reader_role" {
  command = plan

  variables {
    audit_store = {
      bucket_arn  = "arn:aws:s3:::fairshare-eu-west-1-audit-123456789012"
      prefix      = "audit/"
      kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/audit"
    }
  }

  assert {
    condition     = length(aws_iam_role.audit_reader) == 0 && output.audit_reader_role_arn == null
    error_message = "no audit reader role unless audit_readers names who may assume it"
  }
}

run "an_auditor_reads_the_trail_and_changes_nothing" {
  command = plan

  variables {
    audit_store = {
      bucket_arn  = "arn:aws:s3:::fairshare-eu-west-1-audit-123456789012"
      prefix      = "audit/"
      kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/audit"
    }
    audit_readers = ["arn:aws:iam::333333333333:role/soc2-auditor"]
  }

  assert {
    condition     = aws_iam_role.audit_reader[0].name == "fairshare-eu-west-1-audit-reader" && aws_iam_role_policy.audit_reader[0].name == "read-audit-records"
    error_message = "the reader role is <name>-audit-reader with the read-audit-records policy"
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.audit_reader_trust[0].statement : one(s.principals).identifiers]) == toset(["arn:aws:iam::333333333333:role/soc2-auditor"])
    error_message = "only the named audit readers may assume the role"
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.read_audit_records[0].statement : s.resources if s.sid == "ReadAuditRecords"]) == toset(["arn:aws:s3:::fairshare-eu-west-1-audit-123456789012/audit/*"])
    error_message = "the reader reads objects under the audit prefix only"
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.read_audit_records[0].statement : s if anytrue([for a in s.actions : !can(regex("^(s3:(Get|List)[A-Za-z]+|kms:Decrypt)$", a))])]) == 0
    error_message = "the reader may only get, list and decrypt: no put, delete, bypass or retention change"
  }
}

run "audit_readers_without_an_audit_store_are_refused" {
  command = plan

  variables {
    audit_readers = ["arn:aws:iam::333333333333:role/soc2-auditor"]
  }

  expect_failures = [var.audit_readers]
}

run "an_audit_reader_that_is_no_principal_is_refused" {
  command = plan

  variables {
    audit_store = {
      bucket_arn  = "arn:aws:s3:::fairshare-eu-west-1-audit-123456789012"
      prefix      = "audit/"
      kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/audit"
    }
    audit_readers = ["soc2-auditor"]
  }

  expect_failures = [var.audit_readers]
}
