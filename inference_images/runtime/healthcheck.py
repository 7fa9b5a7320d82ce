"""Container health probe: exit 0 when this replica's /v2/health/ready answers 200, else 1.

Images use it as ``HEALTHCHECK CMD ["python", "-m", "inference_images.runtime.healthcheck"]``: slim base
images have no curl, and exec form cannot expand the port, so the probe reads ``$FAIRSHARE_PORT`` (the
same variable the server's ``--port`` defaults to), or ``$FAIRSHARE_HEALTH_PORT`` when set: the plaintext
health port a replica serving mutual TLS also opens. Stdlib only, so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from inference_images.runtime.settings import HEALTH_PORT_ENV, PORT_ENV


def check(host: str, port: int, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v2/health/ready", timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference_images.runtime.healthcheck")
    parser.add_argument("--host", default="127.0.0.1")
    # The plaintext health port when the image sets one (mutual TLS on the data-plane port), else that port.
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get(HEALTH_PORT_ENV) or os.environ.get(PORT_ENV, "8080")))
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    return 0 if check(args.host, args.port, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
