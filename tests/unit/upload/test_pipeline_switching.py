"""The upload pipeline lowers the thread switch interval while it runs, and gives it back."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from shikaku_server.upload.service import SWITCH_INTERVAL, _Pipeline, _Unit


@pytest.fixture
def default_interval() -> Iterator[float]:
    saved = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        yield 0.005
    finally:
        sys.setswitchinterval(saved)


def test_lowered_while_any_pipeline_runs_and_restored_after_the_last(default_interval: float) -> None:
    applied: list[int] = []
    first = _Pipeline(lambda unit: applied.append(len(unit.errors)))
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    second = _Pipeline(lambda unit: None)
    first.submit(_Unit([], [], 1))
    first.finish()
    assert applied == [0]
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)  # the second still runs
    second.abort()
    second.abort()  # closing twice gives back nothing twice
    assert sys.getswitchinterval() == pytest.approx(default_interval)


def test_restored_when_the_work_fails(default_interval: float) -> None:
    def fail(unit: _Unit) -> None:
        raise RuntimeError("the database went away")

    pipeline = _Pipeline(fail)
    pipeline.submit(_Unit([], [], 1))
    with pytest.raises(RuntimeError, match="went away"):
        pipeline.finish()
    assert sys.getswitchinterval() == pytest.approx(default_interval)


def test_an_interval_already_lower_is_kept(default_interval: float) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL / 2)
    pipeline = _Pipeline(lambda unit: None)
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL / 2)
    pipeline.finish()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL / 2)
