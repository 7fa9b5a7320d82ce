"""docs/policy.md's table of concerns lists every rule a policy denies with, in the row of its package."""

from __future__ import annotations

import re
from pathlib import Path

from xds_server.policy.backends import DEFAULT_POLICY_DIR
from xds_server.policy.sources import PolicySources

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_RULE = re.compile(r'"rule":\s*"([a-z0-9-]+)"')


def denied_rules() -> dict[str, set[str]]:
    """package -> the rule names its `violations` (and `fleet_violations`) rules give, by reading the source:
    each `"rule": "<name>"` in the body of a rule whose head (the line at column 0 above it) is one of them."""
    found: dict[str, set[str]] = {}
    for text in PolicySources.load(DEFAULT_POLICY_DIR).modules.values():
        package = _PACKAGE.search(text)
        assert package is not None
        head = ""
        for line in text.splitlines():
            if line and not line[0].isspace() and not line.startswith(("#", "}", "]", ")")):
                head = line
            for name in _RULE.findall(line):
                if "violations" in head.split(" ")[0]:
                    found.setdefault(package.group(1), set()).add(name)
    return found


def documented_rules() -> dict[str, set[str]]:
    rows = re.findall(r"^\| `(fairshare\.\w+)` \|(.*)\|\s*$", DOC.read_text(), re.MULTILINE)
    return {package: set(re.findall(r"`([a-z0-9-]+)`", row.rsplit("|", 1)[-1])) for package, row in rows}


def test_every_rule_a_policy_denies_with_is_in_its_packages_row() -> None:
    denied, documented = denied_rules(), documented_rules()
    assert "pseudonymise-not-allowed" in denied["fairshare.pii"]  # the reader finds what it is meant to
    missing = {package: sorted(names - documented.get(package, set()))
               for package, names in denied.items() if names - documented.get(package, set())}
    assert not missing, f"docs/policy.md's table of concerns does not list: {missing}"
