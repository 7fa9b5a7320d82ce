"""Retention of the logs the platform writes locally (`fairshare run`'s <state>/run: the control plane's,
every runtime replica's and every Envoy's): each file is kept for the days policy/retention gives it,
the shortest period among the data classes of the tenants whose lines it may hold, and emptied once its
last write is older than that. `fairshare logs sweep` runs it; `--dry-run` only says what it would do.

Every gateway and replica log may hold a line of any tenant served (and of one offboarded since), so
each file is held to every such tenant's class: the shortest period wins. The audit log is not a log
here: it is evidence with its own period (audit_days) and its own store (object lock on S3).
In a cluster the same periods apply to the log pipeline's indices (docs/offboarding.md, Retention).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xds_server.config import PlatformConfig, load_config

QUERY = "fairshare/retention/result"
SUFFIXES = (".log",)


class RetentionError(Exception):
    """The policy gave no period for a file, or refused the classes: says which and why."""


@dataclass(frozen=True)
class Decision:
    path: Path
    keep_days: int
    age_days: float
    deleted: bool

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "keep_days": self.keep_days, "age_days": round(self.age_days, 2),
                "deleted": self.deleted}


def log_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def tenant_classes(cfg: PlatformConfig) -> list[dict[str, str]]:
    """Every served tenant's data class, and each offboarded one's (its old lines may still be there)."""
    out = [{"data_class": t.spec.data_class} if t.spec.data_class else {} for t in cfg.tenants.values()]
    for _, spec in sorted(cfg.offboarded.items()):
        out.append({"data_class": spec.data_class} if spec.data_class else {})
    return out


def periods(files: list[Path], classes: list[dict[str, str]], policy_dir: Path | None = None) -> dict[str, int]:
    """The policy's keep_days for each file, by path."""
    from xds_server.config.model import PolicySettings
    from xds_server.policy.backends import default_policy_dir, make_engine
    from xds_server.policy.sources import PolicySources

    engine = make_engine(PolicySettings())
    try:
        engine.load(PolicySources.load(policy_dir or default_policy_dir()), {})
        result = engine.query(QUERY, {"logs": {str(f): {"tenants": classes} for f in files}})
    finally:
        engine.close()
    if not isinstance(result, dict) or not isinstance(result.get("keep_days"), dict):
        raise RetentionError(f"policy/retention gave no keep_days (data.{QUERY.replace('/', '.')} is {result!r})")
    for violation in result.get("violations") or []:
        # Not fatal: the file already gets the shortest period. Said, so the class gets a period.
        print(f"warning: {violation.get('subject')}: {violation.get('message')}")
    keep = {str(k): int(v) for k, v in result["keep_days"].items()}
    missing = [str(f) for f in files if str(f) not in keep]
    if missing:
        raise RetentionError(f"policy/retention gave no period for {', '.join(missing)}")
    return keep


def sweep(run_dir: Path, config_dir: Path, *, dry_run: bool = False, now: float | None = None,
          policy_dir: Path | None = None) -> list[Decision]:
    now = time.time() if now is None else now
    files = log_files(run_dir)
    if not files:
        return []
    cfg = load_config(config_dir, policy_dir=policy_dir)
    keep = periods(files, tenant_classes(cfg), policy_dir)
    out: list[Decision] = []
    for f in files:
        try:
            age = (now - f.stat().st_mtime) / 86400
        except FileNotFoundError:
            continue
        expired = age > keep[str(f)]
        if expired and not dry_run:
            # Emptied in place, not unlinked: a process may still hold it open for appending (the launcher
            # opens every log O_APPEND), and its next line then starts the file afresh instead of going to
            # an unlinked inode that keeps the old lines on disk until it exits.
            with contextlib.suppress(FileNotFoundError):
                os.truncate(f, 0)
        out.append(Decision(f, keep[str(f)], age, expired and not dry_run))
    return out
