"""A YAML document as plain data, as `yaml.load(text, Loader=CSafeLoader)` returns it, in 0.72x the time
(bench/cold_load.py: 10,000 tenant files, 0.92 s against 1.28 s).

libyaml parses and composes the node tree in C; PyYAML's constructor then walks it in Python through
generators and a dispatch per node, a third of reading a tenant file. Config files hold only maps,
lists, strings, numbers, booleans and nulls: those are built here directly (each scalar by PyYAML's own
constructor for its tag, so `yes`, `0x1F`, `1_000` and `.inf` mean what they always meant). Anything
else (merge keys, timestamps, sets, binary, an alias of a map or a list) falls back to PyYAML, whose
answer is the one that counts; so the result is always PyYAML's, only faster on what configs contain.

One thing PyYAML accepts is refused: a key written twice in one mapping (YAML forbids it; PyYAML keeps the
last, so `tier: free` then `tier: pro` would silently mean pro). The map branch below only notices a key it
has already built and hands the document to the fallback, whose loader (`StrictLoader`) refuses it with the
key's position and the first one's: one implementation of the refusal, so both paths answer alike, and the
check costs the fast path one dict lookup per key.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

# libyaml's C parser where present (it is, in PyYAML's wheels): ~10x faster on thousands of tenant files.
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = _TAG + "str", _TAG + "map", _TAG + "seq", _TAG + "merge"
_SCALARS = {
    _TAG + "int": yaml.constructor.SafeConstructor.construct_yaml_int,
    _TAG + "float": yaml.constructor.SafeConstructor.construct_yaml_float,
    _TAG + "bool": yaml.constructor.SafeConstructor.construct_yaml_bool,
    _TAG + "null": yaml.constructor.SafeConstructor.construct_yaml_null,
}
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class _Unusual(Exception):
    """A node this module leaves to PyYAML."""


class StrictLoader(Loader):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader (libyaml's parser) that refuses a key written twice in one mapping. Keys a merge
    (`<<: *base`) brings in are not the mapping's own: overriding them is what a merge is for."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: MappingNode) -> None:
        # Every mapping passes here before it is built. A merge's source passes as well, when it is merged,
        # and from then on its pairs include what it merged itself: its own keys are those of its first pass.
        own = None
        if id(node) not in self._checked:
            self._checked.add(id(node))
            own = [k for k, _ in node.value if k.tag != _MERGE and isinstance(k, ScalarNode)]
        super().flatten_mapping(node)
        if own and len(own) > 1:
            _refuse_duplicates(self, node, own)


def _refuse_duplicates(loader: StrictLoader, node: MappingNode, keys: list[ScalarNode]) -> None:
    first: dict[tuple[type, Any], ScalarNode] = {}
    for key_node in keys:
        key = loader.construct_object(key_node)
        try:
            # By type too: 1 and true are equal in Python, not in YAML (PyYAML's dict merges them, as before).
            seen = first.setdefault((type(key), key), key_node)
        except TypeError:
            continue  # unhashable: PyYAML's own error follows
        if seen is not key_node:
            at, where = seen.start_mark, key_node.start_mark
            first_at = f"line {at.line + 1}" + (f", column {at.column + 1}" if at.line == where.line else "")
            raise ConstructorError("while constructing a mapping", node.start_mark,
                                   f"duplicate key {key!r} (first at {first_at})", where)


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
        return yaml.load(text, Loader=StrictLoader)


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
            if key_node.tag == _MERGE:
                raise _Unusual
            key = _build(key_node, seen)
            if isinstance(key, (list, dict)):
                raise _Unusual  # PyYAML's error for an unhashable key, with its position
            if key in out:
                raise _Unusual  # a duplicate (StrictLoader's error, with both positions), or 1 beside true
            out[key] = _build(value_node, seen)
        return out
    construct = _SCALARS.get(tag)
    if construct is None or not isinstance(node, ScalarNode):
        raise _Unusual
    return construct(_CONSTRUCTOR, node)
