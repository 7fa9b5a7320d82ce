"""What the loader says about a mistake a person makes in a config file: the file, the field, and what to write
instead, in words rather than YAML's or pydantic's internals."""

from __future__ import annotations

from pathlib import Path

import pytest

from xds_server.config import ConfigError, load_config
from xds_server.config.errors import Problem

REGIONS = "regions: {home: us-east-1, allowed: [us-east-1]}\n"


def problems_of(directory: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return info.value.problems


def tenant(cfg_dir: Path, text: str | bytes, name: str = "hooli") -> Path:
    path = cfg_dir / "tenants" / f"{name}.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_key_written_twice_is_refused_naming_both_lines(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\ntier: pro\n" + REGIONS)
    assert problems_of(cfg_dir) == [
        Problem(str(path), "line 3, column 1", "not valid YAML: duplicate key 'tier' (first at line 2)")]


def test_a_brace_left_open_names_the_line_it_was_opened_on(cfg_dir: Path) -> None:
    """libyaml finds it on the next line: the message names both, as libyaml's own does."""
    path = tenant(cfg_dir, "id: hooli\ntier: free\n" + REGIONS + "models:\n  classifier: {split: {v1: 100}\n"
                  "  embedder: {split: {v1: 100}}\n")
    assert problems_of(cfg_dir) == [Problem(str(path), "line 6, column 3", (
        "not valid YAML: did not find expected ',' or '}' (while parsing a flow mapping that began at "
        "line 5, column 15)"))]


def test_a_version_written_twice_in_a_split_is_not_a_split_of_half(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\n" + REGIONS + "models: {classifier: {split: {v2: 50, v2: 50}}}\n")
    assert problems_of(cfg_dir) == [
        Problem(str(path), "line 4, column 39", "not valid YAML: duplicate key 'v2' (first at line 4, column 31)")]


LOWER, UPPER = "a" * 64, "A" * 64
OWN_UNQUOTED = f"""id: hooli
tier: free
regions: {{home: us-east-1, allowed: [us-east-1]}}
own_models:
  router:
    format: onnx
    pool: cpu-general
    versions:
      1: {{artifact: s3://fairshare-us-east-1-models/tenants/hooli/1.onnx, sha256: {LOWER}}}
      "2": {{artifact: s3://fairshare-us-east-1-models/tenants/hooli/2.onnx, sha256: {UPPER}}}
    split: {{1: 90, "2": 10}}
"""


def test_an_unquoted_version_is_named_as_the_docs_write_it_and_told_to_be_quoted(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, OWN_UNQUOTED)
    assert problems_of(cfg_dir) == [
        Problem(str(path), "own_models.router.split.1", 'a version name is a string: quote it ("1": ...)'),
        Problem(str(path), "own_models.router.versions.1", 'a version name is a string: quote it ("1": {...})'),
        Problem(str(path), "own_models.router.versions.2.sha256",
                "must be 64 lower-case hex digits (the artifact's sha256, as sha256sum prints it)"),
    ]


def test_a_list_index_stays_in_brackets(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\nregions: {home: us-east-1, allowed: [us-east-1, Mars]}\n")
    found = problems_of(cfg_dir)
    assert {(p.file, p.field) for p in found} == {(str(path), "regions.allowed[1]")}
    assert any(p.message.startswith("must be 2 to 42 lower-case letters") for p in found)


@pytest.mark.parametrize(("extra", "field", "expected"), [
    ("pii: {redact: [email], block: [email]}\n", "pii",
     "an entity type cannot be in both pii.redact and pii.block: [email] (list each in one of them)"),
    ("models: {embedder: v1}\n", "models.embedder", "expected a mapping such as {split: {v1: 100}}"),
    ("models: {embedder: {split: v1}}\n", "models.embedder.split", "expected a mapping such as {v1: 90, v2: 10}"),
    ("pii: {redact: email}\n", "pii.redact", "expected a list such as [email]"),
    ("quotas: 8\n", "quotas", "expected a mapping such as {concurrency: 8}"),
    ("data_class: [payment]\n", "data_class", "expected a string, got a list"),
    ("models: {1: {split: {v1: 100}}}\n", "models.1", 'a model name is a string: quote it ("1": {...})'),
])
def test_a_value_of_the_wrong_shape_says_what_to_write(cfg_dir: Path, extra: str, field: str, expected: str) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\n" + REGIONS + extra)
    assert problems_of(cfg_dir) == [Problem(str(path), field, expected)]


def test_the_catalog_and_regions_files_say_what_to_write_too(cfg_dir: Path) -> None:
    models = cfg_dir / "models.yaml"
    models.write_text(models.read_text().replace("v1: {pool: cpu-general, loader: lexicon}", "v1: lexicon"))
    regions = cfg_dir / "regions.yaml"
    regions.write_text(regions.read_text().replace("model_bucket: fairshare-eu-west-1-models",
                                                   "model_bucket: Fairshare_EU"))
    assert problems_of(cfg_dir) == [
        Problem(str(models), "models.classifier.versions.v1",
                "expected a mapping such as {pool: cpu-general, loader: lexicon}"),
        Problem(str(regions), "regions[1].model_bucket",
                "must be an S3 bucket name: 3 to 63 lower-case letters, digits, '.' and '-', starting and ending "
                "with a letter or digit"),
    ]


def test_an_unknown_field_near_a_known_one_is_named(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\ndata_clas: public\n"
                           "regions: {home: us-east-1, allowd: [us-east-1]}\nquotas: {concurency: 3}\n")
    assert problems_of(cfg_dir) == [
        Problem(str(path), "data_clas", "unknown field (did you mean data_class?)"),
        Problem(str(path), "quotas.concurency", "unknown field (did you mean concurrency?)"),
        Problem(str(path), "regions.allowd", "unknown field (did you mean allowed?)"),
        Problem(str(path), "regions.allowed", "required field is missing"),
    ]


def test_an_unknown_model_region_or_tier_lists_the_known_ones_and_the_nearest(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: fre\nregions: {home: us-east1, allowed: [us-east1]}\n"
                           "models: {embeder: {split: {v1: 100}}, ranker: {split: {v1: 100}}}\n")
    region = "unknown region 'us-east1' (did you mean us-east-1? known: eu-west-1, us-east-1)"
    assert problems_of(cfg_dir) == [
        Problem(str(path), "models.embeder",
                "unknown model 'embeder' (did you mean embedder? known: classifier, embedder)"),
        Problem(str(path), "models.ranker", "unknown model 'ranker' (known: classifier, embedder)"),
        Problem(str(path), "regions.allowed[0]", region),
        Problem(str(path), "regions.home", region),
        Problem(str(path), "tier", "unknown tier 'fre' (did you mean free? known: enterprise, free, pro)"),
    ]


def test_a_long_catalog_is_listed_in_part(cfg_dir: Path) -> None:
    models = cfg_dir / "models.yaml"
    models.write_text(models.read_text() + "".join(
        f"  extra-{i}:\n    kind: classifier\n    versions: {{v1: {{pool: cpu-general, loader: lexicon}}}}\n"
        for i in range(20)))
    path = tenant(cfg_dir, "id: hooli\ntier: free\n" + REGIONS + "models: {ranker: {split: {v1: 100}}}\n")
    assert problems_of(cfg_dir) == [Problem(str(path), "models.ranker", (
        "unknown model 'ranker' (known: classifier, embedder, extra-0, extra-1, extra-10 and 17 more)"))]


def test_an_own_model_granted_as_a_catalog_one_is_told_where_its_split_goes(cfg_dir: Path) -> None:
    path = cfg_dir / "tenants" / "acme.yaml"
    path.write_text(path.read_text().replace("classifier: {split: {v1: 100}}", "ticket-router: {split: {v1: 100}}"))
    assert problems_of(cfg_dir) == [Problem(str(path), "models.ticket-router", (
        "'ticket-router' is one of this tenant's own_models: its split goes there, not under models"))]


@pytest.mark.parametrize(("text", "where"), [
    (b"id: hooli\ntier: free\nregions:\n\thome: us-east-1\n\tallowed: [us-east-1]\n", "line 4, column 1"),
    (b"id: hooli\ntier: free\nregions:\n  home: us-east-1\n  \tallowed: [us-east-1]\n", "line 5, column 3"),
    (b"id: hooli\ntier: free\nregions:\n  home: us-east-1\n\t  allowed: [us-east-1]\n", "line 5, column 1"),
])
def test_a_tab_in_the_indentation_is_named(cfg_dir: Path, text: bytes, where: str) -> None:
    path = tenant(cfg_dir, text)
    assert problems_of(cfg_dir) == [Problem(
        str(path), where, "not valid YAML: a tab character: YAML indents with spaces (replace the tab with spaces)")]


@pytest.mark.parametrize(("text", "where", "what"), [
    # Latin-1: the bad byte, on its line (libyaml names the newline after it, by its offset alone).
    (b"id: hooli\ntier: free\ndata_class: caf\xe9\n", "line 3, column 16", "byte 0xe9 is not UTF-8 text"),
    (b"id: hooli\ntier: free\ndata_class: caf\xe9s\n", "line 3, column 16", "byte 0xe9 is not UTF-8 text"),
    # The column counts characters: the two-byte e-acute before it is one.
    ("id: hooli\ntier: free\r\ndata_class: é ".encode() + b"\xff\n", "line 3, column 15",
     "byte 0xff is not UTF-8 text"),
])
def test_a_byte_that_is_not_utf8_is_named_on_its_line(cfg_dir: Path, text: bytes, where: str, what: str) -> None:
    path = tenant(cfg_dir, text + REGIONS.encode())
    assert problems_of(cfg_dir) == [Problem(str(path), where, f"{what} (save the file as UTF-8)")]


def test_a_control_character_is_named_on_its_line(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "\ufeffid: hooli\ntier: fr\x07ee\n".encode() + REGIONS.encode())
    assert problems_of(cfg_dir) == [Problem(
        str(path), "line 2, column 9", "character U+0007 is not allowed in YAML (control characters are not allowed): "
                                       "remove it")]


@pytest.mark.parametrize("text", [
    "\ufeffid: hooli\ntier: free\n" + REGIONS,  # a UTF-8 BOM
    "id: hooli\r\ntier: free\r\n" + REGIONS.replace("\n", "\r\n"),  # Windows' line ends
])
def test_what_editors_write_still_loads(cfg_dir: Path, text: str) -> None:
    tenant(cfg_dir, text.encode())
    assert load_config(cfg_dir).tenants["hooli"].spec.tier == "free"
    tenant(cfg_dir, text.lstrip("\ufeff").encode("utf-16"))
    assert load_config(cfg_dir).tenants["hooli"].spec.tier == "free"


@pytest.mark.parametrize("text", ["", "# hooli: to be written\n", "\n\n"])
def test_an_empty_tenant_file_is_one_problem_saying_what_a_tenant_needs(cfg_dir: Path, text: str) -> None:
    path = tenant(cfg_dir, text)
    assert problems_of(cfg_dir) == [Problem(str(path), "", "the file is empty: a tenant needs id, tier and regions")]


def test_an_empty_catalog_file_says_what_it_needs_and_an_empty_platform_file_is_the_defaults(cfg_dir: Path) -> None:
    (cfg_dir / "platform.yaml").write_text("# defaults\n")
    (cfg_dir / "tiers.yaml").write_text("")
    assert problems_of(cfg_dir) == [
        Problem(str(cfg_dir / "tiers.yaml"), "", "the file is empty: tiers.yaml needs tiers")]


def test_a_file_that_is_not_a_mapping_says_what_it_is(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "- id: hooli\n")
    assert problems_of(cfg_dir) == [
        Problem(str(path), "", "must be a mapping (field: value, one per line), got a list")]


TWICE = "tenant 'hooli' is defined twice: also in hooli.yaml (keep one of the two files)"


def test_a_tenant_defined_twice_names_the_other_file(cfg_dir: Path) -> None:
    from xds_server.config.loader import load_tenant_alone

    twin = cfg_dir / "tenants" / "hooli.yml"
    twin.write_text((cfg_dir / "tenants" / "hooli.yaml").read_text())
    assert problems_of(cfg_dir) == [Problem(str(twin), "id", TWICE)]
    with pytest.raises(ConfigError) as info:
        load_tenant_alone(cfg_dir, "hooli")  # what a credential reads
    assert info.value.problems == [Problem(str(twin), "id", TWICE)]


def test_an_offboarded_tenant_defined_twice_is_defined_twice_too(cfg_dir: Path) -> None:
    """Before, an offboarded hooli.yaml beside a live hooli.yml was two tenants of one id, one served."""
    first = cfg_dir / "tenants" / "hooli.yaml"
    twin = cfg_dir / "tenants" / "hooli.yml"
    twin.write_text(first.read_text())
    first.write_text(first.read_text() + "offboard: true\n")
    assert problems_of(cfg_dir) == [Problem(str(twin), "id", TWICE)]


@pytest.mark.parametrize(("regions", "field", "region"), [
    ("{home: eu-west-1, allowed: [eu-west-1, eu-west-1], failover: [eu-west-1]}", "regions.allowed", "eu-west-1"),
    ("{home: eu-west-1, allowed: [eu-west-1, us-east-1], failover: [us-east-1, us-east-1]}", "regions.failover",
     "us-east-1"),
])
def test_a_region_listed_twice_names_the_list(cfg_dir: Path, regions: str, field: str, region: str) -> None:
    path = tenant(cfg_dir, f"id: hooli\ntier: free\nregions: {regions}\n")
    assert problems_of(cfg_dir) == [Problem(str(path), field, f"duplicate region '{region}' (list each once)")]


def test_a_home_region_not_allowed_lists_the_allowed_ones_in_words(cfg_dir: Path) -> None:
    path = tenant(cfg_dir, "id: hooli\ntier: free\nregions: {home: eu-west-1, allowed: [us-east-1]}\n")
    assert problems_of(cfg_dir) == [Problem(str(path), "regions", (
        "home region 'eu-west-1' must be one of the allowed regions (us-east-1): add it to regions.allowed, or make "
        "one of those home"))]
