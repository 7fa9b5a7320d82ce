"""What a person reads about a config file the loader refuses: where (a line and column for YAML it cannot
read, the field as the docs write it for a value the schema refuses: `own_models.router.versions.1.sha256`),
and what is wrong in words, with what to write instead, rather than libyaml's or pydantic's wording, a
regular expression or a Python repr.

Only a refused file comes here: nothing in this module runs on a config that loads.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from xds_server.config.model import PATTERN_MEANINGS
from xds_server.listing import capped

# Where libyaml ends a line (YAML 1.1's line breaks).
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def yaml_problem(data: bytes, err: yaml.YAMLError) -> tuple[str, str]:
    """(where, what) for a file libyaml refused: its line and column, and what is wrong there."""
    if isinstance(err, yaml.reader.ReaderError):
        return _unreadable(data, err)
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return "", f"not valid YAML: {err}"
    line = _line(data, mark.line)
    # A tab in the line's indentation, or where libyaml stopped: its own words ("found character that cannot
    # start any token") never name the character.
    tab = line.find("\t", 0, len(line) - len(line.lstrip(" \t")))
    if tab < 0 and line[mark.column:mark.column + 1] == "\t":
        tab = mark.column
    if tab >= 0:
        return (f"line {mark.line + 1}, column {tab + 1}",
                "not valid YAML: a tab character: YAML indents with spaces (replace the tab with spaces)")
    what = f"not valid YAML: {getattr(err, 'problem', None) or err}"
    # Where libyaml stops is often the line after the mistake (a flow mapping left open on line 8 is found on
    # line 9): name where the construct it was reading began, as its own message does.
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    parsing = isinstance(err, yaml.scanner.ScannerError | yaml.parser.ParserError)
    if parsing and context and start is not None and start.line != mark.line:
        what += f" ({context} that began at line {start.line + 1}, column {start.column + 1})"
    return f"line {mark.line + 1}, column {mark.column + 1}", what


def _line(data: bytes, number: int) -> str:
    """Line `number` (from 0) of the file as libyaml counts lines; '' past the end."""
    text = data.decode("utf-16" if data.startswith(_UTF16_BOMS) else "utf-8-sig", "replace")
    lines = _LINE_BREAK.split(text)
    return lines[number] if number < len(lines) else ""


def _unreadable(data: bytes, err: yaml.reader.ReaderError) -> tuple[str, str]:
    """The first byte that is not UTF-8, on its line (libyaml's position is where it gave up, which may be
    the byte after); or a character YAML does not allow (a control character)."""
    if data.startswith(_UTF16_BOMS):  # UTF-16, which libyaml reads too: its position is all there is
        return f"byte {err.position + 1}", f"not UTF-16 text: {err.reason}"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _at_byte(data, bad.start), f"byte 0x{data[bad.start]:02x} is not UTF-8 text (save the file as UTF-8)"
    # libyaml's position is a byte offset; its character a code point.
    what = f"character U+{err.character:04X}" if isinstance(err.character, int) else "a character"
    return _at_byte(data, err.position), f"{what} is not allowed in YAML ({err.reason}): remove it"


def _at_byte(data: bytes, offset: int) -> str:
    start = max(data.rfind(b"\n", 0, offset), data.rfind(b"\r", 0, offset)) + 1
    line = len(_LINE_BREAK.findall(data[:start].decode("utf-8", "replace"))) + 1
    column = len(data[start:offset].decode("utf-8-sig" if start == 0 else "utf-8", "replace")) + 1
    return f"line {line}, column {column}"


def empty_file(what: str, schema: type[BaseModel]) -> str | None:
    """What an empty file (or one of only comments) lacks, when `schema` needs anything; `what`: what the
    file describes (a tenant, tiers.yaml)."""
    required = [name for name, f in schema.model_fields.items() if f.is_required()]
    if not required:
        return None
    needs = required[0] if len(required) == 1 else f"{', '.join(required[:-1])} and {required[-1]}"
    return f"the file is empty: {what} needs {needs}"


# pydantic's loc part for a dict's key, after the key itself: the key is what it refused.
_KEY = "[key]"
# What the keys of a mapping field name, by the field.
_KEY_NOUNS = {"versions": "version", "split": "version", "models": "model", "own_models": "model",
              "tiers": "tier", "regions": "region", "pools": "pool"}


def field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """`loc` as the docs write a field: a mapping's key after a dot, a list's index in brackets
    (`regions.allowed[1]`, `own_models.router.versions.2.sha256`). `data` (what the file holds) says
    which an int is: a YAML key may be a number (`1:` for `"1":`)."""
    out = ""
    node = data
    for part in loc:
        if part == _KEY:
            break  # the key is what is wrong: the path ends at it
        if isinstance(part, int) and not isinstance(node, dict):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
        node = _child(node, part)
    return out


def _child(node: Any, part: int | str) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def error_message(error: Mapping[str, Any], schema: type[BaseModel]) -> str:
    """One pydantic error (ValidationError.errors()) about a file validated as `schema`, for a person."""
    kind, loc = error["type"], tuple(error["loc"])
    if kind == "extra_forbidden":
        tp, _ = _at(schema, loc[:-1])
        near = _nearest(str(loc[-1]), tuple(tp.model_fields)) if loc and _is_model(tp) else None
        return f"unknown field (did you mean {near}?)" if near else "unknown field"
    if kind == "missing":
        return "required field is missing"
    if loc and loc[-1] == _KEY:
        return _key_message(error, schema, loc)
    if kind == "string_type":
        return f"expected a string, got {_written(error.get('input'))}"
    if kind == "string_pattern_mismatch" and (meaning := _meaning(error)) is not None:
        return meaning
    if kind in ("model_type", "dict_type"):
        tp, info = _at(schema, loc)
        if (shown := _example(tp, info)) is not None:
            return f"expected a mapping such as {shown}"
        if _is_model(tp):
            return f"expected a mapping of its fields ({capped(tp.model_fields)})"
        return "expected a mapping (name: value, one per line, or {name: value, ...})"
    if kind == "list_type":
        tp, info = _at(schema, loc)
        if (shown := _example(tp, info)) is not None:
            return f"expected a list such as {shown}"
        return "expected a list ([a, b], or one '- item' per line)"
    return _pydantic(error)


def unknown(what: str, name: str, known: Iterable[str]) -> str:
    """`unknown model 'embeder' (did you mean embedder? known: classifier, embedder)`: a name that is none of
    `known`, the nearest of them if one is near, and the first few."""
    names = tuple(sorted(known))
    near = _nearest(name, names)
    return f"unknown {what} {name!r} ({f'did you mean {near}? ' if near else ''}known: {capped(names)})"


# Remembered: a model taken out of the catalog is unknown to each of the 10,000 tenants that used it, and
# a typo copied into every tenant file is the same typo in each.
@functools.lru_cache(maxsize=1024)
def _nearest(name: str, names: tuple[str, ...]) -> str | None:
    near = difflib.get_close_matches(name, names, n=1)
    return near[0] if near else None


def _key_message(error: Mapping[str, Any], schema: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """A key of a mapping refused: a number or a boolean where a name goes (`1:` for `"1":`), or a name
    that is not one. `loc` ends with the key and _KEY."""
    parent = next((p for p in reversed(loc[:-2]) if isinstance(p, str)), "")
    noun = f"a {_KEY_NOUNS[parent]} name" if parent in _KEY_NOUNS else "a name"
    if error["type"] == "string_type":
        tp, _ = _at(schema, loc[:-2])
        value = "{...}" if _is_model(_value_type(tp)) else "..."
        return f'{noun} is a string: quote it ("{_written(error.get("input"))}": {value})'
    if error["type"] == "string_pattern_mismatch" and (meaning := _meaning(error)) is not None:
        return f"{noun} {meaning}"
    return f"{noun}: {_pydantic(error)}"


def _meaning(error: Mapping[str, Any]) -> str | None:
    return PATTERN_MEANINGS.get(str(error.get("ctx", {}).get("pattern")))


def _pydantic(error: Mapping[str, Any]) -> str:
    """pydantic's own message: ours, from a validator, or one that already says what to write (an enum's values)."""
    return str(error["msg"]).removeprefix("Value error, ")


def kind_of(value: Any) -> str:
    """What a value is, in YAML's words: a mapping, a list, a string, a number, a boolean, null."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else f"a {type(value).__name__}"


def _written(value: Any) -> str:
    """What the file holds where a string goes, as YAML writes it."""
    if isinstance(value, (dict, list)):
        return kind_of(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _at(schema: type[BaseModel], loc: Iterable[int | str]) -> tuple[Any, FieldInfo | None]:
    """The type `schema` expects at `loc`, and the field it is when `loc` ends at one (None: a mapping's
    value or a list's item); (None, None) where `loc` leaves the schema."""
    tp: Any = schema
    info: FieldInfo | None = None
    for part in loc:
        tp = _plain(tp)
        if _is_model(tp):
            info = tp.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return None, None
            tp = info.annotation
        elif get_origin(tp) in (dict, list):
            tp, info = _value_type(tp), None
        else:
            return None, None
    return _plain(tp), info


def _value_type(tp: Any) -> Any:
    """A mapping's value type, a list's item type."""
    args = get_args(_plain(tp))
    return _plain(args[-1]) if args else None


def _plain(tp: Any) -> Any:
    """`tp` without Annotated's constraints or an Optional's None."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _plain(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _plain(args[0]) if len(args) == 1 else tp
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _example(tp: Any, info: FieldInfo | None) -> str | None:
    """The field's example, else its model's (model.example), in YAML's flow style."""
    examples = info.examples if info is not None else None
    if not examples and _is_model(tp):
        extra = tp.model_config.get("json_schema_extra")
        examples = extra.get("examples") if isinstance(extra, dict) else None
    if not examples or not isinstance(examples[0], (dict, list)):
        return None
    return _flow(examples[0])


def _flow(value: Any) -> str:
    """`value` in YAML's flow style, a string quoted only where YAML would read it as something else."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (yaml.safe_load(value) != value or any(c in value for c in ",:[]{}#")):
        return json.dumps(value)
    return str(value)
