"""The LRU map behind the engines' caches and the app's."""

import pytest

from samkit.utils.lru import LRU


def test_least_recent_goes_first_and_a_read_refreshes():
    c = LRU(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3 and len(c) == 2
    c.put("a", 10)  # rewriting refreshes too
    c.put("d", 4)
    assert "c" not in c and c.get("a") == 10 and c.get("missing", "x") == "x"
    c.clear()
    assert len(c) == 0


def test_capacity_zero_keeps_nothing_and_bad_capacities_are_refused():
    c = LRU(0)
    assert c.put("a", 1) == 1 and "a" not in c
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="capacity"):
            LRU(bad)
