data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  issuer = trimprefix(var.oidc_issuer_url, "https://")
  # The tenants' pseudonymisation keys of this region and account, and nothing else of Secrets Manager:
  # an ARN ends in "-" and six random characters after the name (hence ??????, not *).
  pseudonymisation_keys_arn = join(":", [
    "arn", data.aws_partition.current.partition, "secretsmanager", data.aws_region.current.name,
    data.aws_caller_identity.current.account_id, "secret", "${var.tenant_secret_name_prefix}/*/pseudonymisation-key-??????",
  ])
  # What the inference pods may read: the tenants' prefixes (and any other prefix the platform adds,
  # e.g. catalog/ for its own ONNX models), never the whole bucket.
  model_read_arns = [for p in var.model_read_prefixes : "${var.model_bucket_arn}/${p}*"]
  # Each tenant's pipeline writes under tenants/<tenant>/ only: the prefix policy/models requires of
  # the tenant's artifacts, so no other tenant's (or the platform's) role can put bytes a tenant serves.
  tenant_write_arns = { for t, _ in var.tenant_writers : t => "${var.model_bucket_arn}/${var.tenant_prefix}${t}/*" }
  # Every KMS permission holds only through the service that owns the key's data (kms:ViaService): a
  # role that may decrypt model objects through S3 cannot call kms:Decrypt on the key itself.
  via_s3             = "s3.${data.aws_region.current.name}.amazonaws.com"
  via_secretsmanager = "secretsmanager.${data.aws_region.current.name}.amazonaws.com"
  # Cluster Autoscaler and the AWS Load Balancer Controller run in kube-system with these accounts.
  addon_service_accounts = {
    cluster_autoscaler = var.cluster_autoscaler_service_account
    load_balancer      = var.load_balancer_controller_service_account
  }
}

# Only the named service account in the named namespace may assume each role (IRSA).
data "aws_iam_policy_document" "trust" {
  for_each = {
    inference = var.inference_service_account
    gateway   = var.gateway_service_account
  }
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${each.value}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "read_models" {
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [var.model_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for p in var.model_read_prefixes : "${p}*"]
    }
  }
  statement {
    sid       = "LocateBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = [var.model_bucket_arn]
  }
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = local.model_read_arns
  }
  statement {
    sid       = "DecryptModels"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_iam_role" "inference" {
  name               = "${var.name}-model-reader"
  description        = "Inference pods read model artifacts (read-only) under the tenant prefixes of the region's model bucket."
  assume_role_policy = data.aws_iam_policy_document.trust["inference"].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "inference" {
  name   = "read-models"
  role   = aws_iam_role.inference.id
  policy = data.aws_iam_policy_document.read_models.json
}

# The runtimes pseudonymise tenants' PII with each tenant's key (tenant_secrets): they read those secrets'
# values and nothing else (no listing, no other secret), decrypting only through Secrets Manager.
data "aws_iam_policy_document" "read_pseudonymisation_keys" {
  statement {
    sid       = "ReadPseudonymisationKeys"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.pseudonymisation_keys_arn]
  }
  statement {
    sid       = "DecryptPseudonymisationKeys"
    actions   = ["kms:Decrypt"]
    resources = [var.secrets_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_secretsmanager]
    }
  }
}

resource "aws_iam_role_policy" "inference_keys" {
  name   = "read-pseudonymisation-keys"
  role   = aws_iam_role.inference.id
  policy = data.aws_iam_policy_document.read_pseudonymisation_keys.json
}

# The control plane reads no tenant secret (the runtimes read the keys); its role holds only what it
# reads itself (the config bundle, below, when there is one) and what it ships (its audit files, below).
resource "aws_iam_role" "gateway" {
  name               = "${var.name}-control-plane"
  description        = "The control plane reads its config bundle and ships its audit files; it reads no tenant secret."
  assume_role_policy = data.aws_iam_policy_document.trust["gateway"].json
  tags               = var.tags
}

# One writer role per tenant pipeline: only the principals the tenant's entry names may assume it, and it
# may write only under tenants/<tenant>/. No other role of the platform writes there (the model reader
# is read-only), so the bytes a tenant's route points at are the bytes its own pipeline put there.
data "aws_iam_policy_document" "writer_trust" {
  for_each = var.tenant_writers
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = each.value.principal_arns
    }
  }
}

data "aws_iam_policy_document" "write_tenant_models" {
  for_each = var.tenant_writers
  statement {
    sid       = "WriteOwnPrefix"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.tenant_write_arns[each.key]]
  }
  statement {
    sid       = "ListOwnPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.model_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.tenant_prefix}${each.key}/*"]
    }
  }
  statement {
    sid       = "EncryptModels"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_iam_role" "tenant_writer" {
  for_each           = var.tenant_writers
  name               = "${var.name}-model-writer-${each.key}"
  description        = "Tenant ${each.key}'s pipeline writes its own models under ${var.tenant_prefix}${each.key}/ of the model bucket."
  assume_role_policy = data.aws_iam_policy_document.writer_trust[each.key].json
  tags               = merge(var.tags, { "fairshare:tenant" = each.key })
}

resource "aws_iam_role_policy" "tenant_writer" {
  for_each = var.tenant_writers
  name     = "write-own-models"
  role     = aws_iam_role.tenant_writer[each.key].id
  policy   = data.aws_iam_policy_document.write_tenant_models[each.key].json
}

# Cluster add-ons that call AWS: each an IRSA role trusted for its one kube-system service account.
data "aws_iam_policy_document" "addon_trust" {
  for_each = local.addon_service_accounts
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["system:serviceaccount:kube-system:${each.value}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# Cluster Autoscaler: reads every group, resizes only this cluster's (EKS tags a managed node group's
# Auto Scaling group k8s.io/cluster-autoscaler/<cluster> = owned).
data "aws_iam_policy_document" "cluster_autoscaler" {
  statement {
    sid = "Discover"
    actions = ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags",
      "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup"]
    resources = ["*"]
  }
  statement {
    sid       = "ResizeOwnGroups"
    actions   = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.name}"
      values   = ["owned"]
    }
  }
}

resource "aws_iam_role" "cluster_autoscaler" {
  name               = "${var.name}-cluster-autoscaler"
  description        = "Cluster Autoscaler resizes this cluster's node groups within their bounds."
  assume_role_policy = data.aws_iam_policy_document.addon_trust["cluster_autoscaler"].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name   = "resize-node-groups"
  role   = aws_iam_role.cluster_autoscaler.id
  policy = data.aws_iam_policy_document.cluster_autoscaler.json
}

# AWS Load Balancer Controller: creates and changes only load balancers, target groups and security
# groups it tagged elbv2.k8s.aws/cluster = <this cluster>.
data "aws_iam_policy_document" "load_balancer_controller" {
  statement {
    sid       = "ServiceLinkedRole"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["elasticloadbalancing.amazonaws.com"]
    }
  }
  statement {
    sid = "Read"
    actions = ["ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
      "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections", "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups", "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags",
      "ec2:DescribeCoipPools", "ec2:GetCoipPoolUsage", "ec2:GetSecurityGroupsForVpc", "ec2:DescribeIpamPools",
      "ec2:DescribeRouteTables", "elasticloadbalancing:Describe*", "acm:ListCertificates", "acm:DescribeCertificate",
      "iam:ListServerCertificates", "iam:GetServerCertificate", "wafv2:GetWebACL", "wafv2:GetWebACLForResource",
    "shield:GetSubscriptionState", "shield:DescribeProtection"]
    resources = ["*"]
  }
  statement {
    sid       = "CreateTaggedSecurityGroups"
    actions   = ["ec2:CreateSecurityGroup"]
    resources = ["*"]
  }
  statement {
    sid       = "TagSecurityGroupsAtCreation"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:aws:ec2:*:*:security-group/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateSecurityGroup"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/elbv2.k8s.aws/cluster"
      values   = [var.name]
    }
  }
  statement {
    sid       = "ChangeOwnSecurityGroups"
    actions   = ["ec2:CreateTags", "ec2:DeleteTags", "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/elbv2.k8s.aws/cluster"
      values   = [var.name]
    }
  }
  statement {
    sid       = "OpenNodeSecurityGroupsToOwnLoadBalancers"
    actions   = ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/kubernetes.io/cluster/${var.name}"
      values   = ["owned"]
    }
  }
  statement {
    sid       = "CreateTaggedLoadBalancers"
    actions   = ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:AddTags"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/elbv2.k8s.aws/cluster"
      values   = [var.name]
    }
  }
  statement {
    sid = "ChangeOwnLoadBalancers"
    actions = ["elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetIpAddressType",
      "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets", "elasticloadbalancing:DeleteLoadBalancer",
      "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
      "elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
      "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags", "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:CreateRule", "elasticloadbalancing:ModifyListenerAttributes"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/elbv2.k8s.aws/cluster"
      values   = [var.name]
    }
  }
  statement {
    # Listeners and rules carry no cluster tag of their own; they live under the load balancers above.
    sid = "Listeners"
    actions = ["elasticloadbalancing:ModifyListener", "elasticloadbalancing:DeleteListener", "elasticloadbalancing:ModifyRule",
      "elasticloadbalancing:DeleteRule", "elasticloadbalancing:AddListenerCertificates",
    "elasticloadbalancing:RemoveListenerCertificates", "elasticloadbalancing:SetWebAcl"]
    resources = ["arn:aws:elasticloadbalancing:*:*:listener/*", "arn:aws:elasticloadbalancing:*:*:listener-rule/*",
    "arn:aws:elasticloadbalancing:*:*:loadbalancer/*"]
  }
}

resource "aws_iam_role" "load_balancer_controller" {
  name               = "${var.name}-load-balancer-controller"
  description        = "AWS Load Balancer Controller provisions the gateway's load balancer (the chart's Service of type LoadBalancer)."
  assume_role_policy = data.aws_iam_policy_document.addon_trust["load_balancer"].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "load_balancer_controller" {
  name   = "manage-own-load-balancers"
  role   = aws_iam_role.load_balancer_controller.id
  policy = data.aws_iam_policy_document.load_balancer_controller.json
}

# The control plane reads its config bundle (one object, every version of it) and nothing else of the bucket:
# polling lists that key's versions only.
locals {
  config_object_arn = var.config_bundle == null ? null : "${var.config_bundle.bucket_arn}/${var.config_bundle.key}"
}

data "aws_iam_policy_document" "read_config_bundle" {
  count = var.config_bundle == null ? 0 : 1
  statement {
    sid       = "ReadConfigBundle"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.config_object_arn]
  }
  statement {
    sid       = "ListConfigBundleVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [var.config_bundle.bucket_arn]
    condition {
      test     = "StringEquals"
      variable = "s3:prefix"
      values   = [var.config_bundle.key]
    }
  }
  dynamic "statement" {
    for_each = var.config_bundle.kms_key_arn == null ? [] : [var.config_bundle.kms_key_arn]
    content {
      sid       = "DecryptConfigBundle"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = [local.via_s3]
      }
    }
  }
}

resource "aws_iam_role_policy" "control_plane_config" {
  count  = var.config_bundle == null ? 0 : 1
  name   = "read-config-bundle"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.read_config_bundle[0].json
}

# The control plane ships its closed audit files (xds_server/audit/ship.py): it may only add objects under
# the audit prefix, with the retention the bucket's Object Lock rule gives (s3:PutObjectRetention: an upload
# that names a retention needs it), and read that rule. No read, list or delete of any record: a control
# plane, or whoever takes its credentials, cannot remove or rewrite what it shipped (the lock also keeps every
# version). Encryption with the audit key holds only through S3.
data "aws_iam_policy_document" "ship_audit_records" {
  count = var.audit_store == null ? 0 : 1
  statement {
    sid       = "ShipAuditRecords"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"]
    resources = ["${var.audit_store.bucket_arn}/${var.audit_store.prefix}*"]
  }
  statement {
    sid       = "ReadAuditLockRule"
    actions   = ["s3:GetBucketObjectLockConfiguration"]
    resources = [var.audit_store.bucket_arn]
  }
  statement {
    sid       = "EncryptAuditRecords"
    actions   = ["kms:GenerateDataKey"]
    resources = [var.audit_store.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_iam_role_policy" "control_plane_audit" {
  count  = var.audit_store == null ? 0 : 1
  name   = "ship-audit-records"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.ship_audit_records[0].json
}

# Who reads the trail back: an auditor (or whoever hands evidence to one) assumes this role to download a
# pod's prefix and run `fairshare audit verify` (docs/helm.md, "Audit trail"). It reads records and their
# locks and nothing else: no write, no delete, no change to a retention or legal hold, so handing it to
# someone outside the platform team cannot alter the evidence it is handed. The bucket holds audit records
# only, so listing it is not scoped further (a prefix condition would hide the pods' folders from `aws s3 ls`).
data "aws_iam_policy_document" "audit_reader_trust" {
  count = length(var.audit_readers) > 0 ? 1 : 0
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.audit_readers
    }
  }
}

data "aws_iam_policy_document" "read_audit_records" {
  count = length(var.audit_readers) > 0 ? 1 : 0
  statement {
    sid       = "ListAuditRecords"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration"]
    resources = [var.audit_store.bucket_arn]
  }
  statement {
    sid = "ReadAuditRecords"
    actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold",
    "s3:GetObjectAttributes"]
    resources = ["${var.audit_store.bucket_arn}/${var.audit_store.prefix}*"]
  }
  statement {
    sid       = "DecryptAuditRecords"
    actions   = ["kms:Decrypt"]
    resources = [var.audit_store.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_iam_role" "audit_reader" {
  count                = length(var.audit_readers) > 0 ? 1 : 0
  name                 = "${var.name}-audit-reader"
  description          = "Reads the region's audit records and their locks (fairshare audit verify); writes, deletes and unlocks nothing."
  assume_role_policy   = data.aws_iam_policy_document.audit_reader_trust[0].json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "audit_reader" {
  count  = length(var.audit_readers) > 0 ? 1 : 0
  name   = "read-audit-records"
  role   = aws_iam_role.audit_reader[0].id
  policy = data.aws_iam_policy_document.read_audit_records[0].json
}
