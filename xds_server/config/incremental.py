"""An incremental load: when a file watcher says only some tenant files changed, read, check and put to the
policies only those tenants, and take everything else from the last successful load (LoadState).

At 100,000 tenants a full load of an unchanged directory still costs about 2 s (a stat per file, the
cache's checks, the policy layer's and the placement's bookkeeping over every tenant); this costs the
changed files. The answer is always the full load's (tests/controlplane/test_incremental_reload.py walks
random edits and compares): wherever that is not plain to see from the changed files alone (a file outside
tenants/, a problem to report, a tenant defined twice), it declines and the full load runs instead.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Collection
from pathlib import Path

from xds_server.config.changes import TenantChanges
from xds_server.config.errors import Problem
from xds_server.config.files import UnreadableFile, regular_stat
from xds_server.config.loader import (
    TENANT_SUFFIXES,
    LoadState,
    TenantFileCache,
    _place_in_cells,
    _policy_key,
    checked_tenant,
    misplaced_tenant_file,
)
from xds_server.config.model import PlatformConfig, Tenant


def load_changed(root: Path, cache: TenantFileCache, policy_dir: Path | None,
                 changed: Collection[str | Path]) -> PlatformConfig | None:
    """The config after `changed` (paths), or None where only a full load can tell (it then runs)."""
    state = cache.last
    if state is None or state.root != os.path.abspath(root) or state.policy_dir != _policy_key(policy_dir):
        return None
    # An artifact may sit beside the tenant files, where _tenant_files passes over it: a change to one a
    # tenant names takes the full load, which checks its digest again.
    if any(os.path.abspath(path) in cache.digests.entries for path in changed):
        return None
    names = _tenant_files(root, changed)
    if names is None:
        return None
    tenants_dir = str(root / "tenants")  # paths as the full load writes them (it lists this folder)
    # Updated in place, not copied: the dict is the last LoadState's alone (the config holds the policy's
    # answer, not this), and that state is replaced by this load or, should it decline or fail, by the full
    # load that follows (it is no longer `cache.last` meanwhile). At 100,000 tenants the copy and freeing the
    # old one cost an edit about 6 ms. `offboarded` is also the serving config's, so it is copied (small).
    cache.last = None
    checked = state.checked
    offboarded = dict(state.offboarded)
    touched: set[str] = set()
    added = 0  # new entries, which a dict puts last
    for name in sorted(names):
        path = os.path.join(tenants_dir, name)
        tid = name.rsplit(".", 1)[0]
        if any(os.path.exists(os.path.join(tenants_dir, tid + s)) for s in TENANT_SUFFIXES if not name.endswith(s)):
            return None  # acme.yaml beside acme.yml: the full load says which one is defined twice
        try:
            st = regular_stat(path)  # None: deleted
        except UnreadableFile:
            return None  # there but not a file (a dangling link): the full load names it
        tenant: Tenant | None = None
        if st is None:
            cache.forget(path)
        else:
            found: list[Problem] = []
            tenant = checked_tenant(cache, cache.load_stat(path, st), state.context, state.tiers, state.regions,
                                    state.models, found)
            if tenant is None:
                return None  # a problem: the full load reports it with every other one
        # Replaced in place where it stays (a dict keeps a key's position), so the order is the full load's.
        before = checked.get(tid)
        was = before[0] if before is not None else offboarded.get(tid)
        if tenant is None or tenant.offboard:
            checked.pop(tid, None)
        if tenant is None or not tenant.offboard:
            offboarded.pop(tid, None)
        if tenant is not None and tenant.offboard:
            offboarded[tid] = tenant
        elif tenant is not None:
            added += before is None
            checked[tid] = (tenant, Path(path))
        if was is not tenant:
            touched.add(tid)
    if added:  # in file-name order, as the full load lists the folder
        checked = _in_file_order(checked, added)
    if not touched:
        cache.last = state  # as it was: an entry replaced by an equal one at most
        return state.config
    return _decided(root, state, cache, policy_dir, checked, offboarded, frozenset(touched))


def _in_file_order(checked: dict[str, tuple[Tenant, Path]], added: int) -> dict[str, tuple[Tenant, Path]]:
    """`checked` with its last `added` entries moved to their places among the others, which are in file-name
    order: each found by bisection (sorting 100,000 entries by name cost onboarding a tenant 0.3 s)."""
    items = list(checked.items())
    kept, new = items[:-added], sorted(items[-added:], key=_file_name)
    for item in new:
        kept.insert(bisect.bisect_left(kept, _file_name(item), key=_file_name), item)
    return dict(kept)


def _file_name(item: tuple[str, tuple[Tenant, Path]]) -> str:
    return item[1][1].name


def _tenant_files(root: Path, changed: Collection[str | Path]) -> set[str] | None:
    """The names of the tenant files among `changed`; None if anything else the load reads may have changed."""
    tenants_dir = os.path.realpath(root / "tenants")
    out: set[str] = set()
    for raw in changed:
        path = os.fspath(raw)
        if os.path.realpath(os.path.dirname(path)) == tenants_dir:
            if path.endswith(TENANT_SUFFIXES):
                out.add(os.path.basename(path))
            elif misplaced_tenant_file(path, os.path.basename(path), os.path.isdir(path)) is not None:
                return None  # meant as a tenant file (newco.YAML, a folder of them): the full load names it
            continue  # not a tenant file (an editor's swap file): the full load does not read it either
        return None
    return out


def _decided(root: Path, state: LoadState, cache: TenantFileCache, policy_dir: Path | None,
             checked: dict[str, tuple[Tenant, Path]], offboarded: dict[str, Tenant],
             touched: frozenset[str]) -> PlatformConfig | None:
    from xds_server.config.errors import ConfigError
    from xds_server.policy.resolve import resolve_changed, resolve_tenants  # the policy layer imports the loader

    previous = state.config
    resolved = resolve_changed(root, state.platform, state.tiers, state.regions, state.models, checked, touched,
                               state.resolved, policy_dir, cache)
    if resolved is None:
        try:
            resolved = resolve_tenants(root, state.platform, state.tiers, state.regions, state.models, checked,
                                       policy_dir, cache)
        except ConfigError:
            return None  # the full load raises it, with the rest of what it finds
    try:
        cells = _place_in_cells(root, state.platform, state.regions, resolved, checked, cache, touched)
    except ConfigError:
        return None
    # Every part is validated already (the same objects a full load validated, and the changed tenants'
    # files): validating 100,000 tenants' container again would cost more than the rest of this load.
    config = PlatformConfig.model_construct(
        platform=state.platform, tiers=state.tiers, regions=state.regions, models=state.models, tenants=resolved,
        offboarded=offboarded, cells=cells)
    cache.last = LoadState(
        root=state.root, policy_dir=state.policy_dir, platform=state.platform, tiers=state.tiers,
        regions=state.regions, models=state.models, context=state.context, checked=checked,
        offboarded=offboarded, resolved=resolved, config=config, changes=TenantChanges(previous, touched))
    return config
