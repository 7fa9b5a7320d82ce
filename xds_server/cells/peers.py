"""Moves across control-plane replicas: each replica asks the others what their Envoys have acknowledged.

A move waits twice on Envoys (cells/moves.py): the new cell holds the tenant before the front switches, and
every front has switched before the old cell drops it. Both are about every Envoy of the cell or the front
tier, and each Envoy is connected to one replica, which alone sees its acknowledgements. With peers given
(`fairshare serve --peers`), a replica with moves pending asks every replica, on its status port, about
each pending step (POST /moves/ask), and takes a step only once every one has vouched for its Envoys:
a replica that has not loaded the change yet, or whose Envoys have not applied it, says so, and one that
does not answer (starting, partitioned) vouches for nothing. So a step waits rather than lose requests;
`fairshare status` shows the peers and what they last answered. An address may be a name that resolves to
every replica (the chart's headless Service), this replica's own among them: each answer carries the
replica's id, and a replica skips its own.

Without peers, the fallbacks in cells/moves.py hold (switch after 30 s unseen, keep the old cell 60 s).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from xds_server.cells.moves import Moves, PeerWord
from xds_server.xds.store import SnapshotStore

log = logging.getLogger("fairshare.cells.peers")

PATH = "/moves/ask"
# At most this many questions in one request (about 60 bytes each: under the status app's 1 MB body limit);
# more (every tenant of a few cells moving at once) go in several.
MAX_QUESTIONS = 10_000

Held = tuple[str, str]  # snapshot key, tenant
Routed = tuple[str, str, str]  # region, tenant, cell


@dataclass
class Peers:
    addresses: tuple[str, ...]  # host:port of the replicas' status ports
    replica: str = field(default_factory=lambda: uuid.uuid4().hex)  # this one's id, in its answers
    timeout_s: float = 2.0
    resolve_every_s: float = 5.0
    # Per address asked: "ok" or why it did not answer (status).
    last: dict[str, str] = field(default_factory=dict)
    _resolved: tuple[float, list[str]] | None = field(default=None, repr=False)

    async def word(self, held: Sequence[Held], routed: Sequence[Routed]) -> PeerWord:
        """What every other replica vouches for, summed (a question missing: some replica did not vouch)."""
        targets = await self._targets()
        if targets is None:
            return PeerWord({}, {})  # no replica could be found: nobody vouched
        held_sum: dict[Held, int] = {q: 0 for q in held}
        routed_sum: dict[Routed, int] = {q: 0 for q in routed}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            step = MAX_QUESTIONS // 2
            for start in range(0, max(len(held), len(routed)), step):
                some_held, some_routed = held[start:start + step], routed[start:start + step]
                body = {"replica": self.replica, "held": [list(q) for q in some_held],
                        "routed": [list(q) for q in some_routed]}
                answers = await asyncio.gather(*(self._ask(session, target, body) for target in targets))
                for answer in answers:
                    if answer is None:
                        return PeerWord({}, {})  # one replica's Envoys unaccounted for: nothing is vouched
                    if answer["replica"] != self.replica:
                        _add(held_sum, some_held, answer["held"])
                        _add(routed_sum, some_routed, answer["routed"])
        return PeerWord(held_sum, routed_sum)

    async def _ask(self, session: aiohttp.ClientSession, target: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            async with session.post(f"http://{target}{PATH}", json=body) as resp:
                answer = await resp.json(content_type=None)
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}: {answer.get('error') if isinstance(answer, dict) else ''}")
            if (not isinstance(answer, dict) or not isinstance(answer.get("replica"), str)
                    or not isinstance(answer.get("held"), list) or len(answer["held"]) != len(body["held"])
                    or not isinstance(answer.get("routed"), list) or len(answer["routed"]) != len(body["routed"])):
                raise ValueError("an answer that does not match the questions")
        except (TimeoutError, aiohttp.ClientError, ValueError) as err:
            why = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            if self.last.get(target) != why:
                log.warning("replica %s did not answer about moves (%s): its steps wait", target, why)
            self.last[target] = why
            return None
        self.last[target] = "ok"
        return answer

    async def _targets(self) -> list[str] | None:
        """Every replica's host:port, names resolved (again every `resolve_every_s`); None if none resolved."""
        now = time.monotonic()
        if self._resolved is not None and now - self._resolved[0] < self.resolve_every_s:
            return self._resolved[1]
        loop = asyncio.get_running_loop()
        out: list[str] = []
        for address in self.addresses:
            try:
                host, port = split_address(address)
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, ValueError) as err:
                self.last[address] = f"not resolved: {err}"
                log.warning("replica address %s not resolved (%s): moves wait", address, err)
                return None
            for info in infos:
                ip = str(info[4][0])
                target = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                if target not in out:
                    out.append(target)
        self._resolved = (now, out)
        return out

    def status(self) -> dict[str, Any]:
        return {"replica": self.replica, "addresses": list(self.addresses), "answers": dict(self.last)}


def split_address(address: str) -> tuple[str, int]:
    """A replica's `HOST:PORT` (the status port); ValueError naming it otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not HOST:PORT (each replica's status port)")
    return host, int(port)


def _add(sums: dict[Any, int], questions: Sequence[Any], counts: list[Any]) -> None:
    """One replica's counts added to `sums`; a question it did not vouch for (None) drops out."""
    for question, count in zip(questions, counts, strict=True):
        if question not in sums:
            continue
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            sums[question] += count
        else:
            del sums[question]


def add_routes(app: web.Application, moves: Moves, store: SnapshotStore, replica: str) -> None:
    """POST /moves/ask on the status app: this replica's answers (Moves.vouch) to another's questions."""

    async def ask(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            held = [(q[0], q[1]) for q in _questions(body, "held", 2)]
            routed = [(q[0], q[1], q[2]) for q in _questions(body, "routed", 3)]
        except ValueError as err:
            return web.json_response({"error": f"{PATH}: {err}"}, status=400)
        held_counts, routed_counts = moves.vouch(store, held, routed)
        return web.json_response({"replica": replica, "held": held_counts, "routed": routed_counts})

    app.router.add_post(PATH, ask)


def _questions(body: Any, name: str, width: int) -> list[tuple[str, ...]]:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object with 'held' and 'routed' lists")
    items = body.get(name, [])
    if not isinstance(items, list) or len(items) > MAX_QUESTIONS:
        raise ValueError(f"{name!r} must be a list of at most {MAX_QUESTIONS:,} questions")
    out: list[tuple[str, ...]] = []
    for k, item in enumerate(items):
        if not (isinstance(item, list) and len(item) == width and all(isinstance(x, str) for x in item)):
            raise ValueError(f"{name}[{k}] must be a list of {width} strings")
        out.append(tuple(item))
    return out
