import pytest

from xds_server.listing import capped


def test_a_short_list_is_shown_whole() -> None:
    assert capped(["a", "b", "c"]) == "a, b, c"


def test_a_long_list_shows_the_first_few_then_how_many_more() -> None:
    tenants = [f"t{i}" for i in range(6003)]
    text = capped(tenants)
    assert text == "t0, t1, t2, t3, t4 and 5,998 more"
    assert len(capped(tenants, limit=3)) < 40


def test_exactly_the_limit_needs_no_count() -> None:
    assert capped(range(5)) == "0, 1, 2, 3, 4"


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        capped(["a"], limit=0)
