"""Access: the token bucket on a clock the test moves, key lookup and rights, and whether
a process may serve its APIs as configured."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from services.app.bootstrap import check_access_for
from services.app.names import SERVICES, Service
from services.common.access import AccessControl, AccessDenied, access_problem, is_loopback
from services.common.ratelimit import RateLimiter, TokenBucket
from services.common.settings import Settings, SettingsError

WRITE, READ = "wk-acme-6c2e8a0f4b", "rk-acme-1d7b3f9e5a"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"write_keys": {}, "read_keys": {}, "http_host": "127.0.0.1"}
    return Settings(**{**base, **overrides})


# -- the token bucket --------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token comes in 1/rate s
    assert bucket.take(0.25) == pytest.approx(0.25)  # a refused request takes nothing
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)


def test_a_bucket_refills_to_its_burst_and_no_further() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert bucket.take(0.0) == bucket.take(0.0) == 0.0
    # an hour idle gives back the burst, not 36 000 requests
    assert [bucket.take(3_600.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take(3_600.0) > 0


def test_a_clock_that_steps_back_refills_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=100.0)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(50.0) == pytest.approx(1.0)
    assert bucket.take(100.5) == pytest.approx(0.5)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 5), (1.0, 0)])
def test_a_bucket_needs_a_rate_and_a_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate, burst, now=0.0)


def test_the_limiter_keeps_one_bucket_per_key() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a") == pytest.approx(1.0)
    assert limiter.wait("b") == 0.0  # another key has its own bucket
    clock.now += 1.0
    assert limiter.wait("a") == 0.0


# -- keys, rights and rate limits --------------------------------------------------------


def control(clock: Clock | None = None, **overrides: Any) -> AccessControl:
    keys: dict[str, Any] = {
        "write_keys": {"acme": [SecretStr(WRITE)], "globex": [SecretStr("wk-globex-0e4a8c2f6d")]},
        "read_keys": {"acme": [SecretStr(READ)]},
    }
    return AccessControl(settings(**{**keys, **overrides}), clock=clock)


def denied(call: Any) -> AccessDenied:
    with pytest.raises(AccessDenied) as raised:
        call()
    return raised.value


def test_each_key_has_its_rights_and_its_tenant() -> None:
    access = control()
    assert access.authorize(WRITE, "write", None) == "acme"
    assert access.authorize(READ, "read", "acme") == "acme"
    assert access.authorize("wk-globex-0e4a8c2f6d", "write", None) == "globex"
    assert (denied(lambda: access.authorize(WRITE, "read", None)).status) == 403
    assert (denied(lambda: access.authorize(READ, "write", None)).status) == 403
    unknown = denied(lambda: access.authorize("rk-acme-1d7b3f9e5b", "read", None))
    assert (unknown.status, unknown.code) == (401, "unauthorized")
    assert denied(lambda: access.authorize(None, "read", None)).status == 401
    crossing = denied(lambda: access.authorize(READ, "read", "globex"))
    assert (crossing.status, crossing.code) == (403, "tenant_mismatch")


def test_a_key_in_both_maps_writes_and_reads() -> None:
    access = control(read_keys={"acme": [SecretStr(WRITE)]})
    assert access.authorize(WRITE, "write", None) == access.authorize(WRITE, "read", None)


def test_over_the_rate_a_key_is_told_when_to_retry_and_others_are_not_held_up() -> None:
    clock = Clock()
    access = control(clock, rate_limit_per_s=0.5, rate_limit_burst=2)
    assert access.authorize(WRITE, "write", None) == "acme"
    assert access.authorize(WRITE, "write", None) == "acme"
    throttled = denied(lambda: access.authorize(WRITE, "write", None))
    assert (throttled.status, throttled.code, throttled.retry_after_s) == (
        429,
        "too_many_requests",
        2,
    )
    assert access.authorize(READ, "read", None) == "acme"  # another key of the tenant
    clock.now += 1.5
    assert denied(lambda: access.authorize(WRITE, "write", None)).retry_after_s == 1
    clock.now += 0.5
    assert access.authorize(WRITE, "write", None) == "acme"


def test_without_a_rate_there_is_no_limit() -> None:
    access = control(Clock(), rate_limit_per_s=0.0, rate_limit_burst=1)
    assert all(access.authorize(WRITE, "write", None) == "acme" for _ in range(1_000))


# -- may a process serve its APIs ----------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "::1", "[::1]"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "attune.internal"])
def test_other_addresses(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("service", [Service.ingest, Service.query])
def test_an_api_on_a_public_address_without_keys_is_refused(service: Service) -> None:
    exposed = settings(http_host="0.0.0.0")
    with pytest.raises(SettingsError) as raised:
        check_access_for(exposed, [service])
    message = str(raised.value)
    assert "0.0.0.0" in message
    assert ("ATTUNE_WRITE_KEYS" if service == Service.ingest else "ATTUNE_READ_KEYS") in message
    assert "ATTUNE_ALLOW_OPEN=true" in message


def test_an_explicit_open_switch_or_loopback_allows_running_without_keys() -> None:
    check_access_for(settings(http_host="0.0.0.0", allow_open=True), SERVICES)
    check_access_for(settings(http_host="127.0.0.1"), SERVICES)


@pytest.mark.parametrize("service", [Service.embedder, Service.usermodel])
def test_consumers_serve_no_api_and_need_no_keys(service: Service) -> None:
    check_access_for(settings(http_host="0.0.0.0"), [service])


def test_keys_of_the_apis_kind_let_it_serve_anywhere() -> None:
    keyed = settings(
        http_host="0.0.0.0",
        write_keys={"acme": [SecretStr(WRITE)]},
        read_keys={"acme": [SecretStr(READ)]},
    )
    check_access_for(keyed, SERVICES)


def test_keys_for_one_api_only_leave_the_other_refusing_everything_so_it_does_not_start() -> None:
    write_only = settings(write_keys={"acme": [SecretStr(WRITE)]}, allow_open=True)
    check_access_for(write_only, [Service.ingest])
    problem = access_problem(write_only, ["read"])
    assert problem is not None
    assert "ATTUNE_READ_KEYS is empty" in problem
    with pytest.raises(SettingsError, match="ATTUNE_READ_KEYS"):
        check_access_for(write_only, SERVICES)
