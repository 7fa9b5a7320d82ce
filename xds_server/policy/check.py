"""`fairshare policy check`: put a change to the policies before it merges.

Evaluates the tenant config, rendered Kubernetes manifests and a Terraform plan (each when given) and
reports every violated rule in plain words: what, which field, which rule, why.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xds_server.config.errors import PROBLEMS_SHOWN, ConfigError, Problem
from xds_server.config.loader import load_config
from xds_server.config.model import PlatformConfig, clamped_notes
from xds_server.listing import capped, capped_lines
from xds_server.policy.backends import default_policy_dir, make_engine
from xds_server.policy.decide import Violation
from xds_server.policy.engine import PolicyError
from xds_server.policy.resolve import PolicyViolations
from xds_server.policy.sources import PolicySources

ADMISSION = "fairshare/admission/violations"
INFRASTRUCTURE = "fairshare/infrastructure/violations"


@dataclass
class Section:
    name: str  # config, manifests or plan
    source: str
    violations: list[Violation] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)  # could not be evaluated: a failure, not a pass
    checked: int = 0  # tenants, manifests or planned resources looked at
    locations: dict[str, str] = field(default_factory=dict)  # subject -> file, where known
    notes: list[str] = field(default_factory=list)  # worth a look, not a failure (a quota clamped to its tier's)


@dataclass
class Report:
    sections: list[Section]

    @property
    def ok(self) -> bool:
        return not any(s.violations or s.errors for s in self.sections)

    def to_json(self) -> dict[str, Any]:
        """Every section, each error as {file, field, message} (as `validate --json` lists problems)."""
        return {"ok": self.ok, "sections": [
            {**asdict(s), "violations": [asdict(v) for v in s.violations]} for s in self.sections]}

    def render(self, limit: int | None = PROBLEMS_SHOWN) -> str:
        """For a person: each section's first `limit` errors and violations (None: all), then what the
        rest are by rule, most frequent first; the JSON form (`to_json`) has every one."""
        lines: list[str] = []
        for s in self.sections:
            if s.errors:  # nothing was evaluated: a count of what was checked would read as a pass
                lines.append(f"{s.name} ({s.source}): could not be checked, {len(s.errors):,} error(s)")
            else:
                state = f"{len(s.violations):,} violation(s)" if s.violations else "ok"
                lines.append(f"{s.name} ({s.source}): {s.checked:,} checked, {state}")
            lines += capped_lines(s.errors, limit, "  error: ", "errors (the --json report lists every one)")
            shown = s.violations if limit is None else s.violations[:limit]
            for v in shown:
                where = f" [{s.locations[v.subject]}]" if v.subject in s.locations else ""
                lines.append(f"  - {v.subject}{where}")
                lines.append(f"      field: {v.field or '-'}")
                lines.append(f"      rule:  {v.concern}/{v.rule}")
                lines.append(f"      why:   {v.message}")
            lines += capped_lines(s.notes, limit, "  note: ", "notes (the --json report lists every one)")
            if len(s.violations) > len(shown):
                rest = Counter(f"{v.concern}/{v.rule}" for v in s.violations[len(shown):])
                lines.append(f"  ... and {sum(rest.values()):,} more violations: "
                             f"{capped(f'{rule} ({n:,})' for rule, n in rest.most_common())} "
                             "(the --json report lists every one)")
        total = sum(len(s.violations) for s in self.sections)
        errors = sum(len(s.errors) for s in self.sections)
        failed = ([f"{errors:,} error(s)"] if errors else []) + [f"{total:,} violation(s)"]
        lines.append("policy check passed" if self.ok else f"policy check FAILED: {', '.join(failed)}")
        return "\n".join(lines)


def check_config(config_dir: Path) -> tuple[Section, PlatformConfig | None]:
    """The config's section, and the config itself when it is valid (for the plan check's tenant regions)."""
    section = Section("config", str(config_dir))
    try:
        cfg = load_config(config_dir)
    except PolicyViolations as err:
        section.violations, section.locations = err.violations, err.files
        section.checked = len(err.files)
    except ConfigError as err:
        section.errors = list(err.problems)
    else:
        section.checked = len(cfg.tenants)
        section.notes = clamped_notes(cfg)
        return section, cfg
    return section, None


def check_manifests(paths: list[Path], policy_dir: Path | None = None) -> Section:
    section = Section("manifests", ", ".join(map(str, paths)))
    manifests: list[Any] = []
    for path in paths:
        for file in sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]:
            try:
                found = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
            except (OSError, yaml.YAMLError) as err:
                section.errors.append(Problem(str(file), "", f"cannot read manifests: {err}"))
                continue
            # Anything else (a values file, an empty render) would be checked as nothing, and pass.
            others = [k for k, d in enumerate(found, 1) if not (isinstance(d, dict) and d.get("apiVersion")
                                                                 and d.get("kind"))]
            if not found:
                section.errors.append(Problem(str(file), "", "no Kubernetes objects in it"))
            elif others:
                section.errors.append(Problem(str(file), "", f"document {capped(others)} is not a Kubernetes "
                                              "object (no apiVersion and kind): give the rendered manifests "
                                              "(`helm template`)"))
            else:
                manifests += found
    section.checked = len(manifests)
    _evaluate(section, ADMISSION, {"manifests": manifests}, policy_dir)
    return section


def check_plan(plan_file: Path, config: PlatformConfig | None, policy_dir: Path | None = None) -> Section:
    section = Section("plan", str(plan_file))
    try:
        raw = plan_file.read_bytes()
    except OSError as err:
        section.errors.append(Problem(str(plan_file), "", f"cannot read the plan: {err.strerror or err}"))
        return section
    plan = _plan_of(raw)
    if isinstance(plan, str):
        section.errors.append(Problem(str(plan_file), "", plan))
        return section
    section.checked = len(plan.get("planned_values", {}).get("root_module", {}).get("resources", [])) \
        + sum(len(m.get("resources", [])) for m in _child_modules(plan))
    _evaluate(section, INFRASTRUCTURE, plan_input(plan, config), policy_dir)
    return section


def violations(query: str, input: Any, policy_dir: Path | None = None) -> list[Violation]:
    """Every violation the policies find in `input` at `query` (ADMISSION or INFRASTRUCTURE), on the
    embedded engine. Raises PolicyError when they cannot answer."""
    from xds_server.config.model import PolicySettings

    engine = make_engine(PolicySettings())
    try:
        engine.load(PolicySources.load(policy_dir or default_policy_dir(), engine.name), {})
        found = engine.query(query, input)
    finally:
        engine.close()
    if found is None:
        raise PolicyError(engine.name, query, f"no policy answers data.{query.replace('/', '.')}")
    concern = query.split("/")[1]
    return sorted({Violation.of(v, concern) for v in found})


def _plan_of(raw: bytes) -> dict[str, Any] | str:
    """The plan `raw` holds, or why it is not what `terraform show -json <planfile>` prints. Anything else
    (a state, an empty object) holds no planned resources, so the policies would find nothing and it would
    pass."""
    show = "run `terraform show -json <planfile> > plan.json` and check that"
    if raw.startswith(b"PK"):
        return f"a binary plan file (what `terraform plan -out` writes): {show}"
    try:
        plan = json.loads(raw)
    except ValueError as err:
        return f"not JSON ({err}): {show}"
    if not isinstance(plan, dict) or "format_version" not in plan:
        return f"not `terraform show -json` output: {show}"
    if "planned_values" not in plan and "resource_changes" not in plan:
        if "values" in plan:
            return f"a state, not a plan (`terraform show -json` without a plan file): {show}"
        return f"no planned_values or resource_changes: not a plan: {show}"
    return plan


def plan_input(plan: dict[str, Any], config: PlatformConfig | None) -> dict[str, Any]:
    """A `terraform show -json` plan with the regions each tenant allows, as policy/infrastructure reads it.
    Without a valid config the policy sees no tenants and fails closed (the config section says why)."""
    tenants = {} if config is None else {
        t.id: {"regions": t.spec.regions.model_dump(mode="json")} for t in config.tenants.values()}
    return {**plan, "tenants": tenants}


def _evaluate(section: Section, query: str, input: Any, policy_dir: Path | None) -> None:
    if section.errors:
        return
    try:
        section.violations = violations(query, input, policy_dir)
    except PolicyError as err:
        section.errors.append(err.problem())


def _child_modules(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(plan.get("planned_values", {}).get("root_module", {}).get("child_modules", []))
    while stack:
        module = stack.pop()
        out.append(module)
        stack += module.get("child_modules", [])
    return out

