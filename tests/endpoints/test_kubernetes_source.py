"""The Kubernetes endpoint source, through the real `kubernetes` client, against the stand-in API server:
list then watch, and every way a watch goes wrong (a dropped connection, an expired version, a stall,
errors, an API that is not up yet) ends with the source holding exactly what the API holds."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.endpoints.apiserver import StandInApiServer, endpoint_slice
from tests.endpoints.conftest import eventually, run, source, until
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.endpoints.slices import directory

US = "us-east-1"


def cpu(name: str, *eps: tuple[str, str], port: int = 8080) -> dict[str, object]:
    return endpoint_slice(name, US, "cpu", [(addr, state, None) for addr, state in eps], port)


def hosts(d: EndpointDirectory) -> list[tuple[str, bool]]:
    return [(e.host, e.draining) for e in d.of(US, "cpu")]


def truth(apiserver: StandInApiServer) -> EndpointDirectory:
    return directory(apiserver.objects.values())


def test_lists_then_follows_every_change(apiserver: StandInApiServer, kubeconfig: Path) -> None:
    apiserver.start()
    apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready")))
    # Not a pool Service's slice: the label selector keeps it out.
    other = cpu("kube-dns", ("10.9.0.1", "ready"))
    del other["metadata"]["labels"]["fairshare.io/pool"]  # type: ignore[index]
    apiserver.apply(other)

    async def go() -> None:
        src = source(kubeconfig)
        await src.start()
        assert hosts(src.current()) == [("10.0.0.1", False)]
        apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready"), ("10.0.0.2", "ready")))
        await until(src, lambda d: hosts(d) == [("10.0.0.1", False), ("10.0.0.2", False)])
        apiserver.apply(cpu("cpu-a", ("10.0.0.1", "terminating"), ("10.0.0.2", "ready")))
        await until(src, lambda d: hosts(d) == [("10.0.0.1", True), ("10.0.0.2", False)])
        apiserver.apply(cpu("cpu-b", ("10.0.0.3", "ready")))
        apiserver.delete("cpu-a")
        await until(src, lambda d: hosts(d) == [("10.0.0.3", False)])
        assert (src.stats.lists, src.stats.errors) == (1, 0)
        selectors = {r.get("labelSelector") for r in apiserver.requests}
        assert selectors == {"fairshare.io/region,fairshare.io/pool"}
        await src.close()
    run(go())


def test_a_dropped_watch_resumes_from_its_version_without_a_relist(apiserver: StandInApiServer,
                                                                  kubeconfig: Path) -> None:
    apiserver.start()
    apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready")))

    async def go() -> None:
        src = source(kubeconfig)
        await src.start()
        await eventually(lambda: apiserver.open_watches() == 1)
        apiserver.drop_watches()
        # Changes while the source is away: the resumed watch replays them from its version.
        apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready"), ("10.0.0.2", "ready")))
        apiserver.apply(cpu("cpu-a", ("10.0.0.2", "ready")))
        await until(src, lambda d: d == truth(apiserver))
        assert src.stats.lists == 1 and src.stats.watches >= 2
        await src.close()
    run(go())


def test_bookmarks_advance_the_version_a_watch_resumes_from(apiserver: StandInApiServer, kubeconfig: Path) -> None:
    apiserver.start()
    apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready")))

    apiserver.bookmark_every_s = None  # only the bookmark this test sends

    async def go() -> None:
        src = source(kubeconfig, idle_timeout_s=30)
        await src.start()
        await eventually(lambda: apiserver.open_watches() == 1)
        # Changes the selector hides move the API's version on; only a bookmark tells the watch.
        hidden = cpu("unrelated", ("10.9.0.1", "ready"))
        del hidden["metadata"]["labels"]["fairshare.io/region"]  # type: ignore[index]
        for _ in range(3):
            apiserver.apply(hidden)
        version = apiserver.bookmark()
        await eventually(lambda: src.stats.resource_version == str(version))
        assert src.stats.bookmarks >= 1 and src.stats.events == 0
        # History before the bookmark is compacted: resuming from the old version would be 410 Gone.
        apiserver.compact()
        apiserver.drop_watches()
        await eventually(lambda: any(r.get("resourceVersion") == str(version) and r.get("watch")
                                     for r in apiserver.requests))
        await eventually(lambda: apiserver.open_watches() == 1)
        assert src.stats.expired == 0 and src.stats.lists == 1
        assert all(r.get("allowWatchBookmarks") == "True" for r in apiserver.requests if r.get("watch"))
        await src.close()
    run(go())


def test_an_expired_watch_relists_and_loses_nothing(apiserver: StandInApiServer, kubeconfig: Path) -> None:
    apiserver.start()
    apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready"), ("10.0.0.2", "ready")))

    async def go() -> None:
        src = source(kubeconfig)
        await src.start()
        await eventually(lambda: apiserver.open_watches() == 1)
        # The 410 arrives as an ERROR event on the open watch (the real server's answer); what changed
        # before it and was not sent is gone with the history, so only a relist can find it.
        apiserver.stall()
        apiserver.delete("cpu-a")
        apiserver.apply(cpu("cpu-b", ("10.0.0.3", "ready")))
        apiserver.expire_watches()
        await until(src, lambda d: d == truth(apiserver))
        assert (src.stats.expired, src.stats.lists) == (1, 2)
        # An expired version when resuming a watch (not on an open one) relists too.
        await eventually(lambda: apiserver.open_watches() == 1)
        apiserver.refuse()
        apiserver.apply(cpu("cpu-b", ("10.0.0.4", "ready")))
        apiserver.compact()
        apiserver.start()
        await until(src, lambda d: d == truth(apiserver))
        assert (src.stats.expired, src.stats.lists) == (2, 3)
        await src.close()
    run(go())


def test_a_stalled_watch_is_noticed_and_restarted(apiserver: StandInApiServer, kubeconfig: Path) -> None:
    apiserver.start()
    apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready")))

    async def go() -> None:
        src = source(kubeconfig)
        await src.start()
        await eventually(lambda: apiserver.open_watches() == 1)
        assert apiserver.stall() == 1  # the connection stays up, and nothing more arrives on it
        apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready"), ("10.0.0.2", "ready")))
        await until(src, lambda d: d == truth(apiserver))
        assert src.stats.stalls >= 1 and src.stats.lists == 1
        await src.close()
    run(go())


def test_errors_back_off_and_recover(apiserver: StandInApiServer, kubeconfig: Path) -> None:
    apiserver.start()
    apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready")))

    async def go() -> None:
        src = source(kubeconfig)
        await src.start()
        await eventually(lambda: apiserver.open_watches() == 1)
        apiserver.fail(500, times=3)
        apiserver.drop_watches()
        apiserver.apply(cpu("cpu-a", ("10.0.0.2", "ready")))
        await until(src, lambda d: d == truth(apiserver))
        assert src.stats.errors >= 3  # each 500 was an error, retried after a backoff
        # The API goes away altogether, and comes back.
        apiserver.refuse()
        await eventually(lambda: src.stats.errors >= 5)
        apiserver.start()
        apiserver.apply(cpu("cpu-a", ("10.0.0.3", "ready")))
        await until(src, lambda d: d == truth(apiserver))
        await src.close()
    run(go())


def test_start_waits_for_an_api_that_is_not_up_yet(apiserver: StandInApiServer, kubeconfig: Path) -> None:
    async def go() -> None:
        src = source(kubeconfig)
        starting = asyncio.ensure_future(src.start())
        await eventually(lambda: src.stats.errors >= 2)  # refused, and retried
        assert not starting.done() and not src.stats.synced
        apiserver.start()
        apiserver.apply(cpu("cpu-a", ("10.0.0.1", "ready")))
        await asyncio.wait_for(starting, 20)
        assert hosts(src.current()) == [("10.0.0.1", False)]
        await src.close()
    run(go())


def test_never_loses_an_update_through_any_mix_of_failures(apiserver: StandInApiServer, kubeconfig: Path) -> None:
    apiserver.start()
    rng = random.Random(12)

    async def go() -> None:
        src = source(kubeconfig)
        await src.start()
        states = ("ready", "ready", "terminating", "terminated", "unready")
        for step in range(40):
            name = f"cpu-{rng.randrange(3)}"
            if name in apiserver.objects and rng.random() < 0.2:
                apiserver.delete(name)
            else:
                apiserver.apply(cpu(name, *[(f"10.0.{step}.{i}", rng.choice(states)) for i in range(rng.randrange(4))]))
            trouble = rng.random()
            if trouble < 0.15:
                apiserver.drop_watches()
            elif trouble < 0.25:
                apiserver.expire_watches()
            elif trouble < 0.3:
                apiserver.stall()
            elif trouble < 0.4:
                apiserver.bookmark()
            if step % 10 == 9:  # now and then the source must have caught up exactly
                await until(src, lambda d: d == truth(apiserver))
        await until(src, lambda d: d == truth(apiserver))
        await src.close()
    run(go())
