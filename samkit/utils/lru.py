"""A small least-recently-used map: the engines' embedding caches, the app's decoded images and label caches."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

_MISSING = object()


class LRU:
    """At most ``capacity`` entries; reading or writing one makes it the most recent, and the least recent goes
    first when the map is full. ``capacity=0`` keeps nothing (every ``put`` is dropped).

    Not thread-safe by itself: its users hold their own lock where several threads share one.
    """

    def __init__(self, capacity: int):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity={capacity!r} must be an integer >= 0")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` (now the most recent), or ``default``."""
        value = self._items.get(key, _MISSING)
        if value is _MISSING:
            return default
        self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> Any:
        """Keep ``value`` under ``key`` as the most recent entry (dropping the least recent ones past the
        capacity); returns ``value``."""
        if self.capacity:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
