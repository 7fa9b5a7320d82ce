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
    assert {(e.engine, e.file) for e in report.load_errors} == {(EMBEDDED, "bad/bad.rego"), (OPA, "bad/bad.rego")}
    for err in report.load_errors:
        assert "bad/bad.rego:3" in err.message and "Stack backtrace" not in err.message
    assert "LOAD ERROR (embedded) bad/bad.rego" in report.render()


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
    assert "policy directory does not exist" in capsys.readouterr().err
