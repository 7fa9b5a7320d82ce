"""`fairshare tenant offboard TENANT`: the steps, in order, each idempotent and recorded in a state file
(`<state>/offboard/<tenant>.json`) when it completes, so a run that stops at a step is run again as it
was: the completed steps are skipped and the failed one is retried.

1. mark      the tenant file says `offboard: true` (written here, or merged before with --from-config)
2. routes    the control plane serves a config without the tenant and every Envoy has ACKed it
3. tokens    no token is issued for it; a token still held gets 403 (no route scope holds the tenant)
4. models    its own models are unloaded from every runtime replica (repository extension)
5. artifacts every version of every object under `tenants/<tenant>/` in each region's model bucket
6. counters  its rate-limit counters (the control plane holds the backend: memory or Redis)
7. secrets   its secrets in Secrets Manager scheduled for deletion after the recovery window
8. receipt   the signed deletion receipt
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xds_server.audit.log import rfc3339
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import UnknownTenant, issue_for_config
from xds_server.config import ConfigError, PlatformConfig, load_config
from xds_server.config.model import is_name, is_s3
from xds_server.controlplane import inventory, repository
from xds_server.controlplane.admin_client import AdminClient
from xds_server.listing import capped
from xds_server.local.keys import remove_tenant_key
from xds_server.offboard import receipt, storage

STEPS = ("mark", "routes", "tokens", "models", "artifacts", "counters", "secrets", "receipt")
_MARK = re.compile(r"^offboard:.*$", re.MULTILINE)


class OffboardError(Exception):
    """Offboarding refused before any step (`step` None) or stopped at `step`; the message says why."""

    def __init__(self, message: str, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class Options:
    tenant: str
    config_dir: Path
    state_dir: Path
    status_url: str = "http://127.0.0.1:18001"
    # The config-change flow: the tenant file must already say `offboard: true` (merged in a pull
    # request); nothing here writes the config.
    from_config: bool = False
    # AWS steps skipped (a local platform without an AWS account); the receipt lists what they would have
    # looked at as remaining.
    no_aws: bool = False
    recovery_window_days: int = 30
    secret_prefix: str = storage.SECRET_PREFIX
    # How long to wait for the control plane to publish and every Envoy to ACK: a hang guard.
    timeout_s: float = 120.0
    # The control plane's certificate for the replicas' admin ports (mutual TLS on); None: the local
    # CA's pair under state_dir, when `fairshare run` made one.
    tls_dir: Path | None = None


@dataclass
class State:
    """What completed, step by step, with what each removed: the receipt is written from it."""

    path: Path
    tenant: str
    started_at: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, tenant: str) -> State:
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                return cls(path, tenant, str(data["started_at"]), dict(data["steps"]))
            except (ValueError, KeyError, TypeError) as err:
                raise OffboardError(f"{path}: not a readable offboarding state ({err}); move it away to "
                                    "start over (every step is safe to repeat)") from err
        return cls(path, tenant, rfc3339())

    def finished(self, step: str, no_aws: bool) -> bool:
        """Done, and not skipped by an earlier --no-aws run that this run, with AWS, can do now: a step
        marked done when it was skipped would leave the buckets and secrets uncleaned for good. The
        receipt is issued again once such a step ran, since it lists what was skipped."""
        if step not in self.steps:
            return False
        if no_aws:
            return True
        if step == "receipt":
            return not any("skipped" in r for s, r in self.steps.items() if s != "receipt")
        return "skipped" not in self.steps[step]

    def done(self, step: str, result: dict[str, Any]) -> None:
        self.steps[step] = {"at": rfc3339(), **result}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tenant": self.tenant, "started_at": self.started_at, "steps": self.steps},
                                  indent=2))
        os.replace(tmp, self.path)  # a crash leaves the old state or the new one, never half of one


def state_path(state_dir: Path, tenant: str) -> Path:
    return state_dir / "offboard" / f"{tenant}.json"


def receipt_path(state_dir: Path, tenant: str) -> Path:
    return state_dir / "offboard" / f"{tenant}.receipt.jws"


@dataclass
class Offboarding:
    opts: Options
    progress: Callable[[str], None] = lambda _line: None
    config: PlatformConfig | None = None
    marked_at: float = 0.0

    @property
    def tenant(self) -> str:
        return self.opts.tenant

    @property
    def tenant_file(self) -> Path:
        for suffix in (".yaml", ".yml"):
            path = self.opts.config_dir / "tenants" / f"{self.tenant}{suffix}"
            if path.is_file():
                return path
        return self.opts.config_dir / "tenants" / f"{self.tenant}.yaml"

    def run(self) -> tuple[dict[str, Any], Path]:
        """Every step not yet done; returns the receipt and where its signed form is."""
        state = State.load(state_path(self.opts.state_dir, self.tenant), self.tenant)
        self.preflight(state)
        pending = [step for step in STEPS if not state.finished(step, self.opts.no_aws)]
        if pending:
            # Every step after the mark asks the control plane: a wrong --status-port must not leave the
            # tenant file marked (the next reload would take the tenant off every gateway) and stop there.
            self._status()
        for step in STEPS:
            if step not in pending:
                self.progress(f"  {step:<10} done before ({state.steps[step]['at']})")
                continue
            try:
                result = getattr(self, f"_{step}")(state)
            except OffboardError as err:
                raise OffboardError(str(err), step) from err
            except Exception as err:  # a bug or an outage must still say which step and how to go on
                raise OffboardError(f"{type(err).__name__}: {err}", step) from err
            state.done(step, result)
            self.progress(f"  {step:<10} {_summary(step, result)}")
        signed = receipt_path(self.opts.state_dir, self.tenant)
        return receipt.verify(signed.read_text(), json.loads(self._jwks())), signed

    # -- before any step: the refusals -------------------------------------------------------------

    def preflight(self, state: State) -> None:
        if not is_name(self.tenant):
            raise OffboardError(f"{self.tenant!r} is not a tenant id (lowercase letters, digits and dashes)")
        path = self.tenant_file
        if not path.is_file():
            if state.finished("receipt", self.opts.no_aws):
                return  # offboarded earlier and the file since removed: nothing left to do
            if "receipt" in state.steps:
                skipped = [s for s in STEPS if "skipped" in state.steps.get(s, {})]
                raise OffboardError(f"{self.tenant} was offboarded with --no-aws, which skipped "
                                    f"{', '.join(skipped)}, and {path} has since been removed: those steps "
                                    "read the tenant's regions from it. Restore the file (with offboard: true) "
                                    "and run again, or run with --no-aws to leave them skipped")
            known = sorted(p.stem for p in (self.opts.config_dir / "tenants").glob("*.y*ml"))
            raise OffboardError(f"unknown tenant {self.tenant!r}: there is no {path} "
                                f"({len(known):,} known: {capped(known) or 'none'})")
        raw = yaml.safe_load(path.read_text()) or {}
        marked = isinstance(raw, dict) and raw.get("offboard") is True
        if self.opts.from_config and not marked:
            raise OffboardError(f"{path} does not say `offboard: true`: with --from-config the change that "
                                "marks it must be merged first (or run without --from-config to mark it here)")
        try:
            self.config = load_config(self.opts.config_dir)
        except ConfigError as err:
            raise OffboardError(f"the config does not load, so no change to it would be served:\n"
                                f"{err.render()}") from err
        if self.tenant not in self.config.tenants and self.tenant not in self.config.offboarded:
            raise OffboardError(f"tenant {self.tenant!r} is not in the loaded config")
        pinned = self.pinned()
        if pinned:
            raise OffboardError(f"tenant {self.tenant!r} still has traffic pinned to it, which offboarding "
                                f"would break: {capped(pinned, sep='; ')}. Move those artifacts out of "
                                f"tenants/{self.tenant}/ first")
        # Refused here, not at the artifacts step: by then the tenant is already off every gateway, and the
        # missing credentials say nothing of --no-aws.
        aws = self.aws_needed(state)
        if aws and storage.credentials_missing():
            raise OffboardError(f"no AWS credentials found, and offboarding {self.tenant} cleans "
                                f"{'; '.join(aws)}. Configure AWS credentials, or {storage.NO_AWS}")

    def aws_needed(self, state: State) -> list[str]:
        """What the steps still to run would ask AWS for (nothing with --no-aws)."""
        assert self.config is not None
        if self.opts.no_aws:
            return []
        out = []
        buckets = self._buckets()
        if buckets and not state.finished("artifacts", False):
            out.append(f"the model buckets {capped(buckets)} (its objects under "
                       f"{storage.tenant_prefix(self.tenant)})")
        if not state.finished("secrets", False):
            out.append(f"Secrets Manager in {capped(sorted(self.config.regions))} (secrets named "
                       f"{self.opts.secret_prefix}/{self.tenant}/...)")
        return out

    def pinned(self) -> list[str]:
        """What others serve from the tenant's storage: a catalog model version, or another tenant's own
        model, whose artifact is under `tenants/<tenant>/` of a model bucket. Deleting the prefix would
        break their traffic, so the offboarding is refused until they move. (Nothing else can reference a
        tenant: own model names live in the owner's namespace, and grants name catalog models only.)"""
        assert self.config is not None
        prefixes = tuple(f"s3://{r.model_bucket}/{storage.tenant_prefix(self.tenant)}"
                         for r in self.config.regions.values() if r.model_bucket)
        if not prefixes:
            return []
        found = [f"catalog model {m} version {v} ({mv.artifact})"
                 for m, model in sorted(self.config.models.items()) for v, mv in sorted(model.versions.items())
                 if mv.artifact and is_s3(mv.artifact) and mv.artifact.startswith(prefixes)]
        found += [f"tenant {t.id}'s own model {m} version {v} ({ov.artifact})"
                  for t in self.config.tenants.values() if t.id != self.tenant
                  for m, om in sorted(t.spec.own_models.items()) for v, ov in sorted(om.versions.items())
                  if ov.artifact.startswith(prefixes)]
        return found

    # -- the steps -----------------------------------------------------------------------------------

    def _mark(self, _state: State) -> dict[str, Any]:
        path = self.tenant_file
        text = path.read_text()
        raw = yaml.safe_load(text) or {}
        self.marked_at = time.time()
        if raw.get("offboard") is not True:
            # An edit of one line, not a re-dump: the file keeps its comments and layout for review.
            text = _MARK.sub("offboard: true", text) if _MARK.search(text) else text.rstrip("\n") + "\noffboard: true\n"
            tmp = path.with_name(f".{path.name}.offboard")
            tmp.write_text(text)
            os.replace(tmp, path)
            written = True
        else:
            written = False
        # Not reloaded here: the routes step times the control plane from this write, and whether the
        # marked config loads is the control plane's answer (a rejection fails that step with its reason).
        return {"file": str(path), "written": written}

    def _routes(self, _state: State) -> dict[str, Any]:
        """Wait until the serving config has the tenant offboarded and every connected Envoy of every
        region has ACKed that config (the control plane's status counts each node's applied version)."""
        deadline = time.monotonic() + self.opts.timeout_s
        last: dict[str, Any] = {}
        while True:
            try:
                last = self._status()
            except OffboardError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            reload = last.get("last_reload") or {}
            if self.tenant in last.get("offboarded", []):
                regions = last.get("xds", {}).get("regions", {})
                if all(r["nodes_applied"] == r["nodes_connected"] for r in regions.values()):
                    return {
                        "config_version": last.get("config_version"),
                        "gateways": {name: {"version": r["version"], "envoys_acked": r["nodes_applied"]}
                                     for name, r in sorted(regions.items())},
                        "seconds_since_mark": round(time.time() - self.marked_at, 3) if self.marked_at else None,
                    }
            elif reload and not reload.get("ok") and reload.get("at", 0) >= self.marked_at:
                raise OffboardError(f"the control plane rejected the config that offboards {self.tenant}: "
                                    f"{reload.get('error')}")
            if time.monotonic() > deadline:
                raise OffboardError(f"the control plane at {self.opts.status_url} did not serve the tenant as "
                                    f"offboarded with every Envoy's ACK within {self.opts.timeout_s:.0f} s "
                                    f"(last status: version {last.get('config_version')}, "
                                    f"offboarded {last.get('offboarded')})")
            time.sleep(0.02)

    def _tokens(self, _state: State) -> dict[str, Any]:
        try:
            self.config = load_config(self.opts.config_dir)  # as served now: with the tenant offboarded
        except ConfigError as err:
            raise OffboardError(f"the config does not load:\n{err.render()}") from err
        key = SigningKey.load_or_create(self.opts.state_dir)
        try:
            issue_for_config(self.config, key, self.tenant)
        except UnknownTenant:
            pass
        else:
            raise OffboardError(f"tokens are still issued for {self.tenant}: the config does not offboard it")
        ttl = self.config.platform.auth.token_ttl_seconds
        return {"issuing": "refused", "gateway": "a token still held is refused with 403: no route scope holds "
                f"the tenant on any gateway (tokens expire within {ttl} s of issue)"}

    def _models(self, _state: State) -> dict[str, Any]:
        assert self.config is not None
        client = AdminClient.for_operator(self.config, self.opts.tls_dir, self.opts.state_dir)
        # The serving pools' replicas only: a region of cells also lists its gateways, which hold no models.
        endpoints = inventory.serving(self.config, inventory.endpoints_from_status(self._status()))
        prefix = f"{self.tenant}:"
        spec = self._spec()
        own = sorted(f"{prefix}{m}" for m in (spec.own_models if spec else ()))
        digests = sorted({ov.sha256 for ov in self._own_versions()})
        out: list[dict[str, Any]] = []
        for (region, pool), eps in sorted(endpoints.by_pool.items()):
            for ep in eps:
                where = ep.name or f"{ep.host}:{ep.port}"
                try:
                    held = _held(ep, prefix, client)
                except (OSError, ValueError) as err:
                    raise OffboardError(f"replica {where} ({region}/{pool}) cannot be asked what it holds: "
                                        f"{err}") from err
                for qualified in sorted(held):
                    reason = repository.unload(ep, qualified, client=client)
                    if reason is not None:
                        raise OffboardError(f"replica {where} did not unload {qualified}: {reason}")
                left = _held(ep, prefix, client)
                if left:
                    raise OffboardError(f"replica {where} still holds {len(left):,} of the tenant's models "
                                        f"after unloading: {capped(sorted(left))}")
                # Unloading frees the memory; the verified copies in the replica's disk cache go too, so
                # nothing of the tenant stays on the replica until its cache needs room.
                try:
                    purged = repository.purge(ep, digests, client=client) if digests else None
                except (OSError, ValueError) as err:
                    raise OffboardError(f"replica {where} ({region}/{pool}) cannot purge the tenant's artefact "
                                        f"copies: {err}") from err
                if purged is not None and purged["busy"]:
                    raise OffboardError(f"replica {where} is still reading artefact copies "
                                        f"{capped(d[:12] for d in purged['busy'])}; run the command again")
                out.append({"replica": where, "region": region, "pool": pool, "unloaded": sorted(held),
                            "holds_now": sorted(left),
                            "purged_copies": len(purged["purged"]) if purged is not None else 0})
        result: dict[str, Any] = {"own_models": own, "replicas": out, "artifact_digests": digests}
        # The control plane asks a removed model's replicas to unload it on the reload that removes it, so
        # by now they usually hold nothing: "0 unloads" must not read as "nothing was there".
        before = [m for m in own if not any(m in r["unloaded"] for r in out)]
        if before:
            result["unloaded_on_reload"] = {
                "models": before,
                "note": "held by no replica when asked here (checked, none remains): the control plane asked "
                        "their pools' replicas to unload them on the reload that offboarded the tenant (a "
                        "model never called was never loaded)"}
        return result

    def _artifacts(self, _state: State) -> dict[str, Any]:
        assert self.config is not None
        local = self._local_files()
        if not self._buckets():
            return {"buckets": [], "note": "no region of the config has a model bucket: nothing in S3 to delete",
                    "local_files_not_deleted": local}
        if self.opts.no_aws:
            s3 = sorted({ov.artifact for ov in self._own_versions() if is_s3(ov.artifact)})
            return {"skipped": f"--no-aws: the model buckets ({capped(self._buckets())}) were not cleaned",
                    "s3_artifacts_not_deleted": s3, "local_files_not_deleted": local}
        buckets = [storage.delete_artifacts(r.model_bucket, r.id, self.tenant)
                   for r in self.config.regions.values() if r.model_bucket]
        return {"buckets": [b.to_json() for b in buckets], "local_files_not_deleted": local}

    def _local_files(self) -> list[str]:
        """The tenant's own model files in the config source: its local artifacts and its folder
        `models/<tenant>/` (metadata beside them); relative to the config folder when inside it."""
        files = {self._resolve(ov.artifact) for ov in self._own_versions() if not is_s3(ov.artifact)}
        folder = self.opts.config_dir / "models" / self.tenant
        if folder.is_dir():
            files |= {p.resolve() for p in folder.rglob("*")} - self._local_files_of_others()
        root = self.opts.config_dir.resolve()
        return sorted(str(f.relative_to(root)) if f.is_relative_to(root) else str(f) for f in files if f.is_file())

    def _local_files_of_others(self) -> set[Path]:
        # A file of the folder that a catalog version or another tenant loads is theirs too: never listed
        # for removal with this tenant.
        assert self.config is not None
        artifacts = [mv.artifact for m in self.config.models.values() for mv in m.versions.values() if mv.artifact]
        artifacts += [ov.artifact for t in self.config.tenants.values() if t.id != self.tenant
                      for om in t.spec.own_models.values() for ov in om.versions.values()]
        return {Path(a).resolve() for a in artifacts if not is_s3(a)}

    def _resolve(self, artifact: str) -> Path:
        # As the loader does: a relative path is relative to the tenant file's folder.
        return (self.tenant_file.parent / artifact).resolve()

    def _buckets(self) -> list[str]:
        assert self.config is not None
        return sorted(f"s3://{r.model_bucket}" for r in self.config.regions.values() if r.model_bucket)

    def _counters(self, _state: State) -> dict[str, Any]:
        return self._post(f"/offboard/{self.tenant}/counters", None, method="DELETE")

    def _secrets(self, _state: State) -> dict[str, Any]:
        assert self.config is not None
        # `fairshare run`'s stand-in for the tenant's secret: its pseudonymisation key file. Once it is
        # gone no pseudonym made with it can be linked to anything.
        local_key = remove_tenant_key(self.opts.state_dir, self.tenant)
        if self.opts.no_aws:
            return {"skipped": "--no-aws: Secrets Manager not asked (no AWS account)", "local_key_deleted": local_key}
        found = [s.to_json() for region in sorted(self.config.regions)
                 for s in storage.schedule_secret_deletion(region, self.tenant, self.opts.recovery_window_days,
                                                           self.opts.secret_prefix)]
        return {"recovery_window_days": self.opts.recovery_window_days, "secrets": found,
                "local_key_deleted": local_key}

    def _receipt(self, state: State) -> dict[str, Any]:
        key = SigningKey.load_or_create(self.opts.state_dir)
        jwks = json.loads(self._jwks())
        if key.kid not in {k.get("kid") for k in jwks.get("keys", [])}:
            raise OffboardError(f"the platform key in {self.opts.state_dir} (kid {key.kid}) is not the one the "
                                f"control plane serves at {self.opts.status_url}/.well-known/jwks.json: a "
                                "receipt signed with it would not verify; run with the control plane's --state")
        body: dict[str, Any] = {
            "type": "fairshare.deletion-receipt/v1",
            "tenant": self.tenant,
            "started_at": state.started_at,
            "completed_at": rfc3339(),
            "steps": [{"step": s, **state.steps[s]} for s in STEPS if s in state.steps],
            "remains": [*self._remains(state),
                {"what": "audit records", "where": "the control plane's audit log",
                 "why": "kept on purpose: they record changes and decisions by tenant id, never request data, "
                        "model bytes or secrets"},
                {"what": f"the tenant file, marked offboard: true ({self.tenant_file.name})",
                 "where": "the config repository",
                 "why": "keeps the tenant out of every gateway and Terraform until a later change removes it"},
                {"what": "access-log lines with the tenant id and outcomes (never payloads)",
                 "where": "gateway and runtime logs", "why": "deleted by the retention policy (policy/retention)"},
            ],
            "signed_by": {"kid": key.kid, "jwks": f"{self.opts.status_url}/.well-known/jwks.json"},
        }
        signed = receipt_path(self.opts.state_dir, self.tenant)
        signed.parent.mkdir(parents=True, exist_ok=True)
        token = receipt.sign(body, key)
        # No newline after it: the file's sha256 (`sha256sum`) is the digest the audit trail records.
        signed.write_text(token)
        # Recorded by the control plane, the audit chain's one writer: the tenant id, the steps and the
        # receipt's digest (no tenant data). A re-run after a failure here records it again: the trail
        # then shows the retry, which is what happened.
        recorded = self._post(f"/offboard/{self.tenant}/audit",
                              {"receipt": token, "steps": [s for s in STEPS if s in state.steps] + ["receipt"]})
        return {"file": str(signed), "audit": recorded}

    def _remains(self, state: State) -> list[dict[str, Any]]:
        """What the steps left of the tenant's own, as they recorded it: its model files in the config source,
        and with --no-aws, its artifacts in the model buckets and anything of it in Secrets Manager."""
        artifacts = state.steps.get("artifacts", {})
        out: list[dict[str, Any]] = []
        local = artifacts.get("local_files_not_deleted") or []
        if local:
            out.append({"what": f"the tenant's own model files ({len(local)})", "files": local,
                        "where": f"the config source ({self.opts.config_dir})",
                        "why": "they are part of the config, not of a model bucket: remove them with the tenant's "
                               "file, in the change that removes it"})
        s3 = artifacts.get("s3_artifacts_not_deleted") or []
        if s3:
            out.append({"what": f"the tenant's own model artifacts in the model buckets ({len(s3)})", "files": s3,
                        "where": "S3", "why": "--no-aws: not deleted"})
        if "skipped" in state.steps.get("secrets", {}):
            out.append({"what": f"any secret named {self.opts.secret_prefix}/{self.tenant}/...",
                        "where": "Secrets Manager", "why": "--no-aws: not looked for, not scheduled for deletion"})
        return out

    # -- helpers ---------------------------------------------------------------------------------------

    def _spec(self) -> Any:
        cfg = self.config
        if cfg is None:
            return None
        if self.tenant in cfg.tenants:
            return cfg.tenants[self.tenant].spec
        if self.tenant in cfg.offboarded:
            return cfg.offboarded[self.tenant]  # as loaded: local artifact paths made absolute
        raw = yaml.safe_load(self.tenant_file.read_text()) if self.tenant_file.is_file() else None
        from xds_server.config.model import Tenant

        try:
            return Tenant.model_validate(raw) if isinstance(raw, dict) else None
        except ValueError:
            return None

    def _own_versions(self) -> list[Any]:
        """Every version of the tenant's own models (where its artifact is, its digest)."""
        spec = self._spec()
        return [ov for om in (spec.own_models.values() if spec else ()) for ov in om.versions.values()]

    def _status(self) -> dict[str, Any]:
        url = f"{self.opts.status_url}/status"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return dict(json.load(resp))
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise OffboardError(f"no control plane answers at {url} ({getattr(err, 'reason', err)}); "
                                "start it, or pass --status-port") from err

    def _post(self, path: str, body: dict[str, Any] | None, method: str = "POST") -> dict[str, Any]:
        url = f"{self.opts.status_url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as err:
            raise OffboardError(f"{url}: HTTP {err.code} {err.read().decode(errors='replace')[:300]}") from err
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise OffboardError(f"no control plane answers at {url}: {getattr(err, 'reason', err)}") from err

    def _jwks(self) -> str:
        url = f"{self.opts.status_url}/.well-known/jwks.json"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return str(resp.read().decode())
        except (urllib.error.URLError, OSError) as err:
            raise OffboardError(f"no control plane answers at {url}: {getattr(err, 'reason', err)}") from err


def _held(endpoint: Any, prefix: str, client: AdminClient) -> set[str]:
    return {str(e.get("name")) for e in repository.index(endpoint, client=client)
            if str(e.get("name", "")).startswith(prefix)}


def _models_summary(result: dict[str, Any]) -> str:
    n = sum(len(r["unloaded"]) for r in result["replicas"])
    own = result.get("own_models")  # absent from a state file written before it was recorded
    line = (f"{len(own)} own model(s) ({capped(own)}), none remains on {len(result['replicas'])} replicas "
            f"(checked); {n} unloads here" if own else
            f"no own models; none held on {len(result['replicas'])} replicas (checked)")
    if "unloaded_on_reload" in result:
        line += f"; {capped(result['unloaded_on_reload']['models'])} unloaded on the reload that offboarded it"
    return line


def _artifacts_summary(result: dict[str, Any]) -> str:
    line = result.get("skipped") or result.get("note") or ", ".join(
        f"s3://{b['bucket']}/{b['prefix']}: {b['versions_deleted']} versions" for b in result["buckets"])
    local = result.get("local_files_not_deleted") or []
    if local:
        line += f"; {len(local)} own model file(s) remain in the config source (listed in the receipt)"
    return f"skipped ({line})" if "skipped" in result else line


def _summary(step: str, result: dict[str, Any]) -> str:
    if step == "artifacts":
        return _artifacts_summary(result)
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    if step == "routes":
        return f"gone from every gateway (config {result['config_version']}, {result['gateways']})"
    if step == "models":
        return _models_summary(result)
    if step == "counters":
        return f"{result.get('deleted', 0)} deleted ({result.get('backend')})"
    if step == "secrets":
        return f"{len(result['secrets'])} scheduled for deletion in {result['recovery_window_days']} days"
    return json.dumps(result)
