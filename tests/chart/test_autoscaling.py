"""Every HorizontalPodAutoscaler the chart renders (the region's gateway, a cells region's front tier and each
cell's) has minReplicas <= maxReplicas: the API server refuses any other, after the rest of the release is
applied, so the chart refuses it first, naming the values that set each bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import HelmError, by_kind, template
from tests.chart.test_cells import _values

Manifests = list[dict[str, Any]]


@pytest.fixture(scope="module")
def cell_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _values(tmp_path_factory.mktemp("autoscaling-cells"), "four", {"shared": 4})


def _cell_override(cell: str, minimum: int, maximum: int) -> tuple[str, ...]:
    prefix = f"gateway.cells.overrides.{cell}.autoscaling"
    return (f"{prefix}.enabled=true", f"{prefix}.minReplicas={minimum}", f"{prefix}.maxReplicas={maximum}",
            f"{prefix}.targetCPUUtilizationPercentage=70")


def test_every_rendered_autoscaler_has_its_minimum_below_its_maximum(rendered: dict[str, Manifests]) -> None:
    hpas = [(case, h) for case, manifests in rendered.items() for h in by_kind(manifests, "HorizontalPodAutoscaler")]
    assert hpas
    for case, h in hpas:
        assert h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"], (case, h["metadata"]["name"])


def test_a_minimum_above_the_maximum_is_refused_in_a_region_without_cells(
        helm_bin: str, spec_values: dict[str, Path]) -> None:
    with pytest.raises(HelmError) as err:
        template(helm_bin, spec_values["eu-west-1"],
                 sets=("gateway.autoscaling.minReplicas=5", "gateway.autoscaling.maxReplicas=2"))
    assert ("gateway.autoscaling.minReplicas 5 is above gateway.autoscaling.maxReplicas 2: "
            "the HorizontalPodAutoscaler fairshare-gateway needs minReplicas <= maxReplicas") in str(err.value)


@pytest.mark.parametrize(("sets", "expected"), [
    (("gateway.autoscaling.minReplicas=5", "gateway.autoscaling.maxReplicas=2"),
     "gateway.autoscaling.minReplicas 5 is above gateway.autoscaling.maxReplicas 2: "
     "the HorizontalPodAutoscaler fairshare-gateway-front"),
    (("gateway.cells.autoscaling.minReplicas=11",),
     "gateway.cells.autoscaling.minReplicas 11 is above gateway.cells.autoscaling.maxReplicas 10: "
     "the HorizontalPodAutoscaler fairshare-cell-c0"),
    (_cell_override("c2", 6, 3),
     "gateway.cells.overrides.c2.autoscaling.minReplicas 6 is above "
     "gateway.cells.overrides.c2.autoscaling.maxReplicas 3: "
     "the HorizontalPodAutoscaler fairshare-cell-c2"),
], ids=["front", "cells", "one-cell"])
def test_a_minimum_above_the_maximum_is_refused_for_the_front_tier_and_each_cell(
        helm_bin: str, cell_values: Path, sets: tuple[str, ...], expected: str) -> None:
    with pytest.raises(HelmError) as err:
        template(helm_bin, cell_values, sets=sets)
    assert expected in str(err.value)


def test_equal_bounds_and_an_autoscaler_turned_off_render(helm_bin: str, spec_values: dict[str, Path],
                                                        cell_values: Path) -> None:
    fixed = template(helm_bin, spec_values["eu-west-1"],
                     sets=("gateway.autoscaling.minReplicas=4", "gateway.autoscaling.maxReplicas=4"))
    (hpa,) = by_kind(fixed, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 4)
    # Off, the bounds size nothing (replicas does), so they are not judged.
    off = template(helm_bin, cell_values,
                   sets=("gateway.cells.autoscaling.enabled=false", "gateway.cells.autoscaling.minReplicas=11"))
    assert [h["metadata"]["name"] for h in by_kind(off, "HorizontalPodAutoscaler")] == ["fairshare-gateway-front"]


@pytest.mark.parametrize(("sets", "expected"), [
    (("gateway.autoscaling.enabled=false", "gateway.replicas=2", "gateway.podDisruptionBudget.minAvailable=5"),
     "gateway.podDisruptionBudget.minAvailable 5 is not below the 2 pods of gateway.replicas the fleet "
     "fairshare-gateway may run"),
    (("gateway.autoscaling.minReplicas=2", "gateway.podDisruptionBudget.minAvailable=2"),
     "gateway.podDisruptionBudget.minAvailable 2 is not below the 2 pods of gateway.autoscaling.minReplicas"),
], ids=["fixed", "autoscaled"])
def test_a_disruption_budget_that_allows_no_eviction_is_refused(
        helm_bin: str, spec_values: dict[str, Path], sets: tuple[str, ...], expected: str) -> None:
    """Such a budget makes every node drain (a node-group upgrade, the autoscaler's scale-down) wait for
    ever; the API server accepts it, so the chart refuses it, naming the values."""
    with pytest.raises(HelmError) as err:
        template(helm_bin, spec_values["eu-west-1"], sets=sets)
    assert expected in str(err.value)
    # One below the fleet's least lets a drain evict a pod at a time.
    template(helm_bin, spec_values["eu-west-1"], sets=(*sets[:-1], "gateway.podDisruptionBudget.minAvailable=1"))


def test_a_certificate_renewed_no_earlier_than_it_expires_is_refused(
        helm_bin: str, spec_values: dict[str, Path]) -> None:
    with pytest.raises(HelmError) as err:
        template(helm_bin, spec_values["eu-west-1"],
                 sets=("tls.upstream.certManager.duration=1h", "tls.upstream.certManager.renewBefore=2h"))
    assert "tls.upstream.certManager.renewBefore 2h is not shorter than duration 1h" in str(err.value)
