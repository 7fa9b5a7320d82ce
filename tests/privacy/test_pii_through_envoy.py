"""End to end through the real Envoy: a tenant's PII rules, compiled onto its route, reach the runtime, which
redacts before the model sees the text and before anything is logged.

The platform is the smallest with every part (bench.synth.small_config: control plane, one Envoy, one
replica of the light lexicon classifier), with acme's `pii:` rules copied from the repository's own
config/tenants/acme.yaml and a second tenant whose data class needs no redaction. The observable is the
model's answer: the classifier scores words, and the email address below is made of negative words, so
the label is positive only if the model saw the placeholder instead of the address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from bench.synth import REPO_CONFIG, small_config
from tests.e2e.conftest import Reply, eventually, post, started
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform
from xds_server.local.processes import free_port

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
EMAIL = "awful.terrible@horrible-worst.com"
PHONE = "(415) 555-0132"
IP = "203.0.113.54"
CARD = "4111 1111 1111 1111"
TEXT = f"I love this product! Write to {EMAIL}, call {PHONE}, my laptop is {IP}."


@dataclass
class Platform:
    platform: LocalPlatform
    key: SigningKey

    def infer(self, tenant: str, *texts: str) -> Reply:
        assert self.platform.config is not None
        token = issue_token(self.key, self.platform.config.platform.auth, tenant)
        body = json.dumps(
            {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]}
        ).encode()
        return post(self.platform.gateway_url(REGION) + "/v2/models/classifier/infer", body, token)

    def runtime_log_lines(self) -> list[dict[str, object]]:
        lines = []
        for path in self.platform.run_dir.glob("runtime-*.log"):
            for raw in path.read_text(errors="replace").splitlines():
                if raw.startswith("{"):
                    lines.append(json.loads(raw))
        return lines

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.platform.run_dir.rglob("*.log")))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("privacy")
    config = small_config(root, free_port(), replicas=1)
    acme_rules = yaml.safe_load((REPO_CONFIG / "tenants" / "acme.yaml").read_text())["pii"]
    assert "email" in acme_rules["redact"] and "credit_card" in acme_rules["block"]  # what this test relies on
    acme = yaml.safe_load((config / "tenants" / "acme.yaml").read_text())
    (config / "tenants" / "acme.yaml").write_text(yaml.safe_dump({**acme, "pii": acme_rules}, sort_keys=False))
    # The PII policy gives a tenant that says nothing the "personal" data class (email redacted and more);
    # initrode declares public data, so its route carries no rules at all.
    initrode = {**acme, "id": "initrode", "data_class": "public"}
    (config / "tenants" / "initrode.yaml").write_text(yaml.safe_dump(initrode, sort_keys=False))
    state = root / "state"
    with started(config, state) as running:
        yield Platform(running, SigningKey.load_or_create(state))


def test_pii_reaches_the_model_redacted_and_no_log_holds_it(platform: Platform) -> None:
    assert eventually(lambda: platform.infer("acme", "hello").status == 200, timeout=30)

    reply = platform.infer("acme", TEXT)
    assert reply.status == 200, reply.body
    # Without redaction the address's words make this negative (see the tenant without rules below).
    assert reply.body["outputs"][0]["data"] == ["positive"]
    assert reply.headers["x-fairshare-pii-redacted"] == "email=1,ip_address=1,phone=1"

    # acme blocks card numbers: refused, naming the type and never the value.
    blocked = platform.infer("acme", f"charge {CARD} and mail {EMAIL}")
    assert blocked.status == 422
    assert "credit_card" in blocked.body["error"]
    assert CARD not in json.dumps(blocked.body) and EMAIL not in json.dumps(blocked.body)

    # The same text from a tenant without PII rules reaches the model as it is.
    raw = platform.infer("initrode", TEXT)
    assert raw.status == 200 and raw.body["outputs"][0]["data"] == ["negative"]
    assert "x-fairshare-pii-redacted" not in raw.headers

    # Every process's log (runtime, Envoy, control plane) saw those requests and holds none of the values.
    def logged() -> bool:
        return any(
            line.get("status") == 422 and line.get("route") == "/v2/models/{model}/infer"
            and line.get("model") == "classifier"
            for line in platform.runtime_log_lines()
        )

    assert eventually(logged, timeout=10), platform.logs()[-2000:]
    logs = platform.logs()
    for value in (EMAIL, PHONE, IP, CARD, CARD.replace(" ", "")):
        assert value not in logs
