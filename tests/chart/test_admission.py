"""The admission policy admits the rendered chart and refuses what it exists to refuse, with the same answers
on the embedded engine (regorus) and on OPA itself."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import regorus
from opa_bindings import OpaEngine

from tests.chart.helm import ADMISSION, admission_violations, find

Manifests = list[dict[str, Any]]
TESTS = ADMISSION.with_name("admission_test.rego")


def test_rendered_chart_is_admitted(rendered: dict[str, Manifests]) -> None:
    refused = {case: admission_violations(manifests) for case, manifests in rendered.items()}
    assert not any(refused.values()), json.dumps(refused, indent=2)


def _runtime_spec(manifests: Manifests) -> dict[str, Any]:
    return find(manifests, "Deployment", "fairshare-pool-gpu-small")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _privileged(ms: Manifests) -> None:
    _runtime_spec(ms)["containers"][0]["securityContext"]["privileged"] = True


def _no_toleration(ms: Manifests) -> None:
    del _runtime_spec(ms)["tolerations"]


def _no_pool(ms: Manifests) -> None:
    del _runtime_spec(ms)["nodeSelector"]


def _foreign_image(ms: Manifests) -> None:
    _runtime_spec(ms)["containers"][0]["image"] = "registry.example.com/fairshare/runtime:0.1.0-cuda"


def _no_platform_quota(ms: Manifests) -> None:
    ms.remove(find(ms, "ResourceQuota", "fairshare-platform"))


def _drop(kind: str, name: str) -> Callable[[Manifests], None]:
    def mutate(ms: Manifests) -> None:
        ms.remove(find(ms, kind, name, namespace="tenant-acme"))
    return mutate


GPU_RUNTIME = "Deployment/fairshare/fairshare-pool-gpu-small"

MUTATIONS: list[tuple[str, Callable[[Manifests], None], str, str]] = [
    ("privileged", _privileged, "no-privileged-containers", GPU_RUNTIME),
    ("gpu-without-toleration", _no_toleration, "gpu-pod-tolerates-gpu-taint", GPU_RUNTIME),
    ("gpu-without-pool", _no_pool, "gpu-pod-selects-gpu-pool", GPU_RUNTIME),
    ("foreign-registry", _foreign_image, "image-from-allowed-registry", GPU_RUNTIME),
    ("gpu-namespace-without-quota", _no_platform_quota, "gpu-pod-namespace-has-quota", GPU_RUNTIME),
    ("tenant-without-network-policy", _drop("NetworkPolicy", "default-deny"), "tenant-namespace-has-default-deny",
     "Namespace/tenant-acme"),
    ("tenant-without-quota", _drop("ResourceQuota", "tenant-quota"), "tenant-namespace-has-resource-quota",
     "Namespace/tenant-acme"),
    ("tenant-without-limit-range", _drop("LimitRange", "tenant-limits"), "tenant-namespace-has-limit-range",
     "Namespace/tenant-acme"),
]


@pytest.mark.parametrize(("mutate", "rule", "subject"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_mutated_manifests_are_refused_by_the_expected_rule(
    rendered: dict[str, Manifests], mutate: Callable[[Manifests], None], rule: str, subject: str
) -> None:
    manifests = copy.deepcopy(rendered["region:us-east-1"])
    mutate(manifests)
    violations = admission_violations(manifests)
    assert [(v["rule"], v["subject"]) for v in violations] == [(rule, subject)], violations
    # The reason a reviewer reads names what is wrong.
    assert violations[0]["message"] and violations[0]["field"]


def test_all_mutations_at_once_answer_the_same_on_opa(rendered: dict[str, Manifests]) -> None:
    manifests = copy.deepcopy(rendered["region:us-east-1"])
    for _, mutate, _, _ in MUTATIONS:
        mutate(manifests)
    embedded = admission_violations(manifests)
    opa = OpaEngine()
    opa.add_policy(ADMISSION.name, ADMISSION.read_text())
    (result,) = opa.eval_query("v := data.fairshare.admission.violations", {"manifests": manifests})
    assert sorted(result["v"], key=lambda v: (v["rule"], v["subject"])) == embedded
    assert {v["rule"] for v in embedded} == {m[2] for m in MUTATIONS}


def test_policy_unit_tests_pass_on_both_engines() -> None:
    names = re.findall(r"^(test_\w+) if", TESTS.read_text(), re.M)
    assert len(names) >= 16
    embedded = regorus.Engine()
    opa = OpaEngine()
    for path in (ADMISSION, TESTS):
        embedded.add_policy_from_file(str(path))
        opa.add_policy(path.name, path.read_text())
    failed = [n for n in names if embedded.eval_rule(f"data.fairshare.admission_test.{n}") is not True]
    failed += [f"{n} (OPA)" for n in names if not opa.eval_query(f"data.fairshare.admission_test.{n} == true")]
    assert not failed, failed
