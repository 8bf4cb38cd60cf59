"""A bounded memory of what was used recently, for the caches on the ingest path."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """A map of at most ``2 * size`` entries that keeps the ones used recently.

    Two generations: entries go into the new one, and an entry found in the old one moves to the new one.
    When the new one is full, the old one is forgotten and the new one becomes old. So a working set of up to
    ``size`` keys (a team's active series) stays whole however often it cycles, and a larger one loses part
    of its hits, not all of them, as forgetting everything at once would.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._new: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        value = self._new.get(key)
        if value is None and self._old:
            value = self._old.pop(key, None)
            if value is not None:
                self[key] = value
        return value

    def __setitem__(self, key: K, value: V) -> None:
        if len(self._new) >= self._size:
            self._old, self._new = self._new, {}
        self._new[key] = value

    def __len__(self) -> int:
        return len(self._new) + len(self._old)
