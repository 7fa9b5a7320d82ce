"""End to end through the real Envoy: a tenant with `pii.pseudonymise: [email]` has its model receive the
tenant's keyed pseudonym, never the address, and no log line of any process holds the address or a key.

The platform is bench.synth.small_config (control plane, one Envoy, one replica) with two models: the
lexicon classifier, whose label is positive only if the model did not see the address (made of negative
words), and an echo model (an ONNX Identity graph over strings), whose answer is the text it was given.
Together they show the model received the pseudonym: the echo alone could not tell a pseudonym from a raw
address that the response scan pseudonymised on the way out. The expected pseudonym is computed here from
the key file `fairshare run` wrote, with the documented formula.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from onnx import TensorProto, helper

from bench.synth import small_config
from tests.e2e.conftest import Reply, eventually, post, started
from tests.runtime.onnx_graphs import _save
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.keys import keys_dir
from xds_server.local.platform import LocalPlatform
from xds_server.local.processes import free_port

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
EMAIL = "awful.terrible@horrible-worst.com"
TEXT = f"I love this product! Write to {EMAIL}."


def echo_graph(path: Path) -> tuple[Path, str]:
    text = helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])
    out = helper.make_tensor_value_info("echo", TensorProto.STRING, ["n"])
    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["echo"])], "echo", [text], [out])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def pseudonym(key: bytes, value: str) -> str:
    digest = hmac.new(key, b"email\0" + value.lower().encode(), hashlib.sha256).hexdigest()[:16]
    return f"<EMAIL_{digest}>"


@dataclass
class Platform:
    platform: LocalPlatform
    key: SigningKey

    def infer(self, tenant: str, model: str, text: str) -> Reply:
        assert self.platform.config is not None
        token = issue_token(self.key, self.platform.config.platform.auth, tenant)
        body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}).encode()
        return post(self.platform.gateway_url(REGION) + f"/v2/models/{model}/infer", body, token)

    def tenant_key(self, tenant: str) -> bytes:
        return (keys_dir(self.platform.opts.state_dir) / f"{tenant}.key").read_bytes().strip()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.platform.run_dir.rglob("*.log")))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("pseudonyms")
    config = small_config(root, free_port(), replicas=1)
    graph, digest = echo_graph(root / "echo.onnx")
    models = yaml.safe_load((config / "models.yaml").read_text())
    models["models"]["echo"] = {"kind": "classifier", "versions": {
        "v1": {"pool": "cpu", "loader": "onnx", "artifact": str(graph), "sha256": digest}}}
    (config / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    acme = yaml.safe_load((config / "tenants" / "acme.yaml").read_text())
    acme["models"]["echo"] = {"split": {"v1": 100}}
    acme["pii"] = {"pseudonymise": ["email"]}  # the default data class (personal) would redact it
    for tenant in ("acme", "globex"):
        (config / "tenants" / f"{tenant}.yaml").write_text(yaml.safe_dump({**acme, "id": tenant}, sort_keys=False))
    state = root / "state"
    with started(config, state) as running:
        yield Platform(running, SigningKey.load_or_create(state))


def test_the_model_receives_the_tenants_pseudonym_and_no_log_holds_the_address(platform: Platform) -> None:
    assert eventually(lambda: platform.infer("acme", "echo", "hello").status == 200, timeout=30)
    acme_key, globex_key = platform.tenant_key("acme"), platform.tenant_key("globex")

    echoed = platform.infer("acme", "echo", TEXT)
    assert echoed.status == 200, echoed.body
    assert echoed.body["outputs"][0]["data"] == [f"I love this product! Write to {pseudonym(acme_key, EMAIL)}."]
    assert echoed.headers["x-fairshare-pii-pseudonymised"] == "email=1"
    assert "x-fairshare-pii-redacted" not in echoed.headers
    # Without the address's negative words the classifier sees only "I love this product".
    classified = platform.infer("acme", "classifier", TEXT)
    assert classified.status == 200 and classified.body["outputs"][0]["data"] == ["positive"]

    # Stable for the tenant (its analytics join on it), unrelated for another tenant.
    assert platform.infer("acme", "echo", EMAIL.upper()).body["outputs"][0]["data"] == [pseudonym(acme_key, EMAIL)]
    other = platform.infer("globex", "echo", EMAIL).body["outputs"][0]["data"]
    assert other == [pseudonym(globex_key, EMAIL)] != [pseudonym(acme_key, EMAIL)]

    logs = platform.logs()
    # The runtime's access log saw the requests (by route template and served model, never the path).
    assert '"route": "/v2/models/{model}/infer"' in logs and '"model": "echo"' in logs
    for secret in (EMAIL, EMAIL.upper(), acme_key.decode(), globex_key.decode()):
        assert secret not in logs
