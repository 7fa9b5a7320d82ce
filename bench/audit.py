"""Audit-trail overhead on a control-plane reload at 10,000 tenants: the same reloads with the audit log
and without, in the same run, alternating which goes first. Two reloads: the first load (every tenant
added: the largest record) and one tenant's edit among them (the everyday change).

    python -m bench.audit [--tenants 10000] [--repeats 3]

Writes bench/results/audit.{json,md}. Target: audit adds at most 5% to a reload.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.report import environment, markdown_table, write_results
from bench.synth import write_config, write_tenant
from xds_server.audit import AuditLog, verify
from xds_server.audit.trail import ControlPlaneAudit
from xds_server.controlplane.service import ControlPlane
from xds_server.xds.store import SnapshotStore

TARGET_RATIO = 1.05
EDITED = 1

progress = functools.partial(report.progress, "audit")


class Timed(ControlPlaneAudit):
    """The control plane's trail, timing its own part of each reload."""

    spent: list[float]

    def applied(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        try:
            return super().applied(*args, **kwargs)
        finally:
            self.spent.append(time.perf_counter() - t0)


def control_plane(config_dir: Path, log_path: Path | None) -> ControlPlane:
    # No Envoy validation: it would add the same seconds to both sides and shrink the ratio.
    cp = ControlPlane(config_dir, None, '{"keys": []}', SnapshotStore())
    if log_path is not None:
        trail = ControlPlaneAudit.of(cp, AuditLog(log_path))
        timed = Timed(trail.log, trail.config_dir, trail.describe, trail.memo)
        timed.spent = []
        cp.audit = timed
    return cp


def reload_s(cp: ControlPlane) -> float:
    t0 = time.perf_counter()
    outcome = cp.reload()
    elapsed = time.perf_counter() - t0
    if not outcome.ok:
        raise RuntimeError(outcome.error)
    return elapsed


def run(tenants: int, repeats: int, root: Path) -> dict[str, Any]:
    config_dir = root / "config"
    progress(f"writing {tenants} tenants")
    write_config(config_dir, tenants)
    first: dict[str, list[float]] = {"audit": [], "plain": []}
    edit: dict[str, list[float]] = {"audit": [], "plain": []}
    audit_first: list[float] = []
    audit_edit: list[float] = []
    log_bytes = 0
    for r in range(repeats):
        log_path = root / f"audit-{r}" / "audit.jsonl"
        cps = {"audit": control_plane(config_dir, log_path), "plain": control_plane(config_dir, None)}
        order = ["audit", "plain"] if r % 2 == 0 else ["plain", "audit"]
        for name in order:
            first[name].append(reload_s(cps[name]))
            progress(f"repeat {r + 1}: first load ({tenants} tenants added) {name}: {first[name][-1]:.2f}s")
        trail = cps["audit"].audit
        assert isinstance(trail, Timed)
        audit_first.append(trail.spent[-1])
        log_bytes = log_path.stat().st_size
        for i in range(repeats):
            write_tenant(config_dir, EDITED, split=(0, 100) if i % 2 == 0 else (90, 10))
            for name in order if i % 2 == 0 else order[::-1]:
                edit[name].append(reload_s(cps[name]))
            audit_edit.append(trail.spent[-1])
        progress(f"repeat {r + 1}: one tenant's edit: audit {statistics.median(edit['audit']):.3f}s, "
                 f"plain {statistics.median(edit['plain']):.3f}s")
        assert verify(log_path).ok
        write_tenant(config_dir, EDITED)

    def row(what: str, times: dict[str, list[float]], own: list[float]) -> dict[str, Any]:
        with_s, without_s = statistics.median(times["audit"]), statistics.median(times["plain"])
        own_s = statistics.median(own)
        return {"reload": what, "with_audit_s": with_s, "without_audit_s": without_s, "ratio": with_s / without_s,
                "audit_own_s": own_s, "audit_own_share": own_s / without_s,
                "met": own_s / without_s <= TARGET_RATIO - 1, "samples": {k: v for k, v in times.items()}}

    rows = [row(f"first load ({tenants} tenants added)", first, audit_first),
            row(f"one tenant edited among {tenants}", edit, audit_edit)]
    return {"tenants": tenants, "repeats": repeats, "target_ratio": TARGET_RATIO, "rows": rows,
            "first_record_bytes": log_bytes, "environment": environment()}


def markdown(results: dict[str, Any]) -> str:
    table = markdown_table(
        ("reload", "with audit (s)", "without (s)", "ratio (medians)", "audit's own time (s)",
         "audit's own share", "target <= 5%"),
        [(r["reload"], r["with_audit_s"], r["without_audit_s"], f"{r['ratio']:.3f}", r["audit_own_s"],
          f"{100 * r['audit_own_share']:.2f}%", "met" if r["met"] else "MISSED") for r in results["rows"]])
    return (f"# Audit overhead on a reload ({results['tenants']} tenants)\n\n"
            "Same run, same config folder, two control planes (one with the audit log, one without), "
            "alternating which reloads first; no Envoy validation (it would add the same time to both). "
            "The ratio of wall-clock medians is noisy on a shared machine; the audit's own time is measured "
            "inside the reload and is what the target is judged on.\n\n"
            f"{table}\n\nThe first load's record (every tenant added, with its effective quotas, routes and "
            f"PII rules): {results['first_record_bytes'] / 1e6:.1f} MB. Medians of {results['repeats']} first "
            f"loads and {results['repeats'] ** 2} edits.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    try:
        results = run(args.tenants, args.repeats, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    path = write_results("audit", results, markdown(results))
    print(markdown(results))
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
