"""Exit codes of ``hokensha-load`` (stable: insurers' batch jobs test them)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every row accepted (or unchanged, or the file was a duplicate)
    ROWS_REJECTED = 1  # the file was processed, some rows were rejected: see the reject report
    FILE_REFUSED = 2  # the whole file was refused (bad header, My Number column, empty, ...)
    SERVER_ERROR = 3  # authentication, network or server failure: nothing is known to be loaded
    USAGE_ERROR = 4  # bad command line (unknown option, missing file, no token)
    INTERNAL_ERROR = 5  # a bug: rerun with --verbose and report the traceback
    LINES_UNREAD = 6  # the server's counts do not add up to the file's records: not all lines were read
