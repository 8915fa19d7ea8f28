"""The JSON formatter: allow-listed fields only, and never what a database error quotes."""

from __future__ import annotations

import json
import logging
import sys

from shikaku_server.logging_setup import JsonFormatter

MESSAGE = (
    '(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "uq_insured_key"\n'
    "DETAIL:  Key (insurer_number, symbol_norm, number_norm, branch)=(06131005, 123456789018, 1, 00) already exists.\n"
    "[SQL: INSERT INTO insured (name) VALUES (%(name)s)]\n[parameters: {'name': '山田 太郎'}]"
)


def test_a_logged_database_error_loses_detail_sql_and_parameters() -> None:
    try:
        raise RuntimeError(MESSAGE)
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (MESSAGE,), sys.exc_info())
    record.__dict__["name_kana"] = "ヤマダ"  # not allow-listed: never emitted
    line = JsonFormatter().format(record)
    out = json.loads(line)
    assert (
        out["msg"]
        == 'failed: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "uq_insured_key"'
    )
    assert out["exc_type"] == "RuntimeError"
    for secret in ("DETAIL", "123456789018", "06131005", "山田", "INSERT", "ヤマダ", "Traceback"):
        assert secret not in line


def test_timestamps_are_iso_8601_with_their_offset() -> None:
    import datetime as dt
    import json
    import logging

    from shikaku_server.logging_setup import JsonFormatter

    record = logging.LogRecord("shikaku_server", logging.INFO, __file__, 1, "request", None, None)
    ts = json.loads(JsonFormatter().format(record))["ts"]
    parsed = dt.datetime.fromisoformat(ts)
    assert parsed.utcoffset() is not None  # an offset, never a bare local time
    assert abs(parsed.timestamp() - record.created) < 0.001
