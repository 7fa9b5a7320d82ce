"""The one runtime replica the control-plane and cells benchmarks route to (classifier v1 and v2, the light
loaders), and the tenants' tokens."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.cells_config import POOL, REGION
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.config.model import AuthSettings
from xds_server.local.processes import Child, wait_http


@contextlib.contextmanager
def runtime(root: Path, port: int) -> Iterator[None]:
    child = Child("runtime", [sys.executable, "-m", "inference_images.runtime", "--region", REGION, "--pool", POOL,
                              "--port", str(port), "--replica", "bench", "--no-access-log",
                              "--model", "classifier:v1:lexicon", "--model", "classifier:v2:lexicon-negation"],
                  root / "runtime.log").start()
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 60, proc=child.proc, log_file=child.log_file)
        yield
    finally:
        child.stop()



def tokens(key: SigningKey, auth: AuthSettings, tenants: list[str]) -> dict[str, str]:
    return {t: issue_token(key, auth, t) for t in tenants}
