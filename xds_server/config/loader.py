"""Load a config directory, validate it, and report every problem at once with file and field."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from inference_images.runtime.digests import ArtifactError, file_digest, tree_digest
from xds_server.config.errors import ConfigError, Problem
from xds_server.config.files import UnreadableFile, directory_problem, read_regular, regular_stat
from xds_server.config.messages import empty_file, error_message, field_path, kind_of, unknown, yaml_problem
from xds_server.config.model import (
    Model,
    ModelVersion,
    OwnModel,
    OwnModelVersion,
    Platform,
    PlatformConfig,
    Region,
    ResolvedTenant,
    Strict,
    Tenant,
    Tier,
    is_name,
    is_s3,
)
from xds_server.config.yaml_data import load_yaml
from xds_server.listing import capped
from xds_server.workers import fork_map, worker_count

if TYPE_CHECKING:
    from xds_server.cells.assign import Placement
    from xds_server.config.changes import TenantChanges

M = TypeVar("M", bound=BaseModel)

StatKey = tuple[int, int, int]
# What says a local artifact is as it was: a file's stat_key; a directory's, each file's under it.
ArtifactKey = StatKey | tuple[tuple[str, StatKey], ...]


class TiersFile(Strict):
    tiers: dict[str, Tier]


class RegionsFile(Strict):
    regions: list[Region]


class ModelsFile(Strict):
    models: dict[str, Model]


@dataclass(frozen=True)
class TenantRefs:
    """What a tenant file names in other files, read even from a file that fails validation, so one
    pass reports a file's schema problems and its unknown tier, regions and models together."""

    tier: str | None
    home: str | None
    allowed: tuple[str, ...]
    splits: dict[str, dict[str, int]]
    own: tuple[str, ...] = ()  # the tenant's own model names (they may not shadow a catalog model)

    @classmethod
    def of(cls, tenant: Tenant) -> TenantRefs:
        return cls(tenant.tier, tenant.regions.home, tuple(tenant.regions.allowed),
                   {m: dict(g.split) for m, g in tenant.models.items()}, tuple(tenant.own_models))

    @classmethod
    def of_raw(cls, data: Any) -> TenantRefs | None:
        if not isinstance(data, dict):
            return None
        regions: dict[Any, Any] = data["regions"] if isinstance(data.get("regions"), dict) else {}
        allowed: list[Any] = regions["allowed"] if isinstance(regions.get("allowed"), list) else []
        models: dict[Any, Any] = data["models"] if isinstance(data.get("models"), dict) else {}
        splits: dict[str, dict[str, int]] = {}
        for name, grant in models.items():
            split = grant.get("split") if isinstance(grant, dict) else None
            if isinstance(name, str) and isinstance(split, dict):
                splits[name] = {str(v): w for v, w in split.items() if isinstance(w, int)}
        own: dict[Any, Any] = data["own_models"] if isinstance(data.get("own_models"), dict) else {}
        return cls(
            tier=data.get("tier") if isinstance(data.get("tier"), str) else None,
            home=regions.get("home") if isinstance(regions.get("home"), str) else None,
            allowed=tuple(a for a in allowed if isinstance(a, str)),
            splits=splits,
            own=tuple(n for n in own if isinstance(n, str)),
        )


@dataclass(frozen=True)
class TenantFile:
    path: Path
    tenant: Tenant | None
    refs: TenantRefs | None
    problems: tuple[Problem, ...]
    # The local artifacts its own models name, with their keys when read (None: unreadable then). Its size
    # and digest checks hold while these are the same: a rewritten artifact is checked again, although
    # the tenant file is unchanged.
    artifacts: tuple[tuple[str, ArtifactKey | None], ...] = ()


@dataclass(frozen=True)
class LoadState:
    """What a successful load read and decided, for the next load that is told which tenant files changed
    (xds_server/config/incremental.py): everything but those files is taken from here as it is."""

    root: str
    policy_dir: str | None
    platform: Platform
    tiers: dict[str, Tier]
    regions: dict[str, Region]
    models: dict[str, Model]
    context: str  # the digest of tiers, regions and models the tenant files were checked against
    checked: dict[str, tuple[Tenant, Path]]  # the tenants put to the policies, in file-name order
    offboarded: dict[str, Tenant]
    # What the policy layer returned (the config's `tenants` is a validated copy): what its next answer
    # is computed from.
    resolved: Mapping[str, ResolvedTenant]
    config: PlatformConfig
    # How `config` differs from the config of the load before, when this load was incremental.
    changes: TenantChanges | None = None


@dataclass
class ArtifactDigests:
    """Local artifacts' sha256 kept with the key they were computed at (ArtifactKey), so a reload hashes only
    an artifact written or replaced since, and a file that many tenants name is hashed once."""

    entries: dict[str, tuple[ArtifactKey, str]] = field(default_factory=dict)
    # Whose own-model artifacts this process reads: the tenants allowed in one of these regions (a cluster's
    # control plane, `serve --region`: its ConfigMap carries only theirs); None: every tenant's (CI, a local run).
    regions: frozenset[str] | None = None

    def reads(self, tenant: Tenant) -> bool:
        return self.regions is None or not self.regions.isdisjoint(tenant.regions.allowed)

    def sha256(self, path: str, key: ArtifactKey, is_dir: bool) -> str:
        """Raises OSError, or ArtifactError for a directory the runtime would refuse (a link in it)."""
        hit = self.entries.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        # The runtime's own definitions, so the load accepts exactly the bytes the runtime will.
        digest = tree_digest(Path(path)) if is_dir else file_digest(Path(path))
        self.entries[path] = (key, digest)
        return digest

    def keep_only(self, paths: set[str]) -> None:
        """Forget artifacts the config no longer names: renamed versions would otherwise pile up for as
        long as the control plane runs."""
        for path in set(self.entries) - paths:
            del self.entries[path]


@dataclass
class TenantFileCache:
    """Parsed tenant files keyed by their stat, so a reload after one edit re-reads one file (and one whose
    local artifacts changed: TenantFile.artifacts)."""

    entries: dict[str, tuple[StatKey, TenantFile]] = field(default_factory=dict)
    digests: ArtifactDigests = field(default_factory=ArtifactDigests)
    # A file's reference check, valid while the file and the files it refers to (tiers, regions,
    # models; `context`) are unchanged.
    checked: dict[str, tuple[TenantFile, str, tuple[Problem, ...], Tenant | None]] = field(
        default_factory=dict)
    # What the policy layer remembers of these tenants between loads (policy/resolve.py), kept with the
    # files it was computed from: another load in the same process (a CLI command, a benchmark minting a
    # token) neither reuses nor replaces it. Shared by every load, one load of 10,000 tenants beside the
    # control plane's made its next edit redo every tenant's policy document.
    policy_memo: Any = None
    # The last placement in cells and what it was computed from (`_place_in_cells`), kept with these files
    # for the same reason.
    placement_memo: tuple[tuple[object, ...], Mapping[str, ResolvedTenant], Placement] | None = None
    # The last successful load through this cache; None after a failed one (the next load is a full one).
    last: LoadState | None = None

    def load_stat(self, path: str, st: os.stat_result) -> TenantFile:
        key = stat_key(st)
        hit = self.entries.get(path)
        if hit is not None and hit[0] == key and _artifacts_unchanged(hit[1]):
            return hit[1]
        parsed = _parse_tenant(Path(path), self.digests)
        self.entries[path] = (key, parsed)
        return parsed

    def read_ahead(self, stats: list[tuple[str, os.stat_result]], workers: int | None) -> None:
        """Parse, in worker processes, the files among `stats` this cache does not hold as they are now,
        when there are enough of them to be worth it (a first load); `load_stat` then finds them here."""
        missing = [(path, st) for path, st in stats
                   if (hit := self.entries.get(path)) is None or hit[0] != stat_key(st)]
        n = worker_count(len(missing), workers)
        if n < 2:
            return
        read = fork_map(_read_tenant_files, None, [path for path, _ in missing], n, "reading tenant files")
        if read is None:
            return  # a worker failed: load_stat reads them here
        for (path, st), (data, problems) in zip(missing, (r for part in read for r in part), strict=True):
            self.entries[path] = (stat_key(st), _tenant_file(Path(path), data, problems, self.digests))

    def forget(self, path: str) -> None:
        self.entries.pop(path, None)
        self.checked.pop(path, None)

    def check(self, file: TenantFile, context: str, run: Callable[[list[Problem]], Tenant | None],
              problems: list[Problem]) -> Tenant | None:
        hit = self.checked.get(str(file.path))
        if hit is not None and hit[0] is file and hit[1] == context:
            problems.extend(hit[2])
            return hit[3]
        found: list[Problem] = []
        resolved = run(found)
        self.checked[str(file.path)] = (file, context, tuple(found), resolved)
        problems.extend(found)
        return resolved

    def forget_missing(self, present: set[str]) -> None:
        for path in set(self.entries) - present:
            del self.entries[path]
        for path in set(self.checked) - present:
            del self.checked[path]


def stat_key(st: os.stat_result) -> StatKey:
    """What says a file is as it was when last read: a write changes its mtime, a replacement its inode."""
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def artifact_key(path: str, st: os.stat_result) -> ArtifactKey:
    """`path`'s ArtifactKey, given its stat. A directory's own stat does not change when a file in it is
    rewritten, so its key is every entry's under it (links not followed). Raises OSError."""
    if not stat.S_ISDIR(st.st_mode):
        return stat_key(st)
    entries: list[tuple[str, StatKey]] = []
    for folder, dirs, names in os.walk(path, onerror=_raise):
        for name in dirs + names:
            full = os.path.join(folder, name)
            entries.append((os.path.relpath(full, path), stat_key(os.lstat(full))))
    return tuple(sorted(entries))


def _raise(err: OSError) -> None:
    raise err


def _current_key(path: str) -> ArtifactKey | None:
    try:
        return artifact_key(path, os.stat(path))
    except OSError:
        return None


def _artifacts_unchanged(file: TenantFile) -> bool:
    return all(_current_key(path) == key for path, key in file.artifacts)


def load_config(
    directory: str | Path, cache: TenantFileCache | None = None, policy_dir: Path | None = None,
    changed: Collection[str | Path] | None = None,
) -> PlatformConfig:
    """Load and validate `directory`, then have the policies in `policy_dir` (default: the repository's
    policy/) decide every tenant's quotas, routes and PII rules; raise ConfigError listing every problem
    found, policy violations included.

    `changed`: the paths that changed since the last load through `cache` (a file watcher's events), when
    known. Where they are only tenant files, only those tenants are read, checked and put to the policies
    again (xds_server/config/incremental.py); anything else, or any problem, takes the full load."""
    if changed is not None and cache is not None and cache.last is not None:
        from xds_server.config.incremental import load_changed  # it builds on this module

        config = load_changed(Path(directory), cache, policy_dir, changed)
        if config is not None:
            return config
    if cache is not None:
        cache.last = None  # until this load succeeds there is nothing to build the next one on
    root = Path(directory)
    _check_root(root)
    problems: list[Problem] = []

    platform = _load_file(root / "platform.yaml", Platform, problems, optional=True) or Platform()
    tiers = _load_file(root / "tiers.yaml", TiersFile, problems)
    regions_file = _load_file(root / "regions.yaml", RegionsFile, problems)
    models = _load_file(root / "models.yaml", ModelsFile, problems)
    cache = cache if cache is not None else TenantFileCache()
    tenants = _load_tenants(root / "tenants", problems, cache, platform.controlplane.workers)

    regions: dict[str, Region] = {}
    if regions_file is not None:
        _check_regions(root / "regions.yaml", regions_file.regions, problems)
        regions = {r.id: r for r in regions_file.regions}
    if models is not None and regions_file is not None:
        _check_models(root / "models.yaml", models.models, regions, problems)
    if models is not None:
        models = ModelsFile(models=_resolve_catalog_artifacts(root / "models.yaml", models.models, problems,
                                                              cache.digests))
        cache.digests.keep_only({path for f in tenants for path, _ in f.artifacts}
                                | {mv.artifact for m in models.models.values() for mv in m.versions.values()
                                   if mv.artifact is not None and not is_s3(mv.artifact)})
    if tiers is None or models is None or regions_file is None:
        raise ConfigError(problems)  # tenants cannot be checked against files that did not load

    context = hashlib.blake2b(
        "\0".join(m.model_dump_json() for m in (tiers, regions_file, models)).encode(), digest_size=12,
    ).hexdigest()
    checked: dict[str, tuple[Tenant, Path]] = {}
    offboarded: dict[str, Tenant] = {}
    files: dict[str, Path] = {}  # each tenant's file, offboarded or not
    for file in tenants:
        tenant = checked_tenant(cache, file, context, tiers.tiers, regions, models.models, problems)
        if tenant is None:
            continue
        if tenant.id in files:  # acme.yaml beside acme.yml
            problems.append(Problem(str(file.path), "id", defined_twice(tenant.id, files[tenant.id])))
            continue
        files[tenant.id] = file.path
        if tenant.offboard:
            # Offboarded: never put to the policies, so it gets no routes, limits or secrets anywhere.
            offboarded[tenant.id] = tenant
            continue
        checked[tenant.id] = (tenant, file.path)
    _check_pins(regions, checked, problems)
    if problems:
        raise ConfigError(problems)
    # Only a config that is sound on its own is put to the policies: their answers are about intent
    # (residency, capacity, privacy), not about typos.
    from xds_server.policy.resolve import resolve_tenants  # the policy layer imports this module

    resolved = resolve_tenants(root, platform, tiers.tiers, regions, models.models, checked, policy_dir, cache)
    cells = _place_in_cells(root, platform, regions, resolved, checked, cache)
    config = PlatformConfig(
        platform=platform, tiers=tiers.tiers, regions=regions, models=models.models, tenants=resolved,
        offboarded=offboarded, cells=cells,
    )
    cache.last = LoadState(
        root=os.path.abspath(root), policy_dir=_policy_key(policy_dir), platform=platform, tiers=tiers.tiers,
        regions=regions, models=models.models, context=context,
        checked=checked, offboarded=offboarded, resolved=resolved, config=config)
    return config


def load_tenant_alone(directory: str | Path, tenant_id: str) -> tuple[Platform, Tenant | None]:
    """platform.yaml and `tenant_id`'s own file, each checked against its schema, and nothing else: what a
    credential for the tenant needs (`fairshare token`). Neither another tenant's file nor the policies
    are read, so a broken file elsewhere does not stop a token for a sound tenant, and a token is as quick
    at 100,000 tenants as at four. The tenant is None where it has no file; ConfigError, naming the file
    and field, where either file is unsound."""
    root = Path(directory)
    _check_root(root)
    problems: list[Problem] = []
    platform = _load_file(root / "platform.yaml", Platform, problems, optional=True) or Platform()
    files = [root / "tenants" / f"{tenant_id}{ext}" for ext in (".yaml", ".yml")]
    # Anything but a tenant id names no file (nor a path outside tenants/).
    files = [f for f in files if f.is_file()] if is_name(tenant_id) else []
    if len(files) > 1:  # acme.yaml beside acme.yml, as a full load reports it
        problems.append(Problem(str(files[1]), "id", defined_twice(tenant_id, files[0])))
    tenant = None
    if files:
        file = _parse_tenant(files[0], None)  # a credential does not need the artifacts' digests
        problems.extend(file.problems)
        tenant = file.tenant
    if problems:
        raise ConfigError(problems)
    return platform, tenant


CONFIG_DIRECTORY = "a config directory (the folder holding tiers.yaml, models.yaml, regions.yaml and tenants/)"


def _check_root(root: Path) -> None:
    problem = directory_problem(root, "config directory does not exist", CONFIG_DIRECTORY)
    if problem is not None:
        raise ConfigError([Problem(str(root), "", problem)])


def tenant_file_ids(directory: str | Path) -> list[str]:
    """The tenant ids the config's tenant files are named after, sorted (none if there is no tenants/)."""
    try:
        with os.scandir(Path(directory) / "tenants") as it:
            return sorted({e.name.rsplit(".", 1)[0] for e in it if e.name.endswith(TENANT_SUFFIXES)})
    except OSError:
        return []


def defined_twice(tenant_id: str, first: Path) -> str:
    return f"tenant {tenant_id!r} is defined twice: also in {first.name} (keep one of the two files)"


def checked_tenant(cache: TenantFileCache, file: TenantFile, context: str, tiers: dict[str, Tier],
                   regions: dict[str, Region], models: dict[str, Model], problems: list[Problem]) -> Tenant | None:
    """The file's tenant once it and what it names (tiers, regions, models: `context`) are sound, else None
    with its problems added; remembered per file while `context` is the same."""

    def check(found: list[Problem]) -> Tenant | None:
        if file.refs is not None:
            _check_refs(file.path, file.refs, tiers, regions, models, found)
        if file.tenant is None or file.problems or found:
            return None
        return file.tenant

    return cache.check(file, context, check, problems)


def _policy_key(policy_dir: Path | None) -> str | None:
    return None if policy_dir is None else os.path.abspath(policy_dir)


def _place_in_cells(root: Path, platform: Platform, regions: dict[str, Region], resolved: Mapping[str, ResolvedTenant],
                    files: dict[str, tuple[Tenant, Path]], cache: TenantFileCache | None,
                    changed: Collection[str] | None = None) -> dict[str, dict[str, str]]:
    """Each tenant's cell in every region split into cells (xds_server/cells/assign.py); an unknown pin or a
    region over its cells' capacity is a config error naming the tenant's file or regions.yaml.

    An edit that changes no tenant's pin or regions (nearly all) keeps the last placement, instead of hashing
    100,000 tenants again (0.4 s): checked against every tenant, by identity first (the policy layer hands
    back the same object for an unchanged tenant). `changed`: the only tenants that may differ from the
    last load's (an incremental load), so only they are checked."""
    from xds_server.cells.assign import place, place_changed

    layout = (platform.cells.size, tuple((r.id, r.cells.shared, tuple(r.cells.dedicated)) for r in regions.values()))
    last = cache.placement_memo if cache is not None else None
    if cache is not None and last is not None and last[0] == layout:
        if _same_placement(last[1], resolved, changed):
            return last[2].cells  # no tenant came, went, or changed its pin or regions: the placement is the same
        if changed is not None:
            # A tenant onboarded, offboarded, pinned or served elsewhere: placed from the last placement.
            moved = {tid: (resolved[tid].spec.cell, list(resolved[tid].routes)) if tid in resolved else None
                     for tid in changed}
            after = place_changed(platform.cells.size, regions, last[2], moved)
            if after is not None:
                cache.placement_memo = (layout, resolved, after)
                return after.cells
    served = {tid: (t.spec.cell, list(t.routes)) for tid, t in resolved.items()}
    placement, found = place(platform.cells.size, regions, served)
    if found:
        raise ConfigError([
            Problem(str(files[p.tenant][1]), "cell", p.message) if p.tenant is not None and p.tenant in files
            else Problem(str(root / "regions.yaml"), "cells", p.message)
            for p in found
        ])
    if cache is not None:
        cache.placement_memo = (layout, resolved, placement)
    return placement.cells


def _check_pins(regions: dict[str, Region], checked: dict[str, tuple[Tenant, Path]], problems: list[Problem]) -> None:
    """A pin to a cell no region has is a typo, found with the others: whether a pin fits each region the
    tenant is served in is known only once the policies have placed it (`_place_in_cells`), which a config
    the policies refuse never reaches."""
    from xds_server.cells.layout import cells

    known = {c for r in regions.values() for c in cells(r)}
    for tenant, path in checked.values():
        if tenant.cell is not None and tenant.cell not in known:
            problems.append(Problem(str(path), "cell", (
                f"cell {tenant.cell!r} is no region's cell (known: {capped(sorted(known))}; regions.yaml "
                "cells.dedicated names a region's own cells)")))


def _same_placement(before: Mapping[str, ResolvedTenant], after: Mapping[str, ResolvedTenant],
                    changed: Collection[str] | None) -> bool:
    """Whether every tenant of `after` is in `before` and back, with the same pin and regions."""
    def same(t: ResolvedTenant, b: ResolvedTenant) -> bool:
        return t is b or (t.spec.cell, t.routes.keys()) == (b.spec.cell, b.routes.keys())

    if changed is not None:
        return all((tid in before) == (tid in after) and (tid not in after or same(after[tid], before[tid]))
                   for tid in changed)
    return before.keys() == after.keys() and all(same(t, before[tid]) for tid, t in after.items())


def parse_yaml(path: Path, problems: list[Problem]) -> Any:
    try:
        data = read_regular(path)
    except UnreadableFile as err:
        problems.append(Problem(str(path), "", str(err)))
        return None
    try:
        # Bytes: libyaml decodes them, so a file that is not UTF-8 is a YAML error with its position.
        return load_yaml(data)
    except yaml.YAMLError as err:
        problems.append(Problem(str(path), *yaml_problem(data, err)))
    return None


def _load_file(path: Path, schema: type[M], problems: list[Problem], optional: bool = False) -> M | None:
    if not os.path.lexists(path):  # a link that leads nowhere is there: parse_yaml says where it leads
        if not optional:
            problems.append(Problem(str(path), "", "required file is missing"))
        return None
    before = len(problems)
    data = parse_yaml(path, problems)
    if len(problems) > before:
        return None
    return validate(path, schema, data, problems)


def validate(path: Path, schema: type[M], data: Any, problems: list[Problem]) -> M | None:
    if data is None and (empty := empty_file("a tenant" if schema is Tenant else path.name, schema)):
        problems.append(Problem(str(path), "", empty))  # not a "required field is missing" for each field
        return None
    if data is not None and not isinstance(data, dict):
        problems.append(Problem(str(path), "", f"must be a mapping (field: value, one per line), got {kind_of(data)}"))
        return None
    try:
        return schema.model_validate(data or {})
    except ValidationError as err:
        for e in err.errors():
            problems.append(Problem(str(path), field_path(e["loc"], data), error_message(e, schema)))
        return None


def _load_tenants(directory: Path, problems: list[Problem], cache: TenantFileCache,
                  workers: int | None = None) -> list[TenantFile]:
    missing = directory_problem(directory, "tenant directory is missing",
                                "a directory (tenant files go in the folder tenants/, one <id>.yaml each)")
    if missing is not None:
        problems.append(Problem(str(directory), "", missing))
        return []
    out: list[TenantFile] = []
    # os.scandir, not Path.glob: at 10,000 tenant files, pathlib objects cost a tenth of a reload.
    # Every entry named like a tenant file: one that cannot be read (a dangling link, a directory) is a
    # problem, not a tenant removed. So is one meant as a tenant file but never read (newco.YAML,
    # newco.json, team-a/newco.yaml): a tenant silently missing, or removed if it was served.
    paths: list[str] = []
    misplaced: list[Problem] = []
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.name.endswith(TENANT_SUFFIXES):
                    paths.append(e.path)
                elif (why := misplaced_tenant_file(e.path, e.name, _is_dir(e))) is not None:
                    misplaced.append(Problem(e.path, "", why))
    except OSError as err:  # unreadable (permissions): named, and the last good config keeps serving
        problems.append(Problem(str(directory), "", f"cannot list the tenant directory: {err.strerror or err}"))
        return []
    problems.extend(sorted(misplaced, key=lambda p: p.file))
    paths.sort()
    cache.forget_missing(set(paths))
    stats: list[tuple[str, os.stat_result]] = []
    unreadable: dict[str, TenantFile] = {}
    for path in paths:
        try:
            st = regular_stat(path)
        except UnreadableFile as err:
            unreadable[path] = TenantFile(Path(path), None, None, (Problem(path, "", str(err)),))
            continue
        if st is not None:  # None: deleted while we listed; the next reload sees the settled directory
            stats.append((path, st))
    cache.read_ahead(stats, workers)
    read = dict(stats)
    for path in paths:
        file = unreadable.get(path) or (cache.load_stat(path, read[path]) if path in read else None)
        if file is not None:
            problems.extend(file.problems)
            out.append(file)
    return out


TENANT_SUFFIXES = (".yaml", ".yml")
# What a file meant as a tenant file may be named that the load does not read: another case, or JSON.
_TENANT_LIKE = (".yaml", ".yml", ".json")
TENANT_FILE_HOME = "tenant files go directly in tenants/ as <id>.yaml (or <id>.yml, in lower case)"


def misplaced_tenant_file(path: str, name: str, is_dir: bool) -> str | None:
    """Why `name` in tenants/, not named <id>.yaml or <id>.yml, looks meant as a tenant file the load never
    reads, or None: anything else there is no tenant's (a dotfile such as .gitkeep or an editor's swap file,
    a ConfigMap volume's ..data, an editor's backup acme.yaml~, a local artifact a tenant names). The full
    load and the incremental one (which must decline where this finds something) ask the same."""
    if name.startswith("."):
        return None
    if not is_dir:
        return f"not read as a tenant file: {TENANT_FILE_HOME}" if name.lower().endswith(_TENANT_LIKE) else None
    try:  # a folder holding YAML; not JSON, which a model artifact's folder holds (config.json)
        with os.scandir(path) as it:
            inside = sorted(e.name for e in it if e.name.lower().endswith(TENANT_SUFFIXES)
                            and not e.name.startswith("."))
    except OSError:
        return None  # nothing known to be missed: not a reason to refuse the config
    if not inside:
        return None
    return f"a folder, and the YAML files in it ({capped(inside)}) are not read: {TENANT_FILE_HOME}"


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _read_tenant_files(_: None, paths: Sequence[str]) -> list[tuple[Any, list[Problem]]]:
    """In a worker process: each file's YAML as plain data (cheap to send back, unlike validated models),
    with the problems reading it found."""
    out: list[tuple[Any, list[Problem]]] = []
    for path in paths:
        problems: list[Problem] = []
        out.append((parse_yaml(Path(path), problems), problems))
    return out


def _parse_tenant(path: Path, digests: ArtifactDigests | None) -> TenantFile:
    problems: list[Problem] = []
    return _tenant_file(path, parse_yaml(path, problems), problems, digests)


def _tenant_file(path: Path, data: Any, problems: list[Problem], digests: ArtifactDigests | None) -> TenantFile:
    """`digests`: where local artifacts' digests are checked and kept; None checks none (a credential)."""
    if problems:
        return TenantFile(path, None, None, tuple(problems))
    tenant = validate(path, Tenant, data, problems)
    if tenant is not None and tenant.id != path.stem:
        problems.append(Problem(str(path), "id", f"must match the file name {path.stem!r}, got {tenant.id!r}"))
        tenant = None
    artifacts: list[tuple[str, ArtifactKey | None]] = []
    if tenant is not None and tenant.own_models:
        tenant = _resolve_own_artifacts(path, tenant, problems, digests, artifacts)
    refs = TenantRefs.of(tenant) if tenant is not None else TenantRefs.of_raw(data)
    return TenantFile(path, tenant, refs, tuple(problems), tuple(artifacts))


@dataclass(frozen=True)
class _Artifact:
    """A local artifact as the runtime will read it (absolute) and what the load measured of it."""

    path: str
    size: int | None
    key: ArtifactKey | None  # None: it could not be read


def _local_artifact(file: Path, where: str, artifact: str, sha256: str, declared: int | None,
                    digests: ArtifactDigests | None, problems: list[Problem]) -> _Artifact | None:
    """A local artifact (None for s3://), relative to `file`'s folder, checked here so that a typo or a
    wrong digest is refused with the config rather than found by the runtime at the first request."""
    if is_s3(artifact):
        return None
    resolved = _beside(file, artifact)
    try:
        st = os.stat(resolved)
        key = artifact_key(resolved, st)
    except OSError as err:
        problems.append(Problem(str(file), f"{where}.artifact", f"cannot read {resolved}: {err.strerror}"))
        return _Artifact(resolved, declared, None)
    found = _Artifact(resolved, st.st_size, key)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        # Hashing a FIFO or a device would block or never end.
        problems.append(Problem(str(file), f"{where}.artifact", f"{resolved} is not a file or a directory"))
        return found
    if declared is not None and declared != st.st_size:
        problems.append(Problem(str(file), f"{where}.bytes",
                                f"declares {declared} bytes but {resolved} has {st.st_size}"))
    if digests is not None:
        _check_digest(file, where, found, sha256, stat.S_ISDIR(st.st_mode), digests, problems)
    return found


def _check_digest(file: Path, where: str, artifact: _Artifact, sha256: str, is_dir: bool,
                  digests: ArtifactDigests, problems: list[Problem]) -> None:
    assert artifact.key is not None
    try:
        actual = digests.sha256(artifact.path, artifact.key, is_dir)
    except OSError as err:
        problems.append(Problem(str(file), f"{where}.artifact", f"cannot read {artifact.path}: {err.strerror}"))
        return
    except ArtifactError as err:
        problems.append(Problem(str(file), f"{where}.artifact", str(err)))
        return
    if actual != sha256:
        problems.append(Problem(str(file), f"{where}.sha256", f"the artifact's sha256 is {actual}, not {sha256}"))


def _resolve_own_artifacts(path: Path, tenant: Tenant, problems: list[Problem], digests: ArtifactDigests | None,
                           seen: list[tuple[str, ArtifactKey | None]]) -> Tenant | None:
    """The tenant with its local artifacts made absolute and their sizes measured; each one is added to
    `seen`, with its key. None where one is unsound.

    A local artifact must be in the tenant's own folder, models/<tenant>/ of the config (links resolved),
    checked before anything is read: a tenant serves only bytes its own pipeline wrote, as on S3 under
    tenants/<tenant>/, and no file elsewhere on the host is read or its digest told. One this process does
    not read (`digests.reads`) is only made absolute."""
    before = len(problems)
    home = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "models",
                                         tenant.id))
    read = digests is None or digests.reads(tenant)
    own: dict[str, OwnModel] = {}
    for name, model in tenant.own_models.items():
        versions: dict[str, OwnModelVersion] = {}
        for version, ov in model.versions.items():
            where = f"own_models.{name}.versions.{version}"
            if not is_s3(ov.artifact) and not _inside(home, path, ov.artifact):
                problems.append(Problem(str(path), f"{where}.artifact", (
                    f"{ov.artifact} is not in models/{tenant.id}/ of the config: a tenant serves only its own "
                    f"files (put it there, or on S3 under tenants/{tenant.id}/)")))
                continue
            if not read:
                if not is_s3(ov.artifact):
                    ov = ov.model_copy(update={"artifact": _beside(path, ov.artifact)})
                versions[version] = ov
                continue
            found = _local_artifact(path, where, ov.artifact, ov.sha256, ov.bytes, digests, problems)
            if found is not None:
                seen.append((found.path, found.key))
                ov = ov.model_copy(update={"artifact": found.path, "bytes": found.size})
            versions[version] = ov
        own[name] = model.model_copy(update={"versions": versions})
    if len(problems) > before:
        return None
    return tenant.model_copy(update={"own_models": own})


def _inside(home: str, file: Path, artifact: str) -> bool:
    """Whether `artifact` (relative to `file`'s folder, or absolute) resolves, links and all, into `home`."""
    return os.path.realpath(_beside(file, artifact)).startswith(home + os.sep)


def _beside(file: Path, artifact: str) -> str:
    """A local artifact's absolute path: as written, relative to the folder of the file that names it.
    os.path, not pathlib: a tenant file may declare hundreds of versions, and pathlib's parsing cost more
    than the stat itself."""
    return os.path.abspath(os.path.join(os.path.dirname(file), artifact))


def _resolve_catalog_artifacts(path: Path, models: dict[str, Model], problems: list[Problem],
                               digests: ArtifactDigests) -> dict[str, Model]:
    """`loader: onnx` catalog versions with a local artifact: made absolute, relative to models.yaml, and
    checked against their sha256 (each full load; only a changed artifact is hashed again)."""
    out: dict[str, Model] = {}
    for name, model in models.items():
        versions: dict[str, ModelVersion] = {}
        for version, mv in model.versions.items():
            if mv.artifact is not None and mv.sha256 is not None:
                found = _local_artifact(path, f"models.{name}.versions.{version}", mv.artifact, mv.sha256, None,
                                        digests, problems)
                if found is not None:
                    mv = mv.model_copy(update={"artifact": found.path})
            versions[version] = mv
        out[name] = model.model_copy(update={"versions": versions})
    return out


def _check_regions(path: Path, regions: list[Region], problems: list[Problem]) -> None:
    seen_ids: set[str] = set()
    ports: dict[int, str] = {}
    for i, region in enumerate(regions):
        if region.id in seen_ids:
            problems.append(Problem(str(path), f"regions[{i}].id", f"duplicate region {region.id!r}"))
        seen_ids.add(region.id)
        if region.gateway_port in ports:
            problems.append(Problem(
                str(path), f"regions[{i}].gateway_port",
                f"port {region.gateway_port} is already used by region {ports[region.gateway_port]!r}",
            ))
        ports.setdefault(region.gateway_port, region.id)


def _check_models(path: Path, models: dict[str, Model], regions: dict[str, Region], problems: list[Problem]) -> None:
    for name, model in models.items():
        for version, mv in model.versions.items():
            where = f"models.{name}.versions.{version}"
            for r in mv.regions or []:
                if r not in regions:
                    problems.append(Problem(str(path), f"{where}.regions", unknown("region", r, regions)))
                elif regions[r].pool(mv.pool) is None:
                    problems.append(Problem(str(path), f"{where}.pool", f"pool {mv.pool!r} does not exist in {r!r}"))
            if not any(reg.pool(mv.pool) for reg in regions.values()):
                problems.append(Problem(str(path), f"{where}.pool", f"pool {mv.pool!r} exists in no region"))


def _check_refs(
    path: Path,
    refs: TenantRefs,
    tiers: dict[str, Tier],
    regions: dict[str, Region],
    models: dict[str, Model],
    problems: list[Problem],
) -> None:
    file = str(path)
    if refs.tier is not None and refs.tier not in tiers:
        problems.append(Problem(file, "tier", unknown("tier", refs.tier, tiers)))
    for i, region in enumerate(refs.allowed):
        if region not in regions:
            problems.append(Problem(file, f"regions.allowed[{i}]", unknown("region", region, regions)))
    if refs.home is not None and refs.home not in regions:
        problems.append(Problem(file, "regions.home", unknown("region", refs.home, regions)))
    for own in refs.own:
        if own in models:
            message = (f"own model {own!r} has the name of a catalog model; a tenant's own model names may not "
                       "shadow the catalog's (rename it)")
            problems.append(Problem(file, f"own_models.{own}", message))
    for model_name, split in refs.splits.items():
        model = models.get(model_name)
        if model is None:
            message = (f"{model_name!r} is one of this tenant's own_models: its split goes there, not under models"
                       if model_name in refs.own else unknown("model", model_name, models))
            problems.append(Problem(file, f"models.{model_name}", message))
            continue
        # Whether a split may run where the tenant's data may go is policy/residency's call.
        for version in split:
            where = f"models.{model_name}.split.{version}"
            mv = model.versions.get(version)
            if mv is None:
                known = ", ".join(sorted(model.versions))
                message = f"model {model_name!r} has no version {version!r} (known: {known})"
                problems.append(Problem(file, where, message))
