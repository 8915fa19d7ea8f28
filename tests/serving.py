"""Waiting for a ``shikaku-server`` process the test started itself."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_until_serving(base: str, proc: subprocess.Popen[bytes], why: Callable[[], str], *,
                       path: str = "/healthz", timeout: float = 60.0) -> None:
    """Until ``base + path`` answers 200; fails with ``why()`` (e.g. the server's log) if the
    process exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, why()
        time.sleep(0.2)
