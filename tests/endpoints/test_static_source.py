"""The static source (the endpoints file `fairshare run` writes): an edit is announced like a pod change;
a bad edit is reported and the last good endpoints kept; a full reload over a bad file is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory
from xds_server.config.errors import ConfigError
from xds_server.endpoints.static import StaticEndpoints

US = ("us-east-1", "cpu")


def test_edits_are_announced_and_a_bad_edit_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    EndpointDirectory({US: (Endpoint("127.0.0.1", 9001, 9101, "r1"),)}).dump(path)
    (tmp_path / "runtime.log").write_text("")  # a busy neighbour: not an endpoints change

    async def go() -> None:
        src = StaticEndpoints(path)
        await src.start()
        assert src.current().of(*US) == (Endpoint("127.0.0.1", 9001),)
        EndpointDirectory({US: (Endpoint("127.0.0.1", 9001), Endpoint("127.0.0.1", 9002))}).dump(path)

        async def announced() -> None:
            async for d in src.changes():
                if [e.port for e in d.of(*US)] == [9001, 9002]:
                    return
        await asyncio.wait_for(announced(), 20)
        path.write_text("regions: {us-east-1: {cpu: [{host: 127.0.0.1, port: 0}]}}\n")
        await asyncio.wait_for(_until(lambda: src.error is not None), 20)
        assert "port" in (src.error or "")
        assert [e.port for e in src.current().of(*US)] == [9001, 9002]  # the last good one
        with pytest.raises(ConfigError):
            src.for_reload()  # a full reload is refused with the reason, as before
        await src.close()
    asyncio.run(go())


async def _until(check: object) -> None:
    while not check():  # type: ignore[operator]
        await asyncio.sleep(0.02)


def test_a_reload_reads_the_file_again_only_once_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "endpoints.yaml"
    EndpointDirectory({US: (Endpoint("127.0.0.1", 9001),)}).dump(path)
    src = StaticEndpoints(path)  # not started: no watcher, so only for_reload reads the file
    reads: list[Path] = []
    load = EndpointDirectory.load

    def counted(cls: type[EndpointDirectory], p: Path) -> EndpointDirectory:
        reads.append(p)
        return load(p)
    monkeypatch.setattr(EndpointDirectory, "load", classmethod(counted))
    assert [e.port for e in src.for_reload().of(*US)] == [9001]
    assert [e.port for e in src.for_reload().of(*US)] == [9001]
    assert len(reads) == 1  # unchanged: the last read stands
    EndpointDirectory({US: (Endpoint("127.0.0.1", 9002),)}).dump(path)  # same size, a new mtime
    assert [e.port for e in src.for_reload().of(*US)] == [9002]
    path.write_text("regions: {us-east-1: {cpu: [{host: 127.0.0.1, port: 0}]}}\n")
    for _ in range(2):  # a bad file refuses every reload, not only the first after the edit
        with pytest.raises(ConfigError):
            src.for_reload()
    assert [e.port for e in src.current().of(*US)] == [9002]
    EndpointDirectory({US: (Endpoint("127.0.0.1", 9003),)}).dump(path)
    assert [e.port for e in src.for_reload().of(*US)] == [9003]
