"""The loader's work, knowing nothing of the command line: read → validate (dry run) or read →
stream to the server (upload) → summary and reject report.

Everything is an iterable over 256 KiB chunks of the file, so memory is flat in file size: rows
are never collected, rejects are written to the report as they come.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from hokensha_loader.client import UploadClient
from hokensha_loader.errors import FileRefusedError, UsageError
from hokensha_loader.messages import DEFAULT_LANG, Lang, row_message
from hokensha_loader.progress import NullProgress, Progress
from hokensha_loader.status_codes import ExitCode
from schemas.identifiers import withhold_my_number
from schemas.insurer_files import FileFormatError, FileKind, FileReader, RowError, check_rows

Format = Literal["csv", "ndjson"]
CHUNK_SIZE = 256 * 1024
REPORT_COLUMNS = ("line", "field", "code", "message")
_REPORT_HEAD = "\ufeff" + ",".join(REPORT_COLUMNS)
SAMPLE_ERRORS = 10  # rejects kept in memory to show in the summary; the rest only go to the report
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".txt": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson"}


def format_for(path: Path, explicit: Format | None = None) -> Format:
    """``explicit`` when given, else from the file name's extension."""
    if explicit is not None:
        return explicit
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"cannot tell the format of {path.name!r} from its extension: use --format csv|ndjson",
            key="unknown_format", params={"name": path.name},
        )
    return fmt


def default_report_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.csv")


def _unreadable(path: Path, exc: OSError) -> UsageError:
    reason = exc.strerror or str(exc)
    return UsageError(f"cannot read {path}: {reason}", key="cannot_read", params={"path": path, "reason": reason})


def read_chunks(path: Path, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The file's raw bytes, ``size`` at a time (no decoding: the reader or the server does it)."""
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(size):
                yield chunk
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def file_sha256(path: Path) -> str:
    """The file's digest (one quick pass): lets the server answer a re-sent file at once."""
    digest = hashlib.sha256()
    for chunk in read_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _unreadable(path, exc) from exc


class RejectReport:
    """``line,field,code,message`` CSV in UTF-8 with BOM (Excel opens it as such).

    Opened on the first reject only; when a run has no rejects, a stale report of an earlier run
    of the same file (recognised by its header) is removed so it cannot mislead.
    """

    def __init__(self, path: Path, lang: Lang = DEFAULT_LANG) -> None:
        self.path = path
        self.lang = lang
        self.count = 0
        self._fh: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None

    def write(self, error: RowError) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=REPORT_COLUMNS, lineterminator="\r\n")
            self._writer.writeheader()
        self._writer.writerow(error.as_dict() | {"message": row_message(error, self.lang)})
        self.count += 1

    def write_all(self, errors: Iterable[RowError]) -> None:
        for error in errors:
            self.write(error)

    @property
    def written(self) -> bool:
        return self.count > 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self.path.is_file():
            with self.path.open("r", encoding="utf-8", errors="replace") as fh:
                stale = fh.readline().rstrip("\r\n") == _REPORT_HEAD
            if stale:
                self.path.unlink()

    def __enter__(self) -> RejectReport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        elif self._fh is not None:  # a refused or failed run leaves no half report
            self._fh.close()
            self._fh = None
            self.path.unlink(missing_ok=True)


@dataclass
class Summary:
    kind: FileKind
    path: Path
    mode: Literal["dry-run", "upload"]
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    unchanged: int = 0
    duplicate: bool = False
    bytes: int = 0
    elapsed_s: float = 0.0
    encoding: str | None = None
    upload_id: str | None = None
    errors_truncated: bool = False
    report_path: Path | None = None  # set when a report was written
    report_lines: int = 0
    sample_errors: list[RowError] = field(default_factory=list)
    warnings: int = 0  # accepted rows' fields with characters outside JIS X 0208 (in the report too)
    records: int | None = None  # the file's records, when the server's counts miss some of them

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def unread(self) -> bool:
        """Not every record of the file was accounted for (accepted, rejected or unchanged)."""
        return self.records is not None and self.accepted + self.rejected + self.unchanged < self.records

    @property
    def exit_code(self) -> ExitCode:
        if self.unread:
            return ExitCode.LINES_UNREAD
        return ExitCode.ROWS_REJECTED if self.rejected else ExitCode.OK


def count_records(path: Path, kind: FileKind, fmt: Format) -> int:
    """The file's records as the server counts them (every non-blank line after the CSV header,
    a quoted multi-line field one record): a read-only pass, no validation."""
    reader = FileReader(kind, read_chunks(path), fmt=fmt)
    try:
        for _ in reader:
            pass
    except FileFormatError as exc:
        raise _refused(exc) from exc
    return reader.rows_read


def _refused(exc: FileFormatError) -> FileRefusedError:
    where = f" (line {exc.line})" if exc.line else ""
    return FileRefusedError(
        f"file refused{where}: {exc.message}", code=exc.code, line=exc.line,
        key="file_refused", params={"reason": exc.message},
    )


def validate_file(
    path: Path,
    kind: FileKind,
    fmt: Format,
    *,
    report_path: Path,
    progress: Progress | None = None,
    lang: Lang = DEFAULT_LANG,
) -> Summary:
    """Dry run: validate every row locally with the shared ``check_rows``; nothing is sent."""
    progress = progress or NullProgress()
    started = time.perf_counter()
    summary = Summary(kind, path, "dry-run", bytes=file_size(path))
    reader = FileReader(kind, progress.chunks(read_chunks(path)), fmt=fmt)
    try:
        with RejectReport(report_path, lang) as report:
            for checked in progress.rows(check_rows(reader)):
                if checked.errors:
                    summary.rejected += 1
                    report.write_all(checked.errors)
                    room = SAMPLE_ERRORS - len(summary.sample_errors)
                    if room > 0:
                        summary.sample_errors.extend(checked.errors[:room])
                else:
                    summary.accepted += 1
                    summary.warnings += len(checked.warnings)
                    report.write_all(checked.warnings)
    except FileFormatError as exc:
        raise _refused(exc) from exc
    finally:
        progress.close()
    summary.rows = summary.accepted + summary.rejected
    summary.encoding = reader.encoding
    summary.elapsed_s = time.perf_counter() - started
    if report.written:
        summary.report_path, summary.report_lines = report_path, report.count
    return summary


def check_header(path: Path, kind: FileKind, fmt: Format) -> None:
    """Refuse locally what the server would refuse as a whole (unknown or My Number-like column,
    missing column, empty file) before a single byte is sent: a My Number column must never
    leave the insurer. Reads only the head of the file."""
    reader = FileReader(kind, read_chunks(path), fmt=fmt)
    try:
        next(iter(reader), None)
    except FileFormatError as exc:
        raise _refused(exc) from exc


def upload_file(
    path: Path,
    kind: FileKind,
    fmt: Format,
    *,
    client: UploadClient,
    report_path: Path,
    progress: Progress | None = None,
    lang: Lang = DEFAULT_LANG,
) -> Summary:
    """Stream the file's raw bytes to the server; the server validates and commits (its phases go
    to ``progress`` as they come), and its answer (counts and per-row errors) becomes the summary
    and the reject report."""
    progress = progress or NullProgress()
    check_header(path, kind, fmt)
    started = time.perf_counter()
    size = file_size(path)
    summary = Summary(kind, path, "upload", bytes=size)
    lines = 0
    last = b"\n"

    def body() -> Iterator[bytes]:
        nonlocal lines, last
        for chunk in progress.chunks(read_chunks(path), count_lines=True):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            yield chunk

    try:
        answer = client.upload(kind, fmt, body(), size=size, sha256=file_sha256(path), on_phase=progress.server)
    finally:
        progress.close()
    summary.elapsed_s = time.perf_counter() - started
    summary.upload_id = answer.upload_id
    summary.accepted, summary.rejected, summary.unchanged = answer.accepted, answer.rejected, answer.unchanged
    summary.duplicate = answer.duplicate
    summary.errors_truncated = answer.errors_truncated
    summary.rows = answer.accepted + answer.rejected + answer.unchanged
    if last != b"\n":
        lines += 1  # a last line without its newline
    data_lines = max(lines - (1 if fmt == "csv" else 0), 0)
    if answer.duplicate and not summary.rows:  # a duplicate answers zeros: count the lines we sent instead
        summary.rows = data_lines
    elif summary.rows != data_lines:
        # blank lines or a quoted multi-line field, or lines the server did not read: only then
        # count the records exactly (a read-only pass), so the common case costs nothing more
        records = count_records(path, kind, fmt)
        if summary.rows < records:
            summary.records = records
    # the server's messages are printed and written to the report: a message (or a field name)
    # holding a My Number is withheld, whatever the server sent
    errors = [
        RowError(e.line, e.field and withhold_my_number(e.field), e.code, withhold_my_number(e.message))
        for e in answer.errors
    ]
    summary.sample_errors = errors[:SAMPLE_ERRORS]
    summary.warnings = answer.warning_count
    with RejectReport(report_path, lang) as report:
        report.write_all(errors)
        report.write_all(RowError(w.line, w.field, w.code, withhold_my_number(w.message)) for w in answer.warnings)
    if report.written:
        summary.report_path, summary.report_lines = report_path, report.count
    return summary
