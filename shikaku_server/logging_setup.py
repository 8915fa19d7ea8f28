"""Structured (JSON) logs. Only whitelisted fields are emitted: messages are written by us and
carry no personal data; request lines carry the route template, never the path or body."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

SAFE_EXTRAS = (
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "upload_id",
    "kind",
    "accepted",
    "rejected",
    "unchanged",
    "batch_id",
    "code",
)


# what a library's message may quote from the database: libpq's DETAIL/HINT/CONTEXT lines (a
# unique violation's DETAIL names the key's values), SQLAlchemy's [SQL: …] and [parameters: …]
_DB_QUOTES = re.compile(r"(\n|\s)(DETAIL|HINT|CONTEXT|LINE \d+):.*|\[(SQL|parameters): .*", re.DOTALL)
_LONG_DIGITS = re.compile(r"\d{10,}")


def scrub(message: str) -> str:
    """A library's message without what it may quote from the database, and without long runs of
    digits (an identifier, perhaps a My Number)."""
    return _LONG_DIGITS.sub("[digits]", _DB_QUOTES.sub("", message)).strip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            # ISO 8601 with the offset (the host's zone: +09:00 on a server set to JST)
            "ts": dt.datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker (``--workers N``)
            "msg": scrub(record.getMessage()),
        }
        for key in SAFE_EXTRAS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__  # type only: messages may quote data
        return json.dumps(out, ensure_ascii=False)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of every server process: uvicorn applies it in the
    supervisor and again in each worker it spawns (``--workers N``), so every line is JSON."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "shikaku_server.logging_setup.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "null": {"class": "logging.NullHandler"},
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's own loggers go to the root's JSON handler
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            # our own request line replaces the access log (it never has paths)
            "uvicorn.access": {"handlers": ["null"], "propagate": False},
            # SQL statement logging would print bound parameters (personal data) at INFO/DEBUG
            "sqlalchemy": {"level": "WARNING"},
        },
    }


def configure(level: str = "INFO") -> None:
    import logging.config

    logging.config.dictConfig(log_config(level))
    logging.captureWarnings(True)  # warnings as JSON lines too, not raw text on stderr
