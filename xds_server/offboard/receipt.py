"""The deletion receipt: a JWS (compact, ES256) over the receipt's JSON, signed with the platform key,
the same key whose public half Envoy verifies tenant tokens with (the control plane's JWKS at
/.well-known/jwks.json). A customer checks it with that JWKS alone: `fairshare receipt verify`.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm

from xds_server.auth.keys import SigningKey
from xds_server.config.files import UnreadableFile, read_regular

TYPE = "fairshare-deletion-receipt+jws"


class ReceiptError(Exception):
    """A receipt that does not verify, or a JWKS that cannot be read: says which and why."""


def sign(receipt: dict[str, Any], key: SigningKey) -> str:
    payload = json.dumps(receipt, sort_keys=True, separators=(",", ":")).encode()
    return jwt.api_jws.encode(payload, key.private, algorithm="ES256", headers={"kid": key.kid, "typ": TYPE})


def digest(signed: str) -> str:
    """The sha256 the audit trail records of a receipt (its JWS as issued: the receipt file's bytes, which
    `sha256sum` prints; a newline an editor adds is ignored): which receipt was issued, holding nothing of
    the tenant."""
    return hashlib.sha256(signed.strip().encode()).hexdigest()


def text_of(data: bytes) -> str:
    """A receipt file's text: a JWS is ASCII, so bytes that are not UTF-8 are no receipt."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ReceiptError(f"not a JWS: the file is not text (byte {err.start} is {data[err.start]:#04x}, "
                           "not UTF-8)") from None


def load_jwks(source: str) -> dict[str, Any]:
    """A JWKS from a URL (the control plane's) or a file."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=10) as resp:
                text = resp.read().decode()
        else:
            text = read_regular(Path(source)).decode()  # a FIFO is refused, not waited on
        jwks = json.loads(text)
    except UnreadableFile as err:
        raise ReceiptError(f"cannot read the JWKS at {source}: {err}") from err
    except (urllib.error.URLError, OSError) as err:
        raise ReceiptError(f"cannot read the JWKS at {source}: {getattr(err, 'reason', err)}") from err
    except ValueError as err:
        raise ReceiptError(f"{source} is not JSON: {err}") from err
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ReceiptError(f"{source} is not a JWKS (no \"keys\" list)")
    return jwks


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The receipt, if its signature holds under a key of `jwks`; else ReceiptError saying why."""
    token = token.strip()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as err:
        raise ReceiptError(f"not a JWS: {err}") from err
    except jwt.InvalidTokenError as err:  # a header it refuses ("crit" naming an extension it lacks)
        raise ReceiptError(f"the receipt's header is refused: {err}") from err
    if header.get("alg") != "ES256":
        raise ReceiptError(f"receipt is signed with {header.get('alg')!r}; only ES256 is accepted")
    kid = header.get("kid")
    candidates = [k for k in jwks["keys"] if isinstance(k, dict) and k.get("kid") == kid]
    if not candidates:
        known = ", ".join(str(k.get("kid")) for k in jwks["keys"] if isinstance(k, dict))
        raise ReceiptError(f"receipt is signed by key {kid!r}, which the JWKS does not hold (it holds: {known})")
    try:
        public = ECAlgorithm.from_jwk(json.dumps(candidates[0]))
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as err:
        # An RSA key with the receipt's kid, or an EC key whose coordinates are no point of the curve.
        raise ReceiptError(f"the JWKS's key {kid!r} is not an EC public key a receipt verifies with: "
                           f"{err or type(err).__name__}") from err
    try:
        payload = jwt.api_jws.decode(token, public, algorithms=["ES256"])  # type: ignore[arg-type]
    except jwt.InvalidSignatureError as err:
        raise ReceiptError("the signature does not match the receipt: it was altered, or signed by "
                           "another key") from err
    except jwt.PyJWTError as err:
        raise ReceiptError(f"receipt does not verify: {err}") from err
    try:
        receipt = json.loads(payload)
    except ValueError as err:
        raise ReceiptError(f"the signed payload is not JSON: {err}") from err
    if not isinstance(receipt, dict):
        raise ReceiptError("the signed payload is not a receipt object")
    return receipt
