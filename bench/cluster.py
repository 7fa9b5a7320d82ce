"""`make bench-cluster`: Fairshare as a real cluster runs it (issue 12), each part against a baseline
measured in the same run. Each part is its own module and results file; this runs them in turn, each in
its own process (so one part's Envoys and memory never colour the next), and writes the summary
`bench/results/cluster.{json,md}` from their results.

    python -m bench.cluster [--only PART ...]

Parts: ``endpoints`` (an endpoint change to Envoy using it at 10,000 tenants and 200 endpoints; requests
failed during a rolling restart), ``ha`` (requests failed while a control-plane replica is lost),
``failover`` (time to fail over and to return home), ``config`` (the control plane's memory and time to
applied with 10,000 tenants read from a bundle on S3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from bench import report
from bench.report import environment, results_dir, write_results

PARTS = ("endpoints", "ha", "failover", "config")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args(argv)
    failed: list[str] = []
    for part in args.only:
        report.progress("cluster", f"part {part}: python -m bench.cluster_{part}")
        started = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", f"bench.cluster_{part}"])
        report.progress("cluster", f"part {part}: exit {rc} after {time.monotonic() - started:.0f} s")
        if rc != 0:
            failed.append(part)
    parts: dict[str, Any] = {}
    sections = ["# make bench-cluster", "", "Each part's own file has its details; every figure below comes "
                "with the baseline it was measured against in the same run.", ""]
    for part in PARTS:
        json_path = results_dir() / f"cluster_{part}.json"
        md_path = results_dir() / f"cluster_{part}.md"
        if not json_path.exists():
            sections += [f"## {part}", "", "not run yet (`python -m bench.cluster --only " + part + "`)", ""]
            continue
        parts[part] = json.loads(json_path.read_text())
        body = md_path.read_text() if md_path.exists() else "(no Markdown written)"
        sections += [f"## {part}", "", body.strip(), ""]
    write_results("cluster", {"environment": environment(), "failed_parts": failed, "parts": parts},
                  "\n".join(sections))
    if failed:
        print(f"bench-cluster: parts failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
