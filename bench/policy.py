"""Policy cost: decision latency per call on each backend, and what policy adds to a full compile.

Decision latency: one tenant's decisions per call, on the embedded engine (regorus in its worker
process), on an OPA server over REST (the local OPA server: OPA's REST API on the real OPA Go engine),
and on the OPA Go engine in-process (the floor: no process boundary, no HTTP).

Compile: load + policy + compile of 1,000 and 10,000 synthetic tenants. "Without policy" is the same
run minus the time the policy decision took (the decision is one separable step: see
xds_server/policy/resolve.py). Two populations: the synthetic fleet (tenants on their tier's
defaults: few distinct specs, as real fleets are) and a worst case where every tenant has its own
override, so no two specs are alike and every tenant is evaluated.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import report
from bench.report import environment, latency_stats, markdown_table, write_results
from bench.synth import REPO_CONFIG, write_config
from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory
from xds_server.config import load_config
from xds_server.config.loader import TenantFileCache
from xds_server.config.model import PolicyBackend, PolicySettings
from xds_server.local.processes import free_port, wait_http
from xds_server.policy.backends import DEFAULT_POLICY_DIR, decider_for, make_engine
from xds_server.policy.decide import PolicyDecider
from xds_server.policy.engine import DECISIONS
from xds_server.policy.resolve import platform_document, tenant_document

TARGET_OVERHEAD = 0.5  # policy adds under 50% to compile time at 10,000 tenants


progress = functools.partial(report.progress, "policy")


def decision_latency(calls: int) -> dict[str, dict[str, float]]:
    cfg = load_config(REPO_CONFIG)
    platform = platform_document(cfg.tiers, cfg.regions, cfg.models)
    tenant = {"acme": tenant_document(cfg.tenants["acme"].spec)}
    port = free_port()
    opa = subprocess.Popen([sys.executable, "-m", "xds_server.policy.opa_local", "--port", str(port)])
    out: dict[str, dict[str, float]] = {}
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30, proc=opa)
        backends = {
            "embedded (regorus, worker process)": PolicySettings(),
            "OPA server over REST (real OPA engine)": PolicySettings(backend=PolicyBackend.OPA,
                                                                   opa_url=f"http://127.0.0.1:{port}"),
        }
        for name, settings in backends.items():
            engine = make_engine(settings)
            decider = PolicyDecider(engine, DEFAULT_POLICY_DIR)
            decider.decide(platform, tenant)  # loads the policies; not a decision's cost
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                engine.query(DECISIONS, {"tenants": tenant})
                samples.append(time.perf_counter() - started)
            engine.close()
            out[name] = latency_stats(samples)
            progress(f"{name}: p50 {out[name]['p50_ms']:.2f} ms, p99 {out[name]['p99_ms']:.2f} ms")
        out["OPA Go engine in-process (floor)"] = _in_process_opa(platform, tenant, calls)
    finally:
        opa.kill()
        opa.wait()
    return out


def _in_process_opa(platform: dict[str, Any], tenant: dict[str, Any], calls: int) -> dict[str, float]:
    from opa_bindings import OpaEngine

    engine = OpaEngine()
    for path in sorted(DEFAULT_POLICY_DIR.rglob("*.rego")):
        if not path.name.endswith("_test.rego"):
            engine.add_policy(str(path.relative_to(DEFAULT_POLICY_DIR)), path.read_text())
    engine.add_data({"fairshare": {"platform": platform}})
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        engine.eval_document("fairshare.tenant.result", {"tenants": tenant})
        samples.append(time.perf_counter() - started)
    engine.close()
    return latency_stats(samples)


def make_unique(config_dir: Path) -> None:
    """Give every tenant its own override, so no two specs are alike."""
    for i, path in enumerate(sorted((config_dir / "tenants").glob("*.yaml"))):
        spec = yaml.safe_load(path.read_text())
        spec.setdefault("quotas", {})["tokens_per_minute"] = 1000 + i
        path.write_text(yaml.safe_dump(spec))


def compile_once(config_dir: Path) -> dict[str, float]:
    decider = decider_for(PolicySettings())
    started = time.perf_counter()
    cfg = load_config(config_dir, TenantFileCache())
    Compiler().compile(CompileInputs(cfg, EndpointDirectory(), "{}"))
    total = time.perf_counter() - started
    return {"total_s": total, "policy_s": decider.last_seconds, "without_policy_s": total - decider.last_seconds,
            "evaluated": decider.last_evaluated}


def compile_overhead(sizes: list[int], runs: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for population in ("fleet", "all-unique"):
                config_dir = write_config(Path(tmp) / f"c{n}", n)
                if population == "all-unique":
                    make_unique(config_dir)
                compile_once(config_dir)  # warm: the policy worker started and loaded, as in a running control plane
                samples = [compile_once(config_dir) for _ in range(runs)]
                row: dict[str, Any] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                row.update(tenants=n, population=population, overhead=row["policy_s"] / row["without_policy_s"])
                rows.append(row)
                progress(f"{n} tenants ({population}): compile {row['without_policy_s']:.2f}s, policy "
                         f"{row['policy_s']:.2f}s ({row['evaluated']:.0f} distinct specs) -> +{row['overhead']:.0%}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    latency = decision_latency(args.calls)
    rows = compile_overhead([int(s) for s in args.sizes.split(",")], args.runs)
    largest = max(r["tenants"] for r in rows)
    fleet = next(r for r in rows if r["tenants"] == largest and r["population"] == "fleet")
    worst = next(r for r in rows if r["tenants"] == largest and r["population"] == "all-unique")
    results = {"decision_latency_s": latency, "compile": rows, "environment": environment(),
               "target": {"overhead_at_largest": TARGET_OVERHEAD, "fleet": fleet["overhead"],
                          "all_unique": worst["overhead"], "met": fleet["overhead"] < TARGET_OVERHEAD}}
    md = ["# Policy cost", "", __doc__ or "", "## Decision latency (one tenant per call)", "",
          markdown_table(["backend", "p50 ms", "p99 ms"],
                         [[k, f"{v['p50_ms']:.3f}", f"{v['p99_ms']:.3f}"] for k, v in latency.items()]),
          "", "## Full compile with and without policy", "",
          markdown_table(["tenants", "population", "distinct specs", "compile without policy s", "policy s",
                          "with policy s", "policy adds"],
                         [[r["tenants"], r["population"], f"{r['evaluated']:.0f}", f"{r['without_policy_s']:.2f}",
                           f"{r['policy_s']:.2f}", f"{r['total_s']:.2f}", f"{r['overhead']:.0%}"] for r in rows]),
          "", f"- target: policy adds < {TARGET_OVERHEAD:.0%} at {largest} tenants — fleet: {fleet['overhead']:.0%} "
          f"({'met' if fleet['overhead'] < TARGET_OVERHEAD else 'NOT met'}); every spec distinct: "
          f"{worst['overhead']:.0%} ({'met' if worst['overhead'] < TARGET_OVERHEAD else 'NOT met'})",
          "", f"Machine: {environment()}"]
    path = write_results("policy", results, "\n".join(md))
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
