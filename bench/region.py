"""Region rollout timings: `terraform plan`, `apply` and `destroy` of the region root against a moto server,
growing the GPU node pools (1 -> 3) and the tenants' secrets (10 -> 100 -> 1,000). Every ratio is against
the 10-tenant, 1-GPU-pool baseline measured in the same run.

    python -m bench.region [--tenants 10 100 1000] [--gpu-pools 1 3] [--destroy-all]

Destroy is timed for the baseline and the largest tenant count (the others are wiped with
moto's reset, to keep the run under five minutes). Writes bench/results/region.{json,md} and region_scaling.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.report import environment, markdown_table, results_dir, write_results
from bench.synth import write_tenant
from bench.terraform_driver import MotoServer, Region, plugin_dir, terraform_bin

REGION = "us-east-1"  # every synthetic tenant allows us-east-1, so N tenants are N secrets
TARGET_APPLY_1000_S = 120.0
NOISE_S = 1.0  # run-to-run spread of a step here; smaller differences are not rates
BASE_POOLS: dict[str, dict[str, Any]] = {
    "system": {"kind": "system", "instance_types": ["m6i.large"], "min_size": 2, "max_size": 4, "desired_size": 2},
    "cpu-general": {"kind": "cpu", "instance_types": ["c6i.2xlarge"], "min_size": 2, "max_size": 20,
                    "desired_size": 2},
}
GPU_POOLS = [("gpu-small", "nvidia-l4", "g6.xlarge"), ("gpu-medium", "nvidia-a10g", "g5.2xlarge"),
             ("gpu-large", "nvidia-h100", "p5.48xlarge")]


progress = functools.partial(report.progress, "region")


@dataclass
class Case:
    tenants: int
    gpu_pools: int
    destroy: bool
    resources: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.tenants} tenants, {self.gpu_pools} GPU pool{'s' if self.gpu_pools > 1 else ''}"


def node_pools(gpu_pools: int) -> dict[str, Any]:
    pools = dict(BASE_POOLS)
    for name, accelerator, instance in GPU_POOLS[:gpu_pools]:
        pools[name] = {"kind": "gpu", "accelerator": accelerator, "instance_types": [instance], "min_size": 0,
                       "max_size": 8, "desired_size": 1}
    return pools


def run_case(case: Case, moto: MotoServer, work: Path) -> None:
    root = work / f"t{case.tenants}-g{case.gpu_pools}"
    tenants = root / "tenants"
    tenants.mkdir(parents=True)
    for i in range(case.tenants):
        write_tenant(root, i)
    pools_file = root / "pools.tfvars.json"
    pools_file.write_text(json.dumps({"node_pools": node_pools(case.gpu_pools)}))
    region = Region.in_copy(root, REGION, moto, tenants_dir=tenants)
    region.var_files.append(pools_file)
    moto.reset()
    region.init()
    plan_file = root / "region.tfplan"
    progress(f"{case.name}: plan")
    region.plan(plan_file)
    changes = region.show_json(plan_file)["resource_changes"]
    case.resources = sum(1 for rc in changes if "create" in rc["change"]["actions"])
    progress(f"{case.name}: planned {case.resources} resources in {region.timings['plan']:.1f}s; apply")
    region.apply(plan_file)
    progress(f"{case.name}: applied in {region.timings['apply']:.1f}s")
    if case.destroy:
        region.destroy()
        progress(f"{case.name}: destroyed in {region.timings['destroy']:.1f}s")
    case.timings = {k: round(v, 2) for k, v in region.timings.items()}


def analyse(cases: list[Case]) -> dict[str, Any]:
    base = next(c for c in cases if c.gpu_pools == 1 and c.tenants == min(x.tenants for x in cases))
    by_tenants = sorted((c for c in cases if c.gpu_pools == 1), key=lambda c: c.tenants)
    growth = []
    # Time per tenant above the baseline: (T(N) - T(base)) / (N - base). Below ~1 s of difference the tenants
    # hid in the fixed cost (secrets are created while the cluster is still coming up), so no rate is given.
    for step in ("plan", "apply"):
        rates = {}
        for c in by_tenants[1:]:
            delta = c.timings[step] - base.timings[step]
            rates[c.tenants] = delta / (c.tenants - base.tenants) if delta >= NOISE_S else None
        first = next((r for r in rates.values() if r is not None), None)
        for n, rate in rates.items():
            growth.append({"step": step, "tenants": n,
                           "ms_per_tenant_above_baseline": None if rate is None else round(rate * 1000, 1),
                           "vs_first_measurable": None if rate is None or first is None else round(rate / first, 2)})
    pools = sorted((c for c in cases if c.tenants == base.tenants), key=lambda c: c.gpu_pools)
    largest = by_tenants[-1]
    return {
        "baseline": base.name,
        "ratios_vs_baseline": {c.name: {k: round(v / base.timings[k], 2) for k, v in c.timings.items()
                                        if k in base.timings and base.timings[k] > 0} for c in cases},
        "tenant_growth": growth,
        "gpu_pool_growth": [{"gpu_pools": c.gpu_pools, "apply_s": c.timings["apply"],
                             "apply_vs_1_pool": round(c.timings["apply"] / pools[0].timings["apply"], 2)}
                            for c in pools],
        "largest": {"tenants": largest.tenants, "apply_s": largest.timings["apply"],
                    "target_s": TARGET_APPLY_1000_S if largest.tenants == 1000 else None,
                    "met": largest.timings["apply"] < TARGET_APPLY_1000_S if largest.tenants == 1000 else None},
    }


def markdown(cases: list[Case], analysis: dict[str, Any]) -> str:
    rows = [[c.name, c.resources, c.timings.get("init", 0.0), c.timings["plan"], c.timings["apply"],
             c.timings.get("destroy", "-"), analysis["ratios_vs_baseline"][c.name].get("apply", "-")] for c in cases]
    growth = [[g["step"], g["tenants"], _or_noise(g["ms_per_tenant_above_baseline"]),
               _or_noise(g["vs_first_measurable"])] for g in analysis["tenant_growth"]]
    largest = analysis["largest"]
    verdict = "" if largest["target_s"] is None else \
        f" (target < {largest['target_s']:.0f} s: {'met' if largest['met'] else 'NOT met'})"
    return "\n\n".join([
        "# Region rollout against moto",
        f"Baseline: {analysis['baseline']}. Region root `terraform/region`, variable file `{REGION}.tfvars`, "
        "remote state in moto's S3. Times in seconds.",
        markdown_table(["case", "resources", "init", "plan", "apply", "destroy", "apply vs baseline"], rows),
        "Time per tenant (secret + write-only seed + its random password) above the baseline; "
        "`vs first measurable` ~1 means linear growth:",
        markdown_table(["step", "tenants", "ms per tenant above baseline", "vs first measurable"], growth),
        f"{largest['tenants']} tenants applied in {largest['apply_s']:.1f} s{verdict}.",
    ])


def _or_noise(value: object) -> object:
    return f"< {NOISE_S:.0f} s in all (noise)" if value is None else value


def plot(cases: list[Case], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    one_pool = sorted((c for c in cases if c.gpu_pools == 1), key=lambda c: c.tenants)
    for step in ("plan", "apply"):
        left.plot([c.tenants for c in one_pool], [c.timings[step] for c in one_pool], marker="o", label=step)
    left.set(xlabel="tenants (secrets)", ylabel="seconds", title="Region vs tenants (1 GPU pool)")
    left.legend()
    base_tenants = min(c.tenants for c in cases)
    pools = sorted((c for c in cases if c.tenants == base_tenants), key=lambda c: c.gpu_pools)
    labels = [str(c.gpu_pools) for c in pools]
    right.bar([f"{x}\nplan" for x in labels], [c.timings["plan"] for c in pools])
    right.bar([f"{x}\napply" for x in labels], [c.timings["apply"] for c in pools])
    right.set(xlabel="GPU pools", ylabel="seconds", title=f"Region vs GPU pools ({base_tenants} tenants)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tenants", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--gpu-pools", type=int, nargs="+", default=[1, 3])
    p.add_argument("--destroy-all", action="store_true", help="time destroy for every case (slower)")
    args = p.parse_args(argv)
    if terraform_bin() is None or plugin_dir() is None:
        print("error: needs terraform on PATH and the provider mirror (/opt/tf-plugins or $TF_PLUGIN_DIR)",
              file=sys.stderr)
        return 2
    tenants, pools = sorted(args.tenants), sorted(args.gpu_pools)
    if pools[0] != 1 or max(pools) > len(GPU_POOLS):
        p.error(f"--gpu-pools must include 1 (the baseline) and stay within 1..{len(GPU_POOLS)}")
    cases = [Case(tenants[0], g, destroy=args.destroy_all or g == 1) for g in pools]
    cases += [Case(n, 1, destroy=args.destroy_all or n == tenants[-1]) for n in tenants[1:]]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-region-") as tmp:
        moto = MotoServer(Path(tmp)).start()
        try:
            for i, case in enumerate(cases, 1):
                progress(f"case {i}/{len(cases)}: {case.name}")
                run_case(case, moto, Path(tmp))
        finally:
            moto.stop()
    analysis = analyse(cases)
    results = {"benchmark": "region", "region": REGION, "environment": environment(),
               "wall_s": round(time.perf_counter() - started, 1), "cases": [asdict(c) for c in cases], **analysis}
    md = markdown(cases, analysis)
    path = write_results("region", results, md)
    plot(cases, results_dir() / "region_scaling.png")
    print(md)
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
