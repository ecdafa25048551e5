"""Per-signal scores of candidate items that need more than a lookup: co-occurrence
(from the user's weighted items) and tag affinity. Each returns the scores and, per
item, what explains it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from services.common.vectorindex import StoredItem
from services.query.explain import Explained
from services.query.ranking import WeightedItem, scaled


def cooccurrence_scores(
    weights: Sequence[WeightedItem], found: Mapping[str, list[tuple[str, float]]]
) -> tuple[dict[str, float], dict[str, str]]:
    """Each co-occurring item's score (counts weighted by the source's weight in the
    profile) and the source item it owes most to."""
    top = max((w.weight for w in weights), default=0.0) or 1.0
    scores: dict[str, float] = defaultdict(float)
    best: dict[str, tuple[float, str]] = {}
    for source in weights:
        for other, count in found.get(source.item_id, []):
            contribution = count * source.weight / top
            scores[other] += contribution
            if contribution > best.get(other, (0.0, ""))[0]:
                best[other] = (contribution, source.item_id)
    return dict(scores), {item: source for item, (_, source) in best.items()}


def tag_affinity_scores(
    items: Iterable[StoredItem], affinity: Mapping[str, float]
) -> tuple[dict[str, float], Mapping[str, str]]:
    """Each tagged item's summed affinity of the user for its tags (scaled), and the
    explanation naming the strongest of them."""
    raw: dict[str, float] = {}
    tags_of: dict[str, list[str]] = {}
    for item in items:
        tags = item.payload.get("tags")
        if not tags:
            continue
        total, matched = 0.0, False
        for tag in tags:
            value = affinity.get(tag)
            if value is not None:
                total += value
                matched = True
        if matched:
            raw[item.item_id] = total
            tags_of[item.item_id] = tags

    def explain(item_id: str) -> str:
        matched = [(affinity[t], t) for t in tags_of[item_id] if t in affinity]
        names = ", ".join(t for _, t in sorted(matched, reverse=True)[:3])
        return f"matches this user's interest in {names}"

    return scaled(raw), Explained(raw, explain)


__all__ = ["cooccurrence_scores", "tag_affinity_scores"]
