"""Container health probe: exit 0 when the control plane's /healthz answers 200 (a config is compiled
and served), else 1.

The image uses it as ``HEALTHCHECK CMD ["python", "-m", "xds_server.controlplane.healthcheck"]``: the slim
base has no curl, and exec form cannot expand the port, so the probe reads ``$FAIRSHARE_STATUS_PORT``.
Stdlib only, so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

STATUS_PORT_ENV = "FAIRSHARE_STATUS_PORT"
STATUS_HOST_ENV = "FAIRSHARE_STATUS_HOST"


def check(host: str, port: int, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds_server.controlplane.healthcheck")
    parser.add_argument("--host", default=os.environ.get(STATUS_HOST_ENV, "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get(STATUS_PORT_ENV, "18001")))
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    return 0 if check(args.host, args.port, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
