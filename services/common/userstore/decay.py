"""How fast the user model's decayed scores fade: shared by the fold, which stores them
relative to a landmark, and the reader, which decays them to the time of reading."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.settings import Settings

DAY_MS = 86_400_000


@dataclass(frozen=True)
class DecayRates:
    tag_half_life_days: float = 30.0
    trending_half_life_days: float = 7.0
    popularity_half_life_days: float = 730.0  # 0: popularity does not decay (all-time sums)

    @classmethod
    def from_settings(cls, settings: Settings) -> DecayRates:
        return cls(
            tag_half_life_days=settings.tag_half_life_days,
            trending_half_life_days=settings.trending_half_life_days,
            popularity_half_life_days=settings.popularity_half_life_days,
        )

    @property
    def tag_half_life_ms(self) -> float:
        return self.tag_half_life_days * DAY_MS

    @property
    def trending_rate_per_ms(self) -> float:
        return math.log(2) / (self.trending_half_life_days * DAY_MS)

    @property
    def popularity_rate_per_ms(self) -> float:
        """0 when popularity does not decay."""
        days = self.popularity_half_life_days
        return math.log(2) / (days * DAY_MS) if days > 0 else 0.0


__all__ = ["DAY_MS", "DecayRates"]
