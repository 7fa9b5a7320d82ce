"""Run every `_test.rego` under a policy directory on both Rego engines, with a coverage gate.

Each test rule (`test_<what>` in a `_test.rego` file) is evaluated on the embedded engine (regorus)
and on OPA's own Go engine, with the same meaning as `opa test`. A test passes when it evaluates to
`true`; `false`, undefined or an error is a failure, and so is a test the two engines judge
differently: the policies are OPA policies, so a disagreement means one of them is relying on a
dialect.

Coverage gate ("a rule that no test covers"): a line of a policy module (not a `_test.rego`) is
uncovered when, over the whole run, an engine never evaluated it; for a rule's head line that means
the rule never produced a value in any test. So a rule no test reaches, a rule whose body never holds
under any test (its deny path untested), an `else` never taken and a body expression no test gets to
are each reported by file and line, and fail the run. Both engines' coverage counts: OPA's is the
precise one (regorus also evaluates sibling rules of a queried package, marking their bodies run),
and regorus leaves out modules no evaluation entered, which are then wholly uncovered.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from xds_server.policy._regorus_worker import clean_error
from xds_server.policy.engine import locate
from xds_server.policy.sources import PolicySources

EMBEDDED, OPA = "embedded", "opa"
ENGINES = (EMBEDDED, OPA)

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
# Test rules start at column 0, as `opa fmt` writes them; `todo_test_` rules are skipped, as in OPA.
_TEST_RULE = re.compile(r"^(test_\w*)\b", re.MULTILINE)


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""  # for a failure: what the test evaluated to, or the engine's error


@dataclass(frozen=True)
class TestCase:
    file: str  # relative to the policy directory
    package: str
    name: str
    line: int

    @property
    def rule(self) -> str:
        return f"data.{self.package}.{self.name}"


@dataclass
class TestResult:
    case: TestCase
    outcomes: dict[str, Outcome]

    @property
    def agree(self) -> bool:
        return len({o.status for o in self.outcomes.values()}) <= 1

    @property
    def passed(self) -> bool:
        return self.agree and all(o.status is Status.PASS for o in self.outcomes.values())


@dataclass(frozen=True)
class LoadError:
    engine: str
    file: str  # the file's path under the policy directory as given
    line: int | None  # where the engine says, else None
    column: int | None  # regorus gives one, OPA does not
    message: str  # the reason, one line where the engine says where

    def __str__(self) -> str:
        return f"{self.file}: {_position(self.line, self.column)}{self.message}"


@dataclass(frozen=True)
class Uncovered:
    file: str
    line: int
    text: str  # the source line
    rule: str  # the head of the rule the line belongs to
    engines: tuple[str, ...] = ()  # the engines that never evaluated it


@dataclass
class FileCoverage:
    covered: set[int] = field(default_factory=set)
    not_covered: set[int] = field(default_factory=set)

    def merge(self, covered: Iterable[int], not_covered: Iterable[int]) -> None:
        self.covered.update(covered)
        self.not_covered.update(not_covered)
        self.not_covered -= self.covered

    @property
    def percent(self) -> float:
        total = len(self.covered) + len(self.not_covered)
        return 100.0 * len(self.covered) / total if total else 100.0


@dataclass
class SuiteReport:
    policy_dir: str
    engines: tuple[str, ...]
    tests: list[TestResult]
    load_errors: list[LoadError]
    coverage: dict[str, dict[str, FileCoverage]]  # engine -> policy module -> lines
    uncovered: list[Uncovered]  # the gate: lines of policy modules some engine never evaluated in any test
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(1 for t in self.tests if t.passed)

    @property
    def failed(self) -> int:
        return len(self.tests) - self.passed

    @property
    def ok(self) -> bool:
        return not self.load_errors and not self.uncovered and self.failed == 0 and bool(self.tests)

    def coverage_percent(self, engine: str) -> float:
        files = self.coverage.get(engine, {})
        covered = sum(len(f.covered) for f in files.values())
        total = covered + sum(len(f.not_covered) for f in files.values())
        return 100.0 * covered / total if total else 100.0

    def verdict(self) -> str | None:
        """Why the run fails, in one line; None when it passes."""
        if self.ok:
            return None
        why = [_count(self.failed, "failed test"), _count(len(self.load_errors), "load error")]
        if self.uncovered:
            why.append(f"{_count(len(self.uncovered), 'uncovered policy line')} (coverage gate 100%)")
        if not self.tests:
            why.append("no test rules found")
        return "policy test FAILED: " + ", ".join(w for w in why if w)

    def summary(self) -> str:
        cover = ", ".join(f"{self.coverage_percent(e):.1f}% {e}" for e in self.engines)
        return (
            f"{self.passed} passed, {self.failed} failed, {len(self.load_errors)} load errors; "
            f"coverage {cover}; {len(self.uncovered)} uncovered policy lines ({self.seconds:.1f}s)"
        )

    def render(self) -> str:
        """The readable report: what failed and why, load errors, uncovered lines, coverage per file, the
        summary, and on a failure the verdict saying why."""
        lines: list[str] = []
        for err in self.load_errors:
            lines.append(f"LOAD ERROR ({err.engine}) {err}")
        for t in self.tests:
            if t.passed:
                continue
            head = "DISAGREE" if not t.agree else "FAIL"
            lines.append(f"{head} {t.case.file}:{t.case.line} {t.case.name}")
            for engine, o in t.outcomes.items():
                lines.append(f"    {engine}: {o.status}" + (f": {_indent(o.detail)}" if o.detail else ""))
        if self.uncovered:
            lines.append("UNCOVERED policy lines (no test evaluates them, or the rule never holds), and the "
                         "engine that missed each:")
            for u in self.uncovered:
                about = ([] if u.rule == u.text else [f"in rule: {u.rule.strip()}"]) + (
                    [f"missed by {' and '.join(u.engines)}"] if u.engines else [])
                note = f"    ({'; '.join(about)})" if about else ""
                lines.append(f"    {u.file}:{u.line}: {u.text.strip()}{note}")
        lines += self._coverage_table()
        if not self.tests:
            lines.append(f"no test rules found under {self.policy_dir}")
        lines.append(self.summary())
        verdict = self.verdict()
        if verdict is not None:
            lines.append(verdict)
        return "\n".join(lines)

    def _coverage_table(self) -> list[str]:
        """Coverage per policy file, a column per engine (a file's line would be hundreds of characters)."""
        files = sorted({name for e in self.engines for name in self.coverage.get(e, {})})
        if not files:
            return []
        width = max(len(name) for name in files)
        cells = {e: max(len(e), 6) for e in self.engines}
        lines = ["coverage".ljust(width + 6) + "  ".join(e.rjust(cells[e]) for e in self.engines)]
        for name in files:
            row = []
            for e in self.engines:
                cov = self.coverage.get(e, {}).get(name)
                row.append(("-" if cov is None else _percent(cov.percent)).rjust(cells[e]))
            lines.append(f"    {name.ljust(width)}  " + "  ".join(row))
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "policy_dir": self.policy_dir,
            "ok": self.ok,
            "summary": {
                "passed": self.passed,
                "failed": self.failed,
                "load_errors": len(self.load_errors),
                "uncovered_lines": len(self.uncovered),
                "seconds": round(self.seconds, 3),
                "coverage_percent": {e: round(self.coverage_percent(e), 2) for e in self.engines},
            },
            "tests": [
                {
                    **asdict(t.case),
                    "passed": t.passed,
                    "agree": t.agree,
                    "outcomes": {e: {"status": str(o.status), "detail": o.detail} for e, o in t.outcomes.items()},
                }
                for t in self.tests
            ],
            "load_errors": [asdict(e) for e in self.load_errors],
            "uncovered": [asdict(u) for u in self.uncovered],
            "coverage": {
                e: {
                    name: {
                        "covered": sorted(c.covered),
                        "not_covered": sorted(c.not_covered),
                        "percent": round(c.percent, 2),
                    }
                    for name, c in sorted(files.items())
                }
                for e, files in self.coverage.items()
            },
        }


class _Runner(Protocol):
    name: str

    def add(self, file: str, text: str) -> str | None:
        """Load one module; the engine's error message when it cannot."""
        ...

    def run(self, cases: list[TestCase]) -> list[Outcome]:
        """One outcome per test case, in order."""
        ...

    def coverage(self) -> dict[str, FileCoverage]: ...

    def close(self) -> None: ...


def _judge(value: Any) -> Outcome:
    if value is True:
        return Outcome(Status.PASS)
    if value is None:
        return Outcome(Status.FAIL, "undefined (a condition in the test did not hold)")
    return Outcome(Status.FAIL, f"evaluated to {json.dumps(value)[:200]}, not true")


class _Regorus:
    name = EMBEDDED

    def __init__(self) -> None:
        import regorus

        self._engine = regorus.Engine()
        self._engine.set_enable_coverage(True)  # accumulates over every evaluation of the run

    def add(self, file: str, text: str) -> str | None:
        try:
            self._engine.add_policy(file, text)
        except Exception as err:  # regorus raises plain RuntimeError/ValueError with the Rego location
            return clean_error(str(err))
        return None

    def run(self, cases: list[TestCase]) -> list[Outcome]:
        return [self._run_one(c.rule) for c in cases]

    def _run_one(self, rule: str) -> Outcome:
        try:
            return _judge(self._engine.eval_rule(rule))
        except Exception as err:
            return Outcome(Status.ERROR, clean_error(str(err)))

    def coverage(self) -> dict[str, FileCoverage]:
        report = json.loads(self._engine.get_coverage_report_as_json())
        found: dict[str, FileCoverage] = {}
        for f in report.get("files", []):
            found.setdefault(f["path"], FileCoverage()).merge(f.get("covered", []), f.get("not_covered", []))
        return found

    def close(self) -> None:
        pass


class _Opa:
    name = OPA

    def __init__(self) -> None:
        from opa_bindings import OpaEngine

        self._engine = OpaEngine()
        self._engine.print_handler = lambda message, location: None  # prints would interleave the report
        self._coverage: dict[str, FileCoverage] = {}

    def add(self, file: str, text: str) -> str | None:
        from opa_bindings.engine import OpaError

        try:
            self._engine.add_policy(file, text)
        except OpaError as err:
            return err.message
        return None

    def run(self, cases: list[TestCase]) -> list[Outcome]:
        # OPA prepares each distinct query once (~0.1-0.3 s here), so a test file's package is evaluated
        # as one document; only when that fails (a test errs) is each test evaluated on its own, so the
        # error is pinned on the test that raised it.
        by_package: dict[str, list[TestCase]] = {}
        for case in cases:
            by_package.setdefault(case.package, []).append(case)
        results: dict[TestCase, Outcome] = {}
        for package, group in by_package.items():
            document = self._eval(package)
            for case in group:
                if isinstance(document, dict):
                    results[case] = _judge(document.get(case.name))
                else:
                    one = self._eval(f"{package}.{case.name}")
                    results[case] = one if isinstance(one, Outcome) else _judge(one)
        return [results[c] for c in cases]

    def _eval(self, path: str) -> Any:
        """The document at data.<path>: its value, None when undefined, or an ERROR outcome."""
        from opa_bindings.engine import OpaError, OpaUndefinedError

        try:
            value: Any = self._engine.eval_document(path, coverage=True)
        except OpaUndefinedError:
            value = None
        except OpaError as err:
            value = Outcome(Status.ERROR, err.message)
        # OPA reports coverage per evaluation (kept even when the document is undefined): merge them.
        for file, cov in ((self._engine.last_coverage or {}).get("files") or {}).items():
            self._coverage.setdefault(file, FileCoverage()).merge(
                _rows(cov.get("covered")), _rows(cov.get("not_covered"))
            )
        return value

    def coverage(self) -> dict[str, FileCoverage]:
        return self._coverage

    def close(self) -> None:
        self._engine.close()


def _rows(ranges: list[dict[str, Any]] | None) -> set[int]:
    return {row for r in ranges or [] for row in range(r["start"]["row"], r["end"]["row"] + 1)}


_RUNNERS: dict[str, Callable[[], _Runner]] = {EMBEDDED: _Regorus, OPA: _Opa}


def discover(file: str, text: str) -> list[TestCase]:
    """The test rules of one `_test.rego`, in source order (a rule defined twice is one test)."""
    package = _PACKAGE.search(text)
    if package is None:
        return []
    seen: dict[str, TestCase] = {}
    for m in _TEST_RULE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        seen.setdefault(m.group(1), TestCase(file, package.group(1), m.group(1), line))
    return list(seen.values())


def run_suites(
    policy_dir: str | Path,
    engines: Iterable[str] = ENGINES,
    progress: Callable[[str], None] | None = None,
) -> SuiteReport:
    """Run every test under `policy_dir` on each engine. Raises PolicyError when the directory has no
    policies at all; every other problem (a file that does not parse, a failing test) is in the report."""
    started = time.monotonic()
    sources = PolicySources.load(policy_dir)
    names = tuple(engines)
    runners = [_RUNNERS[n]() for n in names]
    try:
        load_errors: list[LoadError] = []
        broken: set[str] = set()
        for runner in runners:
            for file, text in [*sources.modules.items(), *sources.tests.items()]:
                message = runner.add(file, text)
                if message is not None:
                    load_errors.append(_load_error(runner.name, file, message, sources.root))
                    broken.add(file)
        results: list[TestResult] = []
        for file, text in sources.tests.items():
            cases = discover(file, text)
            if file in broken:
                _say(progress, f"{file}: not run, it does not load")
                continue
            file_started = time.monotonic()
            per_engine = {r.name: [_located(o, sources.root) for o in r.run(cases)] for r in runners}
            file_results = [
                TestResult(c, {name: outcomes[i] for name, outcomes in per_engine.items()}) for i, c in enumerate(cases)
            ]
            results.extend(file_results)
            failed = sum(1 for t in file_results if not t.passed)
            verdict = "ok" if cases and not failed else ("no test rules" if not cases else f"{failed} FAILED")
            _say(progress, f"{file}: {len(cases)} tests, {verdict} ({time.monotonic() - file_started:.1f}s)")
        coverage = {r.name: {f: c for f, c in r.coverage().items() if f in sources.modules} for r in runners}
    finally:
        for runner in runners:
            runner.close()
    for files in coverage.values():
        # An engine leaves out a module no evaluation entered (regorus), or that never compiled (OPA):
        # every rule of it is uncovered. A module that does not parse is reported as a load error only.
        for module, text in sources.modules.items():
            if module not in broken:
                files.setdefault(module, FileCoverage(not_covered=_rule_heads(text)))
    gate: dict[str, dict[int, list[str]]] = {}  # file -> line -> the engines that never evaluated it
    for engine, files in coverage.items():
        for file, cov in files.items():
            for line in cov.not_covered:
                gate.setdefault(file, {}).setdefault(line, []).append(engine)
    uncovered = [
        Uncovered(file, line, _line(sources.modules[file], line), _rule_of(sources.modules[file], line),
                  tuple(e for e in names if e in missed))
        for file, lines in sorted(gate.items())
        for line, missed in sorted(lines.items())
    ]
    return SuiteReport(str(policy_dir), names, results, load_errors, coverage, uncovered, time.monotonic() - started)


def _load_error(engine: str, module: str, message: str, root: Path) -> LoadError:
    """An engine's load error, at the file, line and column it names (regorus draws them over a caret
    diagram, OPA writes `file:line: code: reason`), with the reason alone."""
    at = locate(message)
    if at is None:
        return LoadError(engine, str(root / module), None, None, " ".join(message.split()))
    more = f" (and {_count(at.more, 'more error')})" if at.more else ""
    return LoadError(engine, str(root / at.file), at.line, at.column, at.reason + more)


def _located(outcome: Outcome, root: Path) -> Outcome:
    """An error outcome whose message names a place (a division by zero, a rule conflict) as
    `file: line N, column M: reason`, the file under the policy directory; any other as it is."""
    at = locate(outcome.detail) if outcome.status is Status.ERROR else None
    if at is None:
        return outcome
    return Outcome(outcome.status, f"{root / at.file}: {_position(at.line, at.column)}{at.reason}")


def _position(line: int | None, column: int | None) -> str:
    if line is None:
        return ""
    return f"line {line}" + (f", column {column}" if column is not None else "") + ": "


def _count(n: int, what: str) -> str:
    """`2 failed tests`, `1 load error`; "" for none."""
    return "" if not n else f"{n:,} {what}" + ("s" if n != 1 else "")


def _percent(value: float) -> str:
    """`100%` only when every line is covered: 99.96% is `99.9%`, not a rounded-up 100%."""
    return "100%" if value >= 100.0 else f"{min(value, 99.9):.1f}%"


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _starts_rule(line: str) -> bool:
    # Rules start at column 0 (`opa fmt` style); so do their closing brackets, comments and headers.
    return bool(line) and not line[0].isspace() and not line.startswith(("#", "}", "]", ")", "package ", "import "))


def _rule_heads(text: str) -> set[int]:
    return {i for i, line in enumerate(text.splitlines(), start=1) if _starts_rule(line)}


def _rule_of(text: str, line: int) -> str:
    """The head of the rule a line belongs to: the nearest line above it that starts a rule."""
    lines = text.splitlines()
    for i in range(min(line, len(lines)) - 1, -1, -1):
        if _starts_rule(lines[i]):
            return lines[i]
    return ""


def _indent(text: str) -> str:
    return text.replace("\n", "\n      ")
