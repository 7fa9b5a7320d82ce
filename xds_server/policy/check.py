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
from xds_server.config.yaml_data import Loader
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
    # subject -> file, where known (a subject found in several files: each of them, ", "-separated)
    locations: dict[str, str] = field(default_factory=dict)
    # The file each violation came from, in step with `violations`, where the subject alone does not say
    # (the same manifest in two regions' renders); empty: `locations` names it.
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth a look, not a failure (a quota clamped to its tier's)

    def where(self) -> list[str]:
        """The file of each violation, in step with `violations` ("" where unknown)."""
        if self.files:
            return self.files
        return [self.locations.get(v.subject, "") for v in self.violations]


@dataclass
class Report:
    sections: list[Section]

    @property
    def ok(self) -> bool:
        return not any(s.violations or s.errors for s in self.sections)

    def to_json(self) -> dict[str, Any]:
        """Every section with every error ({file, field, message}, as `validate --json` lists problems) and
        every violation, each with the file it came from where known."""
        return {"ok": self.ok, "sections": [
            {"name": s.name, "source": s.source,
             "violations": [{**asdict(v), **({"file": f} if f else {})} for v, f in zip(s.violations, s.where(),
                                                                                      strict=True)],
             "errors": [e.to_json() for e in s.errors], "checked": s.checked, "locations": s.locations,
             "notes": s.notes}
            for s in self.sections]}

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
            for v, file in zip(shown, s.where(), strict=False):
                lines.append(f"  - {v.subject}" + (f" [{file}]" if file else ""))
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
    """Every file's manifests through policy/admission, each file on its own: a violation names its file, and
    the same one in two files (one object in two regions' renders) is reported for each."""
    section = Section("manifests", ", ".join(map(str, paths)))
    per_file: list[tuple[str, list[Any]]] = []
    for path in paths:
        files = sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]
        if not files:  # checked as nothing, it would pass
            section.errors.append(Problem(str(path), "", "no manifests in it (no *.yaml or *.yml file)"))
        for file in files:
            found = _manifests_in(file, section.errors)
            if found is not None:
                per_file.append((str(file), found))
    section.checked = sum(len(found) for _, found in per_file)
    if section.errors:
        return section
    try:
        answers = violations_each(ADMISSION, [{"manifests": found} for _, found in per_file], policy_dir)
    except PolicyError as err:
        section.errors.append(err.problem())
        return section
    for (name, _), found_in_file in zip(per_file, answers, strict=True):
        section.violations += found_in_file
        section.files += [name] * len(found_in_file)
        for v in found_in_file:
            known = section.locations.get(v.subject)
            if known is None:
                section.locations[v.subject] = name
            elif name not in known.split(", "):
                section.locations[v.subject] = f"{known}, {name}"
    return section


def _manifests_in(file: Path, errors: list[Problem]) -> list[Any] | None:
    """The Kubernetes objects in one file, or None with why not in `errors`."""
    try:
        # Bytes: libyaml decodes them, and an error's position is the file's (line and column).
        found = [d for d in yaml.load_all(file.read_bytes(), Loader=Loader) if d is not None]
    except OSError as err:
        errors.append(Problem(str(file), "", f"cannot read manifests: {err.strerror or err}"))
        return None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = " ".join(str(getattr(err, "problem", None) or err).split())
        errors.append(Problem(str(file), where, f"not valid YAML: {why}"))
        return None
    # Anything else (a values file, an empty render) would be checked as nothing, and pass.
    others = [k for k, d in enumerate(found, 1) if not (isinstance(d, dict) and d.get("apiVersion") and d.get("kind"))]
    if not found:
        errors.append(Problem(str(file), "", "no Kubernetes objects in it"))
    elif others:
        errors.append(Problem(str(file), "", f"document {capped(others)} is not a Kubernetes object (no apiVersion "
                                             "and kind): give the rendered manifests (`helm template`)"))
    else:
        return found
    return None


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
    return violations_each(query, [input], policy_dir)[0]


def violations_each(query: str, inputs: list[Any], policy_dir: Path | None = None) -> list[list[Violation]]:
    """`violations` for each of `inputs` on its own (one file's manifests each), the policies loaded once."""
    from xds_server.config.model import PolicySettings

    engine = make_engine(PolicySettings())
    concern = query.split("/")[1]
    answers: list[list[Violation]] = []
    try:
        engine.load(PolicySources.load(policy_dir or default_policy_dir(), engine.name), {})
        for input in inputs:
            found = engine.query(query, input)
            if found is None:
                raise PolicyError(engine.name, query, f"no policy answers data.{query.replace('/', '.')}")
            answers.append(sorted({Violation.of(v, concern) for v in found}))
    finally:
        engine.close()
    return answers


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

