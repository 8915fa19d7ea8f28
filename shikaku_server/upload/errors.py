"""Errors of an upload that other kinds' appliers raise too (``assistance``)."""

from __future__ import annotations

from shikaku_server.errors import UnavailableError


class ConcurrentUploadError(UnavailableError):
    """A deadlock with another upload: this file was rolled back whole and may be sent again."""

    def __init__(self) -> None:
        super().__init__(
            "another upload of the same persons ran at the same time and this file was rolled back;"
            " nothing was applied: send it again"
        )
