"""schemathesis against the ingest and query API of the demo stack, loaded with the demo
data set: no input makes a 5xx, every 4xx has the one error shape, and responses match
the published OpenAPI schema also where the answer carries real items, users and reasons.

Path parameters and the search's user are drawn from the demo's users and items as
often as generated; a stateful run follows the links schemathesis infers from the
schema (a listed item's id to its similar items). The demo's own items are never fed to
DELETE: the other e2e tests read them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.conftest import Demo
from tests.fuzzing import CHECKS, fuzz_settings

pytestmark = [
    pytest.mark.integration,
    # The stack serves from this process, whose event loop (FastStream, aiokafka) uses
    # the random module while Hypothesis draws in the fuzzing thread.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

EXAMPLES_PER_OPERATION = 100
STATEFUL_SCENARIOS = 100


def fuzz(operation: Any, demo: Demo) -> None:
    """Run the checks on generated requests to ``operation``; where it reads, a path's
    user or item id (and the search's user) is as often one of the demo's."""
    reads = operation.method.upper() != "DELETE"
    users = st.one_of(st.none(), st.sampled_from(sorted(demo.user_ids)))
    items = st.one_of(st.none(), st.sampled_from(sorted(demo.item_ids)))

    @fuzz_settings(EXAMPLES_PER_OPERATION)
    @given(case=operation.as_strategy(), user=users, item=items)
    def call(case: Any, user: str | None, item: str | None) -> None:
        if reads:
            for name, value in (("user_id", user), ("item_id", item)):
                if value is not None and name in (case.path_parameters or {}):
                    case.path_parameters[name] = value
            if user is not None and operation.path == "/v1/search" and isinstance(case.body, dict):
                case.body["user_id"] = user
        case.call_and_validate(checks=CHECKS)

    call()


def fuzz_every_operation(schema: Any, demo: Demo) -> list[str]:
    """:func:`fuzz` every operation of ``schema``; return their labels."""
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        fuzz(operation, demo)
    return labels


def follow_links(schema: Any) -> Counter[tuple[str, int]]:
    """The stateful run; returns how often each operation answered each status."""
    answered: Counter[tuple[str, int]] = Counter()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def after_call(self, response: Any, case: Any) -> None:
            answered[(case.operation.label, response.status_code)] += 1

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            kwargs.pop("additional_checks", None)
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(settings=fuzz_settings(STATEFUL_SCENARIOS, stateful_step_count=6))
    return answered


async def test_every_operation_on_the_demo_data(demo: Demo) -> None:
    # schemathesis calls synchronously: from a thread, so this loop keeps serving.
    schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{demo.url}/openapi.json")
    labels = await asyncio.to_thread(fuzz_every_operation, schema, demo)
    assert {
        "POST /v1/events", "POST /v1/content", "DELETE /v1/content/{item_id}", "POST /v1/batch",
        "GET /v1/users/{user_id}/recommendations", "POST /v1/search",
        "GET /v1/items/{item_id}/similar", "GET /v1/users/{user_id}", "GET /v1/trending",
    } <= set(labels)  # fmt: skip


async def test_links_from_listed_items_on_the_demo_data(demo: Demo) -> None:
    schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{demo.url}/openapi.json")
    answered = await asyncio.to_thread(follow_links, schema)
    # Only a link brings a real item id here: a generated one is not in the index (404).
    assert answered[("GET /v1/items/{item_id}/similar", 200)] > 0, answered
