"""Bulk reads and writes for uploads, inside the upload's transaction.

One small interface, ``BulkWriter``, and two implementations; ``bulk_writer`` picks one for the
session's database and is the only place that asks which database it is:

- ``PostgresWriter``: several uploads write at once, so writes that can race run under a
  savepoint and races are detected (a unique violation, rows another upload superseded first);
  keys are probed in one round trip; new rows are streamed with ``COPY … FORMAT csv``, and it
  takes rows rendered ahead as COPY lines (``takes_lines``: the reading thread renders them while
  the worker waits for the database); ids of new insured persons come from the sequence up front.
- ``SerialWriter`` (SQLite, the embedded default): one writer at a time, ``executemany``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from sqlalchemy import Engine, String, Table, insert, select, text, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shikaku_server.database import sqlstate
from shikaku_server.eligibility.history import Key
from shikaku_server.eligibility.models import EligibilityPeriod, Insured

_JSON_COLUMNS = frozenset({"diseases", "results", "insurer_numbers", "errors", "queries"})


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _writable(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> Iterable[Sequence[Any]]:
    """The rows with their JSON values serialized (only rows that hold one are copied)."""
    if not rows:
        return rows
    json_at = [i for i, v in enumerate(rows[0]) if isinstance(v, (list, dict))]
    json_at += [i for i, c in enumerate(columns) if c in _JSON_COLUMNS and i not in json_at]
    if not json_at:
        return rows

    def serialized(row: Sequence[Any]) -> Sequence[Any]:
        if all(row[i] is None for i in json_at):
            return row  # the common case: nothing to serialize, no copy
        out = list(row)
        for i in json_at:
            out[i] = _csv_value(out[i])
        return out

    return map(serialized, rows)


_PIECE = 1 << 18


class _Pieces:
    """A read-only text file over an iterable of strings, for ``copy_expert``: each ``read``
    returns whole strings joined up to about ``size`` characters."""

    def __init__(self, parts: Iterable[str]) -> None:
        self.parts = iter(parts)

    def read(self, size: int = _PIECE) -> str:
        out: list[str] = []
        n = 0
        for part in self.parts:
            out.append(part)
            n += len(part)
            if n >= size:
                break
        return "".join(out)

    def readline(self, size: int = -1) -> str:  # never used by COPY FROM; for file-likeness
        return self.read(1)


def render_rows(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> list[str] | None:
    """Each row as its line of ``COPY … FORMAT csv`` (without the line end), exactly as
    ``_copy`` writes it, so a caller can render rows ahead (in another thread) and add a last
    value later (``copy_lines``). None when some value holds a line break (render those rows
    with ``_copy`` instead)."""
    if not rows:
        return []
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(_writable(rows, columns))
    lines = buf.getvalue().split("\n")
    lines.pop()  # after the last line end
    return lines if len(lines) == len(rows) else None


def _copy(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    not_null: Sequence[str],
    rendered: Iterable[str] = (),
) -> None:
    """``COPY … FORMAT csv``: the csv module (C) does the quoting. None is written unquoted-empty
    (NULL); for the NOT NULL text columns FORCE_NOT_NULL reads an empty value as ''. ``rendered``:
    more rows, already lines of that csv (each with its line end)."""
    head = ""
    if rows:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(_writable(rows, columns))
        head = buf.getvalue()
    source = _Pieces(itertools.chain((head,), rendered))
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    force = f", FORCE_NOT_NULL ({', '.join(not_null)})" if not_null else ""
    with raw.cursor() as cur:  # type: ignore[attr-defined]
        # reads of ~256 KiB: few round trips through the GIL (so the COPY overlaps with other
        # threads), and no buffer of the whole batch (no large allocation that could leave the
        # heap fragmented and the process's memory growing over a long upload)
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv{force})", source, size=_PIECE)


def _not_null_text(table: Table, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if not table.c[c].nullable and isinstance(table.c[c].type, String)]


INSURED_COLUMNS = ("insurer_number", "symbol", "number", "branch", "symbol_norm", "number_norm")
InsuredValues = tuple[str, str, str, str, str, str]  # in INSURED_COLUMNS order


class BulkWriter(Protocol):
    """The bulk reads and writes of an upload's appliers, inside the upload's transaction."""

    concurrent: bool
    """Whether another upload may write the same rows meanwhile (PostgreSQL): then writes that can
    race run under ``savepoint`` and their races are detected; False: one writer at a time."""
    takes_lines: bool
    """Whether ``insert_insureds`` / ``insert_rows`` take rows rendered ahead as COPY csv lines
    (``render_rows``); when False a caller renders nothing ahead."""

    def savepoint(self) -> AbstractContextManager[Any]:
        """Undo only what runs inside on an error (PostgreSQL), or nothing (one writer at a time)."""
        ...

    def existing_insureds(self, keys: set[Key]) -> dict[Key, int]:
        """Ids of the insured persons among ``keys``."""
        ...

    def insert_insureds(self, rows: list[InsuredValues], rendered: Sequence[str] = ()) -> list[int]:
        """Insert insured persons; their ids in the order given (``rows``, then ``rendered``: more
        persons as ``render_rows`` lines of the same values, only when ``takes_lines``)."""
        ...

    def insert_rows(
        self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]], rendered: Sequence[str] = ()
    ) -> None:
        """Insert plain rows (no ids needed back), values in ``columns`` order; ``rendered``: more
        rows as lines of COPY csv, each with its line end (only when ``takes_lines``)."""
        ...

    def supersede(self, ids: list[int], upload_id: str) -> set[int]:
        """Mark these eligibility periods superseded by ``upload_id``; the ids it marked (those that
        another upload had not superseded first)."""
        ...

    def unique_violation(self, exc: Exception, constraint_prefix: str) -> bool:
        """Whether ``exc`` is a unique violation of a constraint named so by a concurrent writer."""
        ...


BulkWriters = Callable[[Session], BulkWriter]
"""Builds the writer of an upload's transaction (its session)."""


def make_bulk_writers(engine: Engine) -> BulkWriters:
    """PostgreSQL's writer (COPY, uploads side by side) or the one-at-a-time writer of any other
    database: chosen once, in the app's lifespan (no call site asks which database it writes to)."""
    return PostgresWriter if engine.dialect.name == "postgresql" else SerialWriter


class PostgresWriter:
    concurrent = True
    takes_lines = True

    def __init__(self, session: Session) -> None:
        self.session = session

    def savepoint(self) -> AbstractContextManager[Any]:
        return self.session.begin_nested()

    def existing_insureds(self, keys: set[Key]) -> dict[Key, int]:
        """One round trip: the keys travel as one text (or four arrays), each probing the key index."""
        if not keys:
            return {}
        key_list = sorted(keys)  # probes in index order
        lines = ["\t".join(k) for k in key_list]
        if all(line.count("\t") == 3 and "\n" not in line for line in lines):
            # the keys as one text (normalized keys hold no tab or newline): far cheaper to send
            # than four arrays of quoted strings
            found = self.session.execute(text(_PROBE_TEXT), {"keys": "\n".join(lines)}).all()
        else:
            columns = list(zip(*key_list, strict=True))
            found = self.session.execute(
                text(_PROBE_ARRAYS),
                {"a": list(columns[0]), "b": list(columns[1]), "c": list(columns[2]), "d": list(columns[3])},
            ).all()
        return {key_list[n - 1]: insured_id for n, insured_id in found}

    def insert_insureds(self, rows: list[InsuredValues], rendered: Sequence[str] = ()) -> list[int]:
        if not rows and not rendered:
            return []
        n = len(rows) + len(rendered)
        ids = list(
            self.session.execute(
                text("SELECT nextval('insured_id_seq') FROM generate_series(1, :n)"), {"n": n}
            ).scalars()
        )
        columns = ("id", *INSURED_COLUMNS)
        table: Table = Insured.__table__  # type: ignore[assignment]
        _copy(
            self.session,
            "insured",
            columns,
            [(i, *r) for i, r in zip(ids, rows, strict=False)],
            _not_null_text(table, columns),
            rendered=[f"{i},{line}\n" for i, line in zip(ids[len(rows) :], rendered, strict=True)],
        )
        return ids

    def insert_rows(
        self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]], rendered: Sequence[str] = ()
    ) -> None:
        if rows or rendered:
            _copy(self.session, table.name, columns, rows, _not_null_text(table, columns), rendered=rendered)

    def supersede(self, ids: list[int], upload_id: str) -> set[int]:
        marked: set[int] = set()
        for i in range(0, len(ids), 1000):
            statement = (
                update(EligibilityPeriod)
                .where(EligibilityPeriod.id.in_(ids[i : i + 1000]), EligibilityPeriod.superseded_by.is_(None))
                .values(superseded_by=upload_id)
                .returning(EligibilityPeriod.id)
            )
            marked.update(self.session.execute(statement).scalars())
        return marked

    def unique_violation(self, exc: Exception, constraint_prefix: str) -> bool:
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        name = getattr(getattr(orig, "diag", None), "constraint_name", None) or ""
        return sqlstate(exc) == "23505" and name.startswith(constraint_prefix)


class SerialWriter:
    """One writer at a time (SQLite): nobody else can insert or supersede meanwhile."""

    concurrent = False
    takes_lines = False

    def __init__(self, session: Session) -> None:
        self.session = session

    def savepoint(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def existing_insureds(self, keys: set[Key]) -> dict[Key, int]:
        key_list = list(keys)
        rows: list[Any] = []
        cols = (Insured.insurer_number, Insured.symbol_norm, Insured.number_norm, Insured.branch)
        for i in range(0, len(key_list), 200):
            rows += self.session.execute(
                select(Insured.id, *cols).where(tuple_(*cols).in_(key_list[i : i + 200]))
            ).all()
        return {(row[1], row[2], row[3], row[4]): row[0] for row in rows}

    def insert_insureds(self, rows: list[InsuredValues], rendered: Sequence[str] = ()) -> list[int]:
        assert not rendered, "rendered rows are for a writer that takes_lines"
        if not rows:
            return []
        result = self.session.execute(
            insert(Insured).returning(Insured.id, sort_by_parameter_order=True),
            [dict(zip(INSURED_COLUMNS, r, strict=True)) for r in rows],
        ).scalars()
        return list(result)

    def insert_rows(
        self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]], rendered: Sequence[str] = ()
    ) -> None:
        assert not rendered, "rendered rows are for a writer that takes_lines"
        if rows:
            self.session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])

    def supersede(self, ids: list[int], upload_id: str) -> set[int]:
        for i in range(0, len(ids), 1000):
            self.session.execute(
                update(EligibilityPeriod)
                .where(EligibilityPeriod.id.in_(ids[i : i + 1000]), EligibilityPeriod.superseded_by.is_(None))
                .values(superseded_by=upload_id)
            )
        return set(ids)

    def unique_violation(self, exc: Exception, constraint_prefix: str) -> bool:
        return False


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
