"""The Rego test runner (`fairshare policy test`): every `_test.rego` on both engines, with a coverage gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opa_bindings import OpaEngine

from xds_server.cli import main
from xds_server.policy.backends import DEFAULT_POLICY_DIR
from xds_server.policy.sources import TEST_SUFFIX, PolicySources
from xds_server.policy.testing import EMBEDDED, OPA, Status, SuiteReport, run_suites


@pytest.fixture(scope="module")
def repo_report() -> SuiteReport:
    return run_suites(DEFAULT_POLICY_DIR)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


DEMO = """package fairshare.demo

allowed if input.x == 1

denied contains "too big" if {
	input.x > 10
}
"""

DEMO_TEST_ALLOWED_ONLY = """package fairshare.demo_test

import data.fairshare.demo

test_one_is_allowed if {
	demo.allowed with input as {"x": 1}
}
"""

DEMO_TEST_FULL = (
    DEMO_TEST_ALLOWED_ONLY
    + """
test_two_is_not_allowed if {
	not demo.allowed with input as {"x": 2}
}

test_big_is_denied if {
	demo.denied == {"too big"} with input as {"x": 11}
}
"""
)


def test_every_policy_has_a_test_file_beside_it() -> None:
    sources = PolicySources.load(DEFAULT_POLICY_DIR)
    missing = [m for m in sources.modules if m.removesuffix(".rego") + TEST_SUFFIX not in sources.tests]
    assert missing == []


def test_repository_suites_pass_and_agree_on_both_engines(repo_report: SuiteReport) -> None:
    failing = [
        (t.case.file, t.case.name, {e: (o.status, o.detail) for e, o in t.outcomes.items()})
        for t in repo_report.tests
        if not t.passed
    ]
    assert failing == [] and repo_report.load_errors == [], repo_report.render()
    assert all(set(t.outcomes) == {EMBEDDED, OPA} for t in repo_report.tests)
    assert repo_report.uncovered == [], repo_report.render()
    assert repo_report.ok
    for engine in (EMBEDDED, OPA):
        assert repo_report.coverage_percent(engine) == 100.0


def test_runner_finds_every_test_rule_opa_sees(repo_report: SuiteReport) -> None:
    # OPA's own view of each test package: every rule named test_* is one the runner ran.
    sources = PolicySources.load(DEFAULT_POLICY_DIR)
    opa = OpaEngine()
    for name, text in [*sources.modules.items(), *sources.tests.items()]:
        opa.add_policy(name, text)
    packages = {t.case.package for t in repo_report.tests}
    assert {f"fairshare.{c}_test" for c in ("quota", "residency", "pii", "tenant")} <= packages
    for package in packages:
        expected = {k for k in opa.eval_document(package) if k.startswith("test_")}
        assert {t.case.name for t in repo_report.tests if t.case.package == package} == expected
    opa.close()


def test_uncovered_rule_fails_naming_file_and_line(tmp_path: Path) -> None:
    root = write(tmp_path, {"demo/demo.rego": DEMO, "demo/demo_test.rego": DEMO_TEST_ALLOWED_ONLY})
    report = run_suites(root)
    assert report.failed == 0 and report.passed == 1
    assert not report.ok
    assert [(u.file, u.line) for u in report.uncovered] == [("demo/demo.rego", 5), ("demo/demo.rego", 6)]
    assert "demo/demo.rego:5: denied contains" in report.render()
    # OPA's coverage sees the same hole.
    assert report.coverage[OPA]["demo/demo.rego"].not_covered == {5, 6}


def test_rule_whose_body_never_succeeds_is_uncovered(tmp_path: Path) -> None:
    # The denied rule is evaluated (its body line runs) but no test makes it hold: its deny path is untested.
    only_allow_paths = (
        DEMO_TEST_ALLOWED_ONLY
        + """
test_small_is_not_denied if {
	count(demo.denied) == 0 with input as {"x": 2}
}
"""
    )
    report = run_suites(write(tmp_path, {"demo/demo.rego": DEMO, "demo/demo_test.rego": only_allow_paths}))
    assert report.failed == 0
    assert [(u.file, u.line) for u in report.uncovered] == [("demo/demo.rego", 5)]


def test_module_without_tests_is_wholly_uncovered(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "demo/demo.rego": DEMO,
            "demo/demo_test.rego": DEMO_TEST_FULL,
            "other/other.rego": "package fairshare.other\n\nlimit := 3\n",
        },
    )
    report = run_suites(root)
    assert [(u.file, u.line) for u in report.uncovered] == [("other/other.rego", 3)]


def test_full_coverage_and_passing_tests_are_ok(tmp_path: Path) -> None:
    report = run_suites(write(tmp_path, {"demo/demo.rego": DEMO, "demo/demo_test.rego": DEMO_TEST_FULL}))
    assert report.ok, report.render()
    assert (report.passed, report.failed) == (3, 0)
    assert report.summary().startswith("3 passed, 0 failed")


def test_failing_and_erroring_tests_are_reported(tmp_path: Path) -> None:
    broken = (
        DEMO_TEST_FULL
        + """
test_wrong_expectation if {
	demo.denied == {"too small"} with input as {"x": 11}
}

test_divides_by_zero if {
	1 / 0 == 1
}
"""
    )
    report = run_suites(write(tmp_path, {"demo/demo.rego": DEMO, "demo/demo_test.rego": broken}))
    assert not report.ok
    by_name = {t.case.name: t for t in report.tests}
    wrong, error = by_name["test_wrong_expectation"], by_name["test_divides_by_zero"]
    assert {o.status for o in wrong.outcomes.values()} == {Status.FAIL}
    assert {o.status for o in error.outcomes.values()} == {Status.ERROR}
    assert all("divide by zero" in o.detail for o in error.outcomes.values())
    assert all("Stack backtrace" not in o.detail for o in error.outcomes.values())
    assert (report.passed, report.failed) == (3, 2)
    text = report.render()
    assert f"FAIL demo/demo_test.rego:{wrong.case.line} test_wrong_expectation" in text
    assert "2 failed" in text


def test_engines_disagreeing_is_a_failure(tmp_path: Path) -> None:
    # A partial object whose value is undefined for one key: OPA leaves that key out, regorus (pinned
    # version) drops the whole object. Exactly the dialect gap the double run exists to catch.
    policy = "package fairshare.gap\n\nlookup[k] := input.m[k] if some k, _ in input.keys\n"
    test = (
        "package fairshare.gap_test\n\nimport data.fairshare.gap\n\n"
        "test_missing_key_is_left_out if {\n"
        '\tgap.lookup == {"a": 1} with input as {"keys": {"a": 0, "b": 0}, "m": {"a": 1}}\n}\n'
    )
    report = run_suites(write(tmp_path, {"gap/gap.rego": policy, "gap/gap_test.rego": test}))
    [result] = report.tests
    assert result.outcomes[OPA].status is Status.PASS
    assert result.outcomes[EMBEDDED].status is not Status.PASS
    assert not result.agree and not report.ok
    assert "DISAGREE gap/gap_test.rego:5 test_missing_key_is_left_out" in report.render()


def test_syntax_error_is_reported_naming_the_file(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "demo/demo.rego": DEMO,
            "demo/demo_test.rego": DEMO_TEST_FULL,
            "bad/bad.rego": "package fairshare.bad\n\nx := if {\n",
        },
    )
    report = run_suites(root)
    assert not report.ok
    # The file under the policy directory, the line (and column: OPA gives none) and the reason in one line.
    bad = str(root / "bad" / "bad.rego")
    assert {(e.engine, e.file, e.line, e.column) for e in report.load_errors} == {(EMBEDDED, bad, 3, 6),
                                                                                 (OPA, bad, 3, None)}
    for err in report.load_errors:
        assert "\n" not in err.message and "Stack backtrace" not in err.message and "-->" not in err.message
    text = report.render()
    assert f"LOAD ERROR (embedded) {bad}: line 3, column 6: unexpected keyword 'if'\n" in text
    assert f"LOAD ERROR (opa) {bad}: line 3: unexpected if keyword" in text
    assert report.to_json()["load_errors"][0] == {"engine": EMBEDDED, "file": bad, "line": 3, "column": 6,
                                                  "message": "unexpected keyword 'if'"}
    assert text.endswith("policy test FAILED: 2 load errors")


def test_an_erroring_test_names_the_policy_line_in_one_line(tmp_path: Path) -> None:
    policy = "package fairshare.demo\n\nx := 1 if input.a\n\nx := 2 if input.a\n\ny := 1 / input.z\n"
    tests = ("package fairshare.demo_test\n\nimport data.fairshare.demo\n\n"
             'test_conflict if {\n\tdemo.x == 1 with input as {"a": true}\n}\n\n'
             'test_div if {\n\tdemo.y == 1 with input as {"z": 0}\n}\n')
    root = write(tmp_path, {"demo/demo.rego": policy, "demo/demo_test.rego": tests})
    report = run_suites(root)
    by_name = {t.case.name: t.outcomes for t in report.tests}
    demo = root / "demo" / "demo.rego"
    assert by_name["test_div"][EMBEDDED].detail == f"{demo}: line 7, column 8: divide by zero"
    assert by_name["test_div"][OPA].detail == f"{demo}: line 7: div: divide by zero"
    assert by_name["test_conflict"][EMBEDDED].detail.startswith(f"{demo}: line 5, column 1: rule conflicts with")
    assert by_name["test_conflict"][OPA].detail.startswith(f"{demo}: line 5: ")


def test_a_run_failing_only_on_coverage_says_so_and_which_engine_missed_each_line(tmp_path: Path) -> None:
    report = run_suites(write(tmp_path, {"demo/demo.rego": DEMO, "demo/demo_test.rego": DEMO_TEST_ALLOWED_ONLY}))
    assert report.failed == 0 and not report.load_errors and not report.ok
    # regorus evaluates the body of a rule in a queried package (line 6) even when it never holds: only OPA misses it.
    assert [(u.line, u.engines) for u in report.uncovered] == [(5, (EMBEDDED, OPA)), (6, (OPA,))]
    lines = report.render().splitlines()
    assert lines[-1] == "policy test FAILED: 2 uncovered policy lines (coverage gate 100%)"
    assert lines[-2].startswith("1 passed, 0 failed, 0 load errors;")
    assert '    demo/demo.rego:5: denied contains "too big" if {    (missed by embedded and opa)' in lines
    assert '    demo/demo.rego:6: input.x > 10    (in rule: denied contains "too big" if {; missed by opa)' in lines
    assert json.loads(json.dumps(report.to_json()))["uncovered"][1]["engines"] == [OPA]


def test_coverage_is_a_line_per_policy_file_with_a_column_per_engine(repo_report: SuiteReport) -> None:
    lines = repo_report.render().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("coverage "))
    assert lines[header].split() == ["coverage", EMBEDDED, OPA]
    rows = lines[header + 1: header + 1 + len(repo_report.coverage[EMBEDDED])]
    assert sorted(row.split()[0] for row in rows) == sorted(repo_report.coverage[EMBEDDED])
    assert all(row.split()[1:] == ["100%", "100%"] for row in rows)
    assert max(len(line) for line in lines) < 120
    # A pass ends on the summary, as before: no verdict line of failure.
    assert lines[-1] == repo_report.summary() and "FAILED" not in repo_report.render()


def test_cli_exit_status_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAIRSHARE_POLICY_DIR", str(DEFAULT_POLICY_DIR))  # main() points it at --policy
    good = write(tmp_path / "good", {"demo/demo.rego": DEMO, "demo/demo_test.rego": DEMO_TEST_FULL})
    assert main(["policy", "test", "--policy", str(good)]) == 0
    out = capsys.readouterr().out
    assert "demo/demo_test.rego: 3 tests, ok" in out and "3 passed, 0 failed" in out

    bad = write(tmp_path / "bad", {"demo/demo.rego": DEMO, "demo/demo_test.rego": DEMO_TEST_ALLOWED_ONLY})
    report_file = tmp_path / "out" / "report.json"
    assert main(["policy", "test", "--policy", str(bad), "--json", str(report_file)]) == 1
    report = json.loads(report_file.read_text())
    assert report["ok"] is False
    assert report["summary"]["passed"] == 1
    assert [(u["file"], u["line"]) for u in report["uncovered"]] == [("demo/demo.rego", 5), ("demo/demo.rego", 6)]
    assert report["tests"][0]["outcomes"] == {
        EMBEDDED: {"status": "pass", "detail": ""},
        OPA: {"status": "pass", "detail": ""},
    }

    assert main(["policy", "test", "--policy", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: policy directory does not exist" in capsys.readouterr().err
