"""The embedded engine's worker process: one regorus engine, reloaded on each policy change.

Reads one JSON request per line on stdin and answers one JSON line on stdout, so an evaluation error
crosses the process boundary as a message, never as a crash of the control plane.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import regorus

_engine: Any = None


def load(modules: dict[str, str], data: Any) -> Any:
    global _engine
    engine = regorus.Engine()
    for name, text in modules.items():
        engine.add_policy(name, text)
    engine.add_data_json(json.dumps(data))
    _engine = engine  # only a fully loaded engine replaces the last good one
    return None


def query(path: str, input: Any) -> Any:
    if _engine is None:
        raise RuntimeError("no policies loaded")
    _engine.set_input_json(json.dumps(input))
    try:
        return json.loads(_engine.eval_rule_as_json("data." + path.replace("/", ".")))
    except RuntimeError as err:
        if "not a valid rule path" in str(err):
            return None  # undefined, as OPA answers it: the caller says what was missing
        raise


def clean_error(message: str) -> str:
    """regorus appends a native stack backtrace to its errors; users need the Rego location and reason."""
    return message.split("Stack backtrace:")[0].strip()


def main() -> None:
    # Its parent decides when it ends (closing stdin, or dying): a Ctrl-C at the terminal reaches the whole
    # process group, and must stop the parent, which then stops this, not print a traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        request = json.loads(raw)
        try:
            if request["op"] == "load":
                value = load(request["modules"], request["data"])
            else:
                value = query(request["path"], request["input"])
            reply = {"ok": True, "value": value}
        except Exception as err:  # every failure is an answer, the worker keeps serving
            reply = {"ok": False, "error": clean_error(str(err))}
        out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
