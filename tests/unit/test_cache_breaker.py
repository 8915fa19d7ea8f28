"""The Redis circuit breaker: fail fast after a failure, one probe after the cool-down."""

from __future__ import annotations

import pytest

from shikaku_server.cache import CacheError, _Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_open_after_a_failure_then_one_probe_then_closed() -> None:
    clock = Clock()
    breaker = _Breaker(2.0, clock)
    breaker.check()  # closed: calls go through
    breaker.failure()
    clock.now += 1.9
    with pytest.raises(CacheError):
        breaker.check()  # open: no call reaches Redis
    clock.now += 0.2
    breaker.check()  # the probe
    with pytest.raises(CacheError):
        breaker.check()  # the others still fail fast while it runs
    breaker.success()
    breaker.check()
    breaker.check()


def test_a_failed_probe_opens_it_again() -> None:
    clock = Clock()
    breaker = _Breaker(2.0, clock)
    breaker.failure()
    clock.now += 2.0
    breaker.check()
    breaker.failure()
    clock.now += 1.0
    with pytest.raises(CacheError):
        breaker.check()
