"""Open loop: requests sent at scheduled times at a fixed rate, whatever the server does.

Request ``n`` is due at ``start + n / rate`` and gets its own task, so a slow answer
never delays the next request (a closed loop would wait, and the stall would vanish
from its latencies). Latency counts from the scheduled time, or from the actual send
when the timer fired early: a generator that falls behind is charged to the figure,
not hidden. The first ``warmup_s`` seconds of requests are sent and tallied apart;
every answer outside 2xx and every timeout (``timeout_s`` from the scheduled time) is
a failure, warm-up included (:func:`bench.httpclient.failures`).

The generator shares the machine with the server, so it reports its own CPU time over
the measured part (``cpu_share``: seconds of CPU per second of wall time).
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

from bench.httpclient import HttpError, Pool, Tally, encoded
from bench.stats import summarize

# asyncio's timers round to the millisecond: waking this much early lets a request go
# out on time instead of up to a millisecond late (its latency then counts from the send).
EARLY_S = 0.001
MAX_CONNECTIONS = 256


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def run_open(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], int(spec["port"])
    requests = encoded(spec["requests"], host)
    rate = float(spec["rate_per_s"])
    warmup_s, duration_s = float(spec.get("warmup_s", 0.0)), float(spec["duration_s"])
    timeout_s = float(spec.get("timeout_s", 2.0))
    match = spec["match"].encode() if spec.get("match") else None
    pool = Pool(host, port, int(spec.get("max_connections", MAX_CONNECTIONS)))
    warm, measured = Tally(), Tally()
    lateness_ms: list[float] = []
    samples: dict[str, str] = {}  # the first message of each kind of failure
    in_flight = peak = 0

    async def one(raw: bytes, scheduled: float, tally: Tally, counted: bool) -> None:
        nonlocal in_flight, peak
        fired = time.perf_counter()
        origin = min(scheduled, fired)
        if counted:
            lateness_ms.append((fired - scheduled) * 1000)
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            async with asyncio.timeout(max(origin + timeout_s - time.perf_counter(), 0.0)):
                status, body = await pool.send(raw, timeout_s)
        except (HttpError, TimeoutError) as error:
            tally.errors[type(error).__name__] += 1
            samples.setdefault(type(error).__name__, str(error)[:200])
            return
        finally:
            in_flight -= 1
        done = time.perf_counter()
        tally.latencies_ms.append((done - origin) * 1000)
        tally.statuses[status] += 1
        if not 200 <= status < 300:
            samples.setdefault(str(status), body[:200].decode(errors="replace"))
        tally.last_done = max(tally.last_done, done)
        if match is not None and match in body:
            tally.matched += 1

    warm_count = round(warmup_s * rate)
    total = warm_count + round(duration_s * rate)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + EARLY_S
    wall0, cpu0 = start, _cpu()
    try:
        for n in range(total):
            scheduled = start + n / rate
            delay = scheduled - time.perf_counter() - EARLY_S
            if delay > 0:
                await asyncio.sleep(delay)
            if n == warm_count:
                wall0, cpu0 = time.perf_counter(), _cpu()
            counted = n >= warm_count
            raw = requests[n % len(requests)]
            tally = measured if counted else warm
            tasks.append(asyncio.create_task(one(raw, scheduled, tally, counted)))
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    wall = time.perf_counter() - wall0
    user, system = (after - before for after, before in zip(_cpu(), cpu0, strict=True))
    completed = len(measured.latencies_ms)
    return {
        "mode": "open",
        "offered_per_s": rate,
        "scheduled": total - warm_count,
        "completed": completed,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "timeout_s": timeout_s,
        "elapsed_s": wall,
        "rate_per_s": completed / duration_s if duration_s else 0.0,
        "latencies_ms": measured.latencies_ms,
        "statuses": {str(k): v for k, v in measured.statuses.items()},
        "errors": dict(measured.errors),
        "matched": measured.matched,
        "warmup_statuses": {str(k): v for k, v in warm.statuses.items()},
        "warmup_errors": dict(warm.errors),
        "failure_samples": samples,
        "lateness_ms": summarize(lateness_ms),
        "peak_in_flight": peak,
        "cpu_user_s": user,
        "cpu_system_s": system,
        "cpu_share": (user + system) / wall if wall > 0 else 0.0,
    }


__all__ = ["run_open"]
