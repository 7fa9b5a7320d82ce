"""What the platform keeps of a tenant in AWS: its own model artifacts in each region's model bucket
(only under `tenants/<tenant>/`, the prefix policy/models holds every artifact of a tenant to) and its
secrets in Secrets Manager (`<prefix>/<tenant>/...`, as terraform/modules/tenant_secrets names them: today
its pseudonymisation key, `<prefix>/<tenant>/pseudonymisation-key`, which the runtimes read).

boto3 finds credentials and endpoints the usual way (AWS_ENDPOINT_URL: moto in tests, MinIO locally).
Every call here is idempotent: a second run finds nothing left and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SECRET_PREFIX = "fairshare/tenants"
# Secrets Manager's own bounds for a scheduled deletion, as terraform/modules/tenant_secrets validates.
MIN_RECOVERY_DAYS, MAX_RECOVERY_DAYS = 7, 30


# What a platform without an AWS account (a local `fairshare run`) passes instead, and what that skips:
# said wherever missing credentials stop an offboarding, since nothing else would point there.
NO_AWS = ("on a platform without an AWS account (a local `fairshare run`), run the same command with --no-aws: "
          "it skips deleting the tenant's artifacts under tenants/<tenant>/ of the model buckets and scheduling "
          "its secrets in Secrets Manager for deletion, and the receipt says they were skipped")


class StorageError(Exception):
    """A bucket or secret store that could not be cleaned: names which and why."""


def credentials_missing() -> bool:
    """True when boto3 finds no credentials anywhere it looks (environment, shared files, SSO, a container
    or instance role)."""
    import boto3

    return boto3.Session().get_credentials() is None


def _no_credentials(what: str) -> StorageError:
    return StorageError(f"{what}: no AWS credentials found; configure them, or {NO_AWS}")


def tenant_prefix(tenant: str) -> str:
    return f"tenants/{tenant}/"


def _client(service: str, region: str) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


@dataclass(frozen=True)
class BucketResult:
    bucket: str
    region: str
    prefix: str
    objects: int  # distinct keys
    versions: int  # object versions and delete markers removed
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bucket": self.bucket, "region": self.region, "prefix": self.prefix,
                               "objects": self.objects, "versions_deleted": self.versions}
        if self.note:
            out["note"] = self.note
        return out


def delete_artifacts(bucket: str, region: str, tenant: str, client: Any | None = None) -> BucketResult:
    """Delete every version and delete marker under the tenant's prefix: in a versioned bucket a plain
    delete only hides an object behind a marker, and its bytes stay."""
    from botocore.exceptions import ClientError, NoCredentialsError

    s3 = client or _client("s3", region)
    prefix = tenant_prefix(tenant)
    keys: set[str] = set()
    removed = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for kind in ("Versions", "DeleteMarkers") for v in page.get(kind, [])]
            # Belt and braces: never act on a key outside the prefix, whatever the listing returned.
            batch = [b for b in batch if b["Key"].startswith(prefix)]
            for i in range(0, len(batch), 1000):  # DeleteObjects takes at most 1,000 keys
                chunk = batch[i:i + 1000]
                reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
                errors = reply.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise StorageError(f"s3://{bucket}/{first.get('Key')}: {first.get('Code')} "
                                       f"{first.get('Message')} ({len(errors)} objects not deleted)")
                removed += len(chunk)
                keys.update(b["Key"] for b in chunk)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return BucketResult(bucket, region, prefix, 0, 0, note="bucket does not exist")
        raise StorageError(f"s3://{bucket}/{prefix}: {code or err}") from err
    except NoCredentialsError as err:
        raise _no_credentials(f"s3://{bucket}/{prefix}") from err
    # Unversioned buckets list their objects here too (version id "null"); a leftover means a race
    # with a writer, which a re-run cleans.
    left = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0)
    if left:
        raise StorageError(f"s3://{bucket}/{prefix}: objects appeared while deleting; run again")
    return BucketResult(bucket, region, prefix, len(keys), removed)


@dataclass(frozen=True)
class SecretResult:
    name: str
    region: str
    deletion_date: str | None
    already_scheduled: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "region": self.region, "deletion_date": self.deletion_date,
                "already_scheduled": self.already_scheduled}


def schedule_secret_deletion(region: str, tenant: str, recovery_days: int, prefix: str = SECRET_PREFIX,
                             client: Any | None = None) -> list[SecretResult]:
    """Schedule every secret named `<prefix>/<tenant>/...` in `region` for deletion after
    `recovery_days` (Terraform's `recovery_window_in_days`); one already scheduled is left as it is."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if not MIN_RECOVERY_DAYS <= recovery_days <= MAX_RECOVERY_DAYS:
        raise StorageError(f"recovery window {recovery_days} days: Secrets Manager takes "
                           f"{MIN_RECOVERY_DAYS}-{MAX_RECOVERY_DAYS}")
    sm = client or _client("secretsmanager", region)
    name_prefix = f"{prefix}/{tenant}/"
    out: list[SecretResult] = []
    try:
        pages = sm.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [name_prefix]}], IncludePlannedDeletion=True)
        for page in pages:
            for secret in page.get("SecretList", []):
                name = secret["Name"]
                if not name.startswith(name_prefix):  # the name filter is a prefix match; be exact
                    continue
                if secret.get("DeletedDate") is not None:
                    out.append(SecretResult(name, region, _iso(secret.get("DeletedDate")), True))
                    continue
                reply = sm.delete_secret(SecretId=secret["ARN"], RecoveryWindowInDays=recovery_days)
                out.append(SecretResult(name, region, _iso(reply.get("DeletionDate")), False))
    except ClientError as err:
        raise StorageError(f"Secrets Manager in {region}, {name_prefix}*: "
                           f"{err.response.get('Error', {}).get('Code', err)}") from err
    except NoCredentialsError as err:
        raise _no_credentials(f"Secrets Manager in {region}, {name_prefix}*") from err
    return sorted(out, key=lambda s: s.name)


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (None if value is None else str(value))
