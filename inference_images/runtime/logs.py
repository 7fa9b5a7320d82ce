"""Structured logs: one JSON object per line on stderr.

Fields come from ``extra={...}``. Callers pass identifiers (model, version, tenant, path, status), never
request bodies: inputs may carry personal data, and logs travel further than requests do.

As a last line of defence every string that reaches a line (message, fields, traceback) goes through the
PII scrubber, so an identifier that turns out to hold an email address (a client-chosen path, a library's
error text) is written as ``[EMAIL]``. Only the fields this process sets itself (``TRUSTED_FIELDS``, the
static ones) skip it: the listen address is configuration, not personal data.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from inference_images.runtime.pii.redactor import scrub

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Fields whose values this process chooses (not request data), written as they are.
TRUSTED_FIELDS = frozenset({"host", "port", "region", "pool", "replica", "scheduler", "device"})


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
            **self._static,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if key in TRUSTED_FIELDS else _scrubbed(value)
        if record.exc_info:
            # Kept inside the JSON string so the line stays one line.
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    return value


def configure(level: str = "info", static: dict[str, Any] | None = None) -> None:
    """Route all logging (ours and libraries') through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers are chatty at info (file loads, HTTP client calls); warnings still pass.
    for noisy in ("transformers", "sentence_transformers", "huggingface_hub", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
