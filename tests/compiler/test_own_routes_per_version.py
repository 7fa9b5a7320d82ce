"""How many routes an own model costs Envoy: a model of one version has only its split route (which also
serves /versions/<v>, with that version's headers); a model of several versions adds a pinned route each."""

from __future__ import annotations

from pathlib import Path

from tests.compiler.test_own_models import US, add_own_models, compile_dir, headers, router_copy, vhost


def test_a_one_version_model_has_one_route_that_also_serves_its_version(cfg_dir: Path) -> None:
    add_own_models(cfg_dir, "acme", {"solo": router_copy(cfg_dir, "acme", 1),
                                     "duo": router_copy(cfg_dir, "acme", 2)})
    routes = [r for r in vhost(compile_dir(cfg_dir).snapshots[US], "acme").routes]
    solo = [r for r in routes if r.name.split("/")[0] == "solo"]
    assert [r.name for r in solo] == ["solo"]
    # Its prefix covers /v2/models/solo/versions/1/...; the only weighted cluster names version 1 and
    # its bytes (the runtime 404s any other version in the path, as behind a pinned route).
    assert solo[0].match.path_separated_prefix == "/v2/models/solo"
    [only] = solo[0].route.weighted_clusters.clusters
    assert only.weight.value == 100
    assert headers(only.request_headers_to_add)["x-fairshare-model-version"] == "1"
    assert headers(only.request_headers_to_add)["x-fairshare-model-artifact"] == str(
        cfg_dir / "models/acme/router-copy/model.onnx")
    assert headers(solo[0].request_headers_to_add)["x-fairshare-model-owner"] == "acme"
    # Several versions: each can be pinned, ahead of the split route that would catch it otherwise.
    duo = [r.name for r in routes if r.name.split("/")[0] == "duo"]
    assert duo == ["duo/1", "duo/2", "duo"]
