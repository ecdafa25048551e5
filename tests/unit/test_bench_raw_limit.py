"""The usermodel raw limit sends what the live fold sends, lane by lane."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.usermodel import Recorded, record_pipelines, replay


class _Pipeline:
    def __init__(self, owner: _Client) -> None:
        self.owner = owner
        self.command_stack: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.scripts: set[Any] = set()

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.command_stack.append((args, options))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.owner.running += 1
        self.owner.most = max(self.owner.most, self.owner.running)
        await asyncio.sleep(0.01)
        self.owner.running -= 1
        self.owner.sent.append(([a for a, _ in self.command_stack], set(self.scripts)))
        return []


class _Client:
    """Stands in for redis.asyncio.Redis: pipelines that record what they send."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.sent: list[tuple[list[tuple[Any, ...]], set[Any]]] = []

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _Pipeline:
        return _Pipeline(self)


async def _fold_batch_in_two_lanes(client: Any, batch: int) -> None:
    async def lane(name: str) -> None:
        for step in ("user", "tenant"):
            pipe = client.pipeline(transaction=False)
            pipe.scripts.add(f"{step}-script")
            pipe.execute_command("EVALSHA", f"{step}-{name}-{batch}")
            await pipe.execute()

    await asyncio.gather(lane("a"), lane("b"))


async def test_the_raw_limit_replays_the_lanes_as_the_fold_ran_them() -> None:
    live = _Client()
    log = Recorded()
    record_pipelines(live, log)  # type: ignore[arg-type]
    for batch in range(2):
        log.next_batch()
        await _fold_batch_in_two_lanes(live, batch)
    assert [len(lanes) for lanes in log.batches] == [2, 2]
    assert (log.pipelines, log.commands) == (8, 8)

    alone = _Client()
    await replay(alone, log)  # type: ignore[arg-type]
    assert alone.most == live.most == 2  # the two lanes at once, as live
    assert sorted(map(str, alone.sent)) == sorted(map(str, live.sent))
    # Each pipeline makes sure of its scripts first, as the live fold's do.
    assert all(scripts for _, scripts in alone.sent)
    # Lane order is kept, and a batch's pipelines all come before the next batch's.
    order = [commands[0][1] for commands, _ in alone.sent]
    assert order.index("user-a-0") < order.index("tenant-a-0") < order.index("user-a-1")
