"""values.schema.json rejects bad values before anything renders, naming the field and the rule."""

from __future__ import annotations

import pytest

from tests.chart.helm import CHART, HelmError, helm

BAD = [
    (["gateway.replicas=0"], "at '/gateway/replicas': minimum: got 0, want 1"),
    (["gateway.service.type=Ingress"], "at '/gateway/service/type': value must be one of"),
    (["gateway.autoscling.enabled=true"], "additional properties 'autoscling' not allowed"),
    # Terraform's node groups and policy/admission fix the taint and the pool label: no knob pretends otherwise.
    (["inference.gpuTaint.effect=NoExecute"], "additional properties 'gpuTaint' not allowed"),
    (["inference.poolLabel=example.com/nodepool"], "additional properties 'poolLabel' not allowed"),
    (["controlPlane.image.tag=latest!"], "at '/controlPlane/image/tag'"),
    (["controlPlane.replicas=17"], "at '/controlPlane/replicas': maximum: got 17, want 16"),
    (["spec.region=US_EAST"], "at '/spec/region': 'US_EAST' does not match pattern"),
    (["spec.tenants[0].id=acme", "spec.tenants[0].tier=pro", "spec.tenants[0].weight=1",
      "spec.tenants[0].dedicated=true", "spec.tenants[0].quotas.concurrency=1",
      "spec.tenants[0].quotas.requestsPerSecond=1", "spec.tenants[0].quotas.tokensPerMinute=1",
      "spec.tenants[0].quotas.gpus=-1"], "at '/spec/tenants/0/quotas/gpus': minimum: got -1, want 0"),
    (["redis.enabled=maybe"], "at '/redis/enabled': got string, want boolean"),
    (["inference.roleArn=my-role"], "at '/inference/roleArn': 'my-role' does not match pattern"),
    # Whole seconds from 1: "exclusiveMinimum: got 0, want 0" said nothing a reader could act on.
    (["inference.pseudonymisationKeys.ttlSeconds=0"],
     "at '/inference/pseudonymisationKeys/ttlSeconds': minimum: got 0, want 1"),
    (["config.pollSeconds=0"], "at '/config/pollSeconds': minimum: got 0, want 1"),
]


@pytest.mark.parametrize(("sets", "expected"), BAD, ids=[s[0][-1] for s in BAD])
def test_bad_values_are_rejected_with_the_field_named(helm_bin: str, sets: list[str], expected: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    with pytest.raises(HelmError) as lint:
        helm("lint", "--strict", str(CHART), *args, helm_bin=helm_bin)
    assert expected in str(lint.value)
    with pytest.raises(HelmError) as render:
        helm("template", "fairshare", str(CHART), *args, helm_bin=helm_bin)
    assert expected in str(render.value)
