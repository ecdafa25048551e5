"""Profiles of a service process for the targets a run misses: py-spy samples the
process while the same workload runs again; the collapsed stacks are kept (speedscope
and inferno read them), summarized (the functions that take the time) and drawn as an
SVG flame graph (hover a frame for its share)."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
PROJECT_PARTS = ("/services/", "/schemas/", "/bench/")
ENTRY_POINTS = ("(services/cli.py)", "(services/app/bootstrap.py)")
"""Frames every sample passes through (the process's main): left out of the summary."""
WRAPPERS = re.compile(r"^\w+\.__call__(\.<locals>\.\w+)? \(services/common/http\.py\)$")
"""The HTTP middlewares every request passes through: left out of the summary too."""
_REPO = str(Path(__file__).resolve().parents[1]) + "/"
_LIBRARY = re.compile(r"(?:site-packages|dist-packages|lib/python3\.\d+)/")


def py_spy_binary() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def frame_label(frame: str) -> str:
    """``func (file.py:12)`` -> ``func (package/file.py)``: lines merged, paths short."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    path = path[len(_REPO) :] if path.startswith(_REPO) else _LIBRARY.split(path)[-1]
    return f"{match['func']} ({path})"


def is_project(label: str) -> bool:
    return any(f"({part.strip('/')}/" in label for part in PROJECT_PARTS)


def _wrapper(label: str) -> bool:
    return label.endswith(ENTRY_POINTS) or WRAPPERS.match(label) is not None


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw output: ``frame;frame;frame count`` per line, root first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        stacks[tuple(frame_label(f) for f in head.split(";"))] += int(count)
    return stacks


@dataclass
class ProfileSummary:
    samples: int
    top_self: list[tuple[str, float]] = field(default_factory=list)
    top_project: list[tuple[str, float]] = field(default_factory=list)


def summarize_stacks(stacks: Counter[tuple[str, ...]], top: int = 12) -> ProfileSummary:
    """The frames with the most samples of their own, and the project functions with
    the most samples including what they call (shares of all samples, in %)."""
    total = sum(stacks.values())
    if not total:
        return ProfileSummary(0)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[stack[-1]] += count
        for label in set(stack):
            if is_project(label) and not _wrapper(label):
                inclusive[label] += count
    share = 100 / total
    return ProfileSummary(
        samples=total,
        top_self=[(label, n * share) for label, n in own.most_common(top)],
        top_project=[(label, n * share) for label, n in inclusive.most_common(top)],
    )


# -- flame graph --------------------------------------------------------------------------

_WIDTH, _ROW = 1200, 17


@dataclass
class _Node:
    value: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(stacks: Counter[tuple[str, ...]]) -> _Node:
    root = _Node()
    for stack, count in stacks.items():
        node = root
        node.value += count
        for label in stack:
            node = node.children.setdefault(label, _Node())
            node.value += count
    return root


def _colour(label: str) -> str:
    hue = zlib.crc32(label.encode()) % 40
    if is_project(label):
        return f"hsl({200 + hue}, 70%, 65%)"
    return f"hsl({10 + hue}, 85%, 62%)"


def flamegraph_svg(stacks: Counter[tuple[str, ...]], title: str) -> str:
    """A static SVG flame graph (root at the bottom); project frames in blue."""
    root = _tree(stacks)
    total = root.value or 1
    rects: list[str] = []
    depth_max = 0

    def draw(node: _Node, label: str, x: float, depth: int) -> None:
        nonlocal depth_max
        width = node.value / total * _WIDTH
        if width < 0.3:
            return
        depth_max = max(depth_max, depth)
        rects.append(
            f"<g><title>{html.escape(label)} ({node.value} samples, "
            f"{100 * node.value / total:.1f}%)</title>"
            f'<rect x="{x:.1f}" y="{{y{depth}}}" width="{width:.1f}" height="{_ROW - 1}" '
            f'fill="{_colour(label)}" rx="2"/>'
            + (
                f'<text x="{x + 3:.1f}" y="{{t{depth}}}">{html.escape(label[: int(width / 7)])}'
                "</text>"
                if width > 35
                else ""
            )
            + "</g>"
        )
        child_x = x
        for child_label, child in sorted(node.children.items(), key=lambda kv: kv[0]):
            draw(child, child_label, child_x, depth + 1)
            child_x += child.value / total * _WIDTH

    draw(root, "all", 0.0, 0)
    height = (depth_max + 3) * _ROW
    body = "\n".join(rects)
    for depth in range(depth_max + 1):
        y = height - (depth + 1) * _ROW
        body = body.replace(f"{{y{depth}}}", str(y)).replace(f"{{t{depth}}}", str(y + 12))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        'font-family="monospace" font-size="11">'
        f'<text x="4" y="14" font-size="13">{html.escape(title)}</text>\n{body}\n</svg>\n'
    )


# -- recording ----------------------------------------------------------------------------


def _prepare(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


async def record(
    pid: int, seconds: float, out_dir: Path, name: str, *, title: str, rate: int = 100
) -> dict[str, Any]:
    """Sample process ``pid`` for ``seconds`` with py-spy; write ``profile-<name>.txt``
    (collapsed stacks) and ``.svg`` (flame graph) under ``out_dir``; return a summary."""
    binary = py_spy_binary()
    if binary is None:
        return {"error": "py-spy is not installed (it is in the dev dependencies)"}
    raw = out_dir / f"profile-{name}.txt"
    await asyncio.to_thread(_prepare, raw)
    output = b""
    for _attempt in range(3):  # py-spy sometimes fails to attach on the first try
        process = await asyncio.create_subprocess_exec(
            binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", str(rate), "--format", "raw", "--nonblocking", "-o", str(raw),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
        if process.returncode == 0 and raw.exists():
            break
        await asyncio.sleep(0.3)
    if not raw.exists():
        return {"error": "py-spy failed: " + output.decode(errors="replace")[-500:]}
    stacks = parse_collapsed(raw.read_text(errors="replace"))
    svg = raw.with_suffix(".svg")
    svg.write_text(flamegraph_svg(stacks, title))
    summary = summarize_stacks(stacks)
    return {
        "collapsed": str(raw),
        "flamegraph": str(svg),
        "seconds": seconds,
        "samples": summary.samples,
        # py-spy leaves idle threads out: samples / (seconds x rate) is how many threads
        # ran (or held) Python on average; far below 1, the process mostly waited.
        "busy_threads": round(summary.samples / (seconds * rate), 2),
        "top_self": [[label, round(share, 1)] for label, share in summary.top_self],
        "top_project": [[label, round(share, 1)] for label, share in summary.top_project],
    }


__all__ = [
    "ProfileSummary",
    "flamegraph_svg",
    "frame_label",
    "parse_collapsed",
    "py_spy_binary",
    "record",
    "summarize_stacks",
]
