"""`fairshare run`'s local CA: the same certificates cert-manager issues in a cluster, kept in the state dir.

One CA; the gateway's client certificate (client auth only, named `GATEWAY_IDENTITY`), the runtimes'
server certificate (server auth only, named `RUNTIME_IDENTITY`, valid for 127.0.0.1) and the control
plane's (`CONTROL_PLANE_IDENTITY`: server auth for xDS and the rate-limit service, client auth towards the
runtimes' admin ports). Each lives in a
directory laid out as a cert-manager secret (tls.crt, tls.key, ca.crt), which is what the runtime's
--tls-dir and the gateway's SDS files read. The CA is kept across runs; leaf certificates are reissued
when missing, expiring or signed by another CA. ECDSA P-256: the cheapest handshake OpenSSL offers.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from inference_images.runtime.tls import (
    CONTROL_PLANE_IDENTITY,
    DIR_CA,
    DIR_CERT,
    DIR_KEY,
    GATEWAY_IDENTITY,
    RUNTIME_IDENTITY,
)
from xds_server.envoy.sds import CERTS_DIR, sds_documents

_CA_DAYS = 3650
_LEAF_DAYS = 30
_SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
_CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)
# Reissued when less than this is left, so a long-lived state dir never serves an expired certificate.
_RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class LocalPki:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / DIR_CERT

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / DIR_KEY

    @property
    def runtime_dir(self) -> Path:
        """The runtimes' --tls-dir."""
        return self.root / "runtime"

    @property
    def controlplane_dir(self) -> Path:
        """The control plane's --tls-dir (xDS and the rate-limit service)."""
        return self.root / "controlplane"

    @property
    def sds_dir(self) -> Path:
        """The gateways' SDS directory (platform.gateway.upstream_tls.sds_dir, for this machine)."""
        return self.root / "gateway-sds"

    @property
    def gateway_dir(self) -> Path:
        return self.sds_dir / CERTS_DIR

    @classmethod
    def ensure(cls, state_dir: Path) -> LocalPki:
        """The state dir's CA and certificates, created or renewed as needed."""
        pki = cls(state_dir / "tls")
        ca_key, ca = pki._ensure_ca()
        for directory, name, usages in ((pki.gateway_dir, GATEWAY_IDENTITY, _CLIENT),
                                        (pki.runtime_dir, RUNTIME_IDENTITY, _SERVER),
                                        (pki.controlplane_dir, CONTROL_PLANE_IDENTITY, _SERVER + _CLIENT)):
            if not _leaf_valid(directory, ca):
                write_leaf(directory, ca_key, ca, name, *usages)
        for file, text in sds_documents(str(pki.sds_dir)).items():
            _write(pki.sds_dir / file, text.encode())
        return pki

    def rotate_runtime(self) -> None:
        """A new key and certificate for the runtimes (what cert-manager does before expiry)."""
        ca_key, ca = self._ensure_ca()
        write_leaf(self.runtime_dir, ca_key, ca, RUNTIME_IDENTITY, ExtendedKeyUsageOID.SERVER_AUTH)

    def rotate_controlplane(self) -> None:
        """A new key and certificate for the control plane (what cert-manager does before expiry)."""
        ca_key, ca = self._ensure_ca()
        write_leaf(self.controlplane_dir, ca_key, ca, CONTROL_PLANE_IDENTITY, *_SERVER, *_CLIENT)

    def issue(self, directory: Path, name: str, *, client: bool) -> None:
        """Another certificate from this CA (tests: a client that is not the gateway)."""
        ca_key, ca = self._ensure_ca()
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        write_leaf(directory, ca_key, ca, name, usage)

    def _ensure_ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if self.ca_cert.exists() and self.ca_key.exists():
            key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key, x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fairshare local CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write(self.ca_key, _key_pem(key), private=True)
        _write(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
        return key, cert


def write_leaf(directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, name: str,
               *usages: x509.ObjectIdentifier) -> None:
    """tls.crt, tls.key and ca.crt in `directory`, each replaced atomically (a reader sees the old file or
    the new one, never half of one; the pair can briefly disagree, which readers must refuse)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / DIR_CA, ca.public_bytes(serialization.Encoding.PEM))
    _write(directory / DIR_KEY, _key_pem(key), private=True)
    _write(directory / DIR_CERT, cert.public_bytes(serialization.Encoding.PEM))


def _leaf_valid(directory: Path, ca: x509.Certificate) -> bool:
    try:
        cert = x509.load_pem_x509_certificate((directory / DIR_CERT).read_bytes())
        same_ca = (directory / DIR_CA).read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
        has_key = (directory / DIR_KEY).is_file()
    except (OSError, ValueError):
        return False
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return same_ca and has_key and cert.issuer == ca.subject and left > _RENEW_BEFORE


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
