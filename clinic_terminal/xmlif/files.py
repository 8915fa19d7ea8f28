"""Files in folders other programs can write to: read only regular files, bounded; deliver
atomically, never through a link.

Writing: a hidden temp file beside the final name is created with ``O_CREAT|O_EXCL|O_NOFOLLOW``
(whatever was pre-placed at that name, a link, a FIFO or a stale file, is unlinked first, never
opened), written, given its mode, fsynced, and moved into place with ``os.replace``; the file that
landed is checked to be the one written. Reading: ``lstat`` and ``fstat`` must both show a regular
file, the open is ``O_NOFOLLOW|O_NONBLOCK`` (a FIFO never blocks), and at most ``limit`` + 1 bytes
are read whatever the file claims its size is.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RESULT_FILE_MODE = 0o640  # owner read/write, group read (clinic software), nobody else
_CHUNK = 64 * 1024

# 0 where the platform has no such flag (the lstat/fstat checks still apply)
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_NOCTTY: int = getattr(os, "O_NOCTTY", 0)
O_BINARY: int = getattr(os, "O_BINARY", 0)


class UnsafeFile(Exception):
    """An entry the terminal will not read or write through; the message says why (no contents)."""


@dataclass(frozen=True)
class Temp:
    path: Path
    identity: tuple[int, int]  # (st_dev, st_ino) of the file written


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file" if stat.S_ISREG(mode) else "not a file"


def _refuse_unless_regular(mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise UnsafeFile("is a symbolic link; only regular files are read")
    if not stat.S_ISREG(mode):
        raise UnsafeFile(f"is not a regular file ({kind_of(mode)}); only regular files are read")


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (not a link), at most ``limit`` of them.

    ``UnsafeFile`` for anything else or anything larger; ``OSError`` (``FileNotFoundError`` when
    it is gone) for a file that cannot be opened now."""
    _refuse_unless_regular(os.lstat(path).st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_BINARY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a link since the lstat
            raise UnsafeFile("is a symbolic link; only regular files are read") from None
        if exc.errno == errno.ENXIO:  # a socket
            raise UnsafeFile("is not a regular file (a socket); only regular files are read") from None
        raise
    try:
        st = os.fstat(fd)
        _refuse_unless_regular(st.st_mode)
        too_large = UnsafeFile(f"is larger than the limit of {limit} bytes")
        if st.st_size > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise too_large
        return b"".join(chunks)
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """The temp name used for ``final``: hidden and ending in ``.tmp`` (clinic software ignores it)."""
    return final.with_name(f".{final.name}.tmp")


def _create_exclusive(tmp: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_BINARY
    try:
        return os.open(tmp, flags, 0o600)
    except FileExistsError:
        pass
    # something is there already: a stale temp from a crash, or something planted. Unlink the name
    # (never follows a link), then create again; a directory is left alone and refused.
    mode = os.lstat(tmp).st_mode
    if stat.S_ISDIR(mode):
        raise UnsafeFile(f"{tmp.name} is a directory; cannot write the result beside it") from None
    log.warning("removed %s found at the temp name %s before writing", kind_of(mode), tmp)
    os.unlink(tmp)
    try:
        return os.open(tmp, flags, 0o600)
    except FileExistsError:
        raise UnsafeFile(f"{tmp.name} was created again by someone else while writing") from None


def write_temp(final: Path, data: bytes, *, durable: bool = True, mode: int = RESULT_FILE_MODE) -> Temp:
    tmp = temp_path(final)
    fd = _create_exclusive(tmp)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        if durable:
            os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return Temp(tmp, (st.st_dev, st.st_ino))


def identity_of_regular(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path`` if it is a regular file (not a link), else None."""
    st = os.lstat(path)
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def publish(tmp: Path, final: Path, *, durable: bool = True, identity: tuple[int, int] | None = None) -> None:
    """``os.replace(tmp, final)``; what landed at ``final`` must be the regular file ``identity``
    (default: what ``tmp`` is now, which must be a regular file). Something else is removed again
    and ``UnsafeFile`` raised: a link is never delivered."""
    if identity is None:
        identity = identity_of_regular(tmp)
        if identity is None:
            raise UnsafeFile(f"{tmp.name} is not a regular file; not delivered")
    os.replace(tmp, final)
    landed = os.lstat(final)
    if not stat.S_ISREG(landed.st_mode) or (landed.st_dev, landed.st_ino) != identity:
        os.unlink(final)
        raise UnsafeFile(f"{tmp.name} was replaced by {kind_of(landed.st_mode)} before delivery; removed")
    if durable:
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(final: Path, data: bytes, *, durable: bool = True, mode: int = RESULT_FILE_MODE) -> None:
    tmp = write_temp(final, data, durable=durable, mode=mode)
    publish(tmp.path, final, durable=durable, identity=tmp.identity)
