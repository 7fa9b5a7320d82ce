"""Shared helpers: a real runtime server on a free port in a background thread, and a tiny HTTP client.

The server runs through ``lifecycle.serve`` exactly as the CLI runs it (same app, loader thread, drain),
only on its own event loop in a thread so tests can stay synchronous.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from inference_images.runtime.lifecycle import serve
from inference_images.runtime.models.registry import LoaderRegistry, ModelRepository, ModelSpec, default_loaders
from inference_images.runtime.settings import Settings

TENANT = {"x-fairshare-tenant": "acme"}


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def error(self) -> str:
        return self.body["error"]


@dataclass
class RuntimeServer:
    """A running server; stop() drains it like SIGTERM does."""

    settings: Settings
    repository: ModelRepository
    port: int = 0
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _failure: BaseException | None = None
    _listening: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RuntimeServer:
        self._thread = threading.Thread(target=self._run, name="test-runtime", daemon=True)
        self._thread.start()
        if not self._listening.wait(10):
            raise TimeoutError("server did not start listening")
        if self._failure is not None:
            raise self._failure
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
            self._listening.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def listening(port: int) -> None:
            self.port = port
            self._listening.set()

        await serve(self.settings, self.repository, self._stop, on_listening=listening)

    def signal_stop(self) -> None:
        """What SIGTERM does: start draining, without waiting for it."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    def stop(self, timeout: float = 15) -> None:
        self.signal_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "server did not stop"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, bytes | str):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            raw = response.read()
            content_type = response.getheader("Content-Type", "")
            parsed: Any = json.loads(raw) if "json" in content_type else raw.decode()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)
        finally:
            conn.close()

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def infer(self, path: str, body: Any, headers: Mapping[str, str] | None = TENANT) -> Reply:
        return self.request("POST", path, body=body, headers=headers)

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.get("/v2/health/ready").status == 200:
                return
            time.sleep(0.02)
        raise TimeoutError(f"not ready after {timeout}s: {self.get('/v2/health/ready').body}")


def make_settings(*models: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "region": "us-east-1",
        "pool": "cpu-a",
        "replica": "r-test",
        "models": tuple(ModelSpec.parse(m) for m in models),
        "host": "127.0.0.1",
        "port": 0,
        "access_log": False,
    }
    fields.update(overrides)
    return Settings(**fields)


def start_server(*models: str, loaders: LoaderRegistry | None = None, **overrides: Any) -> RuntimeServer:
    settings = make_settings(*models, **overrides)
    repository = ModelRepository(settings.models, loaders or default_loaders())
    return RuntimeServer(settings, repository).start()


def text_request(*texts: str, **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}], **extra}


@pytest.fixture(scope="module")
def lexicon_server() -> Iterator[RuntimeServer]:
    """Two versions of the light model (v2 handles negation), ready within milliseconds."""
    server = start_server("classifier:v1:lexicon", "classifier:v2:lexicon-negation")
    server.wait_ready(5)
    yield server
    server.stop()
