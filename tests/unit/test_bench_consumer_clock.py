"""The consumer figures' timer covers every event it counts."""

from __future__ import annotations

from bench.results import Figure
from bench.services import ConsumerClock


def test_the_consumer_clock_covers_every_event_it_counts() -> None:
    clock = ConsumerClock(target=1_000, begin=0.0)
    assert clock.observe(0.0, read=0, done=0) is None
    assert clock.observe(0.1, read=0, done=0) is None
    assert clock.observe(0.2, read=500, done=0) is None  # the first batch began after 0.1
    assert clock.observe(0.3, read=1_000, done=600) is None
    run_ = clock.observe(0.4, read=1_000, done=1_000)
    assert run_ is not None
    assert (run_.started, run_.finished, run_.counted) == (0.1, 0.4, 1_000)
    assert run_.failures == {}


def test_work_read_before_the_first_scrape_is_not_counted() -> None:
    clock = ConsumerClock(target=1_000, begin=0.0)
    assert clock.observe(0.0, read=400, done=200) is None  # already going when first seen
    run_ = clock.observe(0.5, read=1_000, done=1_000)
    assert run_ is not None
    assert (run_.started, run_.counted) == (0.0, 600)
    assert run_.rate == 1_200


def test_a_consumer_that_times_out_is_a_failure() -> None:
    clock = ConsumerClock(target=1_000, begin=0.0)
    clock.observe(0.0, read=0, done=0)
    clock.observe(0.1, read=500, done=500)
    run_ = clock.give_up(9.0, done=500)
    assert run_.timed_out
    assert run_.failures == {"consumer timed out": 1}
    assert Figure("usermodel", "u", run_.rate, "events/s", failures=run_.failures).met is False
