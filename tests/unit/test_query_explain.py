"""Explanations written only when a result asks for one."""

from __future__ import annotations

import pytest

from services.query.explain import Explained


def test_explains_only_its_items_and_only_when_asked() -> None:
    asked: list[str] = []

    def explain(item_id: str) -> str:
        asked.append(item_id)
        return f"because of {item_id}"

    details = Explained({"a": 1.0, "b": 0.5}, explain)

    assert list(details) == ["a", "b"]
    assert len(details) == 2
    assert "a" in details
    assert asked == []
    assert details.get("b") == "because of b"
    assert details.get("zz") is None
    with pytest.raises(KeyError):
        details["zz"]
    assert asked == ["b"]
