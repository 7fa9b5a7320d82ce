"""The one client for the runtimes' admin ports (the OIP model-repository extension): the control plane's
unloads, `fairshare models` and offboarding all dial through `AdminClient`.

With mutual TLS on (platform.gateway.upstream_tls.enabled: the runtimes then serve their admin port with
--tls-dir, inference_images/runtime/admin.py), a call presents the control plane's certificate (its
--tls-dir, the same files the gRPC servers serve; `controlplane.fairshare.internal`, client auth) and
verifies the replica's: signed by the platform CA and naming `RUNTIME_IDENTITY`. Replicas are dialled by
pod IP, which no certificate names, so the name checked is the runtimes' identity, sent as SNI, as Envoy
checks it. The files are read at each call: cert-manager's renewals apply without a restart.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_images.runtime.tls import DIR_CA, DIR_CERT, DIR_KEY, RUNTIME_IDENTITY
from xds_server.config.model import PlatformConfig

TIMEOUT_S = 2.0


class AdminHttpError(Exception):
    """The replica answered with an HTTP error; `status` and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.message = message


class AdminUnreachable(OSError):
    """No call can be made as configured (TLS wanted, no certificate; files unusable), or the connection
    failed; the message says which. An OSError, as a refused connection is, so callers handle one kind."""


class _RuntimeConnection(http.client.HTTPSConnection):
    """HTTPS to a pod IP that verifies the certificate against `server_name`, not the IP."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_context = context
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self._tls_context.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise


@dataclass(frozen=True)
class AdminClient:
    """Plaintext when `tls_dir` is None and nothing refuses; mutual TLS with `tls_dir`'s pair otherwise."""

    tls_dir: Path | None = None
    # Set when the runtimes need a certificate this client does not have: every call fails with it.
    refused: str | None = None
    server_name: str = RUNTIME_IDENTITY

    @classmethod
    def for_config(cls, cfg: PlatformConfig | None, tls_dir: Path | None) -> AdminClient:
        """The client the runtimes of `cfg` answer: with TLS (upstream_tls.enabled) only `tls_dir`'s
        certificate; without, plaintext (a certificate would meet a plaintext port)."""
        if cfg is None or not cfg.platform.gateway.upstream_tls.enabled:
            return cls()
        if tls_dir is None:
            return cls(refused="the runtimes' admin ports serve mutual TLS (platform.gateway.upstream_tls.enabled) "
                       "and no --tls-dir holds the control plane's certificate (controlplane.fairshare.internal)")
        return cls(tls_dir)

    @classmethod
    def for_operator(cls, cfg: PlatformConfig | None, tls_dir: Path | None, state_dir: Path) -> AdminClient:
        """An operator's command (`fairshare models`, offboarding): `tls_dir` when given (in a cluster, the
        control plane's mounted Secret), else the local CA's control-plane pair `fairshare run` keeps in
        `state_dir`, when there is one."""
        if tls_dir is None:
            from xds_server.local.certs import LocalPki  # the local platform's layout, not a cluster's

            local = LocalPki(state_dir / "tls").controlplane_dir
            tls_dir = local if (local / DIR_CERT).is_file() else None
        return cls.for_config(cfg, tls_dir)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_dir is not None else "http"

    def context(self) -> ssl.SSLContext:
        """The client context from the files as they are now. Raises AdminUnreachable naming what is wrong."""
        assert self.tls_dir is not None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_verify_locations(cafile=self.tls_dir / DIR_CA)
            ctx.load_cert_chain(self.tls_dir / DIR_CERT, self.tls_dir / DIR_KEY)
        except FileNotFoundError as exc:
            raise AdminUnreachable(f"control-plane TLS file not found: {exc.filename}") from None
        except ssl.SSLError as exc:
            raise AdminUnreachable(f"control-plane TLS files in {self.tls_dir} are not a matching certificate, "
                                   f"key and CA ({exc.reason or exc})") from None
        return ctx

    def post(self, host: str, port: int, path: str, body: dict[str, Any] | None = None,
             timeout: float = TIMEOUT_S) -> Any:
        """POST JSON to a replica's admin port; its JSON answer (None when empty). Raises AdminHttpError
        (an HTTP error status), OSError (unreachable, refused handshake, AdminUnreachable) or ValueError
        (an answer that is not JSON)."""
        if self.refused is not None:
            raise AdminUnreachable(self.refused)
        conn: http.client.HTTPConnection
        if self.tls_dir is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            conn = _RuntimeConnection(host, port, context=self.context(), server_name=self.server_name,
                                      timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(body or {}).encode(),
                         headers={"content-type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
        except ssl.SSLError as exc:
            raise AdminUnreachable(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from None
        except (http.client.HTTPException, ConnectionResetError) as exc:
            # A plaintext port answering TLS, or a TLS port closing on plaintext: say which side to check.
            raise AdminUnreachable(f"{self.scheme}://{host}:{port} broke off the request ({type(exc).__name__}); "
                                   "does the runtime's admin port serve TLS (--tls-dir) as the control "
                                   "plane expects (platform.gateway.upstream_tls.enabled)?") from None
        finally:
            conn.close()
        if response.status >= 400:
            try:
                message = str(json.loads(raw).get("error", ""))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:200]
            raise AdminHttpError(response.status, message)
        return json.loads(raw) if raw else None
