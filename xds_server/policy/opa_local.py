"""A local OPA server: OPA's own REST API (the subset the OPA backend uses) over the real OPA Go engine.

For proving the OPA-server backend against the real OPA evaluator where no `opa` binary can be
installed (tests and `make policy-opa`); in production the backend talks to a real OPA server.
Serves: PUT /v1/policies/{id}, PUT /v1/data/{path}, POST /v1/data/{path}, GET /health.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web
from opa_bindings import OpaEngine, OpaError, OpaUndefinedError


class LocalOpa:
    def __init__(self) -> None:
        self.policies: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.engine = OpaEngine()

    def _rebuild(self, policies: dict[str, str], data: dict[str, Any]) -> None:
        engine = OpaEngine()
        for name, text in policies.items():
            engine.add_policy(name, text)
        if data:
            engine.add_data(data)
        self.engine.close()
        self.engine, self.policies, self.data = engine, policies, data

    async def put_policy(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            self._rebuild({**self.policies, request.match_info["id"]: text}, self.data)
        except OpaError as err:
            return web.json_response({"code": "invalid_parameter", "message": err.message}, status=400)
        return web.json_response({})

    async def put_data(self, request: web.Request) -> web.Response:
        data = json.loads(json.dumps(self.data))
        node = data
        keys = [k for k in request.match_info["path"].split("/") if k]
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        value = await request.json()
        if keys:
            node[keys[-1]] = value
        else:
            data = value
        self._rebuild(self.policies, data)
        return web.Response(status=204)

    async def post_data(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        path = request.match_info["path"].strip("/").replace("/", ".")
        try:
            value = await asyncio.to_thread(self.engine.eval_document, path, body.get("input"))
        except OpaUndefinedError:
            return web.json_response({})  # OPA answers an undefined document with no "result"
        except OpaError as err:
            return web.json_response({"code": "internal_error", "message": err.message}, status=500)
        return web.json_response({"result": value})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({})


def app() -> web.Application:
    opa = LocalOpa()
    application = web.Application(client_max_size=256 * 1024 * 1024)
    application.add_routes([
        web.put("/v1/policies/{id:.*}", opa.put_policy),
        web.put("/v1/data/{path:.*}", opa.put_data),
        web.post("/v1/data/{path:.*}", opa.post_data),
        web.get("/health", opa.health),
    ])
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8181)
    args = parser.parse_args()
    web.run_app(app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
