"""Incremental policy: after the first compile, what one tenant's edit costs the policy step, against a
full policy pass over the same tenants, measured in the same run.

10,000 tenants, every spec distinct (each has its own tokens_per_minute override, as bench/policy.py's
worst case), loaded through one TenantFileCache as the control plane does. The policy step is the
decider's own timing (xds_server/policy/decide.py `last_seconds`) inside each reload:

- full pass: every one of the 10,000 documents evaluated (the engine warm, nothing remembered), as
  each reload cost before the policy step became incremental; measured over several runs, each
  with every spec changed.
- one tenant edited: its file rewritten, the config reloaded as the control plane's watcher has it
  reloaded (told which file changed: an incremental reload); the policy evaluates one document and
  reuses the fleet-wide check when the tenant's GPU claim did not change. p50 over the edits.
- a policy edit: a policy file changed; every document is evaluated again (for comparison).

    python -m bench.policy_incremental [--tenants 10000] [--edits 20] [--runs 3]

Writes bench/results/policy_incremental.{json,md}.
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

import yaml

from bench import report
from bench.report import environment, latency_stats, markdown_table, write_results
from bench.synth import tenant_id, write_config
from xds_server.config import load_config
from xds_server.config.loader import TenantFileCache
from xds_server.config.model import PolicySettings
from xds_server.policy.backends import DEFAULT_POLICY_DIR, decider_for

TARGET_RATIO = 0.05  # a one-tenant edit's policy step, against a full policy pass

progress = functools.partial(report.progress, "policy-incremental")


def distinct(config_dir: Path, tenants: int, offset: int) -> None:
    """Give every tenant its own tokens_per_minute (`offset` apart from the last run's): no two specs alike."""
    for i in range(tenants):
        path = config_dir / "tenants" / f"{tenant_id(i)}.yaml"
        spec = yaml.safe_load(path.read_text())
        spec["quotas"]["tokens_per_minute"] = 1000 + offset + i
        path.write_text(yaml.safe_dump(spec, sort_keys=False))


def reload(config_dir: Path, files: TenantFileCache, policy_dir: Path,
           changed: list[Path] | None = None) -> dict[str, float]:
    """`changed`: the files the watcher would name (an incremental reload); None: a full one."""
    decider = decider_for(PolicySettings(), policy_dir)
    started = time.perf_counter()
    load_config(config_dir, files, policy_dir=policy_dir, changed=changed)
    return {"reload_s": time.perf_counter() - started, "policy_s": decider.last_seconds,
            "evaluated": decider.last_evaluated, "fleet_claims_evaluated": decider.last_fleet_evaluated}


def run(tenants: int, edits: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policy = Path(shutil.copytree(DEFAULT_POLICY_DIR, root / "policy",
                                      ignore=shutil.ignore_patterns("*_test.rego")))
        config = write_config(root / "config", tenants)
        files = TenantFileCache()
        distinct(config, tenants, 0)
        progress(f"{tenants} tenants written; first load (starts the policy engine)")
        first = reload(config, files, policy)
        full = []
        for n in range(1, runs + 1):
            distinct(config, tenants, n * tenants)  # every spec changed: nothing to reuse
            full.append(reload(config, files, policy))
            progress(f"full pass {n}: policy {full[-1]['policy_s']:.3f}s ({full[-1]['evaluated']:.0f} evaluated), "
                     f"reload {full[-1]['reload_s']:.2f}s")
        edited = []
        for n in range(edits):
            i = (n * 7919) % tenants  # spread over the fleet
            path = config / "tenants" / f"{tenant_id(i)}.yaml"
            spec = yaml.safe_load(path.read_text())
            spec["quotas"]["tokens_per_minute"] += 1
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            edited.append(reload(config, files, policy, changed=[path]))
        progress(f"one-tenant edits: policy p50 {statistics.median(e['policy_s'] for e in edited) * 1000:.1f} ms "
                 f"({edited[-1]['evaluated']:.0f} evaluated each)")
        rego = policy / "pii" / "pii.rego"
        rego.write_text(rego.read_text() + "\n# a policy edit\n")
        policy_edit = reload(config, files, policy)
        progress(f"policy edit: policy {policy_edit['policy_s']:.3f}s ({policy_edit['evaluated']:.0f} evaluated)")
    full_s = statistics.median(f["policy_s"] for f in full)
    edit_s = statistics.median(e["policy_s"] for e in edited)
    ratio = edit_s / full_s
    return {
        "tenants": tenants,
        "first_load": first,
        "full_pass": {"runs": full, "policy_s_median": full_s},
        "one_tenant_edit": {"runs": edited, "policy_s_p50": edit_s,
                            "policy_latency": latency_stats([e["policy_s"] for e in edited]),
                            "reload_s_p50": statistics.median(e["reload_s"] for e in edited),
                            "evaluated": sorted({e["evaluated"] for e in edited})},
        "policy_edit": policy_edit,
        "target": {"ratio_at_most": TARGET_RATIO, "ratio": ratio, "met": ratio <= TARGET_RATIO
                   and all(e["evaluated"] == 1 for e in edited)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = run(args.tenants, args.edits, args.runs)
    results["environment"] = environment()
    t, edit, full = results["target"], results["one_tenant_edit"], results["full_pass"]
    md = ["# Incremental policy", "", __doc__ or "", "## Policy step", "",
          markdown_table(["step", "documents evaluated", "policy s", "whole reload s"], [
              ["full pass (median)", f"{results['tenants']}", f"{full['policy_s_median']:.3f}",
               f"{statistics.median(f['reload_s'] for f in full['runs']):.2f}"],
              ["one tenant edited (p50)", ", ".join(str(int(e)) for e in edit["evaluated"]),
               f"{edit['policy_s_p50']:.4f}", f"{edit['reload_s_p50']:.4f}"],
              ["policy edited", f"{results['policy_edit']['evaluated']:.0f}",
               f"{results['policy_edit']['policy_s']:.3f}", f"{results['policy_edit']['reload_s']:.2f}"],
          ]),
          "", f"- target: a one-tenant edit's policy step at most {TARGET_RATIO}x the full pass — "
          f"{t['ratio']:.4f}x ({edit['policy_s_p50'] * 1000:.1f} ms against {full['policy_s_median']:.3f} s): "
          f"{'met' if t['met'] else 'NOT met'}",
          "", f"Machine: {environment()}"]
    path = write_results("policy_incremental", results, "\n".join(md))
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
