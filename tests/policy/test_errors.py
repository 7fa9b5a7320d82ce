"""A policy that cannot be loaded or evaluated is named where a person (or a CI annotation) can act on it:
a Rego syntax or runtime error as the file under the --policy directory, `line N, column M` and the
one-line reason (never regorus' caret diagram), in the text and JSON of every command; a missing policy
directory by its path and the engine; a missing decisions rule by the --policy directory's tenant.rego."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.synth import REPO_CONFIG
from xds_server.cli import main
from xds_server.config import ConfigError, load_config
from xds_server.config.errors import Problem
from xds_server.policy.backends import DEFAULT_POLICY_DIR
from xds_server.policy.engine import PolicyError, locate


@pytest.fixture(autouse=True)
def _policy_dir_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRSHARE_POLICY_DIR", str(DEFAULT_POLICY_DIR))  # main() points it at --policy


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policy", ignore=shutil.ignore_patterns("*_test.rego")))


def break_quota(policy: Path, text: str) -> tuple[Path, int]:
    """`text` appended to quota.rego after a blank line: the file, and the number of text's first line."""
    target = policy / "quota" / "quota.rego"
    before = target.read_text()
    target.write_text(before + "\n" + text)
    return target, before.count("\n") + 2


def problems_of(policy: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as err:
        load_config(REPO_CONFIG, policy_dir=policy)
    return err.value.problems


def test_a_syntax_error_is_the_file_line_column_and_reason(policy_copy: Path) -> None:
    target, line = break_quota(policy_copy, "broken := count(1\n}\n")
    assert problems_of(policy_copy) == [
        Problem(str(target), f"line {line + 1}, column 1", "expecting ')' while parsing call expr")]


def test_a_runtime_error_is_named_where_it_happened(policy_copy: Path) -> None:
    target, line = break_quota(policy_copy, 'zero := 1 / 0\n\nviolations contains v if {\n\tsome id, _ in '
                               'input.tenants\n\tzero > 0\n\tv := {"rule": "r", "subject": id}\n}\n')
    assert problems_of(policy_copy) == [Problem(str(target), f"line {line}, column 11", "divide by zero")]


def test_a_rule_conflict_is_named_where_it_happened(policy_copy: Path) -> None:
    target, line = break_quota(policy_copy, 'twice := 1 if input.tenants\n\ntwice := 2 if input.tenants\n\n'
                               'violations contains v if {\n\tsome id, _ in input.tenants\n\ttwice > 0\n'
                               '\tv := {"rule": "r", "subject": id}\n}\n')
    [problem] = problems_of(policy_copy)
    assert (problem.file, problem.field) == (str(target), f"line {line + 2}, column 1")
    assert problem.message.startswith("rule conflicts with rule at quota/quota.rego:")


@pytest.mark.parametrize("command", [
    ["validate"], ["validate", "--json"], ["policy", "check"], ["policy", "check", "--json", "{out}"],
    ["policy", "bundle", "-o", "{out}"],
])
def test_every_command_names_the_syntax_error_in_one_line(
    policy_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:
    target, line = break_quota(policy_copy, "broken := count(1\n}\n")
    out = tmp_path / "out.json"
    argv = [a.replace("{out}", str(out)) for a in command]
    assert main([*argv, "--config", str(REPO_CONFIG), "--policy", str(policy_copy)]) == 2
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "-->" not in text and "^" not in text and "policy (embedded)" not in text
    if "--json" not in command:
        assert f"{target}: line {line + 1}, column 1: expecting ')' while parsing call expr\n" in text
    elif command[0] == "validate":
        assert json.loads(printed.out)["problems"] == [
            {"file": str(target), "field": f"line {line + 1}, column 1",
             "message": "expecting ')' while parsing call expr"}]
    else:
        assert json.loads(out.read_text())["sections"][0]["errors"] == [
            {"file": str(target), "field": f"line {line + 1}, column 1",
             "message": "expecting ')' while parsing call expr"}]


def test_a_missing_policy_directory_is_named_with_the_engine(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    assert problems_of(missing) == [
        Problem(str(missing), "", "policy directory does not exist (policy engine embedded)")]


@pytest.mark.parametrize("command", [["policy", "test"], ["policy", "bundle", "--config", str(REPO_CONFIG)]])
def test_a_missing_policy_directory_is_named_by_the_policy_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:
    missing = tmp_path / "nonexistent"
    assert main([*command, "--policy", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: policy directory does not exist" in err
    assert "engine policy" not in err and "policy (policy)" not in err


def test_policies_without_the_decisions_rule_name_the_policy_directorys_tenant_rego(policy_copy: Path) -> None:
    (policy_copy / "tenant" / "tenant.rego").unlink()
    [problem] = problems_of(policy_copy)
    assert problem.message == (f"the policies gave no decisions (is {policy_copy / 'tenant' / 'tenant.rego'} "
                               "there, with `entries` and `fleet`?)")


def test_locate_reads_both_engines_messages() -> None:
    regorus = "--> quota/quota.rego:36:1\n   |\n36 | }\n   | ^\nerror: expecting `)` while parsing call expr"
    at = locate(regorus)
    assert at is not None and (at.file, at.line, at.column, at.reason) == (
        "quota/quota.rego", 36, 1, "expecting ')' while parsing call expr")
    opa = ('2 errors occurred:\nd/p.rego:4: rego_parse_error: unexpected } token: expected "," or ")"\n\t}\n\t^\n'
           "d/p.rego:4: rego_parse_error: unexpected } token: expected rule value term")
    at = locate(opa)
    assert at is not None and (at.file, at.line, at.column, at.reason, at.more) == (
        "d/p.rego", 4, None, 'unexpected } token: expected "," or ")"', 1)
    assert locate("bundle activation failed: 1 error occurred: d/p.rego:3: rego_type_error: undefined function f") \
        == type(at)("d/p.rego", 3, None, "undefined function f")
    assert locate("evaluation took longer than 1s and was stopped") is None


def test_an_error_without_a_place_still_names_the_backend_and_query() -> None:
    err = PolicyError("opa", "fairshare/tenant/entries", "OPA at http://x is unreachable")
    assert str(err) == "policy engine opa: fairshare/tenant/entries: OPA at http://x is unreachable"
    assert err.problem() == Problem("policy (opa)", "fairshare/tenant/entries", "OPA at http://x is unreachable")
