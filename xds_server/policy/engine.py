"""One interface over every Rego engine we run: embedded, an OPA server, and OPA's own Go engine."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from xds_server.config.errors import Problem
    from xds_server.policy.sources import PolicySources

# Every tenant's decisions and every violation in one query, as a document path: data.fairshare.tenant.result.
DECISIONS = "fairshare/tenant/result"
# The same answers in two steps (xds_server/policy/decide.py): each tenant document's own, then the
# fleet-wide checks over every tenant's claim.
ENTRIES = "fairshare/tenant/entries"
FLEET = "fairshare/tenant/fleet"
# Where the platform's context (tiers, regions, models) lives for the policies: data.fairshare.platform.
PLATFORM_DATA = "fairshare/platform"


class PolicyError(Exception):
    """A policy that cannot be loaded or evaluated: names the backend and the file or query at fault.

    `backend`: the engine that failed, None where none was reached (the policy directory itself);
    `where`: what it was doing (loading policies, a query); `file`, `line`, `column`: the place in the
    policies, where known (a syntax error, a division by zero, a rule conflict), `file` the path under the
    policy directory as given; `message`: the reason, one line when a place is known."""

    def __init__(self, backend: str | None, where: str, message: str, *, file: str | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        self.backend, self.where, self.message = backend, where, message
        self.file, self.line, self.column = file, line, column
        super().__init__(self._text())

    @property
    def position(self) -> str:
        """`line 36, column 1` (`line 36` when the engine gives no column), or "" where unknown."""
        if self.line is None:
            return ""
        return f"line {self.line}" + (f", column {self.column}" if self.column is not None else "")

    def _text(self) -> str:
        if self.file is not None:
            at = f"{self.file}: {self.position}: " if self.position else f"{self.file}: "
            return at + self.message + (f" (policy engine {self.backend})" if self.backend else "")
        return f"policy engine {self.backend}: {self.where}: {self.message}"

    def problem(self) -> Problem:
        """As a config problem: the policy file, `line N, column M` and the reason where the engine says
        where; else the backend and what it was doing."""
        from xds_server.config.errors import Problem  # here: the config package imports the policy layer

        if self.file is not None:
            suffix = "" if self.position or not self.backend else f" (policy engine {self.backend})"
            return Problem(self.file, self.position, self.message + suffix)
        return Problem(f"policy ({self.backend})", self.where, self.message)


@dataclass(frozen=True)
class RegoLocation:
    """Where an engine's error message says it happened, and why, in one line."""

    file: str  # as the engine names the module: its path relative to the policy directory
    line: int
    column: int | None  # OPA gives lines only
    reason: str
    more: int = 0  # further errors in the same message (OPA lists every one)


# regorus:  --> quota/quota.rego:36:1 / |  / 36 | } / | ^ / error: expecting `)` while parsing call expr
_REGORUS_AT = re.compile(r"^\s*--> (?P<file>.+):(?P<line>\d+):(?P<column>\d+)\s*$", re.MULTILINE)
_REGORUS_WHY = re.compile(r"^error: (?P<reason>.*)$", re.MULTILINE | re.DOTALL)
# OPA:  [1 error occurred: ]quota/quota.rego:36: rego_parse_error: unexpected } token (then a caret diagram)
_OPA_AT = re.compile(r"(?:^|: )(?P<file>[^\n:]+?\.rego):(?P<line>\d+): [a-z_]+_error: (?P<reason>[^\n]*)",
                     re.MULTILINE)


def locate(message: str) -> RegoLocation | None:
    """The place and the one-line reason in a regorus or OPA error message; None when it names no place
    (a missing rule, a timeout). Backquoted tokens are quoted `'x'`, as in a message for a terminal."""
    at = _REGORUS_AT.search(message)
    if at is not None:
        why = _REGORUS_WHY.search(message, at.end())
        reason = why.group("reason") if why is not None else message[at.end():]
        return RegoLocation(at.group("file"), int(at.group("line")), int(at.group("column")), _one_line(reason))
    found = list(_OPA_AT.finditer(message))
    if found:
        first = found[0]
        return RegoLocation(first.group("file"), int(first.group("line")), None, _one_line(first.group("reason")),
                            more=len(found) - 1)
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("`", "'")


class PolicyEngine(Protocol):
    name: str

    def load(self, sources: PolicySources, platform: dict[str, Any]) -> None:
        """Replace the engine's policies and platform data. Raises PolicyError naming the bad file."""
        ...

    def query(self, path: str, input: Any) -> Any:
        """The document at `path` (slash-separated, under data) for `input`; None when undefined.
        Raises PolicyError when the evaluation fails or exceeds the engine's time limit."""
        ...

    def close(self) -> None: ...
