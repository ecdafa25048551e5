"""Throughput at saturation with wrk (a C load generator: Debian's ``wrk`` 4.1, LuaJIT).

A closed loop of ``connections`` keep-alive connections on ``threads`` threads for
``seconds``; a Lua script rotates over the requests (each thread from its own offset)
and prints wrk's own summary as one JSON line at the end. Answers of 400 and above
(wrk's "Non-2xx or 3xx responses") and socket errors (connect, read, write, timeout)
are failures. When wrk is not installed, the result says so (``error``) and
:func:`wrk_failures` counts it as a failure: the figure reads "not met" and the run
goes on.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import shutil
from pathlib import Path
from typing import Any

MARKER = "ATTUNE-WRK "
INSTALL_HINT = "wrk is not installed: `apt-get install wrk` (scripts/setup.sh installs it)"
ERRORS = ("connect", "read", "write", "timeout")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")

_SCRIPT = """\
local specs = {
%(specs)s
}
local requests = {}
local counter = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

function init(args)
  for i, spec in ipairs(specs) do
    requests[i] = wrk.format(spec[1], spec[2], spec[3], spec[4])
  end
  counter = tonumber(offset) or 0
end

function request()
  counter = counter + 1
  return requests[(counter %% #requests) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"duration_us":%%d,"requests":%%d,"bytes":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"mean_us":%%.1f,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def lua_string(text: str) -> str:
    """``text`` as a Lua 5.1 string literal (every byte outside printable ASCII, quotes
    and backslashes as a decimal escape)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def wrk_script(requests: list[dict[str, Any]]) -> str:
    """The Lua script that rotates over ``requests`` (method, path, headers, body)."""
    rows = []
    for spec in requests:
        headers = ", ".join(
            f"[{lua_string(k)}] = {lua_string(v)}" for k, v in (spec.get("headers") or {}).items()
        )
        body = lua_string(spec["body"]) if spec.get("body") else "nil"
        method, path = lua_string(spec["method"]), lua_string(spec["path"])
        rows.append(f"  {{{method}, {path}, {{{headers}}}, {body}}},")
    return _SCRIPT % {"specs": "\n".join(rows), "marker": MARKER}


def parse_output(stdout: str) -> dict[str, Any]:
    """wrk's summary (the script's JSON line) in requests, seconds and milliseconds."""
    line = next((x for x in stdout.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise ValueError(f"no summary in wrk's output: {stdout[-500:]!r}")
    raw = json.loads(line[len(MARKER) :])
    seconds = raw["duration_us"] / 1e6
    non_2xx = raw["status"]
    found = _NON_2XX.search(stdout)
    if found:
        non_2xx = max(non_2xx, int(found[1]))
    return {
        "requests": raw["requests"],
        "duration_s": seconds,
        "rate_per_s": raw["requests"] / seconds if seconds > 0 else 0.0,
        "bytes": raw["bytes"],
        "latency_ms": {q: raw[f"{q}_us"] / 1000 for q in ("mean", "p50", "p90", "p99", "max")},
        "non_2xx": non_2xx,
        "socket_errors": {name: raw[name] for name in ERRORS},
    }


def wrk_failures(result: dict[str, Any]) -> dict[str, int]:
    """What failed: wrk missing or failing, answers outside 2xx, socket errors by kind."""
    if "error" in result:
        return {str(result.get("error_kind", "wrk failed")): 1}
    found = {"non-2xx": int(result["non_2xx"])} if result["non_2xx"] else {}
    found |= {f"socket {k}": int(v) for k, v in result["socket_errors"].items() if v}
    return found


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def run_wrk(
    port: int, requests: list[dict[str, Any]], *, threads: int, connections: int,
    seconds: float, timeout_s: float, work: Path,
) -> dict[str, Any]:  # fmt: skip
    """Run wrk against 127.0.0.1:``port``; its summary, or ``error`` when it could not run."""
    binary = shutil.which("wrk")
    settings = {"threads": threads, "connections": connections, "seconds": seconds}
    if binary is None:
        return {**settings, "error": INSTALL_HINT, "error_kind": "wrk not installed"}
    script = work / f"wrk-{port}.lua"
    await asyncio.to_thread(_write, script, wrk_script(requests))
    argv = [
        binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s", "-s", str(script), f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds + timeout_s + 30)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        message = f"wrk exited with {process.returncode}: {err.decode(errors='replace')[-500:]}"
        return {**settings, "error": message, "error_kind": "wrk failed"}
    try:
        result = parse_output(out.decode(errors="replace"))
    except ValueError as error:
        return {**settings, "error": str(error), "error_kind": "wrk failed"}
    # The children's rusage grows when a child is reaped: here, wrk alone.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    duration = result["duration_s"]
    return {**settings, **result, "cpu_share": cpu / duration if duration > 0 else 0.0}


__all__ = ["INSTALL_HINT", "lua_string", "parse_output", "run_wrk", "wrk_failures", "wrk_script"]
