"""One real platform per test session: control plane, runtimes and one real Envoy per region,
running from a private copy of the example config so tests can edit it live."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def started(config_dir: Path, state_dir: Path) -> Iterator[LocalPlatform]:
    """The whole local platform on `config_dir` (control plane on free ports, runtimes, Envoys), stopped
    with every process when the block ends: what each suite's platform fixture starts."""
    platform = LocalPlatform(PlatformOptions(
        config_dir=config_dir, state_dir=state_dir, xds_port=free_port(), status_port=free_port(),
    ))
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()


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
    # The default filter chain, rate limits included, as `make run` serves it: a test that drives a
    # tenant past its quota says so (the `unthrottled` fixture); the limits themselves have their own
    # tests (tests/ratelimit).
    assert yaml.safe_load((config_dir / "platform.yaml").read_text())["ratelimit"]["enabled"] is True
    state = root / "state"
    try:
        with started(config_dir, state) as platform:
            yield RunningPlatform(platform, config_dir, SigningKey.load_or_create(state), policy_dir)
    finally:
        if previous_policy is None:
            os.environ.pop("FAIRSHARE_POLICY_DIR", None)
        else:
            os.environ["FAIRSHARE_POLICY_DIR"] = previous_policy


def applied(running: RunningPlatform, *, after: float, version: str | None = None, other_than: str | None = None,
            timeout: float = 60.0) -> dict[str, Any]:
    """Wait until a reload that finished after `after` (time.time()) is published and every connected
    Envoy has applied it; `version`: and it is that config version; `other_than`: and it is not that one.
    Returns the status then. The timeout is a hang guard, not a performance target.

    Fails at once, with the reason, if that reload was rejected and no version is awaited."""
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.clear()
        seen.update(running.platform.status())
        last = seen["last_reload"]
        if last is None or last["at"] < after:
            return False
        if not last["ok"] and version is None:
            raise AssertionError(f"the control plane rejected the change: {last['error']}")
        if not last["ok"] or seen["config_version"] in {None, other_than}:
            return False
        if version is not None and seen["config_version"] != version:
            return False
        return all(r["nodes_connected"] >= 1 and r["nodes_applied"] == r["nodes_connected"]
                   for r in seen["xds"]["regions"].values())

    assert eventually(done, timeout=timeout), f"config never applied (want {version or 'a new one'}): {seen}"
    return seen


@pytest.fixture
def restore_config(running: RunningPlatform) -> Iterator[Callable[[], bool]]:
    """Snapshot the live config and policy dirs; put them back after, and wait until the control plane
    has published the restored config (the version it served before the test) and every Envoy applied
    it, so the next test starts from it, not from a reload still in flight."""
    roots = (running.config_dir, running.policy_dir)
    saved = {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}
    serving = running.platform.status()["config_version"]

    def restore() -> bool:
        """Put every file back; whether anything had to change."""
        changed = False
        for p in [p for root in roots for p in root.rglob("*")]:
            if p.is_file() and p not in saved:
                p.unlink()
                changed = True
        for p, data in saved.items():
            if not p.is_file() or p.read_bytes() != data:
                p.write_bytes(data)
                changed = True
        return changed

    yield restore
    restored_at = time.time()
    if restore():
        # A reload after the restore must have run: one in flight may still carry the test's edit.
        applied(running, after=restored_at, version=serving)
    else:
        applied(running, after=0.0, version=serving)


@pytest.fixture
def unthrottled(running: RunningPlatform, restore_config: Callable[[], bool]) -> Callable[..., None]:
    """For a test that drives a tenant past its quota on purpose (thousands of requests for a split's
    statistics): `unthrottled("acme", ...)` puts those tenants' rate limits in shadow mode (every check
    still runs through the rate-limit filters and the service, nothing is refused; `exempt=True`: no
    check at all) until the test ends, and waits until Envoy serves that."""

    def apply(*tenants: str, exempt: bool = False) -> None:
        mode = "exempt" if exempt else "shadow"
        at, before = time.time(), running.platform.status()["config_version"]
        for tenant in tenants:
            path = running.tenant_file(tenant)
            text = path.read_text()
            assert "rate_limit:" not in text, f"{path} already sets rate_limit"
            path.write_text(text.rstrip("\n") + f"\nrate_limit: {{{mode}: true}}\n")
        applied(running, after=at, other_than=before)

    return apply


def served_by(platform: LocalPlatform, reply: Reply, timeout: float = 30.0) -> str | None:
    """The replica (`region/pool/replica`) that answered `reply`, None for the gateway's own answer. The
    gateway keeps the runtime's x-fairshare-replica off clients' responses and logs it by the request id it
    returns (compiler/listener.py), so this reads it from the Envoys' access logs, as an operator would."""
    request_id = reply.headers["x-request-id"]
    found: dict[str, str | None] = {}

    def logged() -> bool:
        found.update(platform.served_by())
        return request_id in found

    assert eventually(logged, timeout=timeout, interval=0.2), f"no access-log line for request {request_id}"
    return found[request_id]


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
    return call("POST", url, body, token, {"content-type": "application/json", **(headers or {})})


def get(url: str, token: str | None = None) -> Reply:
    return call("GET", url, None, token, {})


def call(method: str, url: str, body: bytes | None, token: str | None, headers: dict[str, str]) -> Reply:
    import json
    import urllib.error
    import urllib.request

    h = dict(headers)
    if token is not None:
        h["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=h, method=method)
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
