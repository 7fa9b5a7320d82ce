"""A real runtime with its repository extension on an admin port, and the headers Envoy sets on a
tenant's own-model route (docs/design/0003), for the own-model tests."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_images.runtime.gateway import (
    MODEL_ARTIFACT_HEADER,
    MODEL_BASE_HEADER,
    MODEL_FORMAT_HEADER,
    MODEL_OWNER_HEADER,
    MODEL_SHA256_HEADER,
    MODEL_VERSION_HEADER,
    TENANT_HEADER,
    WEIGHT_HEADER,
)
from inference_images.runtime.lifecycle import serve
from inference_images.runtime.models.artifacts import ArtifactStore
from inference_images.runtime.models.registry import LoaderRegistry, ModelRepository, default_loaders
from tests.runtime.conftest import Reply, RuntimeServer, make_settings


def own_headers(
    owner: str,
    artifact: Path | str,
    sha256: str,
    *,
    version: str = "1",
    format: str = "onnx",
    base: str | None = None,
    tenant: str | None = None,
    weight: float | None = None,
) -> dict[str, str]:
    headers = {
        TENANT_HEADER: tenant or owner,
        MODEL_OWNER_HEADER: owner,
        MODEL_FORMAT_HEADER: format,
        MODEL_VERSION_HEADER: version,
        MODEL_ARTIFACT_HEADER: str(artifact),
        MODEL_SHA256_HEADER: sha256,
    }
    if base is not None:
        headers[MODEL_BASE_HEADER] = base
    if weight is not None:
        headers[WEIGHT_HEADER] = str(weight)
    return headers


@dataclass
class AdminRuntimeServer(RuntimeServer):
    admin_port: int = 0

    async def _main(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def admin_listening(port: int) -> None:
            self.admin_port = port

        def listening(port: int) -> None:
            self.port = port
            self._listening.set()

        # The admin site starts before on_listening fires its event (both inside serve), so by the time
        # start() returns the admin port is known too.
        await serve(
            self.settings, self.repository, self._stop, on_listening=listening, on_admin_listening=admin_listening
        )

    def start(self) -> AdminRuntimeServer:
        super().start()
        import time

        deadline = time.monotonic() + 10
        while not self.admin_port and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def admin(self, path: str, body: Any = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=60)
        try:
            conn.request("POST", path, body=json.dumps(body) if body is not None else None)
            response = conn.getresponse()
            parsed = json.loads(response.read() or b"null")
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)
        finally:
            conn.close()

    def index(self) -> list[dict[str, Any]]:
        reply = self.admin("/v2/repository/index")
        assert reply.status == 200, reply.body
        return list(reply.body)

    def row(self, name: str, version: str = "1") -> dict[str, Any]:
        return next(r for r in self.index() if r["name"] == name and r["version"] == version)


def start_own_server(
    tmp_path: Path, *models: str, loaders: LoaderRegistry | None = None, **overrides: Any
) -> AdminRuntimeServer:
    settings = make_settings(*(models or ("classifier:v1:lexicon",)), admin_port=0, **overrides)
    repository = ModelRepository(settings.models, loaders or default_loaders(), ArtifactStore(tmp_path / "cache"))
    server = AdminRuntimeServer(settings, repository).start()
    server.wait_ready(60)
    return server


def tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}
