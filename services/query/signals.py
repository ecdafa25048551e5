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
    """Each tagged item's summed affinity of the user for its tags, and the explanation
    naming the strongest of them. A positive sum is divided by the best one among
    ``items``. Tags of items the user disliked or rated low have a negative affinity: a
    negative sum is divided by the user's most negative affinity (capped at -1), so an
    item carrying the tag the user dislikes most, and nothing they like, is pushed down
    fully whatever the other candidates. Scores are -1..1."""
    raw: dict[str, float] = {}
    tags_of: dict[str, list[str]] = {}
    for item in items:
        tags = item.payload.get("tags")
        if not tags:
            continue
        total = sum(affinity.get(tag, 0.0) for tag in tags)
        if total != 0:
            raw[item.item_id] = total
            tags_of[item.item_id] = tags
    worst = -min((a for a in affinity.values() if a < 0), default=0.0)
    scores = scaled(raw)
    for item_id, total in raw.items():
        if total < 0:
            scores[item_id] = max(total / worst, -1.0)

    def explain(item_id: str) -> str:
        sign = 1.0 if raw[item_id] > 0 else -1.0
        matched = [
            (sign * affinity[t], t) for t in tags_of[item_id] if sign * affinity.get(t, 0) > 0
        ]
        names = ", ".join(t for _, t in sorted(matched, reverse=True)[:3])
        if sign > 0:
            return f"matches this user's interest in {names}"
        return f"carries tags this user disliked: {names}"

    return scores, Explained(raw, explain)


__all__ = ["cooccurrence_scores", "tag_affinity_scores"]
