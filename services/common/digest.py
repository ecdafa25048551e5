"""Canonical digests of derived state: equal when two stores hold the same state,
whatever the order it was written in and whatever the namespace or collection is
called. Bookkeeping (applied offsets, deduplication windows, outboxes) is left out:
it records how the state was built, not what it is."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

SIGNIFICANT_DIGITS = 9  # floats summed in another order differ far below this


def number(value: float | int | str | bytes) -> str:
    """A number written canonically: integers exactly, floats to 9 significant digits."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        return str(int(text))
    except ValueError:
        pass
    as_float = float(text)
    if as_float == 0 or not math.isfinite(as_float):
        return "0" if as_float == 0 else text
    return format(as_float, f".{SIGNIFICANT_DIGITS}g")


@dataclass
class Digest:
    """Collects one line per fact; the digest is the sha256 of the sorted lines."""

    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, *parts: str) -> None:
        self.lines.append("\t".join((kind, *parts)))
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def hexdigest(self) -> str:
        sha = hashlib.sha256()
        for line in sorted(self.lines):
            sha.update(line.encode())
            sha.update(b"\n")
        return sha.hexdigest()


__all__ = ["Digest", "number"]
