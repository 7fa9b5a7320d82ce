"""Detectors and the redactor on their own: checksums, shapes, near-misses, rules and placeholders."""

from __future__ import annotations

import pytest

from inference_images.runtime.models.base import Tensor
from inference_images.runtime.pii import Entity, PiiBlockedError, PiiRules, find, redact, scrub
from inference_images.runtime.pii.entities import _FOLD, card_network_ok, fold, iban_ok, luhn_ok, ssn_ok
from inference_images.runtime.pii.rules import _parse, _warned
from inference_images.runtime.pii.tensors import check_request_fields, redact_inputs, redact_outputs, summary
from inference_images.runtime.protocol import RequestedOutput


def found(text: str) -> list[tuple[str, str]]:
    return [(f.entity.value, text[f.start : f.end]) for f in find(text)]


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert card_network_ok("4111111111111111") and not card_network_ok("1234567890123452")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert iban_ok("gb82west12345698765432")  # case does not matter
    assert not iban_ok("XX89370400440532013000")  # no such country
    assert not iban_ok("DE8937040044053201300")  # Germany's IBANs are 22 long
    assert ssn_ok("536904399")
    for bad in ("000123456", "666123456", "900123456", "123001234", "123450000", "078051120"):
        assert not ssn_ok(bad), bad


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jo.doe+x@mail.example.co.uk now", [("email", "jo.doe+x@mail.example.co.uk")]),
        ("card 4111-1111-1111-1111.", [("credit_card", "4111-1111-1111-1111")]),
        ("amex 3782 822463 10005 ok", [("credit_card", "3782 822463 10005")]),
        ("IBAN DE89 3704 0044 0532 0130 00 THANKS", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("ssn: 536904399", [("national_id", "536904399")]),
        ("NINO JT 48 21 67 B.", [("national_id", "JT 48 21 67 B")]),
        ("from 203.0.113.9/32 and 2001:db8::1", [("ip_address", "203.0.113.9/32"), ("ip_address", "2001:db8::1")]),
        ("ring (415) 555-0132 or +44 20 7946 0958", [("phone", "(415) 555-0132"), ("phone", "+44 20 7946 0958")]),
        ("tel: 4155550132", [("phone", "4155550132")]),
    ],
)
def test_finds_each_type(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # fails Luhn
        "tracking 1234 5678 9012 3456",  # no card network starts with 12
        "IBAN DE89 3704 0044 0532 0130 01 bounced",  # wrong check digits
        "SSNs 000-12-3456, 666-12-3456 and 078-05-1120 are never issued",
        "upgrade to version 1.2.3.4, firmware 10.4.2.1",
        "256.1.1.1 and 1.2.3 and 10:30:45 and 00:1A:2B:3C:4D:5E",
        "order 4155550132 and invoice INV-415-555-0132, part 0041-2231-77",
        "on 2024-03-15, 15.03.2024 or 03/15/2024; ISBN 978-3-16-148410-0; zip 90210-1234",
        "icon@2x.png, @handle, admin@localhost, requests@2.31.0",
        "std::vector and Foo::bar",
    ],
)
def test_near_misses_are_left_alone(text: str) -> None:
    assert found(text) == []


def test_a_card_is_not_also_a_phone() -> None:
    # The digits of a card hold phone-shaped runs; the card's checksum wins and nothing else is reported.
    assert found("pay 4012 8888 8888 1881 today") == [("credit_card", "4012 8888 8888 1881")]
    rules = PiiRules(redact=frozenset({Entity.PHONE}))
    assert redact("pay 4012 8888 8888 1881 today", rules).text == "pay 4012 8888 8888 1881 today"


def test_redact_applies_only_the_rules_types() -> None:
    text = "mail bob@example.com or call (415) 555-0132 from 203.0.113.9"
    result = redact(text, PiiRules(redact=frozenset({Entity.EMAIL, Entity.IP_ADDRESS})))
    assert result.text == "mail [EMAIL] or call (415) 555-0132 from [IP_ADDRESS]"
    assert dict(result.counts) == {Entity.EMAIL: 1, Entity.IP_ADDRESS: 1}
    assert redact(text, PiiRules()).text == text


def test_block_reports_the_type_and_changes_nothing() -> None:
    rules = PiiRules(redact=frozenset({Entity.EMAIL}), block=frozenset({Entity.CREDIT_CARD}))
    result = redact("bob@example.com paid with 4111 1111 1111 1111", rules)
    assert result.blocked == {Entity.CREDIT_CARD} and not result.counts
    # A model output cannot be refused: blocked types are redacted there instead.
    cleaned = redact("bob@example.com paid with 4111 1111 1111 1111", rules, enforce_block=False)
    assert cleaned.text == "[EMAIL] paid with [CREDIT_CARD]"


def test_block_wins_over_redact() -> None:
    rules = PiiRules(redact=frozenset({Entity.EMAIL, Entity.PHONE}), block=frozenset({Entity.PHONE}))
    assert rules.redact == {Entity.EMAIL} and rules.block == {Entity.PHONE}


def test_rules_from_headers(caplog: pytest.LogCaptureFixture) -> None:
    _warned.discard("passport")
    _parse.cache_clear()
    rules = PiiRules.from_headers(" email,phone ,passport,", "credit_card")
    assert rules.redact == {Entity.EMAIL, Entity.PHONE} and rules.block == {Entity.CREDIT_CARD}
    assert [r.entity for r in caplog.records] == ["passport"]  # type: ignore[attr-defined]
    # Warned once per name, not once per request.
    PiiRules.from_headers("passport", None)
    assert len(caplog.records) == 1
    assert not PiiRules.from_headers("", None).active and not PiiRules.from_headers(None, None).active


def test_tensors_inputs_outputs_and_summary() -> None:
    rules = PiiRules(redact=frozenset({Entity.EMAIL}), block=frozenset({Entity.IBAN}))
    inputs = {
        "text": Tensor("text", "BYTES", (2,), ["a@example.com b@example.com", "plain"]),
        "ids": Tensor("ids", "INT64", (1,), [4111111111111111]),
    }
    redacted, counts = redact_inputs(inputs, rules)
    assert redacted["text"].data == ["[EMAIL] [EMAIL]", "plain"] and redacted["ids"] is inputs["ids"]
    assert summary(counts) == "email=2"
    with pytest.raises(PiiBlockedError) as caught:
        redact_inputs({"text": Tensor("text", "BYTES", (1,), ["GB82WEST12345698765432"])}, rules)
    assert str(caught.value).startswith("input 'text' contains iban") and "GB82" not in str(caught.value)
    outputs, out_counts = redact_outputs(
        [Tensor("label", "BYTES", (1,), ["to GB82WEST12345698765432"]), Tensor("score", "FP32", (1,), [0.5])], rules
    )
    assert outputs[0].data == ["to [IBAN]"] and outputs[1].data == [0.5] and summary(out_counts) == "iban=1"


def test_request_fields_and_requested_outputs_are_held_to_the_block() -> None:
    rules = PiiRules(redact=frozenset({Entity.EMAIL}), block=frozenset({Entity.CREDIT_CARD}))
    card = "4111 1111 1111 1111"
    fine = [RequestedOutput("label", {"binary_data": True, "note": "bob@example.com"})]
    check_request_fields("r1", {"note": "bob@example.com"}, rules, fine)  # redacted types are not refused
    for outputs, where in (
        ([RequestedOutput("label", {"deep": [{"x": {"y": f"card {card}"}}]})], "output 'label': its parameters"),
        ([RequestedOutput("label", {f"card {card}": True})], "output 'label': its parameters"),
        ([RequestedOutput("score", {}), RequestedOutput(f"label {card}", {"note": card})], "field 'outputs'"),
    ):
        with pytest.raises(PiiBlockedError) as caught:
            check_request_fields(None, {}, rules, outputs)
        assert caught.value.where == where and caught.value.entities == {Entity.CREDIT_CARD}


def test_scrub_replaces_every_type() -> None:
    assert scrub("input 'bob@example.com' from 10.0.0.7 is missing") == "input '[EMAIL]' from [IP_ADDRESS] is missing"
    assert scrub("nothing here") == "nothing here"


NBSP, THIN, ZWSP, SHY = "\u00a0", "\u2009", "\u200b", "\u00ad"


def fullwidth(text: str) -> str:
    """``text`` as a phone's or a CJK keyboard's fullwidth forms write it (digits, ``@``, ``.``...)."""
    return text.translate({code: code + 0xFEE0 for code in range(0x21, 0x7F)})


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        # The same card, as PDFs, forms, phones and other scripts write it.
        (f"card 4111{NBSP}1111{NBSP}1111{NBSP}1111 ok", "credit_card", f"4111{NBSP}1111{NBSP}1111{NBSP}1111"),
        (f"card 4111{THIN}1111{THIN}1111{THIN}1111", "credit_card", f"4111{THIN}1111{THIN}1111{THIN}1111"),
        ("card 4111\n1111\n1111\n1111 ok", "credit_card", "4111\n1111\n1111\n1111"),
        ("card 4111\r\n1111\r\n1111\r\n1111", "credit_card", "4111\r\n1111\r\n1111\r\n1111"),
        ("card 4111.1111.1111.1111 ok", "credit_card", "4111.1111.1111.1111"),
        ("card 4111/1111/1111/1111 ok", "credit_card", "4111/1111/1111/1111"),
        (f"card 4111{ZWSP}1111{ZWSP}1111{ZWSP}1111 ok", "credit_card", f"4111{ZWSP}1111{ZWSP}1111{ZWSP}1111"),
        ("card " + fullwidth("4111 1111 1111 1111") + " ok", "credit_card", fullwidth("4111 1111 1111 1111")),
        ("card ٤١١١١١١١١١١١١١١١ ok", "credit_card", "٤١١١١١١١١١١١١١١١"),
        ("mail bob" + fullwidth("@") + "example.com now", "email", "bob" + fullwidth("@") + "example.com"),
        (f"mail b{ZWSP}ob@example.com now", "email", f"b{ZWSP}ob@example.com"),
        (f"mail bob{SHY}@exa{SHY}mple.com!", "email", f"bob{SHY}@exa{SHY}mple.com"),
        ("mail bob@exämple.com now", "email", "bob@exämple.com"),
        ("mail bob@example.xn--p1ai now", "email", "bob@example.xn--p1ai"),
        ("mail иван@пример.рф now", "email", "иван@пример.рф"),
        ("call +" + fullwidth("44 20 7946 0958") + " now", "phone", "+" + fullwidth("44 20 7946 0958")),
        (f"call +44{NBSP}20{NBSP}7946{NBSP}0958 now", "phone", f"+44{NBSP}20{NBSP}7946{NBSP}0958"),
        ("from " + fullwidth("192.168.1.10") + " today", "ip_address", fullwidth("192.168.1.10")),
    ],
)
def test_finds_values_whatever_their_code_points(text: str, entity: str, value: str) -> None:
    assert found(text) == [(entity, value)]


def test_redaction_replaces_the_original_span_invisible_characters_included() -> None:
    rules = PiiRules(redact=frozenset({Entity.EMAIL}), block=frozenset({Entity.CREDIT_CARD}))
    text = f"{ZWSP}hi{ZWSP}{ZWSP} b{ZWSP}ob@example.com, {SHY}ok"
    assert redact(text, rules).text == f"{ZWSP}hi{ZWSP}{ZWSP} [EMAIL], {SHY}ok"
    assert redact(f"pay 4111{NBSP}1111{NBSP}1111{NBSP}1111", rules).blocked == {Entity.CREDIT_CARD}
    assert scrub(f"/v2/models/m/versions/4111{NBSP}1111{NBSP}1111{NBSP}1111/infer") == (
        "/v2/models/m/versions/[CREDIT_CARD]/infer"
    )


@pytest.mark.parametrize(
    "text",
    [
        "café crème à 12 € — naïve résumé, 北京 2024年",  # accents, CJK and a year are not PII
        "order " + fullwidth("4111 1111 1111 1112") + " shipped",  # fullwidth, and still fails Luhn
        "version " + fullwidth("4.2.1.3") + " released",  # a version in any digits is a version
        "prices 1.299,00 / 2.499,00 / 3.999,00",
        "icon" + fullwidth("@") + "2x.png and admin" + fullwidth("@") + "localhost",
        "ids\n4111\n2222\n3333",  # short lines of numbers are not one card
        "version 4\u0301.2\u0000.1.3 and order 4111\u0000 1111 1111 1112",  # marks and NULs make no value
    ],
)
def test_folded_near_misses_are_left_alone(text: str) -> None:
    assert found(text) == []


NUL, ACUTE = "\u0000", "\u0301"


def interleaved(text: str, between: str = NUL) -> str:
    """``text`` with ``between`` after each character but the last (a tokenizer drops it again)."""
    return between.join(text)


def marked(text: str, mark: str = ACUTE) -> str:
    """``text`` with a combining mark after each digit (a tokenizer strips accents, so the digit stays)."""
    return "".join(ch + mark if ch.isdigit() else ch for ch in text)


CARD = "5555 5555 5555 4444"


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        # What a BERT tokenizer leaves is what the model reads: the same card, the same address.
        (f"card {interleaved(CARD)} ok", "credit_card", interleaved(CARD)),
        (interleaved(f"card {CARD}"), "credit_card", interleaved(CARD)),
        (f"card {marked(CARD)} ok", "credit_card", marked(CARD)),
        (f"card {marked(CARD, chr(0x20DD))} ok", "credit_card", marked(CARD, chr(0x20DD))),  # enclosing, Me
        (f"card {interleaved(CARD, chr(0x7F))} ok", "credit_card", interleaved(CARD, chr(0x7F))),
        (f"card {interleaved(CARD, chr(0x85))} ok", "credit_card", interleaved(CARD, chr(0x85))),  # C1 control
        (f"card {interleaved(CARD, chr(0xE000))} ok", "credit_card", interleaved(CARD, chr(0xE000))),  # private use
        (f"card {interleaved(CARD, chr(0xFFFD))} ok", "credit_card", interleaved(CARD, chr(0xFFFD))),
        ("card 5555\u16805555\u16805555\u16804444 ok", "credit_card", "5555\u16805555\u16805555\u16804444"),
        ("card 5555\u20285555\u20285555\u20284444 ok", "credit_card", "5555\u20285555\u20285555\u20284444"),
        (f"mail {interleaved('bob@example.com')} now", "email", interleaved("bob@example.com")),
        ("mail bob@exa\u0301mple.com now", "email", "bob@exa\u0301mple.com"),
        ("mail bo\u0301b@example.com now", "email", "bo\u0301b@example.com"),
        ("IBAN GB82 W\u00c9ST 1234 5698 7654 32 ok", "iban", "GB82 W\u00c9ST 1234 5698 7654 32"),
        ("ssn\u0000: 536904399", "national_id", "536904399"),
    ],
)
def test_finds_values_a_tokenizer_would_reassemble(text: str, entity: str, value: str) -> None:
    assert found(text) == [(entity, value)]


def test_redaction_of_salted_values_keeps_the_rest_of_the_text() -> None:
    rules = PiiRules(redact=frozenset({Entity.EMAIL, Entity.CREDIT_CARD}))
    email = interleaved("bob@example.com")
    # The NUL after the address and the accent before it are the neighbours', not the address's.
    text = f"caf\u00e9\u0301 {NUL}mail {email}{NUL}, then pay {marked(CARD)} thanks{NUL}!"
    assert redact(text, rules).text == f"caf\u00e9\u0301 {NUL}mail [EMAIL]{NUL}, then pay [CREDIT_CARD] thanks{NUL}!"
    blocking = PiiRules(block=frozenset({Entity.CREDIT_CARD}))
    for card in (interleaved(f"card {CARD}"), f"card {marked(CARD)}"):
        result = redact(card, blocking)
        assert result.blocked == {Entity.CREDIT_CARD} and result.text == card
    assert scrub(f"input '{email}' from {interleaved('10.0.0.7')} pays {marked(CARD)}") == (
        "input '[EMAIL]' from [IP_ADDRESS] pays [CREDIT_CARD]"
    )


def test_the_fold_keeps_plain_text_as_it_is_and_agrees_with_its_table() -> None:
    ascii_text = "order 88412\tshipped\r\nto bob@example.com"
    assert fold(ascii_text) is ascii_text
    assert fold(f"a{NUL}b\x1fc\x7f") == "abc"
    assert fold("café 12") == "cafe 12" and fold("e\u0301") == "e"
    # Few letters change by replace, many by translate: the same view either way.
    for text in ("café crème à 12 €, naïve", "".join(map(chr, range(0x80, 0x250))), "Ǵ\u0301≠\u20dd\u0000 x"):
        assert fold(text) == text.translate(_FOLD), text
    assert fold("bób@exa\u0301mple.com", accents=True) == "bób@exámple.com"
