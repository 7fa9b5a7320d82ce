"""What the policy tests share: an OPA server (OPA's REST API on the real OPA Go engine), one per module."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from xds_server.local.processes import free_port, wait_http


@pytest.fixture(scope="module")
def opa_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "xds_server.policy.opa_local", "--port", str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
