"""The config's tenant table after an edit (xds_server/layered.py `Revised`): the last table with a few values
replaced, which must read, iterate and compare exactly as a plain dict built with those values, in the same
order, across many edits and the merges between them, and never change the table it was made from."""

from __future__ import annotations

import random

import pytest

from xds_server.layered import Revised, as_dict


def test_edits_read_as_a_dict_in_the_same_order() -> None:
    rng = random.Random(5)
    keys = [f"t{i:05d}" for i in range(20_000)]  # past 1,024 replacements at a sixteenth: merged at times
    first = {k: 0 for k in keys}
    expected = dict(first)
    table: Revised[int] | dict[str, int] = first
    merged = 0
    for step in range(300):
        edits = {rng.choice(keys): step + 1 for _ in range(rng.choice([1, 1, 2, 60]))}
        table = Revised.over(table, edits)  # type: ignore[assignment]
        expected.update(edits)
        assert list(table) == keys and list(table.keys()) == keys, step
        assert list(table.items()) == list(expected.items()), step
        assert list(table.values()) == list(expected.values()), step
        assert table == expected and len(table) == len(expected), step
        assert as_dict(table) == expected and list(as_dict(table)) == keys, step
        for k in [*edits, keys[0], "nobody"]:
            assert table.get(k) == expected.get(k) and (k in table) == (k in expected), (step, k)
        assert table["t00007"] == expected["t00007"]
        with pytest.raises(KeyError):
            table["nobody"]
        merged += not isinstance(table, Revised)
    assert merged  # the replacements were merged into a plain dict at least once
    assert set(first.values()) == {0}  # the table it started from is never written to


def test_only_values_are_replaced() -> None:
    with pytest.raises(KeyError, match="'new'"):
        Revised.over({"a": 1}, {"new": 2})


def test_an_edited_config_serialises_as_one_loaded_whole() -> None:
    import warnings

    from bench.synth import REPO_CONFIG
    from xds_server.config import load_config
    from xds_server.config.model import PlatformConfig

    whole = load_config(REPO_CONFIG)
    first = next(iter(whole.tenants))
    edited = PlatformConfig.model_construct(**{**dict(whole), "tenants": Revised.over(whole.tenants, {
        first: whole.tenants[first]})})
    assert isinstance(edited.tenants, Revised)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a field's value is not the type it serialises
        assert edited.model_dump_json() == whole.model_dump_json()
