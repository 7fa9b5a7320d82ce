"""A YAML document as plain data, as `yaml.load(text, Loader=CSafeLoader)` returns it, in 0.72x the time
(bench/cold_load.py: 10,000 tenant files, 0.92 s against 1.28 s).

libyaml parses and composes the node tree in C; PyYAML's constructor then walks it in Python through
generators and a dispatch per node, a third of reading a tenant file. Config files hold only maps,
lists, strings, numbers, booleans and nulls: those are built here directly (each scalar by PyYAML's own
constructor for its tag, so `yes`, `0x1F`, `1_000` and `.inf` mean what they always meant). Anything
else (merge keys, timestamps, sets, binary, an alias of a map or a list) falls back to PyYAML, whose
answer is the one that counts; so the result is always PyYAML's, only faster on what configs contain.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import Node, ScalarNode

# libyaml's C parser where present (it is, in PyYAML's wheels): ~10x faster on thousands of tenant files.
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_SCALARS = {
    _TAG + "int": yaml.constructor.SafeConstructor.construct_yaml_int,
    _TAG + "float": yaml.constructor.SafeConstructor.construct_yaml_float,
    _TAG + "bool": yaml.constructor.SafeConstructor.construct_yaml_bool,
    _TAG + "null": yaml.constructor.SafeConstructor.construct_yaml_null,
}
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class _Unusual(Exception):
    """A node this module leaves to PyYAML."""


def load_yaml(text: str | bytes) -> Any:
    """The single document in `text` as plain data; raises yaml.YAMLError as yaml.load does."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is None:
        return None
    try:
        return _build(node, set())
    except (_Unusual, RecursionError):
        return yaml.load(text, Loader=Loader)


def _build(node: Node, seen: set[int]) -> Any:
    tag = node.tag
    if tag == _STR:
        return node.value
    if tag in (_MAP, _SEQ):
        # An alias makes one node appear twice: PyYAML hands back one shared object (or a recursive one),
        # which a plain walk would not; such documents are PyYAML's to build.
        if id(node) in seen:
            raise _Unusual
        seen.add(id(node))
        if tag == _SEQ:
            return [_build(item, seen) for item in node.value]
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                raise _Unusual
            key = _build(key_node, seen)
            if isinstance(key, (list, dict)):
                raise _Unusual  # PyYAML's error for an unhashable key, with its position
            out[key] = _build(value_node, seen)
        return out
    construct = _SCALARS.get(tag)
    if construct is None or not isinstance(node, ScalarNode):
        raise _Unusual
    return construct(_CONSTRUCTOR, node)
