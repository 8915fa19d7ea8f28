"""Bulk reads and writes for uploads, inside the upload's transaction.

PostgreSQL: ``COPY`` (keys into a temporary table joined against ``insured``; new rows streamed
in text format; ids of new insured persons taken from the sequence up front). Other databases
(SQLite, the embedded default): ``executemany``. One interface, so the applier does not care.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, Table, insert, select, text, tuple_
from sqlalchemy.orm import Session

from shikaku_server.eligibility.models import Insured

Key = tuple[str, str, str, str]  # insurer_number, symbol_norm, number_norm, branch


_JSON_COLUMNS = frozenset({"diseases", "results", "insurer_numbers", "errors", "queries"})


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _copy(
    session: Session, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], not_null: Sequence[str]
) -> None:
    """``COPY … FORMAT csv``: the csv module (C) does the quoting. None is written unquoted-empty
    (NULL); for the NOT NULL text columns FORCE_NOT_NULL reads an empty value as ''."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    json_at = [i for i, v in enumerate(rows[0]) if isinstance(v, (list, dict))]
    json_at += [i for i, c in enumerate(columns) if c in _JSON_COLUMNS and i not in json_at]
    if json_at:

        def serialized(row: Sequence[Any]) -> Sequence[Any]:
            if all(row[i] is None for i in json_at):
                return row  # the common case: nothing to serialize, no copy
            out = list(row)
            for i in json_at:
                out[i] = _csv_value(out[i])
            return out

        writer.writerows(map(serialized, rows))
    else:
        writer.writerows(rows)
    buf.seek(0)
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    force = f", FORCE_NOT_NULL ({', '.join(not_null)})" if not_null else ""
    with raw.cursor() as cur:  # type: ignore[attr-defined]
        # 1 MiB reads: fewer round trips through the GIL, so the COPY overlaps with other threads
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv{force})", buf, size=1 << 20)


def _not_null_text(table: Table, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if not table.c[c].nullable and isinstance(table.c[c].type, String)]


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# one probe of the key index per key (LATERAL … LIMIT 1 keeps the planner from hashing the whole
# table, which it would otherwise do once per batch as the table grows during an upload)
_PROBE_TEXT = (
    "SELECT k.n, i.id FROM (SELECT n, split_part(line, E'\\t', 1) AS insurer_number, "
    "split_part(line, E'\\t', 2) AS symbol_norm, split_part(line, E'\\t', 3) AS number_norm, "
    "split_part(line, E'\\t', 4) AS branch "
    "FROM unnest(string_to_array(:keys, E'\\n')) WITH ORDINALITY AS u(line, n) OFFSET 0) k "
    "CROSS JOIN LATERAL (SELECT id FROM insured WHERE insurer_number = k.insurer_number "
    "AND symbol_norm = k.symbol_norm AND number_norm = k.number_norm AND branch = k.branch LIMIT 1) i"
)
_PROBE_ARRAYS = (
    "SELECT k.n, i.id "
    "FROM unnest(CAST(:a AS text[]), CAST(:b AS text[]), CAST(:c AS text[]), CAST(:d AS text[])) "
    "WITH ORDINALITY AS k(insurer_number, symbol_norm, number_norm, branch, n) "
    "CROSS JOIN LATERAL (SELECT id FROM insured WHERE insurer_number = k.insurer_number "
    "AND symbol_norm = k.symbol_norm AND number_norm = k.number_norm AND branch = k.branch LIMIT 1) i"
)


def existing_insureds(session: Session, keys: set[Key]) -> dict[Key, int]:
    """Ids of the insured persons among ``keys`` (one round trip on PostgreSQL: the keys travel
    as one text, or four arrays, each probing the key index)."""
    if not keys:
        return {}
    key_list = list(keys)
    if is_postgres(session):
        key_list.sort()  # probes in index order
        lines = ["\t".join(k) for k in key_list]
        if all(line.count("\t") == 3 and "\n" not in line for line in lines):
            # the keys as one text (normalized keys hold no tab or newline): far cheaper to send
            # than four arrays of quoted strings
            found = session.execute(text(_PROBE_TEXT), {"keys": "\n".join(lines)}).all()
        else:
            columns = list(zip(*key_list, strict=True))
            found = session.execute(
                text(_PROBE_ARRAYS),
                {"a": list(columns[0]), "b": list(columns[1]), "c": list(columns[2]), "d": list(columns[3])},
            ).all()
        return {key_list[n - 1]: insured_id for n, insured_id in found}
    rows: list[Any] = []
    cols = (Insured.insurer_number, Insured.symbol_norm, Insured.number_norm, Insured.branch)
    for i in range(0, len(key_list), 200):
        rows += session.execute(select(Insured.id, *cols).where(tuple_(*cols).in_(key_list[i : i + 200]))).all()
    return {(row[1], row[2], row[3], row[4]): row[0] for row in rows}


_INSURED_COLUMNS = ("insurer_number", "symbol", "number", "branch", "symbol_norm", "number_norm")


def insert_insureds(session: Session, rows: list[tuple[str, str, str, str, str, str]]) -> list[int]:
    """Insert insured persons, values in ``_INSURED_COLUMNS`` order; their ids in the order given."""
    if not rows:
        return []
    if is_postgres(session):
        ids = list(
            session.execute(
                text("SELECT nextval('insured_id_seq') FROM generate_series(1, :n)"), {"n": len(rows)}
            ).scalars()
        )
        columns = ("id", *_INSURED_COLUMNS)
        table: Table = Insured.__table__  # type: ignore[assignment]
        _copy(
            session,
            "insured",
            columns,
            [(i, *r) for i, r in zip(ids, rows, strict=True)],
            _not_null_text(table, columns),
        )
        return ids
    result = session.execute(
        insert(Insured).returning(Insured.id, sort_by_parameter_order=True),
        [dict(zip(_INSURED_COLUMNS, r, strict=True)) for r in rows],
    ).scalars()
    return list(result)


def insert_rows(session: Session, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert plain rows (no ids needed back), values in ``columns`` order."""
    if not rows:
        return
    if is_postgres(session):
        _copy(session, table.name, columns, rows, _not_null_text(table, columns))
    else:
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
