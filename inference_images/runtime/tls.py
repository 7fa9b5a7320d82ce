"""Mutual TLS on the data-plane port: only the gateway may talk to a runtime (and on the admin port: only
the control plane, ``CONTROL_PLANE_IDENTITY``, over the same context with another accepted name).

The runtime acts on ``x-fairshare-*`` headers (tenant, weight, PII rules), so whoever can reach its port
can claim to be any tenant. With TLS configured, a connection must present a certificate that the
platform CA signed *and* that names the gateway (``GATEWAY_IDENTITY`` in its DNS names or common name):
another runtime's server certificate, signed by the same CA, is refused too.

Certificates rotate without a restart: ``CertificateReloader`` watches the files (their bytes, so a
Kubernetes secret volume's symlink swap counts) and loads the new pair into the listening context, which
OpenSSL applies to every handshake after it; connections already up keep the pair they started with.
A half-written pair (cert and key that do not match) is refused and the previous pair keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The names the platform's certificates carry (cert-manager's Certificates and `fairshare run`'s local CA):
# Envoy's client certificate, and every runtime's server certificate, which Envoy checks in turn.
GATEWAY_IDENTITY = "gateway.fairshare.internal"
RUNTIME_IDENTITY = "runtime.fairshare.internal"
# The control plane's certificate: the only client the admin port (the model-repository extension) serves.
CONTROL_PLANE_IDENTITY = "controlplane.fairshare.internal"

# cert-manager's secret layout, which --tls-dir reads.
DIR_CERT, DIR_KEY, DIR_CA = "tls.crt", "tls.key", "ca.crt"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path
    # The identity a client certificate must carry (DNS name or common name).
    client_identity: str = GATEWAY_IDENTITY
    # The one the admin port's clients must carry: the same CA and handshake, another name, so the
    # gateway (which may call models) cannot load or unload them, and the control plane cannot infer.
    admin_identity: str = CONTROL_PLANE_IDENTITY

    @classmethod
    def from_dir(cls, directory: Path, client_identity: str = GATEWAY_IDENTITY,
                 admin_identity: str = CONTROL_PLANE_IDENTITY) -> TlsFiles:
        return cls(directory / DIR_CERT, directory / DIR_KEY, directory / DIR_CA, client_identity, admin_identity)

    def paths(self) -> tuple[Path, Path, Path]:
        return self.cert, self.key, self.client_ca


class TlsConfigError(ValueError):
    """The certificate files are missing or do not form a usable server identity."""


def _digest(files: TlsFiles) -> str:
    h = hashlib.blake2b(digest_size=16)
    for path in files.paths():
        h.update(path.read_bytes())
    return h.hexdigest()


def _load(ctx: ssl.SSLContext, files: TlsFiles) -> None:
    try:
        ctx.load_cert_chain(files.cert, files.key)
        ctx.load_verify_locations(cafile=files.client_ca)
    except FileNotFoundError as exc:
        raise TlsConfigError(f"TLS file not found: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"TLS files {files.cert} / {files.key} / {files.client_ca} are not a matching certificate, key "
            f"and CA ({exc.reason or exc})") from None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context that requires a client certificate signed by the client CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load(ctx, files)
    return ctx


def peer_identities(peercert: Any) -> set[str]:
    """DNS names and common names of a verified peer certificate (ssl's getpeercert() dict)."""
    names: set[str] = set()
    if not isinstance(peercert, dict):
        return names
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS":
            names.add(str(value))
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(str(value))
    return names


def is_peer(peercert: Any, identity: str) -> bool:
    """Whether a verified peer certificate names `identity`: the CA check alone admits every holder."""
    return identity in peer_identities(peercert)


is_gateway = is_peer


class CertificateReloader:
    """Keeps a live server context on the files' current contents."""

    def __init__(self, files: TlsFiles, interval_s: float = 1.0) -> None:
        self.files = files
        self.interval_s = interval_s
        self.context = server_context(files)
        self._digest = _digest(files)
        self.reloads = 0

    def check(self) -> bool:
        """Load the files again if their bytes changed; True when a new pair now serves."""
        try:
            digest = _digest(self.files)
        except OSError as exc:
            log.warning("TLS files unreadable; the previous certificate keeps serving", extra={"reason": str(exc)})
            return False
        if digest == self._digest:
            return False
        try:
            # Validate in a throwaway context first: a cert and key caught mid-rotation (one written, not
            # the other) must not leave the live context with a pair that does not match.
            server_context(self.files)
            _load(self.context, self.files)
        except TlsConfigError as exc:
            log.warning("new TLS files refused; the previous certificate keeps serving", extra={"reason": str(exc)})
            return False
        self._digest = digest
        self.reloads += 1
        log.info("TLS certificate reloaded", extra={"cert": str(self.files.cert)})
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                self.check()
