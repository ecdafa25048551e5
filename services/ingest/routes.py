"""Ingest's HTTP entry: validate, fill the tenant, publish, answer once stored.

The route handlers depend only on the shared ``BrokerDep``, ``WriteTenantDep`` and
``SettingsDep``, so any app whose state holds a connected broker can mount them
(:func:`services.ingest.service.mount` does).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from schemas.api import Accepted, ContentBatchIn, ErrorDetail, ErrorResponse, EventBatchIn
from schemas.common import utc_now
from schemas.content import MAX_VERSION
from services.common.http import ERROR_RESPONSES, ApiError, SettingsDep, WriteTenantDep
from services.common.settings import Settings
from services.ingest.compression import IngestRoute
from services.ingest.messages import (
    ContextTooLarge,
    InvalidMessage,
    Outgoing,
    TenantMismatch,
    TimestampAhead,
    content_messages,
    event_messages,
    tombstone_message,
)
from services.ingest.publish import MessageTooLarge, PublishFailed, publish_all
from services.ingest.segment import (
    SegmentAccepted,
    SegmentBatch,
    SegmentIdentifyIn,
    SegmentPageIn,
    SegmentRoute,
    SegmentScreenIn,
    SegmentTrackIn,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2
JSON = "application/json"


async def get_broker(request: Request) -> KafkaBroker:
    broker: KafkaBroker | None = getattr(request.app.state, "broker", None)
    if broker is None:
        raise ApiError(503, "unavailable", "this service does not publish to Kafka")
    return broker


BrokerDep = Annotated[KafkaBroker, Depends(get_broker)]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the error shape for ``statuses``."""
    extra = {415: "unsupported Content-Encoding (gzip is supported)"}
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        fallback = {"model": ErrorResponse, "description": extra.get(status, "error")}
        responses[status] = dict(ERROR_RESPONSES.get(status, fallback))
    if 503 in responses:
        responses[503]["description"] = "the broker did not store every message; retry"
        responses[503]["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        }
    return responses


_WRITE_ERRORS = _errors(400, 401, 403, 413, 415, 422, 429, 503)


@contextlib.contextmanager
def _as_http_errors() -> Iterator[None]:
    """Turn ingest's failures into Attune's HTTP errors."""
    try:
        yield
    except InvalidMessage as error:
        details = [
            ErrorDetail(field=".".join(p for p in (error.where, *map(str, e["loc"])) if p),
                        message=e["msg"])
            for e in error.error.errors()
        ]  # fmt: skip
        raise ApiError(422, "validation_error", str(error), details=details) from None
    except ContextTooLarge as error:
        detail = ErrorDetail(field=error.field, message=f"at most {error.limit} bytes as JSON")
        raise ApiError(413, "payload_too_large", str(error), details=[detail]) from None
    except TimestampAhead as error:
        detail = ErrorDetail(
            field=error.field, message=f"must not be after {error.limit.isoformat()}"
        )
        raise ApiError(422, "validation_error", str(error), details=[detail]) from None
    except TenantMismatch as error:
        detail = ErrorDetail(field=error.field, message=f"must be {error.tenant!r} or left out")
        raise ApiError(403, "tenant_mismatch", str(error), details=[detail]) from None
    except MessageTooLarge as error:
        detail = ErrorDetail(field=error.message.field or None, message="over the broker's limit")
        raise ApiError(413, "payload_too_large", str(error), details=[detail]) from None
    except PublishFailed as error:
        log.warning("answering 503: %s", error)
        raise ApiError(
            503,
            "unavailable",
            f"not stored, retry: {error}",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from error


async def _publish(broker: KafkaBroker, settings: Settings, messages: Sequence[Outgoing]) -> None:
    with _as_http_errors():
        await publish_all(broker, messages, timeout_s=settings.publish_timeout_s)


def _answer(body: BaseModel, status: int) -> Response:
    """``body`` as JSON, serialized once: FastAPI would validate the answer again and
    serialize it in two steps (the route's ``response_model`` still documents it)."""
    return Response(body.__pydantic_serializer__.to_json(body), status, media_type=JSON)


native_router = APIRouter(route_class=IngestRoute)
"""Attune's own ingest endpoints."""


@native_router.post(
    "/v1/events",
    status_code=202,
    summary="Publish a batch of behaviour events",
    response_model=Accepted,
    responses=_WRITE_ERRORS,
)
async def post_events(
    body: EventBatchIn, broker: BrokerDep, tenant: WriteTenantDep, settings: SettingsDep
) -> Response:
    """Answers once the broker has stored every event (acks=all)."""
    with _as_http_errors():
        messages = event_messages(
            body.events,
            tenant,
            from_key=settings.keys_required,
            received_at=utc_now(),
            field="events",
            max_skew=timedelta(seconds=settings.max_clock_skew_s),
            max_context_bytes=settings.max_context_bytes,
        )
    await _publish(broker, settings, messages)
    return _answer(Accepted(accepted=len(messages), ids=[m.id for m in messages]), 202)


@native_router.post(
    "/v1/content",
    status_code=202,
    summary="Publish a batch of content upserts",
    responses=_WRITE_ERRORS,
)
async def post_content(
    body: ContentBatchIn, broker: BrokerDep, tenant: WriteTenantDep, settings: SettingsDep
) -> Accepted:
    """Answers once the broker has stored every item (acks=all)."""
    with _as_http_errors():
        messages = content_messages(
            body.items, tenant, from_key=settings.keys_required, received_at=utc_now()
        )
    await _publish(broker, settings, messages)
    return Accepted(accepted=len(messages), ids=[m.id for m in messages])


@native_router.delete(
    "/v1/content/{item_id:path}",
    status_code=202,
    summary="Publish a content tombstone",
    responses=_WRITE_ERRORS,
)
async def delete_content(
    item_id: Annotated[str, Path(min_length=1, max_length=256, pattern=r"\S")],
    broker: BrokerDep,
    tenant: WriteTenantDep,
    settings: SettingsDep,
    version: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_VERSION,
            description="The tombstone's version, from 0 to 2^53 - 1: the item is deleted "
            "unless a newer version is stored. Without one, whatever version is stored is "
            "deleted, and a later upsert at that version or higher brings the item back.",
        ),
    ] = None,
) -> Accepted:
    """Deletes the item unless a newer version of it exists (without a version: whatever
    version is stored)."""
    message = tombstone_message(item_id, tenant, received_at=utc_now(), version=version)
    await _publish(broker, settings, [message])
    return Accepted(accepted=1, ids=[message.id])


segment_router = APIRouter(route_class=SegmentRoute, tags=["segment"])
"""The Segment/RudderStack HTTP API (what their SDKs and webhooks post)."""
_SEGMENT_OPTIONS: dict[str, Any] = {
    "status_code": 200,
    "response_model": SegmentAccepted,
    "responses": _WRITE_ERRORS,
}


async def _accept(
    body: SegmentBatch | SegmentTrackIn | SegmentPageIn | SegmentScreenIn | SegmentIdentifyIn,
    broker: BrokerDep,
    tenant: WriteTenantDep,
    settings: SettingsDep,
) -> Response:
    from_key, received_at = settings.keys_required, utc_now()
    with _as_http_errors():
        if isinstance(body, SegmentBatch):
            messages = event_messages(
                body.batch,
                tenant,
                from_key=from_key,
                received_at=received_at,
                field="batch",
                sent_at=body.sent_at,
                context=body.context,
                max_skew=timedelta(seconds=settings.max_clock_skew_s),
                max_context_bytes=settings.max_context_bytes,
            )
        else:
            messages = event_messages(
                [body], tenant, from_key=from_key, received_at=received_at, field=None,
                max_skew=timedelta(seconds=settings.max_clock_skew_s),
                max_context_bytes=settings.max_context_bytes,
            )  # fmt: skip
    await _publish(broker, settings, messages)
    ignored = body.ignored if isinstance(body, SegmentBatch) else []
    ids = [m.id for m in messages]
    return _answer(SegmentAccepted(accepted=len(messages), ids=ids, ignored=ignored), 200)


@segment_router.post("/v1/batch", summary="Segment/RudderStack batch", **_SEGMENT_OPTIONS)
async def segment_batch(
    body: SegmentBatch, broker: BrokerDep, tenant: WriteTenantDep, settings: SettingsDep
) -> Response:
    """What the Segment and RudderStack SDKs post: a batch of calls."""
    return await _accept(body, broker, tenant, settings)


@segment_router.post("/v1/track", summary="Segment track call", **_SEGMENT_OPTIONS)
async def segment_track(
    body: SegmentTrackIn, broker: BrokerDep, tenant: WriteTenantDep, settings: SettingsDep
) -> Response:
    return await _accept(body, broker, tenant, settings)


@segment_router.post("/v1/page", summary="Segment page call", **_SEGMENT_OPTIONS)
async def segment_page(
    body: SegmentPageIn, broker: BrokerDep, tenant: WriteTenantDep, settings: SettingsDep
) -> Response:
    return await _accept(body, broker, tenant, settings)


@segment_router.post("/v1/screen", summary="Segment screen call", **_SEGMENT_OPTIONS)
async def segment_screen(
    body: SegmentScreenIn, broker: BrokerDep, tenant: WriteTenantDep, settings: SettingsDep
) -> Response:
    return await _accept(body, broker, tenant, settings)


@segment_router.post("/v1/identify", summary="Segment identify call", **_SEGMENT_OPTIONS)
async def segment_identify(
    body: SegmentIdentifyIn, broker: BrokerDep, tenant: WriteTenantDep, settings: SettingsDep
) -> Response:
    return await _accept(body, broker, tenant, settings)


def ingest_router() -> APIRouter:
    """Attune's ingest endpoints and the Segment/RudderStack ones; they need
    ``app.state.broker`` (connected) and ``app.state.settings``."""
    router = APIRouter(tags=["ingest"])
    router.include_router(native_router)
    router.include_router(segment_router)
    return router


__all__ = ["ingest_router", "native_router", "segment_router"]
