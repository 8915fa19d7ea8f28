"""glibc's malloc arenas, bounded for the server's processes.

A soak (bench/README.md, "Soak") showed a worker's RSS growing by about 1 MB a minute while the
Python heap stayed flat (tracemalloc: 2–9 MB traced, no trend): glibc gives threads their own
arenas (up to 8 per core) and memory freed in one is not reused by another, so a server whose
thread pool runs the uploads, the commits and the database calls keeps touching new pages.
With ``MALLOC_ARENA_MAX=2`` the same soak kept the worker flat. An operator's own
``MALLOC_ARENA_MAX`` is left as it is; other C libraries have no such variable and nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import MutableMapping

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def bound_arenas(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Bound this process's arenas now (``mallopt``) and its children's (the environment glibc
    reads at their start: uvicorn's spawned workers). False when the operator set the variable."""
    if "MALLOC_ARENA_MAX" in environ:
        return False
    environ["MALLOC_ARENA_MAX"] = str(ARENAS)
    if sys.platform.startswith("linux"):
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # absent from musl
        if mallopt is not None:
            mallopt(_M_ARENA_MAX, ARENAS)
    return True
