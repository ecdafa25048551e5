"""What the dashboards and alert rules may name: the Prometheus series Attune's code
registers (read from prometheus-client's registry after importing every module that
defines metrics), and the metric names a PromQL expression refers to (a small
tokenizer: promtool is not available here)."""

from __future__ import annotations

import importlib
import re
from functools import cache
from pathlib import Path

from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]

# Series a PromQL expression may use although Attune does not export them.
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds"})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
     "group_left", "group_right", "inf", "nan"}
)  # fmt: skip


def metric_modules() -> list[str]:
    """Every module of services/ that uses prometheus-client."""
    modules = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        if "prometheus_client" in path.read_text():
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts))
    return modules


@cache
def exported_metrics() -> dict[str, str]:
    """Every Attune metric (``attune_*``) and its type, counters named with ``_total``
    as Prometheus sees them."""
    for module in metric_modules():
        importlib.import_module(module)
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in REGISTRY.collect()
        if family.name.startswith("attune_")
    }


@cache
def exported_series() -> frozenset[str]:
    """The sample names of every Attune metric, e.g. ``..._bucket``."""
    names: set[str] = set()
    for name, kind in exported_metrics().items():
        base = name.removesuffix("_total") if kind == "counter" else name
        names.update(base + suffix for suffix in _SUFFIXES[kind])
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, label names,
    strings, durations and numbers left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = re.findall(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", text)
    return {name for name in found if name.lower() not in _KEYWORDS}


__all__ = [
    "PROMETHEUS_OWN",
    "exported_metrics",
    "exported_series",
    "metric_modules",
    "metric_names",
]
