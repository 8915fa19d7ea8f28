"""Applying an insurer's file.

Atomicity (documented in docs/uploads.md): **one transaction per file, validation per record**.
Every valid record of the file is applied and the file commits as a whole; a rejected record
changes nothing; a file-level problem (bad header, My Number column) or a crash / dropped
connection rolls the whole file back. Re-sending a file with the same bytes is recognised by its
SHA-256, per uploader (the token's set of insurer numbers: never another party's upload), and
changes nothing (``duplicate: true``); re-applying the same records in another file is a no-op
per record (``unchanged``), also when the history moved on since (``already_applied``). On
PostgreSQL concurrent uploads run side by side: a person another upload wrote meanwhile (a new
person inserted, stored rows replaced) makes this batch's records of that person ``conflict``
rejects (savepoints keep the rest of the batch), and a deadlock between two files is a 503.

Records are applied in batches: the current state of every key in the batch is read in one
query, the batch's records are applied in file order in memory, and the differences are written
in bulk (superseded rows marked, new rows inserted). An ``add`` for a person with no state who
appears once in the batch (the bulk-load case) skips the in-memory history and becomes a row
directly. Batches are applied in order by one worker thread while the request's thread reads and
validates the next one; the rejects of reading are handed over with the batch they precede, so
the answer lists the same errors in the same order as when everything ran in one thread. On
PostgreSQL the reading thread also renders each ``add`` record's ``insured`` and
``eligibility_period`` rows as lines of COPY csv ahead (``prepare``: everything but the insured
id), so the worker's own Python work is small and it spends its time waiting for the database,
which runs on the other core meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from schemas.identifiers import normalize_person_text
from schemas.insurer_files import (
    OWNER_FIELD,
    CheckupRecord,
    EligibilityRecord,
    FileFormatError,
    FileKind,
    FileReader,
    MedicationRecord,
    RowError,
    check_rows,
)
from shikaku_server.assistance.service import AssistanceApplier
from shikaku_server.auth.service import Principal
from shikaku_server.cache import Cache, CacheError
from shikaku_server.clinical.models import Checkup, Medication, Procedure
from shikaku_server.database import sqlstate, utcnow
from shikaku_server.digests import b64, from_hex
from shikaku_server.eligibility.history import (
    Key,
    KeyState,
    Period,
    RecordError,
    apply_record,
    diseases_json,
)
from shikaku_server.eligibility.history import person_key as _key
from shikaku_server.eligibility.models import EligibilityPeriod
from shikaku_server.eligibility.service import PERIOD_FIELDS, cache_namespace
from shikaku_server.errors import DomainError
from shikaku_server.expenses.models import Expense
from shikaku_server.public_expense.models import PublicExpense
from shikaku_server.upload.bulk import INSURED_COLUMNS, BulkWriter, BulkWriters, InsuredValues, render_rows
from shikaku_server.upload.errors import ConcurrentUploadError
from shikaku_server.upload.models import Upload, uploader_of
from shikaku_server.upload.progress import UploadProgress

log = logging.getLogger(__name__)
BATCH = 10000


_DIGEST_MISMATCH = "the body does not match its X-Content-SHA256 header; nothing was applied"


class FileRefusedError(DomainError):
    """The whole file is refused; ``code`` comes from the file check."""

    status = 422
    title = "The file was refused"

    def __init__(self, exc: FileFormatError) -> None:
        super().__init__(exc.message, line=exc.line)
        self.code = exc.code  # type: ignore[misc]


@dataclass
class UploadOutcome:
    upload_id: str
    accepted: int = 0
    rejected: int = 0
    unchanged: int = 0
    duplicate: bool = False
    encoding: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_truncated: bool = False
    # accepted rows whose name/kana/address hold characters outside JIS X 0208 (warning_count
    # counts them all; the list is capped like the errors)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warning_count: int = 0
    insurers: set[str] = field(default_factory=set)

    def answer(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "unchanged": self.unchanged,
            "duplicate": self.duplicate,
            "errors": self.errors,
            "errors_truncated": self.errors_truncated,
            "warnings": self.warnings,
            "warning_count": self.warning_count,
        }


class _Hashing:
    def __init__(self, chunks: Iterable[bytes], limit: int) -> None:
        self.chunks = chunks
        self.sha = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.size += len(chunk)
            if self.size > self.limit:
                raise FileRefusedError(
                    FileFormatError("payload_too_large", f"the file is larger than {self.limit} bytes")
                )
            self.sha.update(chunk)
            yield chunk


def process_upload(
    factory: sessionmaker[Session],
    cache: Cache,
    principal: Principal,
    *,
    writers: BulkWriters,
    kind: FileKind,
    fmt: str,
    chunks: Iterable[bytes],
    error_limit: int,
    max_bytes: int,
    declared_sha256: str | None = None,
    progress: UploadProgress | None = None,
) -> UploadOutcome:
    progress = progress or UploadProgress()
    permitted = principal.writable(kind)
    owner = OWNER_FIELD[kind]
    uploader = uploader_of(permitted)
    outcome = UploadOutcome(upload_id=secrets.token_urlsafe(16))
    hashing = _Hashing(chunks, max_bytes)
    if declared_sha256:
        try:
            declared = from_hex(declared_sha256)
        except ValueError:
            raise FileRefusedError(
                FileFormatError("digest_mismatch", "X-Content-SHA256 is not a hex SHA-256")
            ) from None
        with factory() as session:
            previous = _previous(session, kind, uploader, declared)
        if previous is not None:
            # a re-send announced by its digest: read the body only to confirm it, apply nothing
            for _ in hashing:
                pass
            if b64(hashing.sha.digest()) != declared:
                raise FileRefusedError(FileFormatError("digest_mismatch", _DIGEST_MISMATCH))
            return _duplicate(previous)
    reader = FileReader(kind, hashing, fmt)  # type: ignore[arg-type]
    session = factory()
    try:
        session.add(Upload(id=outcome.upload_id, token_id=principal.token_id, kind=kind, uploader=uploader))
        session.flush()
        applier = _APPLIERS[kind](session, outcome.upload_id, writers(session))

        def reject(error: RowError) -> None:
            if len(outcome.errors) < error_limit:
                outcome.errors.append(error.as_dict())
            else:
                outcome.errors_truncated = True

        def run(unit: _Unit) -> None:
            # the rejects of the lines before the batch, then the batch: the order of the file
            outcome.rejected += unit.rejected
            for error in unit.errors:
                reject(error)
            if unit.records:
                applier.apply(unit.records, outcome, reject, unit.prepared)
            progress.applied(outcome.accepted, outcome.unchanged, outcome.rejected)

        pipeline = _Pipeline(run)

        def submit(unit: _Unit) -> None:
            # the applier's work that needs no database is done here, in the reading thread,
            # while the worker waits for the database with the previous batch
            if unit.records:
                unit.prepared = applier.prepare(unit.records)
            progress.validated(reader.rows_read)
            pipeline.submit(unit)

        try:
            unit = _Unit()
            for checked in check_rows(reader):
                record = checked.record
                if checked.errors or record is None:
                    unit.rejected += 1
                    unit.errors += checked.errors
                elif getattr(record, owner) not in permitted:
                    unit.rejected += 1
                    unit.errors.append(_not_permitted(checked.line, owner, getattr(record, owner)))
                else:
                    for warning in checked.warnings:
                        outcome.warning_count += 1
                        if len(outcome.warnings) < error_limit:
                            outcome.warnings.append(warning.as_dict())
                    unit.records.append(record)
                    if len(unit.records) >= BATCH:
                        submit(unit)
                        unit = _Unit()
                    continue
                if len(unit.errors) >= BATCH:
                    # many rejects: hand them on without the records collected so far (whose
                    # own rejects come after them anyway), so memory stays flat
                    progress.validated(reader.rows_read)
                    pipeline.submit(_Unit([], unit.errors, unit.rejected))
                    unit = _Unit(unit.records)
            submit(unit)
            progress.all_read(reader.rows_read)
            pipeline.finish()
        except FileFormatError as exc:
            pipeline.abort()
            raise FileRefusedError(exc) from None
        except BaseException:
            pipeline.abort()
            raise
        outcome.encoding = reader.encoding
        digest = b64(hashing.sha.digest())
        if declared_sha256 and digest != from_hex(declared_sha256):
            raise FileRefusedError(FileFormatError("digest_mismatch", _DIGEST_MISMATCH))
        previous = _previous(session, kind, uploader, digest)
        if previous is not None:
            session.rollback()
            return _duplicate(previous)
        session.execute(
            update(Upload)
            .where(Upload.id == outcome.upload_id)
            .values(
                sha256=digest,
                encoding=reader.encoding,
                accepted=outcome.accepted,
                rejected=outcome.rejected,
                unchanged=outcome.unchanged,
                errors=outcome.errors,
                errors_truncated=outcome.errors_truncated,
                finished_at=utcnow(),
            )
        )
        progress.committing()
        try:
            session.commit()
        except IntegrityError:
            # the same file committed concurrently by another request
            session.rollback()
            previous = _previous(session, kind, uploader, digest)
            assert previous is not None
            return _duplicate(previous)
    except BaseException as exc:
        session.rollback()
        if sqlstate(exc) == _DEADLOCK:
            # two concurrent files that each wait for the other (each adds or changes persons the
            # other holds): PostgreSQL aborted this one; nothing of it was applied
            raise ConcurrentUploadError() from None
        raise
    finally:
        session.close()
    for insurer in outcome.insurers:
        try:
            cache.bump(cache_namespace(insurer))
        except CacheError:
            log.error("cache invalidation failed for an insurer; entries expire by TTL", exc_info=True)
    log.info(
        "upload applied",
        extra={
            "upload_id": outcome.upload_id,
            "kind": kind,
            "accepted": outcome.accepted,
            "rejected": outcome.rejected,
            "unchanged": outcome.unchanged,
        },
    )
    return outcome


def _previous(session: Session, kind: str, uploader: str, digest: str) -> Upload | None:
    """The same file sent earlier by the same uploader (never another party's upload)."""
    return session.execute(
        select(Upload).where(Upload.kind == kind, Upload.uploader == uploader, Upload.sha256 == digest)
    ).scalar_one_or_none()


def _duplicate(previous: Upload) -> UploadOutcome:
    return UploadOutcome(
        upload_id=previous.id,
        accepted=0,
        rejected=previous.rejected,
        unchanged=previous.accepted + previous.unchanged,
        duplicate=True,
        errors=list(previous.errors or []),
        errors_truncated=previous.errors_truncated,
    )


def _conflict(record: EligibilityRecord) -> RowError:
    return RowError(
        record.line,
        "number",
        "conflict",
        "another upload wrote this person at the same time and was applied first; this row was not"
        " applied (send it again to apply it to that upload's state)",
    )


_INSURED_KEY = "uq_insured_insurer_number_symbol_norm_number_norm_branch"


_DEADLOCK = "40P01"


def _not_permitted(line: int, field: str, value: str) -> RowError:
    """A record of another insurer (``insurer_number``), 福祉事務所 (``office_code``) or
    公費負担者 (``payer_number``) than the token's. The code stays ``insurer_not_permitted``
    for every kind (the contract's code)."""
    return RowError(line, field, "insurer_not_permitted", f"this token may not write records of {field} {value}")


@dataclass(slots=True)
class _Unit:
    """What the pipeline applies at once: the rejects met since the previous batch, in file
    order, then a batch of valid records (possibly empty)."""

    records: list[Any] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0
    prepared: Any = None  # the applier's ``prepare`` of ``records``, done in the reading thread


SWITCH_INTERVAL = 0.0005
"""The interpreter's thread switch interval (seconds) while an upload's pipeline runs. The worker
gets the GIL back each time PostgreSQL answers (a probe, a COPY piece: a few hundred times per 100k
rows) while the reading thread runs Python: at the default 5 ms each such wait is up to 5 ms of the
upload's critical path, and the event loop answering lookups meanwhile waits the same way. 0.5 ms
made a 300k-row first load 15 % faster in process, and lookups during an upload p50 9.9 → 6.4 ms,
p99 56 → 31 ms (bench/README.md)."""

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


def _fast_switching(on: bool) -> None:
    """Lower the switch interval while at least one pipeline runs; restore it after the last."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if on:
            if _switch_users == 0:
                _switch_saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
            _switch_users += 1
        else:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


class _Pipeline:
    """Applies units in order, one at a time, in a worker thread, so that reading and
    validating the next batch (Python) overlaps with writing the previous one (the database;
    the driver releases the GIL while it waits). Only the worker uses the session until
    ``finish``/``abort`` return; at most one unit waits in the queue, so memory stays flat.
    While it runs, threads switch every ``SWITCH_INTERVAL`` (see there)."""

    def __init__(self, work: Callable[[_Unit], None]) -> None:
        _fast_switching(True)
        self.work = work
        self.queue: queue.Queue[_Unit | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.stopping = False
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="upload-apply", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            unit = self.queue.get()
            if unit is None:
                return
            if self.error is not None or self.stopping:
                continue  # drain: the upload is failing
            try:
                self.work(unit)
            except BaseException as exc:  # raised again in the caller's thread
                self.error = exc

    def _put(self, item: _Unit | None) -> None:
        while True:
            if item is not None and self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def submit(self, unit: _Unit) -> None:
        if unit.records or unit.errors or unit.rejected:
            self._put(unit)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.queue.put(None)  # the worker always drains, so this returns
                self.thread.join()
            finally:
                _fast_switching(False)
        self.thread.join()

    def finish(self) -> None:
        """Wait until everything submitted is applied; raise the worker's error if any."""
        self._close()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop after the unit in progress (the transaction is rolled back next)."""
        self.stopping = True
        self._close()


# ---------------------------------------------------------------- eligibility


class _Raced(Exception):
    """Another upload replaced some of the rows this batch replaces (PostgreSQL)."""


class _EligibilityApplier:
    def __init__(self, session: Session, upload_id: str, writer: BulkWriter) -> None:
        self.session = session
        self.upload_id = upload_id
        self.writer = writer

    def prepare(self, records: list[EligibilityRecord]) -> list[tuple[str, str] | None] | None:
        """Run in the reading thread, without the session: for each ``add`` record, its
        ``insured`` and ``eligibility_period`` rows rendered ahead as lines of COPY csv, all but
        the insured id (known only when applying), when the writer takes such lines. A record that
        turns out not to be a plain new person (``apply``) is applied the long way, and its lines
        are dropped. None: nothing rendered (a value holds a line break: the usual way)."""
        if not self.writer.takes_lines:
            return None
        upload_id = self.upload_id
        out: list[tuple[str, str] | None] = []
        for r in records:
            if r.action != "add":
                out.append(None)
                continue
            lines = _add_lines(r, upload_id)
            if lines is None:  # a value the csv module must quote, or the diseases' JSON
                insured = render_rows([_insured_values(r)], INSURED_COLUMNS)
                period = render_rows([_fast_row(r, upload_id)], _ROW_COLUMNS[:-1])
                if not insured or not period:
                    return None
                lines = insured[0], period[0]
            out.append(lines)
        return out

    def _load(self, records: list[EligibilityRecord], ids: dict[Key, int]) -> dict[Key, KeyState]:
        """The state of the keys of ``records``: their current periods, in ``valid_from`` order."""
        states: dict[Key, KeyState] = {}
        for r in records:
            key = _key(r)
            if key not in states:
                states[key] = KeyState(r, ids.get(key), [])
        by_id = {s.insured_id: k for k, s in states.items() if s.insured_id is not None}
        id_list = list(by_id)
        columns = [getattr(EligibilityPeriod, f) for f in PERIOD_FIELDS]
        for i in range(0, len(id_list), 1000):
            rows = self.session.execute(
                select(EligibilityPeriod.id, EligibilityPeriod.insured_id, EligibilityPeriod.line, *columns)
                .where(
                    EligibilityPeriod.insured_id.in_(id_list[i : i + 1000]), EligibilityPeriod.superseded_by.is_(None)
                )
                .order_by(EligibilityPeriod.valid_from)
            )
            for row in rows:
                values = dict(zip(PERIOD_FIELDS, row[3:], strict=True))
                states[by_id[row[1]]].periods.append(Period(values, row[0], row[2]))
        return states

    def apply(
        self,
        records: list[EligibilityRecord],
        outcome: UploadOutcome,
        reject: Any,
        prepared: list[tuple[str, str] | None] | None = None,
    ) -> None:
        keys = [(r.insurer_number, r.symbol_norm, r.number_norm, r.branch) for r in records]
        ids = self.writer.existing_insureds(set(keys))
        counts = Counter(keys)
        # the common case of a bulk load: an add for a person with no state, once in the batch,
        # is accepted as it is (no period to compare with or overlap); it goes straight to a row
        fast: list[EligibilityRecord] = []
        slow: list[EligibilityRecord] = []
        rendered: list[tuple[str, str]] | None = [] if prepared is not None else None
        for i, (record, key) in enumerate(zip(records, keys, strict=True)):
            if record.action == "add" and counts[key] == 1 and key not in ids:
                fast.append(record)
                if rendered is not None:
                    lines = prepared[i]  # type: ignore[index]
                    assert lines is not None
                    rendered.append(lines)
            else:
                slow.append(record)
        states = self._load(slow, ids) if slow else {}
        superseded: dict[int, Key] = {}  # stored rows this batch replaces, and whose they are
        done: list[tuple[EligibilityRecord, RowError | bool]] = []  # a reject, or whether it changed
        for record in slow:
            state = states[_key(record)]
            try:
                done.append((record, apply_record(record, state, superseded)))
            except RecordError as exc:
                done.append((record, RowError(record.line, exc.field, exc.code, exc.message)))
        taken = self._write(states, superseded, fast, rendered)
        # counted once written: a new person another upload committed meanwhile is a conflict
        # for every record of it in this batch (the rest of the batch is applied)
        if taken:
            fast_kept = [r for r in fast if _key(r) not in taken]
            done += [(r, _conflict(r)) for r in fast if _key(r) in taken]
            done = [(r, _conflict(r) if _key(r) in taken and not isinstance(x, RowError) else x) for r, x in done]
            done.sort(key=lambda item: item[0].line)
            fast = fast_kept
        if fast:
            outcome.accepted += len(fast)
            outcome.insurers.update({r.insurer_number for r in fast})
        for record, result in done:
            if isinstance(result, RowError):
                outcome.rejected += 1
                reject(result)
            elif result:
                outcome.accepted += 1
                outcome.insurers.add(record.insurer_number)
            else:
                outcome.unchanged += 1

    def _write(
        self,
        states: dict[Key, KeyState],
        superseded: dict[int, Key],
        fast: list[EligibilityRecord],
        rendered: list[tuple[str, str]] | None = None,
    ) -> set[Key]:
        """Write the batch; the keys of persons another upload wrote and committed meanwhile
        (new persons it inserted, stored rows it replaced): nothing of them is written, and the
        caller reports their records as conflicts."""
        writer = self.writer
        taken = self._supersede(superseded)
        for key in taken:
            states.pop(key, None)
        new_keys = [k for k, s in states.items() if s.insured_id is None and any(p.row_id is None for p in s.periods)]
        while True:
            insureds = [(k[0], states[k].record.symbol, states[k].record.number, k[3], k[1], k[2]) for k in new_keys]
            try:
                with writer.savepoint():
                    if rendered is None:
                        everyone = insureds + [
                            (r.insurer_number, r.symbol, r.number, r.branch, r.symbol_norm, r.number_norm)
                            for r in fast
                        ]
                        ids = writer.insert_insureds(everyone)
                    else:
                        ids = writer.insert_insureds(insureds, [insured for insured, _ in rendered])
                break
            except Exception as exc:  # IntegrityError, or the driver's own from COPY (a raw cursor)
                # a concurrent upload inserted some of these persons too and has committed them
                # (it held them until then): those are its; write the others
                if not writer.unique_violation(exc, _INSURED_KEY):
                    raise
                now_taken = set(writer.existing_insureds({*new_keys, *map(_key, fast)}))
                if not now_taken:
                    raise
                taken |= now_taken
                log.warning("upload: new persons added concurrently by another upload", extra={"n": len(now_taken)})
                new_keys = [k for k in new_keys if k not in now_taken]
                kept = [i for i, r in enumerate(fast) if _key(r) not in now_taken]
                fast = [fast[i] for i in kept]
                if rendered is not None:
                    rendered = [rendered[i] for i in kept]
        for key in taken:
            states.pop(key, None)
        for key, insured_id in zip(new_keys, ids, strict=False):
            states[key].insured_id = insured_id
        upload_id = self.upload_id
        rows = [
            (*(p.values[f] for f in PERIOD_FIELDS), upload_id, p.line, s.insured_id)
            for s in states.values()
            for p in s.periods
            if p.row_id is None
        ]
        fast_ids = ids[len(new_keys) :]
        table = EligibilityPeriod.__table__
        if rendered is None:
            rows += [(*_fast_row(r, upload_id), i) for r, i in zip(fast, fast_ids, strict=True)]
            writer.insert_rows(table, _ROW_COLUMNS, rows)  # type: ignore[arg-type]
        else:
            lines = [f"{period},{i}\n" for (_, period), i in zip(rendered, fast_ids, strict=True)]
            writer.insert_rows(table, _ROW_COLUMNS, rows, lines)  # type: ignore[arg-type]
        return taken

    def _supersede(self, superseded: dict[int, Key]) -> set[Key]:
        """Mark the replaced rows; the keys whose rows another upload replaced first (it held them
        until its commit). Those keys' rows are left as that upload left them."""
        taken: set[Key] = set()
        while superseded:
            ids = sorted(superseded)
            try:
                with self.writer.savepoint():
                    marked = self.writer.supersede(ids, self.upload_id)
                    lost = [row_id for row_id in ids if row_id not in marked]
                    if lost:
                        raise _Raced  # undo this round's marks (the savepoint), then mark the others
            except _Raced:
                now_taken = {superseded[row_id] for row_id in lost}
                log.warning("upload: persons changed concurrently by another upload", extra={"n": len(now_taken)})
                taken |= now_taken
                superseded = {row_id: key for row_id, key in superseded.items() if key not in now_taken}
                continue
            break
        return taken


_ROW_COLUMNS = (*PERIOD_FIELDS, "upload_id", "line", "insured_id")  # the id last: see ``prepare``
def _insured_values(r: EligibilityRecord) -> InsuredValues:
    return (r.insurer_number, r.symbol, r.number, r.branch, r.symbol_norm, r.number_norm)


def _add_lines(r: EligibilityRecord, upload_id: str) -> tuple[str, str] | None:
    """``render_rows`` of ``_insured_values(r)`` and ``_fast_row(r, upload_id)``, the same text,
    written out by one f-string each instead of the csv module (which took a third of the reading
    thread's time of a bulk load); None for the rows it cannot write so: diseases (JSON), or a
    value that holds a character the csv module quotes (``,`` ``"`` CR LF: then the line does not
    have its one comma per column, or holds one of the others)."""
    if r.diseases is not None:
        return None
    address, valid_to, reason, post = r.address, r.valid_to, r.reason_of_loss, r.post_number
    e_ratio, e_from, e_to = r.elderly_ratio, r.elderly_valid_from, r.elderly_valid_to
    l_kind, l_class, l_from, l_to = r.limit_kind, r.limit_class, r.limit_valid_from, r.limit_valid_to
    insured = f"{r.insurer_number},{r.symbol},{r.number},{r.branch},{r.symbol_norm},{r.number_norm}"
    period = (
        f"{r.valid_from},{'' if valid_to is None else valid_to},{'' if reason is None else reason},"
        f"{r.name},{r.name_kana},{normalize_person_text(r.name)},{r.sex},{r.birth_date},"  # type: ignore[arg-type]
        f"{'' if address is None else address},{'' if address is None else normalize_person_text(address)},"
        f"{'' if post is None else post},{r.personal_family},{r.card_classification},{r.copay_ratio},"
        f"{'' if e_ratio is None else e_ratio},{'' if e_from is None else e_from},{'' if e_to is None else e_to},"
        f"{'' if l_kind is None else l_kind},{'' if l_class is None else l_class},"
        f"{'' if l_from is None else l_from},{'' if l_to is None else l_to},,{upload_id},{r.line}"
    )
    if (
        insured.count(",") != _INSURED_COMMAS
        or period.count(",") != _PERIOD_COMMAS
        or any(c in insured or c in period for c in _QUOTED)
    ):
        return None
    return insured, period


_INSURED_COMMAS = len(INSURED_COLUMNS) - 1
_PERIOD_COMMAS = len(_ROW_COLUMNS) - 2  # all but the insured id
_QUOTED = ('"', "\r", "\n")


def _fast_row(r: EligibilityRecord, upload_id: str) -> tuple[Any, ...]:
    """The row of an ``add`` for a person with no state: what ``apply_record`` + ``_write``
    would insert, built without the intermediate dicts (values in ``_ROW_COLUMNS`` order, all
    but the last, the insured id). Written out field by field: building it by a loop over
    PERIOD_FIELDS (``attrgetter``, per-field getters) took 1.5 times as long per row, on the
    path of every bulk-loaded person; tests/unit/upload checks it against the history algebra's
    row for the same record, field by field."""
    address = r.address
    return (
        r.valid_from,
        r.valid_to,
        r.reason_of_loss,
        r.name,
        r.name_kana,
        normalize_person_text(r.name),  # type: ignore[arg-type]  # an add always has a name
        r.sex,
        r.birth_date,
        address,
        None if address is None else normalize_person_text(address),
        r.post_number,
        r.personal_family,
        r.card_classification,
        r.copay_ratio,
        r.elderly_ratio,
        r.elderly_valid_from,
        r.elderly_valid_to,
        r.limit_kind,
        r.limit_class,
        r.limit_valid_from,
        r.limit_valid_to,
        None if r.diseases is None else diseases_json(r),
        upload_id,
        r.line,
    )


# ---------------------------------------------------------------- medications and checkups


class _ClinicalApplier:
    model: type[Medication] | type[Checkup] | type[Expense] | type[PublicExpense] | type[Procedure]

    def __init__(self, session: Session, upload_id: str, writer: BulkWriter) -> None:
        self.session = session
        self.upload_id = upload_id
        self.writer = writer

    # a kind that names these gets the three steps below; medications and checkups write their own
    _KEY: tuple[str, ...] = ()  # the natural key's fields after the person
    _FIELDS: tuple[str, ...] = ()  # the stored fields, besides the person and the upload

    def natural_key(self, insured_id: int, record: Any) -> tuple[Any, ...]:
        return (insured_id, *(getattr(record, name) for name in self._KEY))

    def row(self, insured_id: int, record: Any) -> dict[str, Any]:
        return {"insured_id": insured_id, "upload_id": self.upload_id, **{n: getattr(record, n) for n in self._FIELDS}}

    def existing(self, insured_ids: list[int]) -> dict[tuple[Any, ...], Any]:
        out: dict[tuple[Any, ...], Any] = {}
        e: Any  # a row of ``model``: the natural key's fields read as a record's
        for i in range(0, len(insured_ids), 1000):
            for e in self.session.execute(
                select(self.model).where(self.model.insured_id.in_(insured_ids[i : i + 1000]))
            ).scalars():
                out[self.natural_key(e.insured_id, e)] = e
        return out

    def prepare(self, records: list[MedicationRecord | CheckupRecord]) -> None:
        return None  # nothing to do ahead

    def apply(
        self,
        records: list[MedicationRecord | CheckupRecord],
        outcome: UploadOutcome,
        reject: Any,
        prepared: None = None,
    ) -> None:
        ids = self.writer.existing_insureds({_key(r) for r in records})
        known = self.existing(sorted(set(ids.values())))
        inserts: dict[tuple[Any, ...], dict[str, Any]] = {}
        rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        last: dict[tuple[Any, ...], dict[str, Any]] = {}  # a key's last row in the batch: the one that stays
        for record in records:
            insured_id = ids.get(_key(record))
            if insured_id is None:
                outcome.rejected += 1
                reject(
                    RowError(
                        record.line,
                        "number",
                        "unknown_person",
                        "no insured person with this insurer number, symbol, number and branch",
                    )
                )
                continue
            nkey = self.natural_key(insured_id, record)
            row = self.row(insured_id, record)
            rows.append((nkey, row))
            last[nkey] = row
        for nkey, row in rows:
            current = known.get(nkey)
            if current is not None:
                if _same(current, row) or _same(current, last[nkey]):
                    # the same row again, or a key the batch sends twice and ends where the table
                    # is (a re-send of such a file): nothing to do
                    outcome.unchanged += 1
                    continue
                for k, v in row.items():
                    setattr(current, k, v)
            elif nkey in inserts:
                if inserts[nkey] == row:
                    outcome.unchanged += 1
                    continue
                inserts[nkey] = row
            else:
                inserts[nkey] = row
            outcome.accepted += 1
        self.session.flush()
        while inserts:
            columns = list(next(iter(inserts.values())))
            rows = [tuple(r[c] for c in columns) for r in inserts.values()]
            try:
                with self.writer.savepoint():
                    self.writer.insert_rows(self.model.__table__, columns, rows)  # type: ignore[arg-type]
                return
            except Exception as exc:  # IntegrityError, or the driver's own from COPY (a raw cursor)
                if not self.writer.unique_violation(exc, f"uq_{self.model.__tablename__}_"):
                    raise
                self._merge_concurrent(inserts, outcome)

    def _merge_concurrent(self, inserts: dict[tuple[Any, ...], dict[str, Any]], outcome: UploadOutcome) -> None:
        """A concurrent upload inserted and committed some of these rows first: those become
        updates of its rows (``unchanged`` when equal), as if it had come first."""
        known = self.existing(sorted({r["insured_id"] for r in inserts.values()}))
        merged = [nkey for nkey in inserts if nkey in known]
        if not merged:
            raise RuntimeError("a unique violation with no concurrent row to merge with")
        log.warning("upload: rows added concurrently by another upload", extra={"n": len(merged)})
        for nkey in merged:
            row, current = inserts.pop(nkey), known[nkey]
            if _same(current, row):
                outcome.accepted -= 1
                outcome.unchanged += 1
                continue
            for k, v in row.items():
                setattr(current, k, v)
        self.session.flush()


def _same(current: Any, row: dict[str, Any]) -> bool:
    """Whether a stored medication/checkup already holds ``row`` (whichever upload wrote it)."""
    return all(getattr(current, k) == v for k, v in row.items() if k != "upload_id")


class _MedicationApplier(_ClinicalApplier):
    model = Medication

    def natural_key(self, insured_id: int, record: Any) -> tuple[Any, ...]:
        return (insured_id, record.dispensed_on, record.facility_code, record.drug_code)

    def row(self, insured_id: int, record: Any) -> dict[str, Any]:
        return {
            "insured_id": insured_id,
            "upload_id": self.upload_id,
            "dispensed_on": record.dispensed_on,
            "facility_code": record.facility_code,
            "drug_code": record.drug_code,
            "drug_name": record.drug_name,
            "quantity": record.quantity,
            "unit": record.unit,
            "days": record.days,
        }

    def existing(self, insured_ids: list[int]) -> dict[tuple[Any, ...], Any]:
        out: dict[tuple[Any, ...], Any] = {}
        for i in range(0, len(insured_ids), 1000):
            for m in self.session.execute(
                select(Medication).where(Medication.insured_id.in_(insured_ids[i : i + 1000]))
            ).scalars():
                out[(m.insured_id, m.dispensed_on, m.facility_code, m.drug_code)] = m
        return out


class _CheckupApplier(_ClinicalApplier):
    model = Checkup

    def natural_key(self, insured_id: int, record: Any) -> tuple[Any, ...]:
        return (insured_id, record.checked_on)

    def row(self, insured_id: int, record: Any) -> dict[str, Any]:
        return {
            "insured_id": insured_id,
            "upload_id": self.upload_id,
            "checked_on": record.checked_on,
            "results": record.values,
            "urine_protein": record.urine_protein,
        }

    def existing(self, insured_ids: list[int]) -> dict[tuple[Any, ...], Any]:
        out: dict[tuple[Any, ...], Any] = {}
        for i in range(0, len(insured_ids), 1000):
            for c in self.session.execute(
                select(Checkup).where(Checkup.insured_id.in_(insured_ids[i : i + 1000]))
            ).scalars():
                out[(c.insured_id, c.checked_on)] = c
        return out


class _ExpenseApplier(_ClinicalApplier):
    """医療費通知情報 (docs/expenses.md): one row per person, month, facility and kind of care."""

    model = Expense
    _FIELDS = ("service_month", "facility_code", "facility_name", "care_kind", "days", "total_cost", "patient_paid")
    _KEY = ("service_month", "facility_code", "care_kind")


class _PublicExpenseApplier(_ClinicalApplier):
    """公費負担医療の受給者証 (docs/assistance.md): one row per person, 公費負担者番号, 受給者番号 and
    start; a re-send with ``valid_to`` ends it. They are part of the eligibility answer, so the
    persons' insurers' cached answers are dropped."""

    model = PublicExpense
    _FIELDS = ("payer_number", "recipient_number", "valid_from", "valid_to", "monthly_cap")
    _KEY = ("payer_number", "recipient_number", "valid_from")

    def apply(self, records: list[Any], outcome: UploadOutcome, reject: Any, prepared: None = None) -> None:
        super().apply(records, outcome, reject, prepared)
        outcome.insurers.update(r.insurer_number for r in records)


class _ProcedureApplier(_ClinicalApplier):
    """診療・手術 information (docs/uploads.md): one row per person, day, facility and 診療行為コード."""

    model = Procedure
    _FIELDS = ("performed_on", "facility_code", "procedure_code", "procedure_name", "kind", "inpatient")
    _KEY = ("performed_on", "facility_code", "procedure_code")


_APPLIERS: dict[str, Any] = {
    "eligibility": _EligibilityApplier,
    "medications": _MedicationApplier,
    "checkups": _CheckupApplier,
    "expenses": _ExpenseApplier,
    "assistance": AssistanceApplier,
    "public_expense": _PublicExpenseApplier,
    "procedures": _ProcedureApplier,
}
