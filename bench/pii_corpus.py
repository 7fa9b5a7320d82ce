"""The labelled PII corpus: generate it, read it, and score a detector against it.

`python -m bench.pii_corpus` rewrites `tests/runtime/pii_corpus/corpus.jsonl` from two sources:

- generated cases (fixed seed): sentences with real-shaped values (Luhn-valid cards of each network, IBANs
  with correct check digits, SSNs within the SSA's rules, public and private IPv4/IPv6, phones in
  E.164, North American and European formats, emails) and near-misses that must stay untouched (order
  numbers one digit off Luhn, IBANs with a wrong check, SSNs in reserved ranges, dates, times, versions,
  invoice and tracking numbers, MAC addresses, ISBNs, prices);
- hand-written cases, `tests/runtime/pii_corpus/handwritten.txt`: one case a line, entities marked inline
  as `[[type:value]]`; everything unmarked is labelled "not PII".

Each JSONL line: `{"text", "spans": [{"start", "end", "type"}], "source": "generated"|"handwritten"}`.
Scoring (`score`): a finding is a true positive when a labelled span of the same type overlaps it; each
label is matched at most once. Precision and recall per type and overall (micro).
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "pii_corpus"
CORPUS_FILE = CORPUS_DIR / "corpus.jsonl"
HANDWRITTEN_FILE = CORPUS_DIR / "handwritten.txt"
# Written after tuning and never tuned against: scored on its own (bench/pii.py), not part of corpus.jsonl.
HELDOUT_FILE = CORPUS_DIR / "heldout.txt"
SEED = 20261129
TYPES = ("email", "phone", "credit_card", "iban", "national_id", "ip_address")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str


@dataclass(frozen=True)
class Case:
    text: str
    spans: tuple[Span, ...]
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "spans": [{"start": s.start, "end": s.end, "type": s.type} for s in self.spans],
            "source": self.source,
        }


# --- values ---------------------------------------------------------------------------------------------

FIRST = ("anna", "bob", "carlos", "dana", "eve", "farid", "grace", "hiro", "ines", "jon", "kemal", "lena", "maria")
LAST = ("smith", "okafor", "muller", "garcia", "nguyen", "rossi", "kowalski", "tanaka", "dubois", "obrien", "lee")
DOMAINS = ("example.com", "mail.example.org", "acme.co.uk", "corp.example.net", "uni-berlin.de", "startup.io")


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        (f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first[0]}{last}", f"{first}+news", f"{first}_{last}")
    )
    return f"{local}@{rng.choice(DOMAINS)}"


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


CARD_PREFIXES = (
    ("4", 16),
    ("4", 13),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3530", 16),
    ("62", 16),
    ("36", 14),
)


def card_digits(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice(CARD_PREFIXES)
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def card_format(rng: random.Random, digits: str) -> str:
    if len(digits) in (14, 15):  # American Express and Diners Club print 4-6-5 / 4-6-4
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    style = rng.choice((" ", "-", ""))
    return style.join(groups)


IBAN_COUNTRIES = {
    "DE": 22,
    "GB": 22,
    "FR": 27,
    "ES": 24,
    "IT": 27,
    "NL": 18,
    "BE": 16,
    "CH": 21,
    "AT": 20,
    "PL": 28,
    "IE": 22,
    "SE": 24,
}


def _mod97(text: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in text)) % 97


def iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(sorted(IBAN_COUNTRIES))
    length = IBAN_COUNTRIES[country]
    bban_len = length - 4
    if country in ("GB", "NL", "IE"):  # these carry a 4-letter bank code
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        bban += "".join(rng.choice("0123456789") for _ in range(bban_len - 4))
    else:
        bban = "".join(rng.choice("0123456789") for _ in range(bban_len))
    check = 98 - _mod97(bban + country + "00")
    if not valid:
        check = (check + rng.randint(1, 40)) % 97 + 2
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice(("-", "-", " "))
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def bad_ssn(rng: random.Random) -> str:
    area, group, serial = rng.choice(
        (
            (0, rng.randint(1, 99), rng.randint(1, 9999)),
            (666, rng.randint(1, 99), rng.randint(1, 9999)),
            (rng.randint(900, 999), rng.randint(1, 99), rng.randint(1, 9999)),
            (rng.randint(1, 665), 0, 1234),
            (rng.randint(1, 665), 12, 0),
            (78, 5, 1120),
        )
    )
    return f"{area:03d}-{group:02d}-{serial:04d}"


def ipv4(rng: random.Random) -> str:
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if not address.is_multicast and not address.is_reserved and not str(address).startswith("0."):
            break
    if rng.random() < 0.3:  # private ranges: still personal data in a log line
        return rng.choice((f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"10.0.{rng.randint(0, 255)}.7"))
    return str(address)


def ipv6(rng: random.Random) -> str:
    address = ipaddress.IPv6Address((0x2001 << 112) | (0x0DB8 << 96) | rng.getrandbits(64))
    return address.compressed if rng.random() < 0.5 else address.exploded


def phone(rng: random.Random) -> str:
    area, exchange, line = rng.randint(201, 989), rng.randint(201, 989), rng.randint(0, 9999)
    return rng.choice(
        (
            f"({area}) {exchange}-{line:04d}",
            f"{area}-{exchange}-{line:04d}",
            f"{area}.{exchange}.{line:04d}",
            f"+1 {area} {exchange} {line:04d}",
            f"+1-{area}-{exchange}-{line:04d}",
            f"+44 20 {rng.randint(7000, 8999)} {rng.randint(0, 9999):04d}",
            f"020 {rng.randint(7000, 8999)} {rng.randint(0, 9999):04d}",
            f"07{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
            f"+49 30 {rng.randint(1000000, 99999999)}",
            f"030 {rng.randint(1000000, 99999999)}",
            f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
            f"0{rng.randint(1, 9)} " + " ".join(str(rng.randint(10, 99)) for _ in range(4)),
            f"+4915{rng.randint(100000000, 999999999)}",
        )
    )


def order_number(rng: random.Random) -> str:
    return rng.choice(
        (
            card_format(rng, card_digits(rng, valid=False)),
            str(rng.randint(10**9, 10**10 - 1)),
            f"{rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}-{rng.randint(1000000, 9999999)}",
        )
    )


def near_miss(rng: random.Random) -> str:
    year, month, day = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(
        (
            f"{year}-{month:02d}-{day:02d}",
            f"{day:02d}.{month:02d}.{year}",
            f"{month:02d}/{day:02d}/{year}",
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
            f"version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 200)}",
            f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}",
            f"INV-{year}-{rng.randint(0, 999999):06d}",
            f"INV-{rng.randint(201, 989)}-{rng.randint(201, 989)}-{rng.randint(0, 9999):04d}",
            ":".join(f"{rng.randint(0, 255):02x}" for _ in range(6)),
            f"978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}",
            f"${rng.randint(1, 999)},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d}",
            f"{rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}",
            f"1Z{rng.randint(100, 999)}AA{rng.randint(10**9, 10**10 - 1)}",
            f"#{rng.randint(10**7, 10**8 - 1)}",
            f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
        )
    )


# --- sentences ------------------------------------------------------------------------------------------

# Templates with slots {type} (labelled) and {miss}/{order}/{bad_iban}/{bad_ssn} (labelled "not PII").
TEMPLATES = (
    "Please contact {email} about the refund.",
    "My card {credit_card} was charged twice, order {order}.",
    "Wire the deposit to {iban} before {miss}.",
    "Her SSN is {national_id} and the claim number is {order}.",
    "Login from {ip_address} failed at {miss}.",
    "Call me on {phone} after 6pm, ref {miss}.",
    "Reach {email} or {phone}; invoice {miss}.",
    "The payment from {iban} bounced; retry with {credit_card}.",
    "Server {ip_address} answered, client {ip_address} timed out.",
    "Order {order} shipped {miss}, tracking {miss}.",
    "Refund to account {bad_iban} failed: invalid account.",
    "Form rejected: {bad_ssn} is not a valid SSN.",
    "Build {miss} deployed to staging on {miss}.",
    "I love the new app, it is great! Send receipts to {email}.",
    "Terrible service. My number is {phone} and nobody called back.",
    "Account holder {email}, IBAN {iban}, phone {phone}.",
    "ssn: {national_id}",
    "from {ip_address} via {ip_address}",
    "Ticket {miss}: card ending in {miss} declined.",
    "Quote {order} valid until {miss}.",
)

_SLOT = re.compile(r"\{(\w+)\}")


def _fillers() -> dict[str, tuple[str | None, Callable[[random.Random], str]]]:
    return {
        "email": ("email", email),
        "phone": ("phone", phone),
        "credit_card": ("credit_card", lambda rng: card_format(rng, card_digits(rng))),
        "iban": ("iban", iban),
        "national_id": ("national_id", ssn),
        "ip_address": ("ip_address", lambda rng: ipv4(rng) if rng.random() < 0.7 else ipv6(rng)),
        "order": (None, order_number),
        "miss": (None, near_miss),
        "bad_iban": (None, lambda rng: iban(rng, valid=False)),
        "bad_ssn": (None, bad_ssn),
    }


def fill(template: str, rng: random.Random) -> Case:
    fillers = _fillers()
    text, spans, last = [], [], 0
    length = 0
    for match in _SLOT.finditer(template):
        literal = template[last : match.start()]
        text.append(literal)
        length += len(literal)
        label, make = fillers[match.group(1)]
        value = make(rng)
        if label is not None:
            spans.append(Span(length, length + len(value), label))
        text.append(value)
        length += len(value)
        last = match.end()
    text.append(template[last:])
    return Case("".join(text), tuple(spans), "generated")


def generate(count: int = 600, seed: int = SEED) -> list[Case]:
    rng = random.Random(seed)
    return [fill(TEMPLATES[i % len(TEMPLATES)], rng) for i in range(count)]


_MARK = re.compile(r"\[\[(\w+):(.*?)\]\]")


def parse_marked(line: str, source: str = "handwritten") -> Case:
    """`Mail [[email:bob@example.com]] now` -> text without the marks, and the labelled span."""
    text, spans, last, length = [], [], 0, 0
    for match in _MARK.finditer(line):
        literal = line[last : match.start()]
        text.append(literal)
        length += len(literal)
        kind, value = match.group(1), match.group(2)
        if kind not in TYPES:
            raise ValueError(f"unknown entity type {kind!r} in {line!r}")
        spans.append(Span(length, length + len(value), kind))
        text.append(value)
        length += len(value)
        last = match.end()
    text.append(line[last:])
    return Case("".join(text), tuple(spans), source)


def handwritten(path: Path = HANDWRITTEN_FILE, source: str = "handwritten") -> list[Case]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [parse_marked(line, source) for line in lines if line.strip() and not line.startswith("#")]


def heldout() -> list[Case]:
    return handwritten(HELDOUT_FILE, "heldout")


def build() -> list[Case]:
    return generate() + handwritten()


def write(cases: Iterable[Case], path: Path = CORPUS_FILE) -> Path:
    path.write_text("".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    return path


def load(path: Path = CORPUS_FILE) -> list[Case]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        spans = tuple(Span(s["start"], s["end"], s["type"]) for s in doc["spans"])
        cases.append(Case(doc["text"], spans, doc["source"]))
    return cases


# --- scoring --------------------------------------------------------------------------------------------


@dataclass
class TypeScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


Detect = Callable[[str], Sequence[tuple[int, int, str]]]


def score(cases: Iterable[Case], detect: Detect) -> dict[str, TypeScore]:
    """Per type and ``overall``; ``detect`` returns (start, end, type) for a text."""
    scores = {t: TypeScore() for t in (*TYPES, "overall")}
    for case in cases:
        found = list(detect(case.text))
        matched: set[int] = set()
        for start, end, kind in found:
            hit = next(
                (
                    i
                    for i, s in enumerate(case.spans)
                    if i not in matched and s.type == kind and start < s.end and s.start < end
                ),
                None,
            )
            target = scores[kind]
            if hit is None:
                target.fp += 1
                scores["overall"].fp += 1
                target.false_alarms.append(f"{case.text[start:end]!r} in {case.text!r}")
            else:
                matched.add(hit)
                target.tp += 1
                scores["overall"].tp += 1
        for i, span in enumerate(case.spans):
            if i not in matched:
                scores[span.type].fn += 1
                scores["overall"].fn += 1
                scores[span.type].misses.append(f"{case.text[span.start : span.end]!r} in {case.text!r}")
    return scores


def main() -> None:
    path = write(build())
    print(f"wrote {sum(1 for _ in path.open())} cases to {path}")


if __name__ == "__main__":
    main()
