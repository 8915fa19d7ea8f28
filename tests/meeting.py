"""Two threads made to meet: the race a concurrency test needs, without sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def meet_at_first_call(real: Callable[..., Any], *, after: bool = False) -> Callable[..., Any]:
    """``real``, where each of two threads waits for the other at its first call: before the
    call (both have read what they read before either writes), or with ``after`` once the call
    returned (each holds what it wrote before either goes on). Later calls pass straight through."""
    barrier = threading.Barrier(2, timeout=60)
    waited: set[int] = set()

    def meet() -> None:
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not after:
            meet()
        out = real(*args, **kwargs)
        if after:
            meet()
        return out

    return wrapped
