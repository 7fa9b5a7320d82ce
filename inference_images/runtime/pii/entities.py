"""What counts as each kind of personal data: a precompiled candidate pattern per shape, then a validator.

Patterns are deliberately loose about layout (spaces, dashes, brackets) and the validators are strict about
content, because the checks a number must pass are where precision comes from:

- ``credit_card``: 13-19 digits, one separator style, a known card-network prefix and length, Luhn;
- ``iban``: a known country, that country's exact length, ISO 13616 mod-97 == 1;
- ``national_id``: US SSN (area not 000/666/900-999, group not 00, serial not 0000, published specimen
  numbers excluded) written 3-2-4 with separators, or 9 digits right after "SSN"/"social security";
  UK National Insurance numbers (prefix rules);
- ``ip_address``: IPv4 with every octet 0-255 and no leading zeros (optional /prefix); IPv6 as the
  ``ipaddress`` module accepts it. A dotted quad right after "version", "release", "build"... is a
  version string, not an address;
- ``phone``: E.164 (``+`` and 8-15 digits), North American 3-3-4 with separators, European trunk-prefix
  formats (leading 0, 10-11 digits in groups), or a bare 8-15 digit run right after "tel", "phone",
  "call"... A bare digit run without such a word is an order or invoice number, not a phone;
- ``email``: RFC 5322's common subset (dot-atom local part, dotted host names, alphabetic TLD), not image
  names like ``icon@2x.png``.

Findings of different types may overlap (a card number contains phone-shaped runs); ``find`` keeps the
most specific type first (see ``_PRIORITY``), so each character belongs to at most one finding.

The patterns run on a normalised view of the text (``fold``): a value copied from a PDF (no-break or thin
spaces), typed on a phone (fullwidth digits and at sign, U+FF20), written in another script's digits (Arabic-Indic,
Devanagari) or salted with invisible characters (zero-width space, soft hyphen, NUL and other control
characters) or combining marks (``5\u0301``) is the same value: a model's tokenizer drops those before the
model reads the text, so a rule that blocks the value must see it. Findings are mapped back to the
original text, so redaction replaces what the caller sent, invisible characters and the marks on its last
character included.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum


class Entity(StrEnum):
    """The entity names of the config model (``xds_server.config.model.PiiEntity``) and the headers."""

    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    NATIONAL_ID = "national_id"
    IP_ADDRESS = "ip_address"

    @property
    def placeholder(self) -> str:
        return f"[{self.value.upper()}]"


@dataclass(frozen=True, slots=True)
class Finding:
    entity: Entity
    start: int
    end: int


# A validator sees the match and the whole text and returns the span to redact, or None to reject.
Validator = Callable[[re.Match[str], str], tuple[int, int] | None]


@dataclass(frozen=True, slots=True)
class Detector:
    entity: Entity
    pattern: re.Pattern[str]
    validate: Validator
    # Skip the pattern entirely when the text lacks this character (every pattern needs a digit too).
    needs: str = "digit"
    # Keyword-anchored patterns run only when one of these occurs in the lower-cased text (a C-speed
    # substring test instead of a case-insensitive alternation tried at every word).
    keywords: tuple[str, ...] = ()


# --- the normalised view -----------------------------------------------------------------------------

# Code points folded so far; past this many distinct ones (a text in every script at once) the fold is
# computed each time instead of kept, so no client can grow the table without bound.
_FOLD_CACHE = 1 << 16


# Dropped from the view as a BERT-style tokenizer drops them before the model reads the text: control
# characters (but tab, newline and carriage return: whitespace to it), format characters, private-use
# characters and U+FFFD. Combining marks go too: it strips accents (NFD, then the nonspacing marks).
_INVISIBLE = frozenset({"Cc", "Cf", "Co"})
_MARKS = frozenset({"Mn", "Me"})
_KEPT_CONTROLS = frozenset("\t\n\r")


class _Fold(dict[int, str | None]):
    """A ``str.translate`` table filled on first sight of each code point: control, format and private-use
    characters (Unicode categories Cc but tab, newline and carriage return; Cf: zero-width space and
    joiners, soft hyphen, byte-order mark, bidi marks; Co) and U+FFFD removed; combining marks (Mn, Me)
    removed and letters written without their marks (``é`` as ``e``, by NFD), unless ``accents``; decimal
    digits of any script as ASCII; spaces as a space and line or paragraph separators as a newline (the
    Ogham space mark and U+2028 are spaces to a tokenizer, but not to NFKC); everything else as NFKC
    writes it (fullwidth forms, no-break and thin spaces, the fullwidth at sign) where that is one
    character. Left alone: NFKC expansions (ligatures, ``⑴``), so that only deletions change the text's
    length and the map back to the original is a list of deleted positions; and digits that are not
    decimal (``²``, ``①``), so that every digit the patterns see was a decimal digit (``\\d``) of the
    original, which ``find``'s quick exit relies on."""

    def __init__(self, *, accents: bool) -> None:
        super().__init__()
        self.accents = accents

    def __missing__(self, code: int) -> str | None:
        ch = chr(code)
        category = unicodedata.category(ch)
        value: str | None
        if (category in _INVISIBLE and ch not in _KEPT_CONTROLS) or ch == "\ufffd":
            value = None
        elif category in _MARKS:
            value = ch if self.accents else None
        elif ch.isdecimal():
            value = str(unicodedata.decimal(ch))
        elif category == "Zs":
            value = " "
        elif category in ("Zl", "Zp"):
            value = "\n"
        else:
            folded = unicodedata.normalize("NFKC", ch)
            value = folded if len(folded) == 1 and not folded.isdigit() else ch
            if not self.accents:
                base = "".join(c for c in unicodedata.normalize("NFD", value) if unicodedata.category(c) not in _MARKS)
                if len(base) == 1 and not base.isdigit():
                    value = base
        if len(self) < _FOLD_CACHE:
            self[code] = value
            if value == ch and not self.accents:
                _STABLE.add(ch)
        return value


_FOLD = _Fold(accents=False)
# For pseudonyms of addresses: ``bób@`` and ``bob@`` are two mailboxes, though a model reads one word.
_FOLD_ACCENTS = _Fold(accents=True)
# Characters the fold leaves as they are: printable ASCII, tab, newline, carriage return, and each other
# one once the table has met it.
_STABLE: set[str] = {chr(code) for code in range(32, 127)} | _KEPT_CONTROLS
# The characters NFKC folds to "@" (fullwidth and small commercial at).
_AT_SIGNS = ("@", "\uff20", "\ufe6b")
# The ASCII characters the fold removes (C0 controls but tab, newline and carriage return; DEL).
_ASCII_CONTROLS = bytes(code for code in (*range(32), 127) if chr(code) not in _KEPT_CONTROLS)


def fold(text: str, *, accents: bool = False) -> str:
    """``text`` as the patterns see it (see ``_Fold``; with ``accents``, combining marks and accented
    letters kept). Text made only of characters the fold leaves alone (printable ASCII, accentless
    letters, most CJK: a set difference in C) is returned as it is."""
    if accents:
        return unicodedata.normalize("NFC", text).translate(_FOLD_ACCENTS)
    if text.isascii():
        # A NUL is ASCII too. Deleting the control bytes from a copy is one pass in C (under 1% of what
        # the patterns then cost on such text), so text without them stays on the fast path.
        if len(text.encode().translate(None, _ASCII_CONTROLS)) == len(text):
            return text
        return text.translate(_FOLD)
    # Text not in NFKC (fullwidth punctuation in CJK, a no-break space) has something to fold: no need to
    # look closer. NFKC text may still hold characters the fold changes (controls, format and private-use
    # characters, combining marks, accented letters, foreign digits), which the set difference finds.
    if unicodedata.is_normalized("NFKC", text):
        changed = {ch: _FOLD[ord(ch)] or "" for ch in set(text) - _STABLE}
        changed = {ch: value for ch, value in changed.items() if value != ch}
        if not changed:
            return text
        # Accented prose changes a few letters: a C-speed replace per letter costs a tenth of translate's
        # lookup per character. The replaces run in turn, so a value that is itself replaced would change
        # twice (none is, see ``_Fold``; checked).
        if len(changed) <= _FEW_CHANGED and not changed.keys() & set(changed.values()):
            for ch, value in changed.items():
                text = text.replace(ch, value)
            return text
    return text.translate(_FOLD)


_FEW_CHANGED = 8


def _folded(text: str) -> tuple[str, list[int]]:
    """The folded text and, for each character the fold removed, the folded position it was removed at
    (sorted; repeated for a run): folded index ``j`` is original index ``j + bisect_right(removed, j)``."""
    folded = fold(text)
    if len(folded) == len(text):
        return folded, []
    removed: list[int] = []
    for run in _MAY_GO.finditer(text):  # printable ASCII, tab, newline and carriage return always stay
        for i in range(run.start(), run.end()):
            if _FOLD[ord(text[i])] is None:
                removed.append(i - len(removed))
    return folded, removed


_MAY_GO = re.compile(r"[^\t\n\r\x20-\x7e]+")


def _past_marks(text: str, end: int) -> int:
    """``end`` moved past the combining marks that follow it: they belong to the character before."""
    while end < len(text) and unicodedata.category(text[end]) in _MARKS:
        end += 1
    return end


# --- checksums ------------------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """ISO 13616: known country, its exact length, and mod-97 of the rearranged number equal to 1."""
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit() or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# From the SWIFT IBAN registry.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def card_network_ok(digits: str) -> bool:
    """A prefix some card network issues, at a length that network uses."""
    n = len(digits)
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 3528 <= p4 <= 3589 or p2 == 62:  # Discover, JCB, UnionPay
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if p2 in (50, 56, 57, 58, 67):  # Maestro
        return 13 <= n <= 19
    return False


# --- credit cards ---------------------------------------------------------------------------------------
#
# Speed note: every pattern starts with a plain character class and only then looks behind, so the regex
# engine skips in C to the positions that could start a match (a leading lookbehind would be tried at
# every position: 2-5x slower on prose). Keyword- and '@'-anchored shapes are found by substring search.

# Groups apart by a space, dash, dot or slash, or one per line (a card copied from a form or a PDF).
# Possessive, without alternation: as fast as the space-or-dash pattern it replaced.
_CARD = re.compile(r"\d(?<![\w.\-+]\d)(?:\r?+[ \t\n\-./]?+\d){12,24}(?![\w]|[\-.]\d)")
_CARD_SEPARATOR = re.compile(r"\D+")


def _card(match: re.Match[str], text: str) -> tuple[int, int] | None:
    candidate = match.group()
    seps = set(_CARD_SEPARATOR.findall(candidate))
    if len(seps) > 1:
        return None
    sep = len(next(iter(seps))) if seps else 0
    groups = _CARD_SEPARATOR.split(candidate) if seps else [candidate]
    if seps and any(len(g) < 3 for g in groups[:-1]):
        return None
    # A trailing or leading group may be a neighbouring number ("... 1111 x2"): try the whole run, then
    # without the last group, then without the first.
    start = match.start()
    for lo, hi in ((0, len(groups)), (0, len(groups) - 1), (1, len(groups))):
        if hi - lo < 1:
            continue
        digits = "".join(groups[lo:hi])
        if 13 <= len(digits) <= 19 and card_network_ok(digits) and luhn_ok(digits):
            offset = sum(len(g) + sep for g in groups[:lo])
            length = sum(len(g) for g in groups[lo:hi]) + (hi - lo - 1) * sep
            return start + offset, start + offset + length
    return None


# --- IBAN -----------------------------------------------------------------------------------------------

# Country code in capitals, as IBANs are printed; the rest in either case.
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])"
)


def _iban(match: re.Match[str], text: str) -> tuple[int, int] | None:
    candidate = match.group()
    # Printed IBANs come in groups of four; a trailing group may be the next word ("... 00 TEAM").
    end = len(candidate)
    while end >= 15:
        if iban_ok(candidate[:end].replace(" ", "")):
            return match.start(), match.start() + end
        cut = candidate.rfind(" ", 0, end)
        if cut < 0:
            break
        end = cut
    return None


# --- national ids ---------------------------------------------------------------------------------------

_SSN = re.compile(r"(\d)(?<![\w.\-/+]\d)(\d\d)([- ])(\d{2})\3(\d{4})(?![\w]|[\-./]\d)")
_SSN_KEYWORD = re.compile(
    r"(?i:(?:ssn|ss#|social[ -]security(?:[ -](?:number|no\.?|#))?)\s*(?:is|:|#|=)?\s*)"
    r"(\d{9}|\d{3}[- ]\d{2}[- ]\d{4})(?!\w)"
)
# Numbers the SSA published as specimens (wallet inserts, advertising); never issued to a person.
_SSN_SPECIMENS = frozenset({"078051120", "219099999", "457555462"})
_NINO = re.compile(
    r"[A-CEGHJ-PR-TW-Z](?<![A-Za-z0-9][A-Z])[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)
# Prefixes HMRC never allocates.
_NINO_NEVER = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def ssn_ok(digits: str) -> bool:
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    if area == 0 or area == 666 or area >= 900 or group == 0 or serial == 0:
        return False
    return digits not in _SSN_SPECIMENS


def _ssn(match: re.Match[str], text: str) -> tuple[int, int] | None:
    digits = match.group(1) + match.group(2) + match.group(4) + match.group(5)
    return match.span() if ssn_ok(digits) else None


def _ssn_keyword(match: re.Match[str], text: str) -> tuple[int, int] | None:
    digits = re.sub(r"\D", "", match.group(1))
    return match.span(1) if ssn_ok(digits) else None


def _nino(match: re.Match[str], text: str) -> tuple[int, int] | None:
    return None if match.group()[:2] in _NINO_NEVER else match.span()


def _whole(match: re.Match[str], text: str) -> tuple[int, int] | None:
    return match.span()


# --- IP addresses ---------------------------------------------------------------------------------------

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?:/\d{1,2})?(?![\w]|\.\d)")
# Words after which a dotted quad names a version, not a host.
_VERSION_CONTEXT = re.compile(
    r"(?i)\b(?:v|ver|version|versions|release|build|firmware|fw|rev|revision|update|patch|sdk|api|"
    r"python|node|chrome|firefox|safari|edge|windows|android|ios|macos)\.?\s*[:=]?\s*$"
)
_IPV6 = re.compile(
    r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])(?=[0-9A-Fa-f]{0,3}:[0-9A-Fa-f]{0,4}:)"
    r"[0-9A-Fa-f:]{1,38}(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?:/\d{1,3})?(?:%[\w.]+)?(?![\w:])"
)


def _octet_ok(part: str) -> bool:
    return (part == "0" or not part.startswith("0")) and int(part) <= 255


def _ipv4(match: re.Match[str], text: str) -> tuple[int, int] | None:
    address, _, prefix = match.group().partition("/")
    if not all(_octet_ok(part) for part in address.split(".")) or (prefix and int(prefix) > 32):
        return None
    if _VERSION_CONTEXT.search(text, max(0, match.start() - 24), match.start()):
        return None
    return match.span()


def _ipv6(match: re.Match[str], text: str) -> tuple[int, int] | None:
    candidate = match.group()
    address = candidate.split("%", 1)[0].split("/", 1)[0]
    if sum(ch in "0123456789abcdefABCDEF" for ch in address) < 2:
        return None  # "::" and friends in code ("std::")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return None
    return match.span()


# --- phones ---------------------------------------------------------------------------------------------

# The shared lookarounds keep phones out of longer codes ("INV-555-201-3344", "1.555.201.3344.7") and out
# of longer space-grouped runs ("FR50 6067 6467 6845 0997 9164 559" is one account). They look behind
# the first character, which each pattern matches first (see the speed note above).
_NOT_AFTER = r"(?![\w]|[\-./]\d)"
_PHONE_E164 = re.compile(rf"\+(?<![\w+]\+)[1-9](?:[ .\-]?\(?\d{{1,4}}\)?){{2,7}}{_NOT_AFTER}")
_PHONE_NANP = re.compile(
    r"[(\d](?<![\w+.\-/#][(\d])(?<!\d{4} [(\d])(?<=[(1-9])"
    r"(?:(?<=1)[ .\-]\(?[2-9]\d\d\)?[ .\-]?|(?<=\()[2-9]\d\d\) ?|(?<=[2-9])\d\d[ .\-])"
    rf"[2-9]\d\d[ .\-]\d{{4}}{_NOT_AFTER}"
)
# After the area code, groups are space-separated: "0041-2231-77" is a part number, "030-1234567" a phone.
_PHONE_TRUNK = re.compile(
    r"[(0](?<![\w+.\-/#][(0])(?<!\d{4} [(0])(?:(?<=0)\d{1,4}|(?<=\()0\d{1,4}\))"
    rf"[ /\-]\d{{2,8}}(?: \d{{2,8}}){{0,3}}{_NOT_AFTER}"
)
_PHONE_KEYWORD = re.compile(
    r"(?i:(?:tel|telephone|phone|mobile|mob|cell|fax|call|sms|text|whatsapp|ph)\.?"
    r"(?:\s*(?:no\.?|number|#))?\s*(?:me\s+(?:at|on)\s*)?[:\-]?\s*)"
    r"(\+?\d{8,15})(?!\w)"
)


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _phone_e164(match: re.Match[str], text: str) -> tuple[int, int] | None:
    candidate = match.group()
    if candidate.count("(") != candidate.count(")"):
        return None
    return match.span() if 8 <= _digit_count(candidate) <= 15 else None


def _phone_trunk(match: re.Match[str], text: str) -> tuple[int, int] | None:
    return match.span() if 10 <= _digit_count(match.group()) <= 11 else None


def _phone_keyword(match: re.Match[str], text: str) -> tuple[int, int] | None:
    return match.span(1)


# --- email ----------------------------------------------------------------------------------------------

# Matched from each '@': the local part by walking back, the host name by this pattern. Labels may be
# internationalised (``exämple.com``: letters and digits of any script) and so may the top-level domain,
# in Unicode (``.рф``) or punycode (``.xn--p1ai``).
_EMAIL_DOMAIN = re.compile(
    r"(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.)+([^\W\d_]{2,63}|[Xx][Nn]--[A-Za-z0-9\-]{1,59})"
    r"(?![\w\-]|\.[^\W_])"
)
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.%+-")
_MAX_LOCAL = 64
# "icon@2x.png", "logo@3x.webp": asset names, not mailboxes.
_FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "heic", "avif"})


def _emails(text: str) -> Iterator[tuple[int, int]]:
    at = text.find("@")
    while at >= 0:
        span = _email_at(text, at)
        if span is not None:
            yield span
        at = text.find("@", at + 1)


def _email_at(text: str, at: int) -> tuple[int, int] | None:
    start = at
    while start > 0 and at - start <= _MAX_LOCAL and (text[start - 1] in _LOCAL_CHARS or text[start - 1].isalnum()):
        start -= 1
    if at - start > _MAX_LOCAL:
        return None
    while start < at and text[start] == ".":
        start += 1
    local = text[start:at]
    if not local or local.endswith(".") or ".." in local:
        return None
    domain = _EMAIL_DOMAIN.match(text, at + 1)
    if domain is None or domain.group(1).lower() in _FILE_TLDS or domain.end() - start > 254:
        return None
    return start, domain.end()


# --- the detector set -----------------------------------------------------------------------------------

DETECTORS: tuple[Detector, ...] = (
    Detector(Entity.IBAN, _IBAN, _iban),
    Detector(Entity.CREDIT_CARD, _CARD, _card),
    Detector(Entity.NATIONAL_ID, _SSN, _ssn),
    Detector(Entity.NATIONAL_ID, _SSN_KEYWORD, _ssn_keyword, keywords=("ssn", "ss#", "social")),
    Detector(Entity.NATIONAL_ID, _NINO, _nino),
    Detector(Entity.IP_ADDRESS, _IPV4, _ipv4, needs="."),
    Detector(Entity.IP_ADDRESS, _IPV6, _ipv6, needs=":"),
    Detector(Entity.PHONE, _PHONE_E164, _phone_e164, needs="+"),
    Detector(Entity.PHONE, _PHONE_NANP, _whole),
    Detector(Entity.PHONE, _PHONE_TRUNK, _phone_trunk),
    Detector(
        Entity.PHONE,
        _PHONE_KEYWORD,
        _phone_keyword,
        keywords=("tel", "phone", "mob", "cell", "fax", "call", "sms", "text", "whatsapp", "ph"),
    ),
)

# When findings overlap, the earlier type here wins: the stricter the checksum, the surer the label.
_PRIORITY: dict[Entity, int] = {
    entity: rank
    for rank, entity in enumerate(
        (Entity.EMAIL, Entity.IBAN, Entity.CREDIT_CARD, Entity.NATIONAL_ID, Entity.IP_ADDRESS, Entity.PHONE)
    )
}
_DIGIT = re.compile(r"\d")


def _keyword_matches(detector: Detector, text: str, lowered: str) -> Iterator[re.Match[str]]:
    """The detector's pattern tried only where one of its keywords starts a word."""
    if len(lowered) != len(text):
        # Lower-casing changed the length (rare Unicode), so offsets would not line up: scan it all.
        yield from detector.pattern.finditer(text)
        return
    for word in detector.keywords:
        at = lowered.find(word)
        while at >= 0:
            if at == 0 or not lowered[at - 1].isalnum():
                match = detector.pattern.match(text, at)
                if match is not None:
                    yield match
            at = lowered.find(word, at + 1)


def find(text: str, entities: Iterable[Entity] | None = None) -> list[Finding]:
    """Every finding in ``text``, non-overlapping, in text order, as spans of ``text`` itself (matched on
    its folded view: see the module's docstring).

    All types are looked for even when the caller needs fewer, so that a card number is never reported
    as a phone; ``entities`` then filters what is returned.
    """
    # Every pattern needs a digit or an '@', and the fold makes digits only of digits: text with neither
    # (most prose, in any script) costs no fold.
    if _DIGIT.search(text) is None and not any(at in text for at in _AT_SIGNS):
        return []
    folded, removed = _folded(text)
    kept = _find(folded)
    if removed:
        # A span of the folded text covers the original from its first character to its last, with
        # whatever the fold removed in between.
        kept = [
            Finding(f.entity, f.start + bisect.bisect_right(removed, f.start),
                    _past_marks(text, f.end + bisect.bisect_right(removed, f.end - 1)))
            for f in kept
        ]
    if entities is None:
        return kept
    wanted = frozenset(entities)
    return [f for f in kept if f.entity in wanted]


def _find(text: str) -> list[Finding]:
    has_at = "@" in text
    has_digit = _DIGIT.search(text) is not None
    if not has_digit and not has_at:
        return []
    candidates: list[Finding] = []
    if has_at:
        candidates.extend(Finding(Entity.EMAIL, start, end) for start, end in _emails(text))
    if has_digit:
        lowered = text.lower()
        for detector in DETECTORS:
            if detector.needs != "digit" and detector.needs not in text:
                continue
            if detector.keywords:
                if not any(word in lowered for word in detector.keywords):
                    continue
                matches: Iterable[re.Match[str]] = _keyword_matches(detector, text, lowered)
            else:
                matches = detector.pattern.finditer(text)
            for match in matches:
                span = detector.validate(match, text)
                if span is not None and span[1] > span[0]:
                    candidates.append(Finding(detector.entity, span[0], span[1]))
    if not candidates:
        return []
    candidates.sort(key=lambda f: (_PRIORITY[f.entity], f.start, -(f.end - f.start)))
    # Kept spans stay sorted and disjoint, so one bisect finds the only neighbours that could overlap.
    starts: list[int] = []
    kept: list[Finding] = []
    for finding in candidates:
        i = bisect.bisect_left(starts, finding.start)
        if i > 0 and kept[i - 1].end > finding.start:
            continue
        if i < len(kept) and kept[i].start < finding.end:
            continue
        starts.insert(i, finding.start)
        kept.insert(i, finding)
    return kept
