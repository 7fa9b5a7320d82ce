"""The policy directory as the engines see it: modules, their tests, and a content revision."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from xds_server.config.files import UnreadableFile, read_regular
from xds_server.policy.engine import PolicyError

TEST_SUFFIX = "_test.rego"


@dataclass(frozen=True)
class PolicySources:
    root: Path
    # Paths relative to root; the same names are used as module ids on every backend, so an error
    # from any engine names the file the user edits.
    modules: MappingProxyType[str, str]
    tests: MappingProxyType[str, str]
    revision: str

    @classmethod
    def load(cls, root: str | Path, engine: str | None = None) -> PolicySources:
        """`engine`: the backend they are loaded for, named in the error when they cannot be."""
        base = Path(root)
        if not base.is_dir():
            what = "is not a directory" if base.exists() else "does not exist"
            raise PolicyError(engine, "loading policies", f"policy directory {what}",
                              file=str(base))
        modules: dict[str, str] = {}
        tests: dict[str, str] = {}
        digest = hashlib.blake2b(digest_size=8)
        for path in sorted(base.rglob("*.rego")):
            rel = path.relative_to(base).as_posix()
            try:
                text = read_regular(path).decode("utf-8")  # a FIFO refused, never waited on
            except UnreadableFile as err:
                raise PolicyError(engine, "loading policies", str(err), file=str(path)) from err
            except UnicodeDecodeError as err:
                raise PolicyError(engine, "loading policies", f"not UTF-8 text: {err}", file=str(path)) from err
            (tests if rel.endswith(TEST_SUFFIX) else modules)[rel] = text
            digest.update(rel.encode() + b"\0" + text.encode() + b"\0")
        if not modules:
            raise PolicyError(engine, "loading policies", "no .rego policies found", file=str(base))
        return cls(base, MappingProxyType(modules), MappingProxyType(tests), digest.hexdigest())
