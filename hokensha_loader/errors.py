"""Errors the loader knows how to explain; each one maps to an exit code.

The core raises these; the CLI's single top-level handler prints ``message`` and exits with
``exit_code``. Backend errors (httpx, OSError) are translated where they happen.
"""

from __future__ import annotations

from hokensha_loader.status_codes import ExitCode
from schemas.identifiers import withhold_my_number


class LoaderError(Exception):
    exit_code = ExitCode.SERVER_ERROR

    def __init__(self, message: str, *, code: str | None = None, line: int | None = None) -> None:
        message = withhold_my_number(message)  # a server's detail is printed: never a My Number
        super().__init__(message)
        self.message = message
        self.code = code
        self.line = line


class FileRefusedError(LoaderError):
    """The whole file was refused, locally or by the server (nothing was loaded)."""

    exit_code = ExitCode.FILE_REFUSED


class AuthError(LoaderError):
    exit_code = ExitCode.SERVER_ERROR


class ServerError(LoaderError):
    exit_code = ExitCode.SERVER_ERROR


class NetworkError(LoaderError):
    exit_code = ExitCode.SERVER_ERROR


class UsageError(LoaderError):
    exit_code = ExitCode.USAGE_ERROR
