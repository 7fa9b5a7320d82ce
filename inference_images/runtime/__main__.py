"""Command line: ``python -m inference_images.runtime --region R --pool P --model name:version:loader[:device]``.

Parses arguments into ``Settings``, sets up JSON logs, builds the model set (an unknown loader is a
configuration error and exits 2 at once), then serves until SIGTERM or SIGINT and drains.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from inference_images.runtime import logs
from inference_images.runtime.lifecycle import serve
from inference_images.runtime.models.artifacts import CACHE_ENV, DEFAULT_DISK_BUDGET_MB, ArtifactRef, ArtifactStore
from inference_images.runtime.models.base import RequestLimits
from inference_images.runtime.models.device import parse_device
from inference_images.runtime.models.registry import ModelRepository, ModelSpec, default_loaders
from inference_images.runtime.pii.keys import DEFAULT_SECRET_PREFIX, DEFAULT_TTL_S, KeySourceError
from inference_images.runtime.scheduling import (
    DEFAULT_IDLE_CREDIT_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_POLICY,
    POLICIES,
    BatchLimit,
)
from inference_images.runtime.settings import ADMIN_PORT_ENV, HEALTH_PORT_ENV, PORT_ENV, Settings
from inference_images.runtime.tls import (
    CONTROL_PLANE_IDENTITY,
    DIR_CA,
    DIR_CERT,
    DIR_KEY,
    GATEWAY_IDENTITY,
    TlsConfigError,
    TlsFiles,
)

log = logging.getLogger("inference_images.runtime")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference_images.runtime",
        description="Fairshare serving runtime: Open Inference Protocol (KServe v2 REST) server.",
    )
    parser.add_argument("--region", required=True, help="region this replica serves (residency check)")
    parser.add_argument("--pool", required=True, help="node pool or serving group, reported in metadata")
    parser.add_argument(
        "--replica",
        default=os.environ.get("HOSTNAME") or socket.gethostname(),
        help="replica id, sent back as x-fairshare-replica (default: hostname)",
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        type=_model_spec,
        default=[],
        metavar="NAME:VERSION:LOADER",
        help="a catalog model to serve; repeat for more; none for a pool that hosts only tenants' own models. "
        "Loaders: " + ", ".join(default_loaders().names()),
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        # The runtime trusts gateway headers, so it must not be reachable by accident: loopback unless
        # told otherwise (the images listen on all addresses, behind a NetworkPolicy).
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(PORT_ENV, "8080")),
        help=f"port to listen on; 0 picks a free one (default: ${PORT_ENV} or 8080)",
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="accept requests without x-fairshare-tenant (direct benchmarks only; never behind a gateway)",
    )
    parser.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after SIGTERM, keep serving this long while readiness fails (default: 0)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="then wait this long for in-flight requests (default: 10)",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=8 * 1024 * 1024, help="larger request bodies get 413 (default: 8 MiB)"
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per request: method, path, status, duration (default: on)",
    )
    parser.add_argument(
        "--scheduler",
        default=DEFAULT_POLICY,
        choices=sorted(POLICIES),
        help="how tenants share the model worker: wfq (weighted fair queuing) or fifo (default: %(default)s)",
    )
    parser.add_argument(
        "--idle-credit-ms",
        type=float,
        default=DEFAULT_IDLE_CREDIT_S * 1000,
        metavar="MS",
        help="wfq: weight-normalised service a tenant returning from idle may run ahead of the backlogged ones "
        "(bounds its burst's head start; 0 is the Virtual Token Counter's exact lift; default: %(default)g)",
    )
    parser.add_argument(
        "--max-queue-default",
        type=_positive_int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help="a tenant's queued-request bound when the gateway sends no x-fairshare-max-queue (default: %(default)s)",
    )
    parser.add_argument(
        "--batch",
        dest="batches",
        action="append",
        type=_batch_spec,
        default=[],
        metavar="MODEL:SIZE[:WAIT_MS]",
        help="batch up to SIZE requests for MODEL, the first waiting at most WAIT_MS for company; repeat per model",
    )
    parser.add_argument(
        "--request-limit",
        dest="request_limits",
        action="append",
        type=_request_limit,
        default=[],
        metavar="MODEL:MAX_ROWS[:MAX_BYTES]",
        help="rows (first axis) and bytes of data one request to MODEL may carry, instead of what the model "
        "declares; larger requests get 413 before they are queued. Repeat per model",
    )
    parser.add_argument(
        "--artifact",
        dest="artifacts",
        action="append",
        type=_artifact_spec,
        default=[],
        metavar="NAME:VERSION=URI#sha256=HEX",
        help="load that model's weights from a local path or s3://bucket/key, verified against the sha256 "
        "(S3 endpoint from AWS_ENDPOINT_URL); repeat per model. Default: the loader's built-in weights",
    )
    parser.add_argument(
        "--artifact-cache",
        default=os.environ.get(CACHE_ENV) or None,
        metavar="DIR",
        help=f"where verified artifacts are kept, by checksum (default: ${CACHE_ENV} or a temp directory)",
    )
    parser.add_argument(
        "--artifact-cache-mb",
        type=_non_negative_float,
        default=float(DEFAULT_DISK_BUDGET_MB),
        metavar="MB",
        help="disk for those verified copies; past it the least recently used are removed (a later load "
        "downloads and verifies again); 0 keeps none (default: %(default)g)",
    )
    parser.add_argument(
        "--device",
        type=_device,
        default=None,
        help="device for models whose spec names none: auto (CUDA when present, else CPU), cpu, cuda, cuda:N",
    )
    parser.add_argument(
        "--cache-budget-mb",
        type=_non_negative_float,
        default=1024.0,
        metavar="MB",
        help="memory for tenants' own models on this replica, by measured footprint; past it the fair eviction "
        "rule makes room (default: %(default)g; the pool's model_cache_mb)",
    )
    parser.add_argument(
        "--loader-threads",
        type=_positive_int,
        default=2,
        metavar="N",
        help="threads that fetch, verify and build own models; never the serving loop or worker (default: 2)",
    )
    parser.add_argument(
        "--min-residency-s",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="an own model younger than this is never evicted, so the cache cannot thrash (default: %(default)g)",
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=int(os.environ[ADMIN_PORT_ENV]) if os.environ.get(ADMIN_PORT_ENV) else None,
        metavar="PORT",
        help="serve the OIP model-repository extension (index, load, unload) on this port, never on the "
        f"data-plane one; 0 picks a free one (default: ${ADMIN_PORT_ENV}, else not served)",
    )
    tls = parser.add_argument_group("mutual TLS (data plane: only the gateway's client certificate is served; "
                                    "admin port: only the control plane's)")
    tls.add_argument("--tls-dir", type=Path, default=None, metavar="DIR",
                     help=f"a directory holding {DIR_CERT}, {DIR_KEY} and {DIR_CA} (a cert-manager secret)")
    tls.add_argument("--tls-cert", type=Path, default=None, metavar="FILE", help="server certificate (PEM)")
    tls.add_argument("--tls-key", type=Path, default=None, metavar="FILE", help="its private key (PEM)")
    tls.add_argument("--tls-client-ca", type=Path, default=None, metavar="FILE",
                     help="CA that signs the gateway's client certificate (PEM)")
    tls.add_argument("--tls-client-name", default=GATEWAY_IDENTITY, metavar="NAME",
                     help="DNS name or common name a client certificate must carry (default: %(default)s)")
    tls.add_argument("--tls-admin-client-name", default=CONTROL_PLANE_IDENTITY, metavar="NAME",
                     help="the one a client of --admin-port must carry: the admin port serves the same TLS, "
                     "only to the control plane (default: %(default)s)")
    tls.add_argument("--tls-reload-s", type=_positive_float, default=1.0, metavar="SECONDS",
                     help="how often the files are checked for a rotated certificate (default: %(default)g)")
    parser.add_argument(
        "--health-port", type=int,
        default=int(os.environ[HEALTH_PORT_ENV]) if os.environ.get(HEALTH_PORT_ENV) else None, metavar="PORT",
        help="serve /v2/health/live and /v2/health/ready in plaintext on this port too (kubelet's probes "
        "when the data-plane port needs a client certificate); 0 picks a free one (default: ${HEALTH_PORT_ENV}, "
        "else not served)")
    parser.add_argument(
        "--pseudonymisation-keys", default=None, metavar="SOURCE", type=_key_source,
        help="where tenants' pseudonymisation keys are read (PII rules `pseudonymise`): "
        "secretsmanager:PREFIX (secret PREFIX/<tenant>/pseudonymisation-key, e.g. "
        f"secretsmanager:{DEFAULT_SECRET_PREFIX}) "
        "or file:DIR (DIR/<tenant>.key, what `fairshare run` writes); default: none, and requests that "
        "pseudonymise get 503")
    parser.add_argument(
        "--pseudonymisation-key-ttl-s", type=_positive_float, default=DEFAULT_TTL_S, metavar="SECONDS",
        help="how long a key is used before it is read again; a rotated key is used within this (default: %(default)g)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _key_source(text: str) -> str:
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("secretsmanager", "file") or not rest:
        raise argparse.ArgumentTypeError(f"{text!r} must be secretsmanager:PREFIX or file:DIR")
    return text


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _tls_files(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsFiles | None:
    files = (args.tls_cert, args.tls_key, args.tls_client_ca)
    if args.tls_client_name == args.tls_admin_client_name:
        # One name for both would let the gateway load and unload every tenant's models.
        parser.error(f"--tls-client-name and --tls-admin-client-name are both {args.tls_client_name!r}: the "
                     "data-plane and admin ports must accept different clients")
    if args.tls_dir is not None:
        if any(f is not None for f in files):
            parser.error("--tls-dir or --tls-cert/--tls-key/--tls-client-ca, not both")
        return TlsFiles.from_dir(args.tls_dir, args.tls_client_name, args.tls_admin_client_name)
    if all(f is None for f in files):
        return None
    if any(f is None for f in files):
        parser.error("mutual TLS needs all three of --tls-cert, --tls-key and --tls-client-ca")
    return TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca, args.tls_client_name, args.tls_admin_client_name)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative number")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _batch_spec(text: str) -> tuple[str, BatchLimit]:
    try:
        return BatchLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _request_limit(text: str) -> tuple[str, RequestLimits]:
    try:
        return RequestLimits.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _artifact_spec(text: str) -> tuple[str, ArtifactRef]:
    key, sep, ref = text.partition("=")
    if not sep or key.count(":") != 1:
        raise argparse.ArgumentTypeError(f"artifact {text!r} must be NAME:VERSION=URI#sha256=HEX")
    try:
        return key, ArtifactRef.parse(ref)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _device(text: str) -> str:
    try:
        return parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _resolve_models(
    parser: argparse.ArgumentParser, models: Sequence[ModelSpec], artifacts: Sequence[tuple[str, ArtifactRef]],
    device: str | None,
) -> tuple[ModelSpec, ...]:
    """Each --model with its --artifact and the --device default; an artifact for no model is an error."""
    by_key = dict(artifacts)
    if len(by_key) != len(artifacts):
        parser.error("--artifact: a model may have one artifact")
    unknown = sorted(set(by_key) - {spec.key for spec in models})
    if unknown:
        parser.error(f"--artifact for {', '.join(unknown)}, which no --model serves")
    return tuple(
        dataclasses.replace(spec, artifact=by_key.get(spec.key), device=spec.device or device) for spec in models
    )


def _model_spec(text: str) -> ModelSpec:
    try:
        return ModelSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, str]:
    """Settings and the log level from the command line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings(
        region=args.region,
        pool=args.pool,
        replica=args.replica,
        models=_resolve_models(parser, args.models, args.artifacts, args.device),
        host=args.host,
        port=args.port,
        allow_anonymous=args.allow_anonymous,
        drain_delay_s=args.drain_delay,
        shutdown_grace_s=args.shutdown_grace,
        max_body_bytes=args.max_body_bytes,
        access_log=args.access_log,
        scheduler=args.scheduler,
        idle_credit_s=args.idle_credit_ms / 1000.0,
        default_max_queue=args.max_queue_default,
        batch_limits=tuple(args.batches),
        artifact_cache=args.artifact_cache,
        artifact_cache_mb=args.artifact_cache_mb,
        cache_budget_mb=args.cache_budget_mb,
        loader_threads=args.loader_threads,
        min_residency_s=args.min_residency_s,
        admin_port=args.admin_port,
        request_limits=tuple(args.request_limits),
        tls=_tls_files(parser, args),
        tls_reload_s=args.tls_reload_s,
        health_port=args.health_port,
        pseudonymisation_keys=args.pseudonymisation_keys,
        pseudonymisation_key_ttl_s=args.pseudonymisation_key_ttl_s,
    )
    return settings, args.log_level


async def _run(settings: Settings, repository: ModelRepository) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    await serve(settings, repository, stop)


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    if stop.is_set():
        return
    log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    settings, log_level = parse_settings(argv)
    logs.configure(log_level, static={"replica": settings.replica})
    try:
        store = ArtifactStore(
            Path(settings.artifact_cache) if settings.artifact_cache else None,
            budget_bytes=int(settings.artifact_cache_mb * 1024 * 1024),
        )
        repository = ModelRepository(settings.models, default_loaders(), store)
    except (KeyError, ValueError) as exc:
        log.error("bad model configuration", extra={"reason": str(exc)})
        return 2
    try:
        asyncio.run(_run(settings, repository))
    except TlsConfigError as exc:
        log.error("bad TLS configuration", extra={"reason": str(exc)})
        return 2
    except KeySourceError as exc:
        log.error("bad pseudonymisation key source", extra={"reason": str(exc)})
        return 2
    except OSError as exc:
        log.error("cannot serve", extra={"reason": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
