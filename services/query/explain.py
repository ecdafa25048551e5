"""Explanations written when asked: a blend explains only the results it keeps, so
writing one for each of hundreds of candidates is wasted work."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping


class Explained(Mapping[str, str]):
    """``explain(item_id)`` for each of ``items`` (a read-only mapping, computed on
    access)."""

    def __init__(self, items: Mapping[str, object], explain: Callable[[str], str]) -> None:
        self._items = items
        self._explain = explain

    def __getitem__(self, item_id: str) -> str:
        if item_id not in self._items:
            raise KeyError(item_id)
        return self._explain(item_id)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["Explained"]
