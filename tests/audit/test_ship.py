"""Shipping rotated audit files to S3 on a real moto server: write-once (object lock) where the bucket
has it, plain where it does not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import pytest

from xds_server.audit import AuditLog, verify
from xds_server.audit.log import log_files
from xds_server.audit.ship import S3Shipper
from xds_server.local.aws import moto_server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")


def fill(path: Path, shipper: S3Shipper, n: int = 30) -> AuditLog:
    log = AuditLog(path, max_bytes=2048, shipper=shipper)
    for i in range(n):
        log.append("config.applied", tenants=[f"t{i:05d}"], config_version=f"{i:012x}")
    assert shipper.flush() == []
    return log


def test_rotated_files_are_shipped_with_object_lock(s3: object, tmp_path: Path) -> None:
    client = s3  # a boto3 S3 client on the moto server
    client.create_bucket(Bucket="audit-locked", ObjectLockEnabledForBucket=True)  # type: ignore[attr-defined]
    client.put_object_lock_configuration(  # type: ignore[attr-defined]
        Bucket="audit-locked", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}}})
    shipper = S3Shipper("s3://audit-locked/cp-1/", client=client)
    path = tmp_path / "audit.jsonl"
    fill(path, shipper)
    closed = log_files(path)[:-1]
    assert closed and shipper.object_lock() == ("COMPLIANCE", 30)
    for file in closed:
        head = client.head_object(Bucket="audit-locked", Key=f"cp-1/{file.name}")  # type: ignore[attr-defined]
        assert head["ObjectLockMode"] == "COMPLIANCE"
        body = client.get_object(Bucket="audit-locked", Key=f"cp-1/{file.name}")["Body"].read()  # type: ignore[attr-defined]
        assert body == file.read_bytes()
    # The shipped copies are the chain: downloaded into a folder with the active file, they verify.
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in closed:
        (copy / file.name).write_bytes(client.get_object(  # type: ignore[attr-defined]
            Bucket="audit-locked", Key=f"cp-1/{file.name}")["Body"].read())
    (copy / "audit.jsonl").write_bytes(path.read_bytes())
    assert verify(copy / "audit.jsonl").ok
    # Write-once: a locked version cannot be deleted before its retention date.
    versions = client.list_object_versions(Bucket="audit-locked", Prefix="cp-1/")["Versions"]  # type: ignore[attr-defined]
    with pytest.raises(client.exceptions.ClientError):  # type: ignore[attr-defined]
        client.delete_object(Bucket="audit-locked", Key=versions[0]["Key"],  # type: ignore[attr-defined]
                             VersionId=versions[0]["VersionId"])


def test_a_bucket_without_object_lock_still_gets_the_files(s3: object, tmp_path: Path) -> None:
    client = s3
    client.create_bucket(Bucket="audit-plain")  # type: ignore[attr-defined]
    shipper = S3Shipper("s3://audit-plain", client=client)
    path = tmp_path / "audit.jsonl"
    fill(path, shipper)
    assert shipper.object_lock() is None
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="audit-plain")["Contents"]}  # type: ignore[attr-defined]
    assert keys == {f.name for f in log_files(path)[:-1]}
    assert set(shipper.shipped.values()) == {"none"}


def test_a_file_that_could_not_ship_stays_pending(s3: object, tmp_path: Path) -> None:
    shipper = S3Shipper("s3://no-such-bucket/x", client=s3)
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=2048, shipper=shipper)
    for i in range(20):
        log.append("config.applied", tenants=[f"t{i:05d}"], config_version=f"{i:012x}")
    pending = shipper.flush()
    assert pending and all(p.exists() for p in pending)
    assert verify(tmp_path / "audit.jsonl").ok  # the local chain is unharmed


def test_a_stopping_control_plane_ships_its_last_records(s3: object, tmp_path: Path) -> None:
    """In a cluster the state dir is an emptyDir: records not yet rotated went with the pod. A stop seals
    the active file and ships it; the shipped files alone are the whole chain."""
    from xds_server.controlplane.main import _ship_the_last_records

    client = s3
    client.create_bucket(Bucket="audit-stop")  # type: ignore[attr-defined]
    shipper = S3Shipper("s3://audit-stop/us-east-1/cp-abc12/", client=client)
    path = tmp_path / "audit.jsonl"
    log = fill(path, shipper, n=12)
    assert path.stat().st_size > 0  # the active file holds records no rotation shipped
    _ship_the_last_records(log)
    assert not path.exists() or path.stat().st_size == 0
    listed = client.list_objects_v2(Bucket="audit-stop", Prefix="us-east-1/cp-abc12/")["Contents"]  # type: ignore[attr-defined]
    copy = tmp_path / "shipped"
    copy.mkdir()
    for obj in listed:
        name = obj["Key"].rsplit("/", 1)[1]
        (copy / name).write_bytes(client.get_object(Bucket="audit-stop", Key=obj["Key"])["Body"].read())  # type: ignore[attr-defined]
    shipped = verify(copy / "audit.jsonl")
    assert shipped.ok and [r["seq"] for r in shipped.records] == list(range(1, 13))
    # Nothing recorded since: nothing more to seal, and the chain goes on in a new file after a restart.
    assert log.seal() is None
    log.append("config.applied", tenants=["t99999"], config_version="f" * 12)
    assert log.seq == 13


def test_a_quiet_control_plane_ships_its_records_within_the_seal_period(tmp_path: Path) -> None:
    """Records wait for a rotation no longer than the seal period, however few there are: a node lost outright
    (no stop runs) takes at most that long of the trail. The age is the active file's first record's."""
    shipped: list[Path] = []
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, shipper=shipped.append)
    assert log.seal_if_older(3600) is None  # no record: nothing to seal
    first = log.append("config.applied", tenants=["acme"], config_version="a" * 12)
    at = datetime.fromisoformat(first["time"]).timestamp()
    log.append("config.refused", tenants=["globex"], summary="a quota above the tier's")
    assert log.seal_if_older(3600, now=at + 3599) is None and shipped == []
    sealed = log.seal_if_older(3600, now=at + 3600)
    assert sealed is not None and shipped == [sealed] and [p.name for p in log_files(path)] == [sealed.name]
    # The next file's age counts from its own first record; a restart reads it back from the file.
    assert log.seal_if_older(0) is None
    third = log.append("config.applied", tenants=["acme"], config_version="b" * 12)
    reopened = AuditLog(path, shipper=shipped.append)
    third_at = datetime.fromisoformat(third["time"]).timestamp()
    assert reopened.seal_if_older(60, now=third_at + 59) is None
    assert reopened.seal_if_older(60, now=third_at + 60) is not None and len(shipped) == 2
    assert verify(path).ok and [r["seq"] for r in verify(path).records] == [1, 2, 3]


def test_serve_seals_the_active_file_once_it_is_old_enough(tmp_path: Path) -> None:
    """`serve --audit-seal-after`: the periodic sealer ships a quiet control plane's records without a stop."""
    from xds_server.controlplane.main import seal_periodically

    shipped: list[Path] = []
    log = AuditLog(tmp_path / "audit.jsonl", shipper=shipped.append)
    log.append("config.applied", tenants=["acme"], config_version="a" * 12)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(seal_periodically(log, 0.2, stop))
        for _ in range(200):  # up to 10 s on a loaded machine; the sealer checks every 0.05 s
            if shipped:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    assert len(shipped) == 1 and verify(tmp_path / "audit.jsonl").ok
