"""Insurer files (contract: "Insurer files"): reading, column checks and row validation.

One implementation, used by ``hokensha-load --dry-run`` on the insurer's side and by the
server's upload endpoint, so both sides say the same thing about the same row. Plain functions
over ``str`` values (not pydantic) because a file may hold millions of rows.

Reading is streaming: bytes chunks in → ``(line, raw dict)`` out, memory flat in file size.
Line numbers are physical lines of the file (the CSV header is line 1; NDJSON starts at 1).
"""

from __future__ import annotations

import calendar
import codecs
import csv
import datetime as dt
import json
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.charset import describe, outside_jis_x0208
from schemas.codes import (
    CARD_CLASSIFICATIONS,
    CARE_KINDS,
    COPAY_RATIOS,
    DISEASE_CATEGORIES,
    LIMIT_CLASSES,
    LIMIT_KINDS,
    PERSONAL_FAMILY_CODES,
    REASONS_OF_LOSS,
    SEX_CODES,
)
from schemas.identifiers import (
    SPECIAL_DIGITS,
    facility_code_problem,
    insurer_number_problem,
    luhn_check_digit,
    my_number_in,
    normalize_kana,
    normalize_key_text,
    text_problem,
)
from schemas.procedures import PROCEDURE_KINDS

FileKind = Literal["eligibility", "medications", "checkups", "expenses", "procedures", "assistance", "public_expense"]
FILE_KINDS: tuple[FileKind, ...] = (
    "eligibility",
    "medications",
    "checkups",
    "expenses",
    "procedures",
    "assistance",
    "public_expense",
)

KEY_COLUMNS = ("insurer_number", "symbol", "number", "branch")
ELIGIBILITY_COLUMNS = (
    "action",
    *KEY_COLUMNS,
    "name",
    "name_kana",
    "sex",
    "birth_date",
    "address",
    "post_number",
    "personal_family",
    "card_classification",
    "valid_from",
    "valid_to",
    "copay_ratio",
    "reason_of_loss",
)
ELIGIBILITY_OPTIONAL = (
    "elderly_ratio",
    "elderly_valid_from",
    "elderly_valid_to",
    "limit_kind",
    "limit_class",
    "limit_valid_from",
    "limit_valid_to",
    "disease_category",
    "disease_valid_from",
    "disease_valid_to",
    "disease_self_pay",
)
MEDICATION_COLUMNS = (
    *KEY_COLUMNS,
    "dispensed_on",
    "facility_code",
    "drug_code",
    "drug_name",
    "quantity",
    "unit",
    "days",
)
CHECKUP_NUMERIC = (
    "height_cm",
    "weight_kg",
    "waist_cm",
    "bmi",
    "systolic",
    "diastolic",
    "hba1c",
    "ldl",
    "hdl",
    "triglycerides",
    "ast",
    "alt",
    "ggt",
    "fasting_glucose",
)
CHECKUP_COLUMNS = (*KEY_COLUMNS, "checked_on")
CHECKUP_OPTIONAL = (*CHECKUP_NUMERIC, "urine_protein")
EXPENSE_COLUMNS = (
    *KEY_COLUMNS,
    "service_month",
    "facility_code",
    "facility_name",
    "care_kind",
    "days",
    "total_cost",
    "patient_paid",
)
# 医療扶助の医療券・調剤券 (docs/assistance.md): sent by a 福祉事務所 each month
ASSISTANCE_COLUMNS = (
    "office_code",
    "payer_number",
    "recipient_number",
    "name",
    "name_kana",
    "birth_date",
    "sex",
    "month",
    "ticket_kind",
    "facility_code",
    "valid_from",
)
ASSISTANCE_OPTIONAL = ("valid_to", "self_pay")
# 公費負担医療の受給者証 (docs/assistance.md): sent by the prefecture or municipality
PUBLIC_EXPENSE_COLUMNS = ("payer_number", "recipient_number", *KEY_COLUMNS, "valid_from", "monthly_cap")
PUBLIC_EXPENSE_OPTIONAL = ("valid_to",)
PROCEDURE_COLUMNS = (
    *KEY_COLUMNS,
    "performed_on",
    "facility_code",
    "procedure_code",
    "procedure_name",
    "kind",
    "inpatient",
)

# required / optional columns of each kind
COLUMNS: dict[FileKind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "eligibility": (ELIGIBILITY_COLUMNS, ELIGIBILITY_OPTIONAL),
    "medications": (MEDICATION_COLUMNS, ()),
    "checkups": (CHECKUP_COLUMNS, CHECKUP_OPTIONAL),
    "expenses": (EXPENSE_COLUMNS, ()),
    "procedures": (PROCEDURE_COLUMNS, ()),
    "assistance": (ASSISTANCE_COLUMNS, ASSISTANCE_OPTIONAL),
    "public_expense": (PUBLIC_EXPENSE_COLUMNS, PUBLIC_EXPENSE_OPTIONAL),
}
# the field of a record that names who may write it: the token's insurer numbers, 福祉事務所
# code or 公費負担者番号s (``Principal.writable``)
OWNER_FIELD: dict[FileKind, str] = {
    "eligibility": "insurer_number",
    "medications": "insurer_number",
    "checkups": "insurer_number",
    "expenses": "insurer_number",
    "procedures": "insurer_number",
    "assistance": "office_code",
    "public_expense": "payer_number",
}
# header names that are, or look like, an individual-number (My Number) column
_MY_NUMBER_COLUMN = re.compile(r"my_?number|mynumber|個人番号|マイナンバー|kojin_?bango", re.IGNORECASE)
DISEASE_SEPARATOR = "|"
_TWELVE_DIGITS = re.compile(r"(?:[^0-9]*[0-9]){12}", re.DOTALL)  # at least 12 ASCII digits
MAX_TEXT = 200


class FileFormatError(Exception):
    """The whole file is refused (bad header, undecodable, wrong kind). Nothing is loaded."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line


@dataclass(slots=True, frozen=True)
class RowError:
    line: int
    field: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "code": self.code, "message": self.message}


# ---------------------------------------------------------------- reading


def detect_encoding(head: bytes) -> str:
    """``utf-8-sig`` for a BOM, ``utf-8`` when the head decodes as UTF-8, else ``cp932``."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp932"
    return "utf-8"


MAX_LINE = 65_536
"""Characters per physical line (and per record, when a quoted CSV field spans lines). A longer
line is rejected on its own (``line_too_long``; the whole file when it is the CSV header), and
the lines after it are still read. Checked in linear time: a body without any newline is cut
after ``MAX_LINE_BYTES`` bytes, never buffered whole."""
MAX_LINE_BYTES = 4 * MAX_LINE  # no line of MAX_LINE characters is longer in UTF-8 or CP932
_TOO_LONG = f"line is longer than {MAX_LINE} characters"
_NUL = "line holds a NUL character"


def _byte_blocks(chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """Re-cut a byte stream into blocks of whole lines (split on LF; the last block may lack
    its LF). Safe for CP932 too: no trail byte of a double-byte character is 0x0A.

    A line longer than ``limit`` bytes is dropped up to its LF and stands as one ``None`` in the
    stream: the buffer of an unfinished line never outgrows ``limit`` plus one chunk, so the work
    stays linear in the size of the body whatever its lines."""
    rest = b""  # the start of a line whose LF has not come yet
    skipping = False  # inside a line already found too long: its bytes are dropped
    for chunk in chunks:
        if not chunk:
            continue
        if skipping:
            end = chunk.find(b"\n")
            if end < 0:
                continue
            skipping = False
            yield None
            chunk = chunk[end + 1 :]
            if not chunk:
                continue
        end = chunk.rfind(b"\n")
        if end < 0:
            rest += chunk
        else:
            block = rest + chunk[: end + 1] if rest else chunk[: end + 1]
            rest = chunk[end + 1 :]
            yield block
        if len(rest) > limit:
            rest = b""
            skipping = True
    if skipping:
        yield None
    elif rest:
        yield rest


class _Decoded:
    """Decodes blocks of lines into lines (each with its LF); a line that cannot be read (not in
    the encoding, a NUL, too long) becomes an empty marker, its (code, message) recorded in
    ``bad``. A block is decoded at once and split; only a block that does not decode is decoded
    line by line (the same lines and markers, just slower): an LF byte is always a whole
    character in UTF-8 and CP932, so both ways give the same text."""

    def __init__(self, blocks: Iterator[bytes | None], encoding: str) -> None:
        self.blocks = blocks
        self.encoding = encoding
        self.number = 0
        self.bad: dict[int, tuple[str, str]] = {}

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """(line number, line) pairs."""
        enc = self.encoding
        codec = "utf-8" if enc == "utf-8-sig" else enc
        first = True
        for block in self.blocks:
            if block is None:
                self.number += 1
                self.bad[self.number] = ("line_too_long", _TOO_LONG)
                first = False
                yield self.number, "\n"
                continue
            if first and enc == "utf-8-sig":
                block = block[3:]
            first = False
            try:
                text = block.decode(codec)
            except UnicodeDecodeError:
                yield from self._by_line(block, codec)
                continue
            lines = text.split("\n")
            last = lines.pop()
            if "\x00" in text or (len(text) > MAX_LINE and max(map(len, lines)) > MAX_LINE):
                # the rare block to look into line by line
                for line in lines:
                    yield self._checked(line, "\n")
                if last:
                    yield self._checked(last, "")
                continue
            number = self.number
            for line in lines:
                number += 1
                self.number = number
                yield number, line + "\n"
            if last:
                self.number += 1
                yield self.number, last

    def _checked(self, line: str, end: str) -> tuple[int, str]:
        self.number += 1
        if len(line) > MAX_LINE:
            self.bad[self.number] = ("line_too_long", _TOO_LONG)
            return self.number, "\n"
        if "\x00" in line:
            self.bad[self.number] = ("invalid_character", _NUL)
            return self.number, "\n"
        return self.number, line + end

    def _by_line(self, block: bytes, codec: str) -> Iterator[tuple[int, str]]:
        lines = block.split(b"\n")
        last = lines.pop()
        for raw in lines:
            yield self._line(raw, "\n", codec)
        if last:
            yield self._line(last, "", codec)

    def _line(self, raw: bytes, end: str, codec: str) -> tuple[int, str]:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            self.number += 1
            self.bad[self.number] = ("encoding", f"line is not valid {self.encoding}: {exc.reason} at byte {exc.start}")
            return self.number, "\n"
        return self._checked(text, end)


def _with_head(chunks: Iterable[bytes], size: int = 65536) -> tuple[bytes, Iterator[bytes]]:
    it = iter(chunks)
    head = b""
    buffered: list[bytes] = []
    for chunk in it:
        buffered.append(chunk)
        head += chunk
        if len(head) >= size:
            break

    def replay() -> Iterator[bytes]:
        yield from buffered
        yield from it

    return head, replay()


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")


def _shown(name: str) -> bool:
    """Whether a column name may be quoted in a message: a plain name that cannot carry a My
    Number or personal data (any other is named by its position only)."""
    return bool(_PLAIN_NAME.fullmatch(name)) and not my_number_in(name)


def check_header(kind: FileKind, columns: list[str], *, positions: bool = True) -> None:
    """The columns of a CSV header (or the keys of an NDJSON line; ``positions=False``: their
    order means nothing). A message quotes a column only when it is a plain name."""
    required, optional = COLUMNS[kind]

    def where(i: int) -> str:
        return f"column {i + 1}" if positions else "a key"

    for i, name in enumerate(columns):
        if my_number_in(name):
            raise FileFormatError(
                "my_number_detected",
                f"{where(i)}: the name holds a 12-digit individual number (My Number); "
                "individual numbers are never accepted: remove it",
                line=1,
            )
        if _MY_NUMBER_COLUMN.search(name):
            raise FileFormatError(
                "my_number_detected",
                f"{repr(name) if _shown(name) else where(i)} looks like an individual-number (My Number) column; "
                "individual numbers are never accepted: remove the column",
                line=1,
            )
    known = set(required) | set(optional)
    unknown = [(i, c) for i, c in enumerate(columns) if c not in known]
    if unknown:
        named = [repr(c) for _, c in unknown if _shown(c)]
        unnamed = [i for i, c in unknown if not _shown(c)]
        if positions:
            named += [where(i) for i in unnamed]
        elif unnamed:
            many = len(unnamed) > 1
            named.append(f"{len(unnamed)} keys that are not plain names" if many else "a key that is not a plain name")
        raise FileFormatError(
            "unknown_column",
            f"unknown column(s) {', '.join(named)} for a {kind} file; "
            f"expected {', '.join(required)} (optional: {', '.join(optional) or 'none'})",
            line=1,
        )
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise FileFormatError("duplicate_column", f"column(s) given twice: {', '.join(dupes)}", line=1)
    missing = [c for c in required if c not in columns]
    if missing:
        raise FileFormatError("missing_column", f"missing column(s): {', '.join(missing)}", line=1)


@dataclass(slots=True)
class RawRow:
    line: int
    values: dict[str, str]
    error: RowError | None = None  # set when the line itself could not be read
    # set (and ``values`` left empty) when the reader's fast path already validated the line:
    # exactly the record ``validate_eligibility`` would return for it (see ``fast_eligibility``)
    record: EligibilityRecord | None = None


_UNCLOSED = "a quoted field is not closed (a stray '\"'?): this line is rejected, the next lines are read on their own"


class _Feed:
    """The lines of a CSV file after its header, as its one csv reader reads them: the first
    line of a record, then — only while a quoted field is open — the lines after it, up to a
    bad line, the end of the file or ``MAX_LINE`` characters in all; there it ends the input
    of that record (the reader raises, and starts afresh on the next record). Lines given back
    (``back``) are read again first."""

    __slots__ = ("back", "bad", "ended", "lines", "size", "taken")

    def __init__(self, lines: Iterator[tuple[int, str]], bad: dict[int, tuple[str, str]]) -> None:
        self.lines = lines
        self.bad = bad
        self.back: list[tuple[int, str]] = []  # a stack: the next line last
        self.taken: list[tuple[int, str]] = []  # the lines of the current record
        self.size = 0
        self.ended = False

    def next_line(self) -> tuple[int, str] | None:
        return self.back.pop() if self.back else next(self.lines, None)

    def start(self, first: tuple[int, str]) -> None:
        self.taken = [first]
        self.size = -1  # the first line is not handed over yet
        self.ended = False

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self.size < 0:
            self.size = len(self.taken[0][1])
            return self.taken[0][1]
        nxt = None if self.ended else self.next_line()
        if nxt is None or nxt[0] in self.bad or self.size + len(nxt[1]) > MAX_LINE:
            if nxt is not None:
                self.back.append(nxt)
            self.ended = True
            raise StopIteration
        self.taken.append(nxt)
        self.size += len(nxt[1])
        return nxt[1]


@dataclass
class FileReader:
    """Iterates ``RawRow``s of one file; ``encoding`` is known after the first row.

    Every non-blank line after the header is accounted for: it is part of exactly one
    ``RawRow`` (a record, or an error for that line), so ``rows_read`` is the number of records
    and accepted + rejected (+ unchanged) always adds up to it. A CSV record spans several
    lines only when a quoted field holds a line break and the record then parses with the
    file's column count; otherwise its first line is rejected (``malformed_csv``) and the
    lines after it are read again as records of their own: a stray quote costs one line."""

    kind: FileKind
    chunks: Iterable[bytes]
    fmt: Literal["csv", "ndjson"] = "csv"
    encoding: str | None = None
    rows_read: int = 0
    _columns: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """The CSV header's columns (normalized) once the header is read; empty before."""
        return self._columns

    def __iter__(self) -> Iterator[RawRow]:
        head, chunks = _with_head(self.chunks)
        if not head.strip():
            raise FileFormatError("empty_file", "the file is empty")
        self.encoding = detect_encoding(head)
        decoded = _Decoded(_byte_blocks(chunks), self.encoding)
        if self.fmt == "ndjson":
            yield from self._ndjson(decoded)
        else:
            yield from self._csv(decoded)

    def _csv(self, decoded: _Decoded) -> Iterator[RawRow]:
        bad = decoded.bad
        feed = _Feed(iter(decoded), bad)
        back, next_line, lines = feed.back, feed.next_line, feed.lines
        reader = csv.reader(feed, strict=True)  # one reader for the file; ``feed`` decides what it sees

        def record() -> tuple[int, list[str] | None, RowError | None] | None:
            """The next record: (first line, cells, None) or (line, None, its error); None at
            the end. Blank lines come back as an empty list of cells."""
            first = next_line()
            if first is None:
                return None
            number = first[0]
            if number in bad:
                code, message = bad.pop(number)
                return number, None, RowError(number, None, code, message)
            feed.start(first)
            try:
                cells = next(reader, [])
            except csv.Error as exc:
                if len(feed.taken) == 1 and feed.ended:
                    return number, None, RowError(number, None, "malformed_csv", _UNCLOSED)
                if len(feed.taken) == 1:
                    return number, None, RowError(number, None, "malformed_csv", str(exc))
                cells = None
            if len(feed.taken) > 1 and (cells is None or len(cells) != width):
                # a quote left open ran over the next lines and made no record of the file's
                # shape: this line is rejected and the lines it took are read again
                back.extend(reversed(feed.taken[1:]))
                return number, None, RowError(number, None, "malformed_csv", _UNCLOSED)
            return number, cells, None

        width = 0
        head = record()
        if head is None:
            raise FileFormatError("empty_file", "the file has no header row")
        number, header, error = head
        if error is not None or header is None:
            assert error is not None
            raise FileFormatError(error.code, f"header row: {error.message}", line=number)
        columns = [unicodedata.normalize("NFKC", h).strip().lower() for h in header]
        check_header(self.kind, columns)
        self._columns = columns
        width = len(columns)
        fast = fast_eligibility(columns) if self.kind == "eligibility" else None
        while True:
            if fast is not None and not back:
                # a plainly valid row becomes its record here; any other line (quotes, a
                # multi-line field, an error …) goes through ``record`` and the csv reader
                nxt = next(lines, None)
                if nxt is None:
                    return
                if nxt[0] not in bad:
                    found = fast(*nxt)
                    if found is not None:
                        self.rows_read += 1
                        yield RawRow(nxt[0], {}, None, found)
                        continue
                back.append(nxt)
            got = record()
            if got is None:
                return
            number, cells, error = got
            if error is not None:
                self.rows_read += 1
                yield RawRow(number, {}, error)
                continue
            assert cells is not None
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            self.rows_read += 1
            if len(cells) != width:
                yield RawRow(
                    number,
                    {},
                    RowError(number, None, "column_count", f"{len(cells)} values for {width} columns"),
                )
                continue
            yield RawRow(number, dict(zip(columns, cells, strict=True)))

    def _ndjson(self, decoded: _Decoded) -> Iterator[RawRow]:
        checked: set[str] = set()
        required = COLUMNS[self.kind][0]
        for number, text in decoded:
            if number in decoded.bad:
                self.rows_read += 1
                code, message = decoded.bad.pop(number)
                yield RawRow(number, {}, RowError(number, None, code, message))
                continue
            if not text.strip():
                continue
            self.rows_read += 1
            try:
                obj = json.loads(text)
            except RecursionError:
                yield RawRow(number, {}, RowError(number, None, "malformed_json", "the line is nested too deeply"))
                continue
            except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
                message = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number is too long"
                yield RawRow(number, {}, RowError(number, None, "malformed_json", message))
                continue
            if not isinstance(obj, dict):
                yield RawRow(number, {}, RowError(number, None, "malformed_json", "a line must be an object"))
                continue
            keys = [unicodedata.normalize("NFKC", str(k)).strip().lower() for k in obj]
            new = [k for k in keys if k not in checked]
            if new:
                if any(text_problem(k) for k in new):
                    yield RawRow(number, {}, RowError(number, None, "invalid_character", "a key " + _BAD_TEXT))
                    continue
                # the header check, on each key the first time it is seen (missing keys are row errors)
                try:
                    check_header(self.kind, [*new, *(c for c in required if c not in new)], positions=False)
                except FileFormatError as exc:
                    exc.line = number  # the line where the key first appears, not always line 1
                    raise
                checked.update(new)
            values: dict[str, str] = {}
            error = None
            for key, value in zip(keys, obj.values(), strict=True):
                problem = _json_value_problem(key, value)
                if problem is not None:
                    error = RowError(number, key, *problem)
                    break
                values[key] = _json_text(value)
            yield RawRow(number, {} if error else values, error)


_BAD_TEXT = "holds a NUL character or an unpaired surrogate (not storable text)"
_LIST_COLUMNS = frozenset({"disease_category", "disease_valid_from", "disease_valid_to", "disease_self_pay"})


def _json_value_problem(key: str, value: object) -> tuple[str, str] | None:
    """(code, message) when an NDJSON value is not what a column takes: a string, a number,
    true/false or null; a list of those only in the ``disease_*`` columns. Nothing is ever
    joined into a text column."""
    if isinstance(value, str):
        return ("invalid_character", f"{key} {_BAD_TEXT}") if text_problem(value) else None
    if isinstance(value, dict):
        return "invalid_format", f"{key} must be a string, a number or null, not an object"
    if isinstance(value, list):
        if key not in _LIST_COLUMNS:
            return "invalid_format", f"{key} must be a string, a number or null, not a list"
        for item in value:
            if isinstance(item, list | dict):
                return "invalid_format", f"{key} must be a list of strings or numbers"
            if isinstance(item, str) and text_problem(item):
                return "invalid_character", f"{key} {_BAD_TEXT}"
    return None


def _json_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return DISEASE_SEPARATOR.join(_json_text(v) for v in value)
    return str(value)


# ---------------------------------------------------------------- field validation


def _nfkc(value: str) -> str:
    """NFKC (full-width digits → ASCII …), skipped for plain ASCII: the common case, and NFKC
    leaves ASCII unchanged."""
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


class _RowCheck:
    """Collects the errors of one row while converting its fields."""

    __slots__ = ("errors", "flagged", "line", "values")

    def __init__(self, line: int, values: dict[str, str], *, screen: bool = True) -> None:
        self.line = line
        self.values = values
        self.errors: list[RowError] = []
        # every field is screened for a My Number first (whatever its type: a date, a code,
        # a number); a flagged field gets that one error and no other check
        self.flagged: frozenset[str] = _screen(self) if screen else frozenset()

    def fail(self, name: str | None, code: str, message: str) -> None:
        self.errors.append(RowError(self.line, name, code, message))

    def text(self, name: str, *, required: bool = False, max_len: int = MAX_TEXT) -> str | None:
        if name in self.flagged:
            return None
        value = self.values.get(name, "").strip()
        if not value:
            if required:
                self.fail(name, "required", f"{name} is required")
            return None
        if len(value) > max_len:
            self.fail(name, "too_long", f"{name} is longer than {max_len} characters")
            return None
        return value

    def date(self, name: str, *, required: bool = False) -> dt.date | None:
        if name in self.flagged:
            return None
        value = self.values.get(name, "").strip()
        if not value:
            if required:
                self.fail(name, "required", f"{name} is required")
            return None
        return self._parse_date(name, value)

    def _parse_date(self, name: str, value: str) -> dt.date | None:
        value = _nfkc(value)
        try:
            if len(value) == 8 and value.isdigit():
                return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
            if len(value) == 10 and value[4] == "-" and value[7] == "-":
                return dt.date.fromisoformat(value)
        except ValueError:
            pass
        self.fail(name, "invalid_date", f"{name} is not a date (YYYY-MM-DD or YYYYMMDD)")
        return None

    def _given(self, name: str, required: bool) -> str | None:
        """The field's value (NFKC, stripped), or None when it is flagged as a My Number or empty
        (then ``required`` when it must be given)."""
        if name in self.flagged:
            return None
        value = _nfkc(self.values.get(name, "")).strip()
        if not value:
            if required:
                self.fail(name, "required", f"{name} is required")
            return None
        return value

    def code(self, name: str, allowed: frozenset[str], *, required: bool = False, width: int = 0) -> str | None:
        value = self._given(name, required)
        if value is None:
            return None
        if width and value.isdigit() and len(value) < width:
            value = value.zfill(width)  # "1" for "01": spreadsheets drop leading zeros
        if value not in allowed:
            self.fail(name, "invalid_code", f"{name} is not one of {', '.join(sorted(allowed))}")
            return None
        return value

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        integer: bool = False,
        low: float | None = None,
        high: float | None = None,
    ) -> float | None:
        value = self._given(name, required)
        if value is None:
            return None
        try:
            number = float(int(value)) if integer else float(value)
        except ValueError:
            self.fail(name, "invalid_number", f"{name} is not a{'n integer' if integer else ' number'}")
            return None
        if number != number or (low is not None and number < low) or (high is not None and number > high):
            self.fail(name, "out_of_range", f"{name} is out of range ({_range_text(low, high)})")
            return None
        return number

    def ratio(self, name: str, *, required: bool = False) -> int | None:
        value = self.number(name, required=required, integer=True)
        if value is None:
            return None
        if int(value) not in COPAY_RATIOS:
            self.fail(name, "invalid_code", f"{name} must be 10, 20 or 30 (percent)")
            return None
        return int(value)

    def facility_code(self, *, home_nursing: bool = False) -> str | None:
        """A 10-digit 医療機関コード with its check digit (docs/domain.md); with ``home_nursing``
        a 訪問看護ステーション's code (点数表 digit ``6``, the same check digit) is taken too."""
        name = "facility_code"
        value = self._given(name, True)
        if value is None:
            return None
        station = home_nursing and len(value) == 10 and value.isascii() and value.isdigit() and value[2] == "6"
        if station:
            problem = None if luhn_check_digit(value[:9]) == int(value[9]) else "check digit does not match"
        else:
            problem = facility_code_problem(value)
        if problem:
            self.fail(name, "check_digit" if "check digit" in problem else "invalid_format", f"{name} {problem}")
            return None
        return value

    def month(self, name: str, *, required: bool = False, ahead: int = 0) -> dt.date | None:
        """A month ``YYYY-MM`` (or ``YYYYMM``) as the first day of that month, at most ``ahead``
        months after the current one."""
        value = self._given(name, required)
        if value is None:
            return None
        year, month = (value[:4], value[5:]) if len(value) == 7 and value[4] == "-" else (value[:4], value[4:])
        if len(value) in (6, 7) and year.isdigit() and month.isdigit() and len(month) == 2 and 1 <= int(month) <= 12:
            first = dt.date(int(year), int(month), 1)
            latest = _this_month()
            for _ in range(ahead):
                latest = (latest + dt.timedelta(days=32)).replace(day=1)
            if first > latest:
                self.fail(name, "out_of_range", f"{name} is a month that has not begun yet")
                return None
            return first
        self.fail(name, "invalid_month", f"{name} is not a month (YYYY-MM)")
        return None

    def key(self) -> tuple[str, str, str, str, str, str] | None:
        """(insurer_number, symbol, number, branch, symbol_norm, number_norm) or None."""
        before = len(self.errors)
        insurer = _nfkc(self.values.get("insurer_number", "")).strip()
        if "insurer_number" in self.flagged:
            pass
        elif not insurer:
            self.fail("insurer_number", "required", "insurer_number is required")
        else:
            problem = insurer_number_problem(insurer)
            if problem:
                self.fail(
                    "insurer_number",
                    "check_digit" if "check digit" in problem else "invalid_format",
                    f"insurer_number {problem}",
                )
        symbol = self.text("symbol", max_len=40) or ""
        number = self.text("number", required=True, max_len=40) or ""
        branch = _nfkc(self.values.get("branch", "")).strip()
        if "branch" not in self.flagged and not (len(branch) == 2 and branch.isdigit()):
            self.fail("branch", "invalid_format", "branch (枝番) must be 2 digits")
        if len(self.errors) > before:
            return None
        return insurer, symbol, number, branch, normalize_key_text(symbol), normalize_key_text(number)


_JST = dt.timezone(dt.timedelta(hours=9))


def _this_month() -> dt.date:
    """The first day of the current month in Japan."""
    return dt.datetime.now(_JST).date().replace(day=1)


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f"at least {low:g}"
    return f"at most {high:g}" if high is not None else "a finite number"


_DATE_ITEM = re.compile(r"\d{4}-\d{2}-\d{2}|\d{8}")


def _dates_masked(value: str) -> str:
    """A list column's value with each item that is a date written out replaced by ``D``: the
    digits of "2024-04-01|2025-04-01" side by side would read as one 12-digit run, while
    "1234|5678|9012" (no item a date) is screened as it is."""
    return DISEASE_SEPARATOR.join(
        "D" if _DATE_ITEM.fullmatch(item.strip()) else item for item in value.split(DISEASE_SEPARATOR)
    )


def _screen(check: _RowCheck) -> frozenset[str]:
    flagged = [
        name
        for name, value in check.values.items()
        # (the ASCII test inlined: most values are short or plain and need no call)
        if (not value.isascii() or (len(value) >= 12 and _TWELVE_DIGITS.match(value)))
        and my_number_in(_dates_masked(value) if name in _LIST_COLUMNS else value)
    ]
    for name in flagged:
        check.fail(name, "my_number_detected", f"{name} holds a 12-digit individual number (My Number): never accepted")
    return frozenset(flagged)


def _check_order(check: _RowCheck, start: str, end: str, a: dt.date | None, b: dt.date | None) -> None:
    if a is not None and b is not None and b < a:
        check.fail(end, "date_order", f"{end} is before {start}")


# ---------------------------------------------------------------- records


@dataclass(slots=True)
class DiseaseEntry:
    category: str
    valid_from: dt.date
    valid_to: dt.date | None
    self_pay: int | None


@dataclass(slots=True)
class EligibilityRecord:
    """One validated eligibility row. Fields that a ``change``/``loss`` row leaves empty are
    None and carry over from the state before the change."""

    line: int
    action: Literal["add", "change", "loss"]
    insurer_number: str
    symbol: str
    number: str
    branch: str
    symbol_norm: str
    number_norm: str
    name: str | None
    name_kana: str | None
    sex: str | None
    birth_date: dt.date | None
    address: str | None
    post_number: str | None
    personal_family: str | None
    card_classification: str | None
    valid_from: dt.date | None
    valid_to: dt.date | None
    copay_ratio: int | None
    reason_of_loss: str | None
    elderly_ratio: int | None = None
    elderly_valid_from: dt.date | None = None
    elderly_valid_to: dt.date | None = None
    limit_kind: str | None = None
    limit_class: str | None = None
    limit_valid_from: dt.date | None = None
    limit_valid_to: dt.date | None = None
    diseases: list[DiseaseEntry] | None = None


@dataclass(slots=True)
class _PersonRow:
    """The line and the person's key, first in every record of a clinical or expenses row."""

    line: int
    insurer_number: str
    symbol: str
    number: str
    branch: str
    symbol_norm: str
    number_norm: str


@dataclass(slots=True)
class MedicationRecord(_PersonRow):
    dispensed_on: dt.date
    facility_code: str
    drug_code: str
    drug_name: str
    quantity: float
    unit: str
    days: int


@dataclass(slots=True)
class CheckupRecord(_PersonRow):
    checked_on: dt.date
    values: dict[str, float]
    urine_protein: str | None


@dataclass(slots=True)
class ExpenseRecord(_PersonRow):
    service_month: dt.date  # the first day of the month
    facility_code: str
    facility_name: str
    care_kind: str
    days: int
    total_cost: int
    patient_paid: int


@dataclass(slots=True)
class AssistanceRecord:
    """One 医療券 or 調剤券 of a 福祉事務所's monthly file."""

    line: int
    office_code: str
    payer_number: str  # 公費負担者番号, 法別番号 12
    recipient_number: str  # 受給者番号, 7 digits
    name: str
    name_kana: str
    birth_date: dt.date
    sex: str
    month: dt.date  # the first day of the month the ticket is for
    ticket_kind: str  # 1 医療券, 2 調剤券
    facility_code: str  # the 指定医療機関
    valid_from: dt.date
    valid_to: dt.date | None
    self_pay: int | None  # 本人支払額 (yen), when the recipient pays part


@dataclass(slots=True)
class PublicExpenseRecord(_PersonRow):
    """One 公費負担医療受給者証 of an insured person (難病, 小児慢性, 自立支援, municipal programs)."""

    payer_number: str
    recipient_number: str
    valid_from: dt.date
    valid_to: dt.date | None
    monthly_cap: int  # 自己負担上限額 (yen a month); 0: no self-pay


@dataclass(slots=True)
class ProcedureRecord(_PersonRow):
    performed_on: dt.date
    facility_code: str
    procedure_code: str
    procedure_name: str
    kind: str  # 診療 / 手術
    inpatient: bool


Record = (
    EligibilityRecord
    | MedicationRecord
    | CheckupRecord
    | ExpenseRecord
    | ProcedureRecord
    | AssistanceRecord
    | PublicExpenseRecord
)
_POST = re.compile(r"^(\d{3})-?(\d{4})$")
_ACTIONS = frozenset({"add", "change", "loss"})


def validate_eligibility(line: int, values: dict[str, str]) -> tuple[EligibilityRecord | None, list[RowError]]:
    c = _RowCheck(line, values)
    action = values.get("action", "").strip().lower()
    if action not in _ACTIONS and "action" not in c.flagged:
        c.fail("action", "invalid_code" if action else "required", "action must be add, change or loss")
    key = c.key()
    full = action == "add"
    name = c.text("name", required=full)
    kana_raw = c.text("name_kana", required=full)
    kana = normalize_kana(kana_raw) if kana_raw else None
    sex = c.code("sex", SEX_CODES, required=full)
    birth = c.date("birth_date", required=full)
    address = c.text("address")
    post = None
    post_raw = _nfkc(values.get("post_number", "")).strip()
    if post_raw and "post_number" not in c.flagged:
        m = _POST.match(post_raw)
        if m:
            post = f"{m.group(1)}-{m.group(2)}"
        else:
            c.fail("post_number", "invalid_format", "post_number must be 123-4567 or 1234567")
    family = c.code("personal_family", PERSONAL_FAMILY_CODES, required=full)
    card = c.code("card_classification", CARD_CLASSIFICATIONS, required=full, width=2)
    valid_from = c.date("valid_from", required=action in ("add", "change"))
    valid_to = c.date("valid_to", required=action == "loss")
    _check_order(c, "valid_from", "valid_to", valid_from, valid_to)
    ratio = c.ratio("copay_ratio", required=full)
    reason = c.code("reason_of_loss", REASONS_OF_LOSS, required=action == "loss", width=2)
    if birth is not None and valid_from is not None and birth > valid_from and action == "add":
        # a newborn's eligibility starts at birth at the earliest
        c.fail("valid_from", "date_order", "valid_from is before birth_date")
    get = values.get
    elderly_ratio = e_from = e_to = None
    if get("elderly_ratio") or get("elderly_valid_from") or get("elderly_valid_to"):  # all empty: nothing to check
        elderly_ratio = c.ratio("elderly_ratio")
        e_from = c.date("elderly_valid_from", required=elderly_ratio is not None)
        e_to = c.date("elderly_valid_to")
        _check_order(c, "elderly_valid_from", "elderly_valid_to", e_from, e_to)
    l_kind = l_class = l_from = l_to = None
    if get("limit_kind") or get("limit_class") or get("limit_valid_from") or get("limit_valid_to"):
        l_kind = c.code("limit_kind", LIMIT_KINDS, width=2)
        l_class = c.code("limit_class", LIMIT_CLASSES, required=l_kind is not None)
        l_from = c.date("limit_valid_from", required=l_kind is not None)
        l_to = c.date("limit_valid_to")
        _check_order(c, "limit_valid_from", "limit_valid_to", l_from, l_to)
    diseases = _diseases(c)
    if c.errors or key is None:
        return None, c.errors
    insurer, symbol, number, branch, symbol_norm, number_norm = key
    return EligibilityRecord(
        line,
        action,  # type: ignore[arg-type]
        insurer,
        symbol,
        number,
        branch,
        symbol_norm,
        number_norm,
        name,
        kana,
        sex,
        birth,
        address,
        post,
        family,
        card,
        valid_from,
        valid_to,
        ratio,
        reason,
        elderly_ratio,
        e_from,
        e_to,
        l_kind,
        l_class,
        l_from,
        l_to,
        diseases,
    ), []


_DISEASE_COLUMNS = ("disease_category", "disease_valid_from", "disease_valid_to", "disease_self_pay")


def _diseases(c: _RowCheck) -> list[DiseaseEntry] | None:
    """``disease_*`` columns; several entries are separated by ``|`` (NDJSON: lists)."""
    get = c.values.get
    if not (get("disease_category") or get("disease_valid_from") or get("disease_valid_to") or get("disease_self_pay")):
        return None  # the common case, decided without building anything
    raw = {
        k: c.values.get(k, "").strip()
        for k in ("disease_category", "disease_valid_from", "disease_valid_to", "disease_self_pay")
    }
    if c.flagged.intersection(_DISEASE_COLUMNS):
        return None  # already refused as a My Number
    if not raw["disease_category"]:
        if any(raw.values()):
            c.fail("disease_category", "required", "disease_category is required with the other disease_* columns")
        return None
    parts = {k: v.split(DISEASE_SEPARATOR) if v else [] for k, v in raw.items()}
    n = len(parts["disease_category"])
    entries: list[DiseaseEntry] = []
    for i in range(n):
        sub = _RowCheck(c.line, {k: (v[i] if i < len(v) else "") for k, v in parts.items()}, screen=False)
        category = sub.code("disease_category", DISEASE_CATEGORIES, required=True)
        d_from = sub.date("disease_valid_from", required=True)
        d_to = sub.date("disease_valid_to")
        _check_order(sub, "disease_valid_from", "disease_valid_to", d_from, d_to)
        self_pay = sub.number("disease_self_pay", integer=True, low=0, high=1_000_000)
        c.errors.extend(sub.errors)
        if category and d_from:
            entries.append(DiseaseEntry(category, d_from, d_to, None if self_pay is None else int(self_pay)))
    for k in ("disease_valid_from", "disease_valid_to", "disease_self_pay"):
        if len(parts[k]) > n:
            c.fail(k, "invalid_format", f"{k} has more entries than disease_category")
    return entries


def validate_medication(line: int, values: dict[str, str]) -> tuple[MedicationRecord | None, list[RowError]]:
    c = _RowCheck(line, values)
    key = c.key()
    dispensed = c.date("dispensed_on", required=True)
    facility = c.facility_code()
    drug_code = c.text("drug_code", required=True, max_len=20)
    drug_name = c.text("drug_name", required=True)
    quantity = c.number("quantity", required=True, low=0, high=1e7)
    unit = c.text("unit", required=True, max_len=20)
    days = c.number("days", required=True, integer=True, low=0, high=3660)
    if c.errors or key is None:
        return None, c.errors
    assert dispensed and facility and drug_code and drug_name and quantity is not None and unit and days is not None
    return MedicationRecord(line, *key, dispensed, facility, drug_code, drug_name, quantity, unit, int(days)), []


_CHECKUP_RANGES: dict[str, tuple[float, float]] = {
    "height_cm": (30, 250),
    "weight_kg": (1, 400),
    "waist_cm": (20, 250),
    "bmi": (5, 100),
    "systolic": (40, 300),
    "diastolic": (20, 200),
    "hba1c": (2, 20),
    "ldl": (0, 1000),
    "hdl": (0, 300),
    "triglycerides": (0, 10000),
    "ast": (0, 10000),
    "alt": (0, 10000),
    "ggt": (0, 10000),
    "fasting_glucose": (0, 2000),
}
URINE_PROTEIN = frozenset({"-", "±", "+", "1+", "2+", "3+", "4+"})


def validate_checkup(line: int, values: dict[str, str]) -> tuple[CheckupRecord | None, list[RowError]]:
    c = _RowCheck(line, values)
    key = c.key()
    checked = c.date("checked_on", required=True)
    numbers: dict[str, float] = {}
    for name, (low, high) in _CHECKUP_RANGES.items():
        value = c.number(name, low=low, high=high)
        if value is not None:
            numbers[name] = value
    urine = c.code("urine_protein", URINE_PROTEIN)
    if c.errors or key is None:
        return None, c.errors
    assert checked
    return CheckupRecord(line, *key, checked, numbers, urine), []


MAX_YEN = 1_000_000_000  # one person's month at one facility; far above any real claim


def validate_expense(line: int, values: dict[str, str]) -> tuple[ExpenseRecord | None, list[RowError]]:
    """One row of 医療費通知情報: a person's month at one facility (docs/expenses.md)."""
    c = _RowCheck(line, values)
    key = c.key()
    month = c.month("service_month", required=True)
    care_kind = c.code("care_kind", frozenset(CARE_KINDS), required=True)
    facility = c.facility_code(home_nursing=care_kind == "5")
    facility_name = c.text("facility_name", required=True)
    last_day = 31 if month is None else calendar.monthrange(month.year, month.month)[1]
    days = c.number("days", required=True, integer=True, low=0, high=last_day)
    total = c.number("total_cost", required=True, integer=True, low=0, high=MAX_YEN)
    paid = c.number("patient_paid", required=True, integer=True, low=0, high=MAX_YEN)
    if total is not None and paid is not None and paid > total:
        c.fail("patient_paid", "exceeds_total", "patient_paid is more than total_cost")
    if c.errors or key is None:
        return None, c.errors
    assert month and facility and facility_name and care_kind and days is not None
    assert total is not None and paid is not None
    return ExpenseRecord(line, *key, month, facility, facility_name, care_kind, int(days), int(total), int(paid)), []


ASSISTANCE_LAW = "12"  # 法別番号 of 生活保護 (医療扶助)
TICKET_KINDS = frozenset({"1", "2"})  # 1 医療券, 2 調剤券
_OFFICE_CODE = re.compile(r"^[0-9]{6}$")


def payer_number_problem(value: str) -> str | None:
    """Why ``value`` is not a 公費負担者番号 (8 digits: 法別番号 2 + 都道府県 2 + 実施機関 3 + check
    digit, the insurer number's Luhn rule; docs/domain.md), or None."""
    if len(value) != 8:
        return "must be 8 digits"
    return insurer_number_problem(value)


def recipient_number_problem(value: str) -> str | None:
    """Why ``value`` is not a 受給者番号 (7 digits: 6 + the same Luhn check digit), or None."""
    if len(value) != 7 or not value.isascii() or not value.isdigit():
        return "must be 7 digits"
    return None if luhn_check_digit(value[:6]) == int(value[6]) else "check digit does not match"


def _checked_number(c: _RowCheck, name: str, problem: Callable[[str], str | None]) -> str | None:
    value = c._given(name, True)
    if value is None:
        return None
    why = problem(value)
    if why:
        c.fail(name, "check_digit" if "check digit" in why else "invalid_format", f"{name} {why}")
        return None
    return value


def validate_assistance(line: int, values: dict[str, str]) -> tuple[AssistanceRecord | None, list[RowError]]:
    """One 医療券/調剤券 row of a 福祉事務所 (docs/assistance.md)."""
    c = _RowCheck(line, values)
    office = c._given("office_code", True)
    if office is not None and not _OFFICE_CODE.match(office):
        c.fail("office_code", "invalid_format", "office_code must be the 6-digit 福祉事務所 code")
        office = None
    payer = _checked_number(c, "payer_number", payer_number_problem)
    if payer is not None and payer[:2] != ASSISTANCE_LAW:
        c.fail("payer_number", "invalid_code", "payer_number of 医療扶助 has 法別番号 12")
        payer = None
    recipient = _checked_number(c, "recipient_number", recipient_number_problem)
    name = c.text("name", required=True)
    kana_raw = c.text("name_kana", required=True)
    sex = c.code("sex", SEX_CODES, required=True)
    birth = c.date("birth_date", required=True)
    month = c.month("month", required=True, ahead=1)  # next month's tickets are issued ahead
    kind = c.code("ticket_kind", TICKET_KINDS, required=True)
    facility = c.facility_code()
    valid_from = c.date("valid_from", required=True)
    valid_to = c.date("valid_to")
    _check_order(c, "valid_from", "valid_to", valid_from, valid_to)
    if month is not None and valid_from is not None:
        last = (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        if not month <= valid_from <= last:
            c.fail("valid_from", "out_of_range", "valid_from is not in the ticket's month")
        if valid_to is not None and valid_to > last:
            c.fail("valid_to", "out_of_range", "valid_to is after the ticket's month")
    self_pay = c.number("self_pay", integer=True, low=0, high=MAX_YEN)
    if c.errors:
        return None, c.errors
    assert office and payer and recipient and name and kana_raw and sex and birth and month and kind
    assert facility and valid_from
    return AssistanceRecord(
        line, office, payer, recipient, name, normalize_kana(kana_raw), birth, sex, month, kind, facility,
        valid_from, valid_to, None if self_pay is None else int(self_pay),
    ), []


def validate_public_expense(line: int, values: dict[str, str]) -> tuple[PublicExpenseRecord | None, list[RowError]]:
    """One 公費負担医療受給者証 row, linked to the insured person by their insurance key."""
    c = _RowCheck(line, values)
    payer = _checked_number(c, "payer_number", payer_number_problem)
    if payer is not None and payer[:2] == ASSISTANCE_LAW:
        c.fail("payer_number", "invalid_code", "医療扶助 (法別番号 12) is sent by the 福祉事務所 as kind assistance")
        payer = None
    recipient = _checked_number(c, "recipient_number", recipient_number_problem)
    key = c.key()
    valid_from = c.date("valid_from", required=True)
    valid_to = c.date("valid_to")
    _check_order(c, "valid_from", "valid_to", valid_from, valid_to)
    cap = c.number("monthly_cap", required=True, integer=True, low=0, high=MAX_YEN)
    if c.errors or key is None:
        return None, c.errors
    assert payer and recipient and valid_from and cap is not None
    return PublicExpenseRecord(line, *key, payer, recipient, valid_from, valid_to, int(cap)), []


_PROCEDURE_CODE = re.compile(r"[0-9]{9}")
_INPATIENT = {"0": False, "1": True}


def validate_procedure(line: int, values: dict[str, str]) -> tuple[ProcedureRecord | None, list[RowError]]:
    """One 診療行為 of a claim (docs/uploads.md, "procedures"): a 9-digit 診療行為コード, the kind
    (診療 or 手術) and whether it was done in hospital (``inpatient`` 1) or not (0)."""
    c = _RowCheck(line, values)
    key = c.key()
    performed = c.date("performed_on", required=True)
    if performed is not None and performed > dt.datetime.now(_JST).date():
        c.fail("performed_on", "out_of_range", "performed_on is a day that has not come yet")
        performed = None
    facility = c.facility_code()
    code = c._given("procedure_code", True)
    if code is not None and not _PROCEDURE_CODE.fullmatch(code):
        c.fail("procedure_code", "invalid_format", "procedure_code (診療行為コード) must be 9 digits")
        code = None
    name = c.text("procedure_name", required=True)
    kind = c.code("kind", PROCEDURE_KINDS, required=True)
    inpatient = c.code("inpatient", frozenset(_INPATIENT), required=True)
    if c.errors or key is None:
        return None, c.errors
    assert performed and facility and code and name and kind and inpatient is not None
    return ProcedureRecord(line, *key, performed, facility, code, name, kind, _INPATIENT[inpatient]), []


VALIDATORS = {
    "eligibility": validate_eligibility,
    "medications": validate_medication,
    "checkups": validate_checkup,
    "expenses": validate_expense,
    "assistance": validate_assistance,
    "public_expense": validate_public_expense,
    "procedures": validate_procedure,
}


@dataclass(slots=True)
class Checked:
    """A line of the file after validation: a record, or the reasons it was rejected."""

    line: int
    record: Record | None
    errors: list[RowError]
    warnings: list[RowError] = field(default_factory=list)


OUTSIDE_JIS_X0208 = "outside_jis_x0208"  # the warning's stable code
# the text fields of an eligibility record that clinics show and print (charset warnings)
CHARSET_FIELDS = ("name", "name_kana", "address")


def _fits_shift_jis(text: str) -> bool:
    try:
        text.encode("shift_jis")
    except UnicodeEncodeError:
        return False
    return True


def charset_warnings(record: EligibilityRecord) -> list[RowError]:
    """One ``outside_jis_x0208`` warning per name/kana/address field holding characters outside
    JIS X 0208 (schemas/charset.py): the row is accepted and stored as sent, but clinic software
    that reads Shift_JIS shows such characters as 「●」 (docs/uploads.md)."""
    joined = f"{record.name or ''}{record.name_kana or ''}{record.address or ''}"
    if joined.isascii() or _fits_shift_jis(joined):  # the common case: one check in C per row
        return []
    warnings = []
    for name in CHARSET_FIELDS:
        value = getattr(record, name)
        if not value:
            continue
        outside = outside_jis_x0208(value)
        if outside:
            warnings.append(
                RowError(
                    record.line,
                    name,
                    OUTSIDE_JIS_X0208,
                    f"{name} に JIS X 0208 外の文字があります: {describe(outside)}"
                    "(そのまま保存します。Shift_JIS の医療機関システムでは代替文字で表示されます)",
                )
            )
    return warnings


def check_rows(reader: FileReader) -> Iterator[Checked]:
    """Validate every row of ``reader``; raises FileFormatError for file-level problems.

    A row the reader's fast path already turned into a record (``RawRow.record``, CSV
    eligibility files) is passed on as it is: that record is the one ``validate_eligibility``
    returns for the row, so the records and the errors are the same either way."""
    validate = VALIDATORS[reader.kind]
    for raw in reader:
        if raw.record is not None:
            record = raw.record
            warned = charset_warnings(record) if isinstance(record, EligibilityRecord) else []
            yield Checked(raw.line, record, [], warned)
            continue
        if raw.error is not None:
            yield Checked(raw.line, None, [raw.error])
            continue
        checked, errors = validate(raw.line, raw.values)
        warnings = charset_warnings(checked) if isinstance(checked, EligibilityRecord) else []
        yield Checked(raw.line, checked, errors, warnings)


# ---------------------------------------------------------------- the fast path for eligibility rows
#
# Most rows of an eligibility file are plain ``add`` rows: no quotes, ASCII codes and dates, no
# optional group. ``fast_eligibility`` recognises such a line with one regular expression (built
# for the file's column order) and builds its record directly, skipping the csv reader, the
# dict and the per-field checks. It only ever *accepts*: every line it is not sure of — and so
# every line with an error — goes through the csv reader and ``validate_eligibility``, which
# alone produce rejects. Each pattern below accepts only values that ``_RowCheck`` would take
# unchanged (no strip, NFKC or zero-fill to apply); tests/unit/loader/test_fast_path.py checks
# that the two paths agree.

# an unquoted CSV field for ``_RowCheck.text``: 1..MAX_TEXT characters, no whitespace at either
# end (``\s`` and ``str.strip`` agree on whitespace), fewer than 12 digits (so
# ``my_number_in`` is False: it needs 12), no character that NFKC turns into digits
# (``SPECIAL_DIGITS``), nothing the csv reader treats specially
_FAST_TEXT = (
    rf"(?!(?:[^,\d\n]*\d){{12}})(?![^,\n]*[{SPECIAL_DIGITS}])"
    rf'[^\s,"\x00](?:[^,"\x00\r\n]{{0,{MAX_TEXT - 2}}}[^\s,"\x00])?'
)
_FAST_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}"
_IDEOGRAPHIC_SPACE = "\u3000"


def _fast_codes(allowed: frozenset[str], width: int = 0) -> str:
    """The codes that ``_RowCheck.code`` accepts as they are (no NFKC, strip or zero-fill)."""
    same = [
        v
        for v in allowed
        if v.isascii()
        and v == v.strip()
        and v == unicodedata.normalize("NFKC", v)
        and not (width and v.isdigit() and len(v) < width)
        and not set(v) & set(',"')
    ]
    if not same:
        return "(?!)"  # matches nothing: every such row takes the full path
    return "|".join(re.escape(v) for v in sorted(same, key=lambda v: (-len(v), v)))


_FAST_RATIO = "|".join(str(r) for r in sorted(COPAY_RATIOS, reverse=True))
_FAST_OPTIONAL_DATE = f"(?:{_FAST_DATE})?"
_FAST_PATTERNS: dict[str, str] = {
    "action": "add",
    "insurer_number": "[0-9]{8}|[0-9]{6}",
    "symbol": "[0-9A-Za-z]{0,11}",
    "number": "[0-9A-Za-z]{1,11}",
    "branch": "[0-9]{2}",
    "name": _FAST_TEXT,
    "name_kana": _FAST_TEXT,
    "sex": _fast_codes(SEX_CODES),
    "birth_date": _FAST_DATE,
    "address": f"(?:{_FAST_TEXT})?",
    "post_number": "(?:[0-9]{3}-?[0-9]{4})?",
    "personal_family": _fast_codes(PERSONAL_FAMILY_CODES),
    "card_classification": _fast_codes(CARD_CLASSIFICATIONS, 2),
    "valid_from": _FAST_DATE,
    "valid_to": f"(?:{_FAST_DATE})?",
    "copay_ratio": _FAST_RATIO,
    "reason_of_loss": f"(?:{_fast_codes(REASONS_OF_LOSS, 2)})?",
    # the optional groups: all empty (a row that uses the specific-disease group takes the full path)
    **dict.fromkeys(ELIGIBILITY_OPTIONAL, ""),
}
# the second pattern, tried on a line the first one misses: 記号・番号 may hold full-width digits
# too (stored as written, compared by ``normalize_key_text``, as ``_RowCheck.key`` does; at most 11
# characters, so never 12 digits), and the 高齢受給者 and 限度額 groups are captured, each value as
# ``_RowCheck`` takes it unchanged, or empty; ``fast`` takes a group only when it is whole (any
# other mix takes the full path). Kept apart so the plain line pays for none of it.
_RICH_KEY_CHAR = "[0-9A-Za-z\uff10-\uff19]"
_RICH_PATTERNS: dict[str, str] = {
    **_FAST_PATTERNS,
    "symbol": _RICH_KEY_CHAR + "{0,11}",
    "number": _RICH_KEY_CHAR + "{1,11}",
    "elderly_ratio": f"(?:{_FAST_RATIO})?",
    "elderly_valid_from": _FAST_OPTIONAL_DATE,
    "elderly_valid_to": _FAST_OPTIONAL_DATE,
    "limit_kind": f"(?:{_fast_codes(LIMIT_KINDS, 2)})?",
    "limit_class": f"(?:{_fast_codes(LIMIT_CLASSES)})?",
    "limit_valid_from": _FAST_OPTIONAL_DATE,
    "limit_valid_to": _FAST_OPTIONAL_DATE,
}
_FAST_FIELDS = tuple(c for c in ELIGIBILITY_COLUMNS if c != "action")  # what a fast-path line captures
# what the second pattern captures too, in the order ``fast`` unpacks them: elderly, then limit
_FAST_GROUPS = tuple(c for c in ELIGIBILITY_OPTIONAL if c not in _DISEASE_COLUMNS)


def _line_pattern(columns: list[str], patterns: dict[str, str], captured: Collection[str]) -> re.Pattern[str]:
    """One line of these columns; a group for each of ``captured``, in column order."""
    return re.compile(
        ",".join(f"({patterns[c]})" if c in captured else f"(?:{patterns[c]})" for c in columns) + "\r?\n?"
    )


FastPath = Callable[[int, str], EligibilityRecord | None]
_FAST_CACHE: dict[tuple[str, ...], FastPath | None] = {}


def _fast_date(value: str) -> dt.date | None:
    """``_RowCheck._parse_date`` for a value already of one of its two ASCII shapes."""
    try:
        if len(value) == 8:
            return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _fast_span(start: str, end: str) -> tuple[dt.date, dt.date | None] | None:
    """A group's start date and its optional end, not before the start (values of ``_FAST_DATE``'s
    shapes or empty); None when the start is missing or either is not a date or the end is
    before the start: the full path words why."""
    begin = _fast_date(start) if start else None
    if begin is None:
        return None
    if not end:
        return begin, None
    finish = _fast_date(end)
    if finish is None or finish < begin:
        return None
    return begin, finish


def fast_eligibility(columns: list[str]) -> FastPath | None:
    """For a CSV eligibility file with these (normalized) columns: a function of a physical line
    that returns the record of a plainly valid ``add`` row — exactly what ``validate_eligibility``
    returns for it — or None when the line needs the csv reader and the full validation."""
    key = tuple(columns)
    if key in _FAST_CACHE:
        return _FAST_CACHE[key]
    if any(c not in _FAST_PATTERNS for c in columns) or len(set(columns)) != len(columns):
        _FAST_CACHE[key] = None
        return None
    at = {c: i + 1 for i, c in enumerate(c for c in columns if c in _FAST_FIELDS)}
    picks = tuple(at[c] for c in _FAST_FIELDS)
    rich_captured = (*_FAST_FIELDS, *_FAST_GROUPS)
    rich_at = {c: i + 1 for i, c in enumerate(c for c in columns if c in rich_captured)}
    group_picks = tuple(rich_at.get(c, 0) for c in _FAST_GROUPS)  # 0: the file lacks the column
    all_groups = all(group_picks)
    # one call for every capture: the required fields, then the groups' when the file has them all
    rich_picks = tuple(rich_at[c] for c in _FAST_FIELDS) + (group_picks if all_groups else ())
    pattern = _line_pattern(columns, _FAST_PATTERNS, _FAST_FIELDS)
    rich_match = _line_pattern(columns, _RICH_PATTERNS, rich_captured).fullmatch
    key_text = normalize_key_text
    match = pattern.fullmatch
    problem = insurer_number_problem
    nfkc = unicodedata.normalize
    wide_space = _IDEOGRAPHIC_SPACE
    date_of = _fast_date

    def fast(line: int, text: str) -> EligibilityRecord | None:
        m = match(text)
        rich = m is None
        if m is None:
            m = rich_match(text)
            if m is None:
                return None
            values = m.group(*rich_picks)
        else:
            values = m.group(*picks)
        (insurer, symbol, number, branch, name, kana, sex, birth_s, address, post, family, card,
         from_s, to_s, ratio, reason) = values[:16]
        if problem(insurer) is not None:
            return None
        birth = date_of(birth_s)
        valid_from = date_of(from_s)
        if birth is None or valid_from is None or birth > valid_from:
            return None
        valid_to = None
        if to_s:
            valid_to = date_of(to_s)
            if valid_to is None or valid_to < valid_from:
                return None
        e_ratio = l_kind = l_class = None
        e_from = e_to = l_from = l_to = None
        symbol_norm, number_norm = symbol, number  # the first pattern: ASCII letters and digits
        if rich:
            symbol_norm, number_norm = key_text(symbol), key_text(number)
            if all_groups:
                er, ef, et, lk, lc, lf, lt = values[16:]
            else:
                er, ef, et, lk, lc, lf, lt = (m.group(i) if i else "" for i in group_picks)
            if er or ef or et:  # 高齢受給者: a ratio and its start, maybe an end
                span = _fast_span(ef, et) if er else None
                if span is None:
                    return None
                e_ratio, (e_from, e_to) = int(er), span
            if lk or lc or lf or lt:  # 限度額適用: a kind, a class and a start, maybe an end
                span = _fast_span(lf, lt) if lk and lc else None
                if span is None:
                    return None
                l_kind, l_class, (l_from, l_to) = lk, lc, span
        if post and len(post) == 7:
            post = f"{post[:3]}-{post[3:]}"
        # normalize_kana: NFKC maps U+3000 to a space anyway; replacing it first lets NFKC's
        # quick check see an already normalized string (same result, far cheaper)
        kana = nfkc("NFKC", kana.replace(wide_space, " ")).strip()
        return EligibilityRecord(
            line,
            "add",
            insurer,
            symbol,
            number,
            branch,
            symbol_norm,
            number_norm,
            name,
            kana,
            sex,
            birth,
            address or None,
            post or None,
            family,
            card,
            valid_from,
            valid_to,
            int(ratio),
            reason or None,
            e_ratio,
            e_from,
            e_to,
            l_kind,
            l_class,
            l_from,
            l_to,
        )

    if len(_FAST_CACHE) < 64:
        _FAST_CACHE[key] = fast
    return fast
