"""Mutual TLS on the control plane's gRPC ports (xDS and the rate-limit service): only the gateway may talk.

Whoever can open an xDS stream reads every tenant's routes and the signing key's JWKS, and whoever can
call the rate-limit service can spend any tenant's quota; so both ports require a client certificate the
platform CA signed that names the gateway (``GATEWAY_IDENTITY``), as the runtimes do
(inference_images/runtime/tls.py). The CA check happens in the handshake; the name check, which gRPC's
handshake does not do, in an interceptor before any handler runs.

The server's own certificate rotates without a restart: grpc's dynamic credentials ask ``_Fetcher`` at
every new handshake, which hands back the directory's pair when its bytes changed and the new cert and
key match (a pair caught mid-rotation is refused, the previous one keeps serving). Connections already up
keep the pair they started with, as Envoy's long-lived xDS stream does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from inference_images.runtime.tls import (
    CONTROL_PLANE_IDENTITY,
    GATEWAY_IDENTITY,
    TlsConfigError,
    TlsFiles,
    _digest,
    server_context,
)

if TYPE_CHECKING:
    from xds_server.config.model import PlatformConfig

log = logging.getLogger("fairshare.controlplane.tls")

# CONTROL_PLANE_IDENTITY: the name the control plane's server certificate carries (cert-manager's
# Certificate, the local CA) and Envoy checks; also its client identity towards the runtimes' admin ports,
# which is why it is defined beside the runtime's names (the runtime image does not import xds_server).
__all__ = ["CONTROL_PLANE_IDENTITY", "GatewayOnly", "check", "serve_tls", "server_credentials"]


def _configuration(files: TlsFiles) -> Any:
    server_context(files)  # cert and key must match, the CA must parse: a clear error, not a dead port
    return grpc.ssl_server_certificate_configuration(
        [(files.key.read_bytes(), files.cert.read_bytes())], root_certificates=files.client_ca.read_bytes())


class _Fetcher:
    """grpc's certificate_configuration_fetcher: a new configuration when the files changed, else None."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.digest = _digest(files)
        self.reloads = 0

    def __call__(self) -> Any:
        try:
            digest = _digest(self.files)
            if digest == self.digest:
                return None
            config = _configuration(self.files)
        except (OSError, TlsConfigError) as exc:
            log.warning("new control-plane TLS files refused; the previous certificate keeps serving",
                        extra={"reason": str(exc)})
            return None
        self.digest = digest
        self.reloads += 1
        log.info("control-plane TLS certificate reloaded", extra={"cert": str(self.files.cert)})
        return config


def server_credentials(tls_dir: Path) -> grpc.ServerCredentials:
    """Credentials requiring a client certificate from `tls_dir`'s CA (cert-manager layout: tls.crt,
    tls.key, ca.crt), reloaded when the files change. Raises TlsConfigError naming what is wrong."""
    files = TlsFiles.from_dir(tls_dir)
    initial = _configuration(files)
    return grpc.dynamic_ssl_server_credentials(initial, _Fetcher(files), require_client_authentication=True)


def _identities(context: grpc.aio.ServicerContext) -> set[str]:
    auth = context.auth_context()
    return {v.decode(errors="replace") for key in ("x509_subject_alternative_name", "x509_common_name")
            for v in auth.get(key, ())}


class GatewayOnly(grpc.aio.ServerInterceptor):
    """Refuses (PERMISSION_DENIED) a call whose verified client certificate does not name `identity`:
    another holder of the platform CA (a runtime's server certificate) is not the gateway."""

    def __init__(self, identity: str = GATEWAY_IDENTITY) -> None:
        self.identity = identity

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        identity = self.identity

        async def refuse(context: grpc.aio.ServicerContext) -> bool:
            names = _identities(context)
            if identity in names:
                return False
            log.warning("gRPC call refused: the client certificate is not the gateway's",
                        extra={"method": handler_call_details.method, "peer": context.peer(), "names": sorted(names)})
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"client certificate does not name {identity}")
            return True

        def unary(behaviour: Any) -> Any:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await refuse(context)
                return await behaviour(request, context)
            return call

        def streaming(behaviour: Any) -> Any:
            # grpc.aio tells a handler that yields its responses from one that writes them by its kind.
            if inspect.isasyncgenfunction(behaviour):
                async def generate(request: Any, context: grpc.aio.ServicerContext) -> Any:
                    await refuse(context)
                    async for item in behaviour(request, context):
                        yield item
                return generate

            async def write(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await refuse(context)
                return await behaviour(request, context)
            return write

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                streaming(handler.stream_stream), handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                streaming(handler.unary_stream), handler.request_deserializer, handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(
            unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer)


def serve_tls(server: grpc.aio.Server, address: str, tls_dir: Path | None) -> int:
    """Bind `address` with mutual TLS from `tls_dir`, or plaintext when None; the bound port (0: failed)."""
    if tls_dir is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, server_credentials(tls_dir))


def check(config: PlatformConfig | None, tls_dir: Path | None) -> None:
    """Refuse to serve when the config and the control plane's own flags disagree: Envoy's xDS cluster
    and rate-limit cluster follow the config (platform.gateway.upstream_tls), the ports follow --tls-dir,
    and a mismatch would leave every gateway without config and every rate-limit check failing."""
    if config is None:
        return  # no valid config yet: nothing to compare; the ports follow --tls-dir
    wanted = config.platform.gateway.upstream_tls.to_control_plane
    if wanted and tls_dir is None:
        raise TlsConfigError(
            "platform.gateway.upstream_tls has enabled and control_plane on (Envoy dials xDS and the rate-limit "
            "service over mutual TLS), but the control plane has no --tls-dir with its certificate")
    if not wanted and tls_dir is not None:
        raise TlsConfigError(
            f"--tls-dir {tls_dir} serves xDS and the rate-limit service over mutual TLS, but "
            "platform.gateway.upstream_tls (enabled and control_plane) tells Envoy to dial them in plaintext")
