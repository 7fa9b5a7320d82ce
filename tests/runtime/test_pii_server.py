"""PII rules through the runtime's HTTP API: what the model sees, what the client gets, what is counted.

The echo model below answers with the text it was given, so the response shows exactly what reached the
model; the leaky model always answers with personal data, to show the response scan.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping

import pytest

from inference_images.runtime.logs import JsonFormatter
from inference_images.runtime.models.base import ANY_DIM, Tensor, TensorSpec
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.registry import default_loaders
from tests.runtime.conftest import RuntimeServer, start_server, text_request
from tests.runtime.test_pii_entities import fullwidth, interleaved, marked

HEADERS = {
    "x-fairshare-tenant": "acme",
    "x-fairshare-pii-redact": "email,ip_address,phone",
    "x-fairshare-pii-block": "credit_card",
}
CARD = "4111 1111 1111 1111"


class EchoModel(LexiconSentimentModel):
    outputs = (TensorSpec("label", "BYTES", (ANY_DIM,)), TensorSpec("score", "FP32", (ANY_DIM,)))

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        texts = list(inputs["text"].data)
        return [
            Tensor("label", "BYTES", (len(texts),), texts),
            Tensor("score", "FP32", (len(texts),), [0.0] * len(texts)),
        ]


class ParametersModel(EchoModel):
    """Keeps the parameters its text input came with (its answer would be scanned on the way out, so
    only this shows what reached the model)."""

    seen: list[object] = []

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        self.seen.append(dict(inputs["text"].parameters))
        return [Tensor("label", "BYTES", (1,), ["ok"]), Tensor("score", "FP32", (1,), [0.0])]


class LeakyModel(LexiconSentimentModel):
    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        n = len(inputs["text"].data)
        return [
            Tensor("label", "BYTES", (n,), ["ask support@example.com or 4111 1111 1111 1111"] * n),
            Tensor("score", "FP32", (n,), [0.0] * n),
        ]


@pytest.fixture(scope="module")
def server() -> Iterator[RuntimeServer]:
    loaders = default_loaders()
    loaders.register("echo", lambda name, version: EchoModel(name, version, negation=False))
    loaders.register("leaky", lambda name, version: LeakyModel(name, version, negation=False))
    loaders.register("params", lambda name, version: ParametersModel(name, version, negation=False))
    running = start_server("echo:v1:echo", "leaky:v1:leaky", "params:v1:params", loaders=loaders)
    running.wait_ready(10)
    yield running
    running.stop()


def metric(server: RuntimeServer, entity: str, action: str, stage: str) -> float:
    prefix = (
        f'fairshare_runtime_pii_findings_total{{action="{action}",entity="{entity}",stage="{stage}",tenant="acme"}}'
    )
    for line in server.get("/metrics").body.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_the_model_sees_placeholders_and_the_client_is_told(server: RuntimeServer) -> None:
    before = metric(server, "email", "redacted", "request")
    reply = server.infer(
        "/v2/models/echo/infer",
        text_request("mail bob@example.com or jo@example.org", "from 203.0.113.9, call (415) 555-0132", "hello"),
        headers=HEADERS,
    )
    assert reply.status == 200, reply.body
    assert reply.body["outputs"][0]["data"] == ["mail [EMAIL] or [EMAIL]", "from [IP_ADDRESS], call [PHONE]", "hello"]
    assert reply.headers["x-fairshare-pii-redacted"] == "email=2,ip_address=1,phone=1"
    assert metric(server, "email", "redacted", "request") == before + 2


def test_large_text_is_redacted_too(server: RuntimeServer) -> None:
    # Past the inline limit redaction runs on a thread; the result must be the same.
    filler = "the quick brown fox jumps over the lazy dog " * 1000
    reply = server.infer("/v2/models/echo/infer", text_request(filler + "bob@example.com"), headers=HEADERS)
    assert reply.status == 200 and reply.body["outputs"][0]["data"] == [filler + "[EMAIL]"]


def test_types_outside_the_rules_pass(server: RuntimeServer) -> None:
    text = "IBAN GB82WEST12345698765432 and SSN 536-90-4399"
    reply = server.infer("/v2/models/echo/infer", text_request(text), headers=HEADERS)
    assert reply.body["outputs"][0]["data"] == [text] and "x-fairshare-pii-redacted" not in reply.headers
    # No rules at all (a tenant without `pii:`): nothing is touched.
    plain = server.infer("/v2/models/echo/infer", text_request("bob@example.com"), headers={"x-fairshare-tenant": "x"})
    assert plain.body["outputs"][0]["data"] == ["bob@example.com"]


def test_blocked_type_is_refused_naming_the_type_not_the_value(server: RuntimeServer) -> None:
    before = metric(server, "credit_card", "blocked", "request")
    reply = server.infer("/v2/models/echo/infer", text_request("ok", f"bob@example.com pays {CARD}"), headers=HEADERS)
    assert reply.status == 422
    assert reply.error == (
        "input 'text' contains credit_card, which this tenant's PII rules do not allow; nothing was processed"
    )
    assert CARD not in json.dumps(reply.body) and "bob@example.com" not in json.dumps(reply.body)
    assert metric(server, "credit_card", "blocked", "request") == before + 1


def test_model_output_is_scanned(server: RuntimeServer) -> None:
    reply = server.infer("/v2/models/leaky/infer", text_request("anything"), headers=HEADERS)
    assert reply.status == 200
    # Email is redacted; the blocked card type is redacted too, since an answer cannot be refused.
    assert reply.body["outputs"][0]["data"] == ["ask [EMAIL] or [CREDIT_CARD]"]
    assert reply.headers["x-fairshare-pii-redacted"] == "credit_card=1,email=1"
    assert metric(server, "email", "redacted", "response") >= 1


def test_error_messages_never_echo_raw_pii(server: RuntimeServer) -> None:
    body = {"inputs": [{"name": "bob@example.com", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    reply = server.infer("/v2/models/echo/infer", body, headers=HEADERS)
    assert reply.status == 400
    assert "bob@example.com" not in reply.error and "'[EMAIL]'" in reply.error


def test_error_messages_and_logs_never_echo_a_card_in_unicode_spaces(server: RuntimeServer) -> None:
    # A no-break space between the groups (copied from a PDF) is still the card, in the error and the log.
    reply = server.infer("/v2/models/echo/versions/4111%C2%A01111%C2%A01111%C2%A01111/infer", text_request("x"),
                         headers=HEADERS)
    assert reply.status == 404 and "1111" not in reply.error and "[CREDIT_CARD]" in reply.error
    formatter = JsonFormatter({"replica": "r1"})
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "request", (), None)
    record.path = "/v2/models/echo/versions/4111\u00a01111\u00a01111\u00a01111/infer"
    assert json.loads(formatter.format(record))["path"] == "/v2/models/echo/versions/[CREDIT_CARD]/infer"


def test_a_blocked_card_in_fullwidth_digits_is_refused(server: RuntimeServer) -> None:
    reply = server.infer("/v2/models/echo/infer", text_request("card " + fullwidth(CARD)), headers=HEADERS)
    assert reply.status == 422 and "credit_card" in reply.error


@pytest.mark.parametrize("card", [interleaved("5555 5555 5555 4444"), marked("5555 5555 5555 4444"),
                                  interleaved("card 5555 5555 5555 4444")])
def test_a_blocked_card_salted_with_what_a_tokenizer_drops_is_refused(server: RuntimeServer, card: str) -> None:
    # NULs and combining accents never reach a BERT model's input ids: the model would read the card.
    reply = server.infer("/v2/models/echo/infer", text_request(f"card {card}"), headers=HEADERS)
    assert reply.status == 422, reply.body
    assert "credit_card" in reply.error and "5555" not in json.dumps(reply.body)


def test_an_email_salted_with_nuls_reaches_the_model_redacted(server: RuntimeServer) -> None:
    text = f"mail {interleaved('bob@example.com')}\u0000 or call\u0000 me, caf\u00e9\u0301"
    reply = server.infer("/v2/models/echo/infer", text_request(text), headers=HEADERS)
    assert reply.status == 200, reply.body
    assert reply.body["outputs"][0]["data"] == ["mail [EMAIL]\u0000 or call\u0000 me, caf\u00e9\u0301"]
    assert reply.headers["x-fairshare-pii-redacted"] == "email=1"


def with_parameters(tensor: dict[str, object] | None = None, **request: object) -> dict[str, object]:
    body = text_request("hello", **request)
    if tensor is not None:
        body["inputs"][0]["parameters"] = tensor
    return body


def with_output_parameters(parameters: dict[str, object]) -> dict[str, object]:
    return with_parameters(outputs=[{"name": "score"}, {"name": "label", "parameters": parameters}])


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (with_parameters({"note": f"card {CARD}"}), "input 'text': its parameters"),
        (with_parameters({"notes": [{CARD: "a key too"}]}), "input 'text': its parameters"),
        (with_parameters(parameters={"customer": CARD}), "field 'parameters'"),
        (with_parameters(id=f"{CARD} bob@example.com"), "field 'id'"),
        (with_output_parameters({"note": CARD}), "output 'label': its parameters"),
        (with_output_parameters({"binary_data": False, "notes": [{"to": {f"card {CARD}": 1}}]}),
         "output 'label': its parameters"),
    ],
)
def test_a_blocked_type_anywhere_in_the_request_refuses_it(server: RuntimeServer, body: dict[str, object],
                                                            where: str) -> None:
    reply = server.infer("/v2/models/params/infer", body, headers=HEADERS)
    assert reply.status == 422, reply.body
    assert reply.error == (f"{where} contains credit_card, which this tenant's PII rules do not allow; "
                           "nothing was processed")


def test_requested_outputs_are_held_to_the_block_only(server: RuntimeServer) -> None:
    # Their parameters say how an output is encoded and reach neither the model nor a log: a type the
    # rules redact there is no refusal, and binary_data still works.
    body = with_output_parameters({"binary_data": False, "note": "bob@example.com"})
    reply = server.infer("/v2/models/params/infer", body, headers=HEADERS)
    assert reply.status == 200, reply.body
    assert [o["name"] for o in reply.body["outputs"]] == ["score", "label"]
    # A name no output has is refused before the rules are read, and the message is scrubbed.
    reply = server.infer("/v2/models/params/infer", with_parameters(outputs=[{"name": CARD}]), headers=HEADERS)
    assert reply.status == 400 and CARD not in reply.error and "[CREDIT_CARD]" in reply.error


def test_an_inputs_parameters_reach_the_model_redacted(server: RuntimeServer) -> None:
    body = with_parameters({"note": "mail bob@example.com", "size": 3, "tags": ["from 10.0.0.7"]},
                           parameters={"customer": "bob@example.com"})
    ParametersModel.seen.clear()
    reply = server.infer("/v2/models/params/infer", body, headers=HEADERS)
    assert reply.status == 200, reply.body
    assert ParametersModel.seen == [{"note": "mail [EMAIL]", "size": 3, "tags": ["from [IP_ADDRESS]"]}]
    assert reply.headers["x-fairshare-pii-redacted"] == "email=1,ip_address=1"


def test_unknown_entity_name_from_the_gateway_is_ignored(server: RuntimeServer) -> None:
    headers = {**HEADERS, "x-fairshare-pii-redact": "email,passport_number"}
    reply = server.infer("/v2/models/echo/infer", text_request("bob@example.com"), headers=headers)
    assert reply.status == 200 and reply.body["outputs"][0]["data"] == ["[EMAIL]"]


def test_log_lines_are_scrubbed() -> None:
    formatter = JsonFormatter({"replica": "r1"})
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad input from %s", ("bob@example.com",), None)
    record.path = "/v2/models/4111-1111-1111-1111/infer"
    record.reasons = {"m:v1": "fetch from 10.1.2.3 failed"}
    record.host = "127.0.0.1"  # the listen address is ours, not personal data
    line = json.loads(formatter.format(record))
    assert line["msg"] == "bad input from [EMAIL]"
    assert line["path"] == "/v2/models/[CREDIT_CARD]/infer"
    assert line["reasons"] == {"m:v1": "fetch from [IP_ADDRESS] failed"}
    assert line["host"] == "127.0.0.1" and line["replica"] == "r1"


def test_the_access_log_names_the_route_and_served_model_never_the_path(caplog: pytest.LogCaptureFixture) -> None:
    """A client writes the path: a number glued to a separator, an email encoded twice or a person's name
    is not what a scrubber's patterns catch. The access log carries the route template and, once resolved,
    the model and version this replica serves."""
    server = start_server("classifier:v1:lexicon", access_log=True)
    server.wait_ready(5)
    formatter = JsonFormatter()
    try:
        with caplog.at_level(logging.INFO, logger="inference_images.runtime.access"):
            for path in ("/v2/models/classifier/versions/123-45-6780/infer",
                         "/v2/models/classifier.415-555-0132/infer",
                         "/v2/models/jane.doe%2540example.com/infer",
                         "/v2/models/Jane Q Public/infer",
                         "/v2/models/classifier/infer"):
                server.infer(path.replace(" ", "%20"), text_request("fine"))
            server.get("/nothing/here/123-45-6780")
    finally:
        server.stop()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.getMessage() == "request"]
    text = json.dumps(lines)
    for value in ("123-45-6780", "415-555-0132", "jane", "Jane", "example.com", "%40"):
        assert value not in text, value
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/v2/models/{model}/versions/{version}/infer", 404), ("/v2/models/{model}/infer", 404),
        ("/v2/models/{model}/infer", 404), ("/v2/models/{model}/infer", 404),
        ("/v2/models/{model}/infer", 200), ("other", 404)]
    assert (lines[4]["model"], lines[4]["version"]) == ("classifier", "v1")
    assert all(line["model"] is None for line in lines[:4] + lines[5:])
