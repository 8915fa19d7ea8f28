"""Errors the loader knows how to explain; each one maps to an exit code.

The core raises these; the CLI's single top-level handler prints ``message`` and exits with
``exit_code``. Backend errors (httpx, OSError) are translated where they happen.
"""

from __future__ import annotations

from hokensha_loader.messages import Lang, refused_message, text
from hokensha_loader.status_codes import ExitCode
from schemas.identifiers import withhold_my_number

_REFUSALS = frozenset({"file_refused", "server_refused"})


class LoaderError(Exception):
    """``message`` is the English text; with ``key`` (a ``messages`` text) and its ``params``,
    ``render(lang)`` says the same in the operator's language."""

    exit_code = ExitCode.SERVER_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        line: int | None = None,
        key: str | None = None,
        params: dict[str, object] | None = None,
    ) -> None:
        message = withhold_my_number(message)  # a server's detail is printed: never a My Number
        super().__init__(message)
        self.message = message
        self.code = code
        self.line = line
        self.key = key
        self.params = params or {}

    def render(self, lang: Lang) -> str:
        if self.key is None:
            return self.message
        params = dict(self.params)
        if self.key in _REFUSALS:
            params["where"] = text("where_line", lang, line=self.line) if self.line else ""
            params["reason"] = refused_message(self.code, str(params.get("reason", "")), lang)
        return withhold_my_number(text(self.key, lang, **params))


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
