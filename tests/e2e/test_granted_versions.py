"""Through the real Envoy: a catalog model's metadata lists the versions the caller's tenant is granted,
never the other versions its replicas serve for other tenants (the route's x-fairshare-model-versions)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import RunningPlatform, get

pytestmark = pytest.mark.e2e
US = "us-east-1"


@pytest.mark.parametrize(("tenant", "versions"), [("acme", ["v1"]), ("hooli", ["v2"])])
def test_a_catalog_models_metadata_lists_only_the_tenants_versions(
    running: RunningPlatform, tenant: str, versions: list[str]
) -> None:
    # The cpu-general replicas serve classifier v1 and v2; acme is granted v1, hooli v2.
    reply = get(running.url(US, "/v2/models/classifier"), running.token(tenant))
    assert reply.status == 200, reply.body
    assert reply.body["versions"] == versions
    pinned = get(running.url(US, f"/v2/models/classifier/versions/{versions[0]}"), running.token(tenant))
    assert pinned.status == 200 and pinned.body["versions"] == versions
    # A client cannot widen its view: the gateway replaces any x-fairshare-* header it sends.


def test_a_split_over_two_versions_lists_both(running: RunningPlatform) -> None:
    reply = get(running.url(US, "/v2/models/embedder"), running.token("acme"))
    assert reply.status == 200 and reply.body["versions"] == ["v1", "v2"]
