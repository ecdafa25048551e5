"""The bare ceiling of the recommendations figures: ``python -m bench.ceiling``.

The least a recommendations answer can cost on this machine with this stack: a bare
Starlette app under uvicorn (uvloop, httptools), no middleware, whose
``GET /v1/users/{user_id}/recommendations`` does one Redis GET of the user's
``CANDIDATES`` packed candidates (item id + one score per signal), blends them with
numpy, takes the top ``LIMIT`` with titles from memory and the signals behind each
(its reasons), and answers with orjson. Whatever the query service adds on top is
its own cost.

It runs as its own process, like the services, on the benchmark's Redis
(``ATTUNE_REDIS_URL``), and fills its own keys (``--prefix``) for the users of
``--spec`` (a JSON file: ``users``, ``items`` as [item id, title] pairs) before it
answers /readyz; it deletes them when it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SIGNALS = ("content", "cooccurrence", "trending", "popular", "tags")
WEIGHTS = np.asarray([1.0, 0.6, 0.3, 0.2, 0.4], dtype=np.float32)
CANDIDATES = 300
LIMIT = 10
REASONS = 2
PACKED = np.dtype([("item", "<u4"), ("scores", "<f4", (len(SIGNALS),))])
JSON = "application/json"


def packed_candidates(rng: np.random.Generator, items: int) -> bytes:
    """``CANDIDATES`` distinct items with a score in [0, 1) per signal, packed."""
    candidates = np.zeros(CANDIDATES, dtype=PACKED)
    candidates["item"] = rng.choice(items, size=CANDIDATES, replace=False)
    candidates["scores"] = rng.random((CANDIDATES, len(SIGNALS)), dtype=np.float32)
    return candidates.tobytes()


def blend(raw: bytes, item_ids: list[str], titles: list[str]) -> list[dict[str, Any]]:
    """The top ``LIMIT`` candidates by weighted score, best first, with their reasons."""
    candidates = np.frombuffer(raw, dtype=PACKED)
    parts = candidates["scores"] * WEIGHTS
    scores = parts.sum(axis=1)
    top = np.argpartition(-scores, LIMIT)[:LIMIT]
    top = top[np.argsort(-scores[top])]
    reasons = np.argsort(-parts[top], axis=1)[:, :REASONS]
    answer = []
    for row, why in zip(top.tolist(), reasons.tolist(), strict=True):
        item = int(candidates["item"][row])
        answer.append({
            "item_id": item_ids[item], "title": titles[item], "score": float(scores[row]),
            "reasons": [SIGNALS[k] for k in why],
        })  # fmt: skip
    return answer


def build_app(
    connect: Callable[[], Redis], prefix: str, users: list[str], items: list[list[str]]
) -> Starlette:
    """The app; ``connect`` makes its Redis client (in the server's event loop)."""
    item_ids = [str(item[0]) for item in items]
    titles = [str(item[1]) for item in items]
    state: dict[str, Redis] = {}  # decode_responses=False: values are bytes

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = connect()
        rng = np.random.default_rng(17)
        pipe = redis.pipeline(transaction=False)
        for user in users:
            pipe.set(prefix + user, packed_candidates(rng, len(items)))
        await pipe.execute()
        state["redis"] = redis
        try:
            yield
        finally:
            keys = [prefix + user for user in users]
            for start in range(0, len(keys), 1_000):
                await redis.delete(*keys[start : start + 1_000])
            await redis.aclose()

    async def recommendations(request: Request) -> Response:
        user = request.path_params["user_id"]
        raw = await state["redis"].get(prefix + user)
        if not isinstance(raw, bytes):
            return Response(orjson.dumps({"error": "unknown user"}), 404, media_type=JSON)
        body = {"user_id": user, "strategy": "personalized",
                "items": blend(raw, item_ids, titles)}  # fmt: skip
        return Response(orjson.dumps(body), media_type=JSON)

    async def readyz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    routes = [
        Route("/v1/users/{user_id}/recommendations", recommendations),
        Route("/readyz", readyz),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--prefix", default="bench-ceiling:")
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    url = os.environ["ATTUNE_REDIS_URL"]
    app = build_app(
        lambda: Redis.from_url(url, decode_responses=False), args.prefix, spec["users"],
        spec["items"],
    )  # fmt: skip
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False, lifespan="on",
    )  # fmt: skip


if __name__ == "__main__":
    main()


__all__ = ["CANDIDATES", "LIMIT", "PACKED", "SIGNALS", "blend", "build_app", "packed_candidates"]
