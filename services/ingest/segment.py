"""The Segment / RudderStack HTTP API shape, so their SDKs feed Attune unchanged.

What the SDKs (segment-analytics-python 2.4, rudder-sdk-python 2.1) need:
- they post ``/v1/batch`` with the write key as the basic-auth user, RudderStack
  gzipped by default;
- RudderStack counts only HTTP 200 as delivered (Segment any 2xx), so these
  endpoints answer 200, not Attune's 202;
- on an error both read ``code`` and ``message`` at the top of the body (RudderStack
  retries a 4xx forever-ish when they are missing), so errors here carry them next
  to Attune's ``error`` object;
- Segment honours ``Retry-After`` on 503.

``alias`` and ``group`` calls, which Attune does not model, are set aside in a batch
and listed in the answer rather than failing the whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Literal, Self, cast

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, ModelWrapValidatorHandler, PrivateAttr, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.api import Accepted, BehaviourEventIn, SegmentBatchIn
from schemas.events import EventType
from services.common.http import ApiError
from services.ingest.compression import IngestRoute

UNMODELLED_CALLS = frozenset({"alias", "group"})


class _SegmentCallIn(BehaviourEventIn):
    call: ClassVar[EventType]

    @field_validator("type", mode="before")
    @classmethod
    def _type_from_path(cls, value: object) -> str:
        return cls.call  # the path names the call, whatever the body says


class SegmentTrackIn(_SegmentCallIn):
    """A Segment ``track`` call: ``event`` names the action."""

    call: ClassVar[EventType] = "track"
    type: Literal["track"] = "track"


class SegmentPageIn(_SegmentCallIn):
    """A Segment ``page`` call."""

    call: ClassVar[EventType] = "page"
    type: Literal["page"] = "page"


class SegmentScreenIn(_SegmentCallIn):
    """A Segment ``screen`` call."""

    call: ClassVar[EventType] = "screen"
    type: Literal["screen"] = "screen"


class SegmentIdentifyIn(_SegmentCallIn):
    """A Segment ``identify`` call: ``traits`` describe the user."""

    call: ClassVar[EventType] = "identify"
    type: Literal["identify"] = "identify"


class SegmentBatch(SegmentBatchIn):
    """Segment's ``POST /v1/batch`` body; ``alias`` and ``group`` calls are set aside."""

    _ignored: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _set_aside_unmodelled_calls(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self]
    ) -> Self:
        batch = data.get("batch") if isinstance(data, dict) else None
        if not isinstance(batch, list):
            return handler(data)
        kept: list[Any] = []
        ignored: list[Any] = []
        for message in batch:
            unmodelled = isinstance(message, dict) and message.get("type") in UNMODELLED_CALLS
            (ignored if unmodelled else kept).append(message)
        if not ignored:
            return handler(data)
        if kept:
            model = handler({**data, "batch": kept})
        else:  # only unmodelled calls: nothing to validate or publish
            model = cast(Self, cls.model_construct(batch=[]))
        model._ignored = [str(message.get("messageId", "")) for message in ignored]
        return model

    @property
    def ignored(self) -> list[str]:
        """messageIds of the alias/group calls set aside."""
        return list(self._ignored)


class SegmentAccepted(Accepted):
    """Segment's success answer, with what Attune stored."""

    success: bool = Field(default=True, description="Segment's success flag.")
    ignored: list[str] = Field(
        default_factory=list,
        description="messageIds of alias/group calls, which Attune does not model.",
    )


class SegmentRoute(IngestRoute):
    """Errors of these routes carry Segment's top-level ``code`` and ``message`` as well."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def segment_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (ApiError, RequestValidationError, StarletteHTTPException) as error:
                return await _segment_error(request, error)

        return segment_handler


async def _segment_error(request: Request, error: Exception) -> Response:
    """The app's own error answer, plus ``code`` and ``message`` at the top."""
    handlers = request.app.exception_handlers
    handler = next((handlers[c] for c in type(error).__mro__ if c in handlers), None)
    if handler is None:
        raise error
    response: Response = await handler(request, error)
    try:
        body = json.loads(bytes(response.body))
        info = body["error"]
        body.update(code=info["code"], message=info["message"])
    except (ValueError, KeyError, TypeError):
        return response
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("content-length", "content-type")
    }
    return JSONResponse(body, status_code=response.status_code, headers=headers)


__all__ = [
    "UNMODELLED_CALLS",
    "SegmentAccepted",
    "SegmentBatch",
    "SegmentIdentifyIn",
    "SegmentPageIn",
    "SegmentRoute",
    "SegmentScreenIn",
    "SegmentTrackIn",
]
