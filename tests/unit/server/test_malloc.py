"""The server's processes run with glibc's malloc arenas bounded (shikaku_server/malloc.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from shikaku_server.malloc import ARENAS, bound_arenas

# threads that allocate at once, then glibc's own count of its arenas (malloc_info's <heap nr=…>)
PROBE = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    from shikaku_server.malloc import bound_arenas
    if sys.argv[1] == "bounded":
        bound_arenas()
    barrier = threading.Barrier(8)
    def work():
        barrier.wait()
        blocks = [bytearray(4096) for _ in range(2000)]
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    path = tempfile.mktemp()
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    text = open(path).read(); os.unlink(path)
    print(text.count("<heap nr="), os.environ.get("MALLOC_ARENA_MAX"))
    """
)


def _probe(mode: str, **env: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=environ, capture_output=True, text=True, check=True)
    heaps, value = out.stdout.split()
    return int(heaps), value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_threads_share_at_most_two_arenas_once_bounded() -> None:
    free, _ = _probe("free")
    bounded, value = _probe("bounded")
    assert free > ARENAS  # the probe does spread over arenas when nothing bounds them
    assert bounded <= ARENAS and value == str(ARENAS)  # and the children inherit the bound


def test_an_operators_own_setting_is_kept() -> None:
    environ = {"MALLOC_ARENA_MAX": "4"}
    assert bound_arenas(environ) is False and environ == {"MALLOC_ARENA_MAX": "4"}
    empty: dict[str, str] = {}
    assert bound_arenas(empty) is True and empty == {"MALLOC_ARENA_MAX": "2"}
