"""One real platform per test session: control plane, runtimes and one real Envoy per region,
running from a private copy of the example config so tests can edit it live."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bench.synth import REPO_CONFIG, set_gateway_ports
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port
from xds_server.policy.backends import DEFAULT_POLICY_DIR


@dataclass
class RunningPlatform:
    platform: LocalPlatform
    config_dir: Path
    key: SigningKey
    policy_dir: Path

    def token(self, tenant: str, **kwargs) -> str:  # type: ignore[no-untyped-def]
        assert self.platform.config is not None
        return issue_token(self.key, self.platform.config.platform.auth, tenant, **kwargs)

    def url(self, region: str, path: str) -> str:
        return self.platform.gateway_url(region) + path

    def tenant_file(self, tenant: str) -> Path:
        return self.config_dir / "tenants" / f"{tenant}.yaml"


@pytest.fixture(scope="session")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    root = tmp_path_factory.mktemp("platform")
    config_dir = root / "config"
    shutil.copytree(REPO_CONFIG, config_dir)
    # A private copy of the policies too, so tests can edit a policy live; the control plane finds it
    # through the environment it inherits.
    policy_dir = root / "policy"
    shutil.copytree(DEFAULT_POLICY_DIR, policy_dir)
    previous_policy = os.environ.get("FAIRSHARE_POLICY_DIR")
    os.environ["FAIRSHARE_POLICY_DIR"] = str(policy_dir)
    set_gateway_ports(config_dir, (free_port(), free_port()))
    # These tests drive single tenants far past their quotas; rate limits have their own (tests/ratelimit).
    platform_yaml = config_dir / "platform.yaml"
    settings = yaml.safe_load(platform_yaml.read_text())
    settings["ratelimit"]["enabled"] = False
    platform_yaml.write_text(yaml.safe_dump(settings))
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(
        config_dir=config_dir, state_dir=state, xds_port=free_port(), status_port=free_port(),
    ))
    try:
        platform.start()
        yield RunningPlatform(platform, config_dir, SigningKey.load_or_create(state), policy_dir)
    finally:
        platform.stop()
        if previous_policy is None:
            os.environ.pop("FAIRSHARE_POLICY_DIR", None)
        else:
            os.environ["FAIRSHARE_POLICY_DIR"] = previous_policy


@pytest.fixture
def restore_config(running: RunningPlatform) -> Iterator[Callable[[], None]]:
    """Snapshot the live config and policy dirs; put them back (and wait for the control plane to publish
    them) after."""
    roots = (running.config_dir, running.policy_dir)
    saved = {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}

    def restore() -> None:
        for p in [p for root in roots for p in root.rglob("*")]:
            if p.is_file() and p not in saved:
                p.unlink()
        for p, data in saved.items():
            if p.read_bytes() != data:
                p.write_bytes(data)

    yield restore
    restore()
    time.sleep(1.0)


def eventually(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Poll until `check` holds; the timeout is a hang guard, not a performance target (see bench/)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict  # type: ignore[type-arg]
    headers: dict[str, str]


def post(url: str, body: bytes, token: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    import json
    import urllib.error
    import urllib.request

    h = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        h["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, hdrs = err.read(), err.code, dict(err.headers)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"raw": raw.decode(errors="replace")}
    return Reply(status, parsed, {k.lower(): v for k, v in hdrs.items()})
