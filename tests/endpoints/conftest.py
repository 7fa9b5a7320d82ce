"""A stand-in Kubernetes API server per test, and the real `kubernetes` client pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.endpoints.apiserver import StandInApiServer
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.endpoints.kubernetes import KubernetesEndpoints, KubernetesSettings

# Short timeouts so a stall or an error is noticed in test time; the defaults are for a real cluster.
FAST = {"watch_timeout_s": 5, "idle_timeout_s": 1.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4}


@pytest.fixture
def apiserver() -> Iterator[StandInApiServer]:
    # Bookmarks well inside the tests' idle timeout, as the real server's are inside the default one.
    server = StandInApiServer("fairshare", bookmark_every_s=0.3)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def kubeconfig(apiserver: StandInApiServer, tmp_path: Path) -> Path:
    return apiserver.kubeconfig(tmp_path / "kubeconfig")


def source(kubeconfig: Path, **overrides: Any) -> KubernetesEndpoints:
    return KubernetesEndpoints(KubernetesSettings(kubeconfig=kubeconfig, **{**FAST, **overrides}))


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # a hang guard, not a performance target


async def until(src: KubernetesEndpoints, check: Callable[[EndpointDirectory], bool], timeout: float = 20) -> None:
    """Wait on the source's own change notifications (what the control plane consumes) until `check`."""
    async def wait() -> None:
        if check(src.current()):
            return
        async for directory in src.changes():
            if check(directory):
                return
    try:
        await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"the source never got there; it has {src.current()} ({src.stats})") from None


async def eventually(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.02)
