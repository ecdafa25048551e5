"""What the HTTP services (ingest, query) share: the app skeleton, the one error
shape, API-key authentication to a tenant, the body-size limit, health and
readiness, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from opentelemetry.instrumentation.utils import suppress_instrumentation
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.api import ErrorDetail, ErrorInfo, ErrorResponse
from services.common.access import Access, AccessControl, AccessDenied
from services.common.apikeys import TENANT_PATTERN
from services.common.metrics import set_dependency_up
from services.common.mount import ReadinessCheck
from services.common.settings import Settings
from services.common.tracing import instrument_http_app

log = logging.getLogger(__name__)

HTTP_LATENCY = Histogram(
    "attune_http_request_duration_seconds",
    "HTTP request latency by route and status.",
    ["service", "method", "route", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": code.replace("_", " ")}
    for status, code in _CODES.items()
    if status in (400, 401, 403, 404, 413, 422, 429, 503)
}


class ApiError(Exception):
    """Raise to answer with the error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[ErrorDetail] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = list(details)
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=code, message=message, details=list(details)))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _field_path(location: Sequence[int | str]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def validation_details(errors: Iterable[Any]) -> list[ErrorDetail]:
    return [ErrorDetail(field=_field_path(e["loc"]), message=e["msg"]) for e in errors]


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    details = validation_details(error.errors())
    fields = ", ".join(sorted({d.field or "?" for d in details}))
    return error_response(422, "validation_error", f"invalid request: {fields}", details)


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = _CODES.get(error.status_code, "http_error")
    headers = dict(error.headers) if error.headers else None
    return error_response(error.status_code, code, str(error.detail), headers=headers)


async def _on_api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.code, error.message, error.details, error.headers)


async def _on_unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; see the service log")


class _BodyOverLimit(BaseException):
    """Raised from ``receive`` when a streamed body passes the limit. A BaseException so
    that it passes FastAPI's body parsing (which turns any Exception into a 400) and
    reaches :class:`BodySizeLimit`, which answers 413."""


class BodySizeLimit:
    """Answer 413 (in the error shape) to a body larger than ``max_bytes``, whether it
    declares its length or streams it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_response(
            413, "payload_too_large", f"request body over {self.max_bytes} bytes"
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        seen, started = 0, False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyOverLimit
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyOverLimit:
            if started:
                raise RuntimeError("body over the limit after the response started") from None
            await too_large(scope, receive, send)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Latency histogram per route template (not raw path), method and status; every
    label is bounded (a made-up method counts as ``other``)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            HTTP_LATENCY.labels(self.service, method, template, str(status)).observe(
                time.perf_counter() - started
            )


# The dependencies are ``async def`` although they never wait: FastAPI runs a plain
# ``def`` dependency in a worker thread, a thread hop per dependency per request.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    if scheme.lower() == "basic" and credentials:
        try:
            user, _, _ = base64.b64decode(credentials).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user or None  # Segment/RudderStack send the write key as the user
    return request.headers.get("x-api-key")


def resolve_tenant(request: Request, settings: Settings, access: Access) -> str:
    """The tenant of a request to an API needing ``access``: from its API key once keys
    are configured (and the key must grant ``access``), else from the X-Attune-Tenant
    header, else the default tenant."""
    claimed = request.headers.get("x-attune-tenant")
    control: AccessControl = request.app.state.access
    if settings.keys_required:
        try:
            return control.authorize(_presented_key(request), access, claimed)
        except AccessDenied as denied:
            headers = None
            if denied.status == 401:
                headers = {"WWW-Authenticate": 'Bearer, Basic realm="attune"'}
            elif denied.retry_after_s is not None:
                headers = {"Retry-After": str(denied.retry_after_s)}
            raise ApiError(denied.status, denied.code, denied.message, headers=headers) from None
    tenant = claimed or settings.default_tenant
    if not TENANT_PATTERN.match(tenant):
        raise ApiError(
            422,
            "validation_error",
            "invalid X-Attune-Tenant header",
            details=[ErrorDetail(field="X-Attune-Tenant", message=TENANT_PATTERN.pattern)],
        )
    return tenant


async def get_write_tenant(request: Request, settings: SettingsDep) -> str:
    return resolve_tenant(request, settings, "write")


async def get_read_tenant(request: Request, settings: SettingsDep) -> str:
    return resolve_tenant(request, settings, "read")


WriteTenantDep = Annotated[str, Depends(get_write_tenant)]
"""The tenant of a request to the ingest API (a write key's, when keys are set)."""
ReadTenantDep = Annotated[str, Depends(get_read_tenant)]
"""The tenant of a request to the query API (a read key's, when keys are set)."""


def operations_router(service: str) -> APIRouter:
    """/healthz (alive), /readyz (dependencies reachable), /metrics (Prometheus)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get(
        "/readyz",
        summary="Every dependency answers",
        responses={503: {"description": "a dependency is unreachable"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, ReadinessCheck] = getattr(request.app.state, "readiness_checks", {})
        results = await asyncio.gather(*(_run_check(name, check) for name, check in checks.items()))
        report = dict(zip(checks, results, strict=True))
        ready = all(result == "ok" for result in report.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": report},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


async def _run_check(name: str, check: ReadinessCheck) -> str:
    """Run one readiness check (untraced: probes come every few seconds) and record
    its outcome in the ``attune_dependency_up`` gauge."""
    try:
        with suppress_instrumentation():
            async with asyncio.timeout(2.0):
                await check()
    except Exception as error:
        set_dependency_up(name, False)
        return f"error: {type(error).__name__}: {error}"[:300]
    set_dependency_up(name, True)
    return "ok"


def create_http_app(
    *,
    service: str,
    title: str,
    description: str,
    settings: Settings,
    routers: Sequence[APIRouter],
    routes: Sequence[BaseRoute] = (),
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    state: Mapping[str, object] | None = None,
) -> FastAPI:
    """A FastAPI app with Attune's error shape, limits, metrics and operations routes;
    ``state`` is what the routes find on ``app.state`` (e.g. the query engine);
    ``routes`` (plain Starlette ones) are matched before the routers'."""
    app = FastAPI(title=title, description=description, version="1", responses=ERROR_RESPONSES)
    app.state.settings = settings
    app.state.readiness_checks = dict(readiness_checks or {})
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
    app.state.access = AccessControl(settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # outside the limits and auth: preflights carry no key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Content-Encoding",
                "X-API-Key",
                "X-Attune-Tenant",
            ],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.add_middleware(RequestMetrics, service=service)
    app.router.routes.extend(routes)
    for router in routers:
        app.include_router(router)
    app.include_router(operations_router(service))
    return instrument_http_app(app)


__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ReadTenantDep",
    "SettingsDep",
    "WriteTenantDep",
    "create_http_app",
    "error_response",
    "resolve_tenant",
    "validation_details",
]
