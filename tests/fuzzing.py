"""What every schemathesis run of ours checks, and how many examples it draws."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


def errors_have_the_one_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    if 400 <= response.status_code < 600:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict), f"{response.status_code} without an error object"
        assert isinstance(error.get("code"), str), "error.code missing"
        assert isinstance(error.get("message"), str), "error.message missing"
    return None


CHECKS = [
    not_a_server_error,
    errors_have_the_one_shape,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz_settings(max_examples: int, **more: Any) -> settings:
    """Deterministic runs (the same examples every time), no deadline per example."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        **more,
    )


__all__ = ["CHECKS", "errors_have_the_one_shape", "fuzz_settings"]
