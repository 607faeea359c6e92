"""Rate limits counted locally and shared through Redis every share of the limit."""

import pytest

from apps.core.redis import redis_connection
from apps.events import auth
from apps.events.auth import RateLimited, _check_rate

pytestmark = pytest.mark.django_db


def _redis_count(source) -> int:
    keys = redis_connection().keys(f"nudge:rate:{source.pk}:*")
    return sum(int(redis_connection().get(k) or 0) for k in keys)


def test_a_high_limit_is_counted_locally_and_told_to_redis_in_shares(
    browser_source, monkeypatch
):
    # given a limit of 1,000 a second: this process tells Redis every 20 calls
    browser_source.rate_limit_per_second = 1000
    monkeypatch.setattr(auth.time, "time", lambda: 1_800_000_000.5)
    for _ in range(100):
        _check_rate(browser_source)
    assert _redis_count(browser_source) == 100


def test_the_limit_holds_exactly_for_this_process(browser_source, monkeypatch):
    browser_source.rate_limit_per_second = 100
    monkeypatch.setattr(auth.time, "time", lambda: 1_800_000_000.5)
    for _ in range(100):
        _check_rate(browser_source)
    with pytest.raises(RateLimited):
        _check_rate(browser_source)
    # and the next second starts afresh
    monkeypatch.setattr(auth.time, "time", lambda: 1_800_000_001.5)
    _check_rate(browser_source)


def test_what_other_processes_counted_refuses_calls_here(browser_source, monkeypatch):
    # given other web processes that used up the second's limit
    browser_source.rate_limit_per_second = 100
    monkeypatch.setattr(auth.time, "time", lambda: 1_800_000_000.5)
    redis_connection().set(f"nudge:rate:{browser_source.pk}:1800000000", 100)
    # then this process learns it at its first share (2 calls) at the latest
    with pytest.raises(RateLimited):
        for _ in range(2):
            _check_rate(browser_source)
