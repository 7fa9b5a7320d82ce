"""Config problems that name the file, the field and what is wrong."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from xds_server.listing import capped_lines

# Problems a message lists before the rest become a count (the JSON form has every one).
PROBLEMS_SHOWN = 20


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    field: str
    message: str
    # Every item the message names (a policy violation's tenants: the message shows the first few and a
    # count); the JSON form carries them all. Not part of a problem's identity.
    subjects: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "field": self.field, "message": self.message,
                **({"subjects": list(self.subjects)} if self.subjects else {})}


class ConfigError(Exception):
    """Every problem found in a config directory, reported together."""

    # What the problems amount to, heading them (a subclass for a config that is sound but cannot be
    # deployed as asked says so instead).
    HEADLINE = "config is invalid"

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__(self.render())

    def render(self, limit: int | None = PROBLEMS_SHOWN) -> str:
        """The problems for a person: the first `limit` (None: all), then how many more; 6,000 tenants
        with the same mistake are a count, not 6,000 lines in a log or on the status page."""
        n = len(self.problems)
        lines = [f"{self.HEADLINE} ({n:,} problem{'s' if n != 1 else ''}):"]
        lines += capped_lines(self.problems, limit, "  - ", "(`fairshare validate --json` lists every one)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {"ok": False, "problems": [p.to_json() for p in self.problems]}
