"""`make chart-lint` fails on what the install would refuse. helm 4's lint logs a template's `fail` as INFO
and passes, so a values file the chart refuses (an HPA's min above its max, a certificate of another region)
passed `chart-lint` and failed only at `helm install`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart.helm import REPO


def test_chart_lint_fails_where_the_chart_refuses_the_values(helm_bin: str, tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    bad = tmp_path / "operator.yaml"
    bad.write_text("gateway:\n  autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}\n")
    proc = subprocess.run(["make", "--no-print-directory", "-o", "setup", "-o", "tools", "chart-lint",
                           f"HELM={helm_bin}", f"CHART_VALUES={bad}"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert f"chart-lint: region us-east-1 with {bad} is refused" in proc.stderr, proc.stderr[-2000:]
    assert "minReplicas" in proc.stderr
