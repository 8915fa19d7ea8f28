"""Atomic file delivery: write a temp file in the same folder, fsync, ``os.replace`` into place."""

from __future__ import annotations

import os
from pathlib import Path


def temp_path(final: Path) -> Path:
    """The temp name used for ``final``: hidden and ending in ``.tmp`` (clinic software ignores it)."""
    return final.with_name(f".{final.name}.tmp")


def write_temp(final: Path, data: bytes, *, durable: bool = True) -> Path:
    tmp = temp_path(final)
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    return tmp


def publish(tmp: Path, final: Path, *, durable: bool = True) -> None:
    os.replace(tmp, final)
    if durable:
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(final: Path, data: bytes, *, durable: bool = True) -> None:
    publish(write_temp(final, data, durable=durable), final, durable=durable)
