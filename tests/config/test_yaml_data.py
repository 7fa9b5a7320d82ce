"""The config loader's YAML reader (xds_server/config/yaml_data.py) gives exactly PyYAML's answer, on every
YAML file this repository ships and on the corners of YAML 1.1 that decide what a config means."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xds_server.config.loader import parse_yaml
from xds_server.config.yaml_data import load_yaml

REPO = Path(__file__).resolve().parents[2]


def _single_documents(root: Path) -> list[Path]:
    """The repository's YAML files that hold one document (the loader reads no other kind; Helm templates and
    multi-document manifests are not config)."""
    out: list[Path] = []
    for path in sorted(root.rglob("*.y*ml")):
        if {".venv", ".git", "templates"} & set(path.parts):
            continue
        try:
            if len(list(yaml.load_all(path.read_text(), Loader=yaml.SafeLoader))) == 1:
                out.append(path)
        except yaml.YAMLError:
            continue
    return out


SHIPPED = _single_documents(REPO)

CORNERS = {
    "implicit types": "a: yes\nb: no\nc: on\nd: ~\ne: null\nf: 0x1F\ng: 0o17\nh: 1_000\ni: 1:30\nj: .inf\nk: -.Inf\n"
                      "l: .nan\nm: 1e3\nn: '1'\no: \"yes\"\np: 017\nq: +12\nr: 3.5\ns: True\nt: NULL\n",
    "nested": "tenants:\n  - id: a\n    models: {m: {split: {v1: 90, v2: 10}}}\n  - []\n  - {}\n",
    "explicit tags": "a: !!str 12\nb: !!int '7'\nc: !!float 1\nd: !!bool 'true'\ne: !!null ''\n",
    "keys of every kind": "1: int\n2.5: float\ntrue: bool\n~: null\n'x': str\n",
    "block scalars": "a: |\n  line one\n  line two\nb: >\n  folded\n  text\n",
    "anchors and aliases": "base: &b {x: 1}\nuse: *b\nlist: &l [1, 2]\nagain: *l\n",
    "merge keys": "base: &b {x: 1, y: 2}\nmerged:\n  <<: *b\n  y: 3\n",
    "timestamps": "when: 2026-12-02\nat: 2026-12-02T12:00:00Z\n",
    "set": "s: !!set {a, b}\n",
    "omap": "o: !!omap [a: 1, b: 2]\n",
    "binary": "b: !!binary aGVsbG8=\n",
    "empty document": "",
    "only a comment": "# nothing\n",
    "a bare scalar": "42\n",
    "a list at the top": "- 1\n- two\n",
    "unicode": "name: Zoë 東京\n",
}


@pytest.mark.parametrize("text", CORNERS.values(), ids=CORNERS.keys())
def test_the_corners_of_yaml_read_as_pyyaml_reads_them(text: str) -> None:
    expected = yaml.load(text, Loader=yaml.SafeLoader)
    got = load_yaml(text)
    # (.nan compares equal: PyYAML hands out one float object for it, as this reader does through it)
    assert got == expected
    assert load_yaml(text.encode()) == got


def test_an_alias_is_one_shared_object_as_in_pyyaml() -> None:
    data = load_yaml("a: &x [1]\nb: *x\n")
    assert data["a"] is data["b"]


def test_a_recursive_document_is_built_as_pyyaml_builds_it() -> None:
    data = load_yaml("a: &x [*x]\n")
    assert data["a"][0] is data["a"]


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_yaml_file_reads_as_pyyaml_reads_it(path: Path) -> None:
    assert load_yaml(path.read_bytes()) == yaml.load(path.read_text(), Loader=yaml.SafeLoader)


def test_the_shipped_files_include_the_config() -> None:
    config = {REPO / "config" / name for name in ("platform.yaml", "tiers.yaml", "regions.yaml", "models.yaml")}
    assert config <= set(SHIPPED)


@pytest.mark.parametrize(("text", "error"), [
    ("a: [1, 2\n", yaml.YAMLError),
    ("a: 1\n---\nb: 2\n", yaml.composer.ComposerError),
    ("a: !custom 1\n", yaml.constructor.ConstructorError),
    ("? [1, 2]\n: x\n", yaml.constructor.ConstructorError),
])
def test_what_pyyaml_refuses_is_refused_with_its_error(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        yaml.load(text, Loader=yaml.SafeLoader)
    with pytest.raises(error):
        load_yaml(text)


@pytest.mark.parametrize(("text", "line", "column", "problem"), [
    ("id: acme\ntier: free\ntier: pro\n", 3, 1, "duplicate key 'tier' (first at line 2)"),
    ("a: {b: 1, c: 2, b: 3}\n", 1, 17, "duplicate key 'b' (first at line 1, column 5)"),
    ("split: {1: 50, 1: 50}\n", 1, 16, "duplicate key 1 (first at line 1, column 9)"),
    # The same, where the document is PyYAML's to build (an alias, a merge key, a timestamp): the same answer.
    ("base: &b {x: 1}\nuse: *b\nd: 1\nd: 2\n", 4, 1, "duplicate key 'd' (first at line 3)"),
    ("base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n  y: 3\n", 5, 3, "duplicate key 'y' (first at line 4)"),
    ("when: 2026-12-02\nwhen: 2026-12-03\n", 2, 1, "duplicate key 'when' (first at line 1)"),
    # A merge's source with a key written twice, found although only merged.
    ("base: &b {k: 1, k: 2}\nm: {<<: *b}\n", 1, 17, "duplicate key 'k' (first at line 1, column 11)"),
])
def test_a_key_written_twice_is_refused_with_both_positions(text: str, line: int, column: int,
                                                            problem: str) -> None:
    """PyYAML keeps the last of two equal keys: `tier: free` then `tier: pro` would silently be pro."""
    with pytest.raises(yaml.constructor.ConstructorError) as info:
        load_yaml(text)
    mark = info.value.problem_mark
    assert mark is not None
    assert (mark.line + 1, mark.column + 1, info.value.problem) == (line, column, problem)


@pytest.mark.parametrize("text", [
    "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n",  # a key a merge brought in, overridden
    "a: &a {k: 1}\nb: &b {<<: *a, k: 2}\nc: {<<: *b, k: 3}\n",  # merges of merges, each overriding
    "m:\n  <<: [{k: 1}, {k: 2}]\n",  # two merged sources with the same key: the first wins, as in PyYAML
    "1: int\ntrue: bool\n",  # equal in Python, two keys in YAML
])
def test_what_is_not_a_key_written_twice_reads_as_pyyaml_reads_it(text: str) -> None:
    assert load_yaml(text) == yaml.load(text, Loader=yaml.SafeLoader)


def test_a_file_that_is_not_utf8_is_a_problem_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_bytes(b"id: acme\ntier: \xff\n")
    problems: list = []
    assert parse_yaml(path, problems) is None
    assert [(p.file, p.field, p.message) for p in problems] == [
        (str(path), "line 2, column 7", "byte 0xff is not UTF-8 text (save the file as UTF-8)")]
