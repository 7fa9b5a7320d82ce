"""`fairshare receipt verify` refuses what is no receipt, or no key for one, with `error: ...` naming it: a
JWKS key with the receipt's kid that is RSA or off the curve, a header with a "crit" extension, a file
that is not text, a FIFO. Each had been a traceback (or, the FIFO, a wait with no end)."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from xds_server.auth.keys import SigningKey
from xds_server.cli import main
from xds_server.offboard import receipt


@pytest.fixture
def signed(tmp_path: Path) -> tuple[SigningKey, Path, Path]:
    """The platform key, a receipt it signed, and its JWKS saved."""
    key = SigningKey.load_or_create(tmp_path / "state")
    path = tmp_path / "receipt.jws"
    path.write_text(receipt.sign({"tenant": "leaver", "steps": []}, key))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(key.jwks())
    return key, path, jwks


def verify(capsys: pytest.CaptureFixture[str], path: Path, jwks: Path) -> tuple[int, str]:
    rc = main(["receipt", "verify", str(path), "--jwks", str(jwks)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_the_saved_receipt_verifies(signed: tuple[SigningKey, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, path, jwks = signed
    assert main(["receipt", "verify", str(path), "--jwks", str(jwks)]) == 0
    assert "receipt OK: tenant leaver" in capsys.readouterr().out


def test_a_key_with_the_receipts_kid_that_is_rsa_or_off_the_curve_is_named(
        signed: tuple[SigningKey, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, path, _ = signed
    as_rsa = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)
                                            .public_key()))
    off_curve = dict(json.loads(key.jwks())["keys"][0])
    off_curve["x"] = base64.urlsafe_b64encode(b"\x01" * 32).rstrip(b"=").decode()
    for name, jwk, why in (("rsa", as_rsa, "Not an Elliptic curve key"),
                           ("off-curve", off_curve, "not on the curve")):
        jwks = tmp_path / f"{name}.json"
        jwks.write_text(json.dumps({"keys": [{**jwk, "kid": key.kid}]}))
        rc, err = verify(capsys, path, jwks)
        assert rc == 1
        assert f"error: {path}: the JWKS's key {key.kid!r} is not an EC public key a receipt verifies with" in err
        assert why in err


def test_a_critical_header_extension_is_refused_by_name(
        signed: tuple[SigningKey, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, _, jwks = signed
    path = tmp_path / "crit.jws"
    path.write_text(jwt.api_jws.encode(b'{"tenant": "leaver"}', key.private, algorithm="ES256",
                                       headers={"kid": key.kid, "crit": ["x"], "x": 1}))
    rc, err = verify(capsys, path, jwks)
    assert rc == 1 and f"error: {path}: the receipt's header is refused: Unsupported critical extension: x" in err


def test_a_file_that_is_not_text_is_no_receipt(signed: tuple[SigningKey, Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, _, jwks = signed
    path = tmp_path / "binary.jws"
    path.write_bytes(b"\xff\xfe\x00 not a receipt")
    rc, err = verify(capsys, path, jwks)
    assert rc == 1 and f"error: {path}: not a JWS: the file is not text (byte 0 is 0xff, not UTF-8)" in err


def test_a_fifo_is_refused_not_waited_on(signed: tuple[SigningKey, Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, path, jwks = signed
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    found: list[tuple[int, str]] = []
    for args in ((fifo, jwks), (path, fifo)):
        waiting = threading.Thread(target=lambda a=args: found.append(verify(capsys, *a)), daemon=True)
        waiting.start()
        waiting.join(60)  # a guard against hanging the suite: it answers at once or never
        assert not waiting.is_alive(), "receipt verify waited on the FIFO"
    (rc_file, err_file), (rc_jwks, err_jwks) = found
    assert rc_file == 2 and f"error: {fifo}: not a regular file (a FIFO)" in err_file
    assert rc_jwks == 1 and f"cannot read the JWKS at {fifo}: not a regular file (a FIFO)" in err_jwks
