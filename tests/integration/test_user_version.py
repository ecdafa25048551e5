"""A user's version (what the query process keeps candidates for) changes with every
event folded into the user's model, and with nothing else: not a redelivery, not a
duplicate, not another user's event."""

from __future__ import annotations

from redis.asyncio import Redis

from services.common.userstore.keys import UserModelKeys
from services.common.userstore.read import UserModelReader
from services.usermodel.fold import UserModelFolder
from tests.integration.test_usermodel_fold import CONFIG, Events, keys, redis

__all__ = ["keys", "redis"]  # the fixtures this module takes from the fold's tests


async def test_the_version_moves_with_the_users_own_folded_events(
    redis: Redis, keys: UserModelKeys
) -> None:
    ev = Events()
    folder = UserModelFolder(redis, CONFIG)
    reader = UserModelReader(redis, keys, CONFIG.decay)
    unknown = await reader.version("acme", "ann")

    first = ev("ann", "like", "a")
    await folder.fold([first], keys)
    after_one = await reader.version("acme", "ann")
    await folder.fold([first], keys)  # a redelivery
    await folder.fold([ev("ann", "like", "a", message_id=first.message.message_id)], keys)
    await folder.fold([ev("bob", "like", "b")], keys)  # someone else
    unchanged = await reader.version("acme", "ann")
    await folder.fold([ev("ann", "view", "b", minutes=1)], keys)
    after_two = await reader.version("acme", "ann")

    assert unknown == (keys.namespace, None, None)
    assert after_one != unknown
    assert unchanged == after_one
    assert after_two not in (unknown, after_one)
