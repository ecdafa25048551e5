"""The figures of a run: each measured value next to its raw limit and its target."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TargetKind = Literal["at_least", "at_most", "below", "ratio_at_least"]


@dataclass(frozen=True)
class Target:
    """What a figure must reach. ``ratio_at_least`` compares measured / raw."""

    kind: TargetKind
    value: float
    text: str

    def met(self, measured: float | None, ratio: float | None) -> bool | None:
        """True or False; None when the figure could not be measured."""
        if self.kind == "ratio_at_least":
            return None if ratio is None else ratio >= self.value
        if measured is None:
            return None
        if self.kind == "at_least":
            return measured >= self.value
        if self.kind == "at_most":
            return measured <= self.value
        return measured < self.value


@dataclass
class Figure:
    """One row of the table.

    ``measured`` and ``raw`` share ``unit``; ``ratio`` is measured / raw (for a latency,
    how many times the raw limit it takes; for a rate, the share of the raw limit).
    ``failures`` counts what went wrong while measuring, by reason (a non-2xx status, a
    timeout, a probe never visible, a digest that differs): one is enough for the target
    not to be met, whatever the measured value."""

    key: str
    title: str
    measured: float | None
    unit: str
    target: Target | None = None
    raw: float | None = None
    raw_label: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def ratio(self) -> float | None:
        if self.measured is None or self.raw is None or self.raw == 0:
            return None
        return self.measured / self.raw

    @property
    def met(self) -> bool | None:
        if self.failed:
            return False
        return None if self.target is None else self.target.met(self.measured, self.ratio)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


@dataclass
class Results:
    """Everything a run produced, as written to the JSON file."""

    started_at: str
    command: str
    quick: bool
    machine: dict[str, Any]
    load_before: list[float]
    load_after: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    figures: list[Figure] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    workload: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures = [f for f in self.figures if f.key != figure.key] + [figure]
        return figure

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """The inverse of :meth:`to_json` (to render an earlier run again)."""
        fields = {f.name for f in dataclasses.fields(Figure)}
        figures = []
        for raw in data.get("figures", []):
            figure = {k: v for k, v in raw.items() if k in fields}
            if figure.get("target"):
                figure["target"] = Target(**figure["target"])
            figures.append(Figure(**figure))
        return cls(
            started_at=data["started_at"],
            command=data["command"],
            quick=data["quick"],
            machine=data.get("machine", {}),
            load_before=data.get("load_before", []),
            load_after=data.get("load_after", []),
            duration_s=data.get("duration_s", 0.0),
            figures=figures,
            series=data.get("series", {}),
            phases=data.get("phases", {}),
            notes=data.get("notes", []),
            workload=data.get("workload", {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "command": self.command,
            "quick": self.quick,
            "duration_s": round(self.duration_s, 1),
            "machine": self.machine,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "figures": [f.to_json() for f in self.figures],
            "series": self.series,
            "phases": self.phases,
            "notes": self.notes,
            "workload": self.workload,
        }


__all__ = ["Figure", "Results", "Target", "TargetKind"]
