"""The engine a config asks for (platform.yaml `policy:`), one per setting for the process's life."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path

from xds_server.config.model import PolicyBackend, PolicySettings
from xds_server.policy.decide import PolicyDecider
from xds_server.policy.embedded import EmbeddedEngine
from xds_server.policy.engine import PolicyEngine
from xds_server.policy.opa_server import OpaServerEngine

# The repository's policies; a deployment points FAIRSHARE_POLICY_DIR (or --policy) at its own copy.
DEFAULT_POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"

_deciders: dict[tuple[str, str], PolicyDecider] = {}
_lock = threading.Lock()


def default_policy_dir() -> Path:
    return Path(os.environ.get("FAIRSHARE_POLICY_DIR") or DEFAULT_POLICY_DIR)


def make_engine(settings: PolicySettings) -> PolicyEngine:
    if settings.backend is PolicyBackend.OPA:
        assert settings.opa_url is not None  # the settings model requires it
        return OpaServerEngine(settings.opa_url, settings.timeout_seconds)
    return EmbeddedEngine(settings.timeout_seconds)


def decider_for(settings: PolicySettings, policy_dir: Path | None = None) -> PolicyDecider:
    # By path, symlinks not followed: a config source presents each revision's policies at one stable path
    # (a flipped link), so a new revision reuses the engine (a worker process) instead of starting another.
    directory = Path(os.path.abspath(policy_dir or default_policy_dir()))
    key = (str(directory), settings.model_dump_json())
    with _lock:
        decider = _deciders.get(key)
        if decider is None:
            decider = _deciders[key] = PolicyDecider(make_engine(settings), directory)
        return decider


@atexit.register
def _close_all() -> None:
    for decider in _deciders.values():
        decider.engine.close()
