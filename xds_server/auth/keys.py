"""The platform's token signing key (ES256). Envoy receives only the public half, as a JWKS inside
the listener the control plane serves, so rotating the key is just another snapshot."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

KEY_FILE = "signing-key.pem"


class SigningKeyError(Exception):
    """A signing key that exists but cannot be used."""


@dataclass(frozen=True)
class SigningKey:
    private: ec.EllipticCurvePrivateKey
    kid: str

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        """A key another process made (a cluster's Secret, which every replica shares): never created here,
        since a replica that made its own would sign tokens the others' JWKS refuses."""
        path = Path(path)
        try:
            pem = path.read_bytes()
        except OSError as err:
            raise SigningKeyError(f"{path}: cannot read the signing key ({err.strerror or err})") from err
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as err:
            raise SigningKeyError(f"{path}: not a readable PEM private key ({err})") from err
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise SigningKeyError(f"{path}: expected an EC P-256 key for ES256")
        return cls(private=private, kid=_kid(private.public_key()))

    @classmethod
    def load_or_create(cls, state_dir: str | Path) -> SigningKey:
        path = Path(state_dir) / KEY_FILE
        if path.exists():
            return cls.load(path)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            # Written owner-only from the first byte: the key must never be readable by others.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        return cls(private=private, kid=_kid(private.public_key()))

    def jwks(self) -> str:
        jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        jwk.update({"kid": self.kid, "alg": "ES256", "use": "sig"})
        return json.dumps({"keys": [jwk]}, sort_keys=True)


def _kid(public: ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]
