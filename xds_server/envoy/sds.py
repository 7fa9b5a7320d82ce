"""File-based SDS for the gateway's upstream mutual TLS (Envoy -> runtimes).

Why files and not SDS from the control plane: the gateway's private key never leaves its pod (cert-manager,
or `fairshare run`'s local CA, writes it beside Envoy), the control plane holds no key at all, and a
rotation is picked up by Envoy watching the certificate directory, with no new snapshot and even while
the control plane is down. Every tenant cluster names the same two secrets, so Envoy keeps one
subscription for each however many clusters there are.

Layout, under one directory (`sds_dir`):
  client.json       the SDS resource for the gateway's client certificate
  validation.json   the SDS resource for the CA that signs the runtimes' server certificates
  certs/            tls.crt, tls.key, ca.crt (a cert-manager secret's keys), watched for rotation; the chart
                    mounts the secret beside it instead (CHART_CERTS_DIR: one volume may not sit inside another)
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

CLIENT_SECRET = "fairshare-gateway-client"
VALIDATION_SECRET = "fairshare-platform-ca"
CLIENT_FILE = "client.json"
VALIDATION_FILE = "validation.json"
CERTS_DIR = "certs"
# Where the chart mounts it in the gateway pod (and the compiler's default).
DEFAULT_SDS_DIR = "/etc/fairshare/upstream-tls"
CHART_CERTS_DIR = "/etc/fairshare/gateway-tls"

_SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def _doc(secret: dict[str, Any]) -> str:
    return json.dumps({"resources": [{"@type": _SECRET_TYPE, **secret}]}, indent=2)


def sds_documents(sds_dir: str, certs_dir: str | None = None) -> dict[str, str]:
    """File name -> contents of the two SDS resources, for a gateway whose certificates sit in
    `certs_dir` (default `sds_dir`/certs). Envoy re-reads certificate and key together when that directory
    changes (a secret volume's atomic symlink swap), and checks they were not modified between the reads."""
    certs = certs_dir or str(PurePosixPath(sds_dir) / CERTS_DIR)
    return {
        CLIENT_FILE: _doc({
            "name": CLIENT_SECRET,
            "tls_certificate": {
                "certificate_chain": {"filename": f"{certs}/tls.crt"},
                "private_key": {"filename": f"{certs}/tls.key"},
                "watched_directory": {"path": certs},
            },
        }),
        VALIDATION_FILE: _doc({
            "name": VALIDATION_SECRET,
            "validation_context": {
                "trusted_ca": {"filename": f"{certs}/ca.crt"},
                "watched_directory": {"path": certs},
            },
        }),
    }
