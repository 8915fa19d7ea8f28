"""Structured (JSON) logs. Only whitelisted fields are emitted: messages are written by us and
carry no personal data; request lines carry the route template, never the path or body."""

from __future__ import annotations

import json
import logging
import sys
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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in SAFE_EXTRAS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__  # type only: messages may quote data
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True  # our own request line replaces it (no paths)
    # SQL statement logging would print bound parameters (personal data) at INFO/DEBUG
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
