"""Follow-up results (後日確認): the answer to a single query the server could not answer at the time.

When the re-check of a journalled XML query is made (``clinic_terminal.outage.Rechecker``), the
terminal writes ``res/<original result name>_followup.xml``: the same family and layout as the
original answer (``OQSsiquc01res``), the same ``ArbitraryFileIdentifier`` and search-info echo,
``QualificationConfirmationDate`` = the visit date, and the eligibility as of that date.
``ProcessingResultCode`` is ``followup`` with a Japanese ``ProcessingResultMessage`` naming the
original file. A re-check the server refused is written the same way with ``SegmentOfResult`` 9
and its ``ErrorCode``. See docs/xml-interface.md ("Outage mode").

The kiosk's card checks have face files instead: :func:`write_face_outage` writes the face file of
a card check the server could not answer (``SegmentOfResult`` 9, ``ErrorCode`` ``unavailable``), and
:func:`write_face_followup` the face file of its re-check by number (``ProcessingResultCode``
``followup``, ``QualificationConfirmationDate`` = the visit date).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from clinic_terminal.outage.journal import OutageEntry
from clinic_terminal.xmlif.documents import render_xml, to_json
from clinic_terminal.xmlif.face import FACE_DIR, face_file_id, release_face_file_id, write_face_result
from clinic_terminal.xmlif.files import RESULT_FILE_MODE, write_atomic
from clinic_terminal.xmlif.model import SEGMENT_ABNORMAL, ResultHeader, TerminalResult, XmlEncoding
from clinic_terminal.xmlif.render import JST
from clinic_terminal.xmlif.service import (
    FOLLOWUP_SUFFIX,
    eligibility_person_key,
    error_message,
    search_info_from_json,
)
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import RES_DIR
from schemas.eligibility import Processing

log = logging.getLogger(__name__)

FOLLOWUP_CODE = "followup"


FACE_OUTAGE_TAIL = "。申立書で受付してください。復旧後に番号で再照会し、結果を face/ に出力します"


def followup_message(entry: OutageEntry, original: str) -> str:
    return f"後日確認: {entry.visit_date:%Y年%m月%d日}の照会（{original}.xml）を資格確認サーバの復旧後に再照会しました"


def face_followup_message(entry: OutageEntry) -> str:
    return (f"後日確認: {entry.visit_date:%Y年%m月%d日}のカードでの確認（申立書で受付）を"
            "資格確認サーバの復旧後に番号で再照会しました")


def followup_result(
    entry: OutageEntry, state: TerminalState, *, now: dt.datetime | None = None
) -> TerminalResult | None:
    """The follow-up result of a resolved XML entry (None for an entry that is not one)."""
    xml = entry.xml
    if entry.source != "xml" or xml is None or entry.outcome is None:
        return None
    original = str(xml["file_id"])
    info = search_info_from_json(xml["search_info"])
    now = now or dt.datetime.now(JST)
    file_id = f"{original}{FOLLOWUP_SUFFIX}"
    header = ResultHeader(
        execution_time=now,
        confirmation_date=entry.visit_date,
        facility_code=str(xml["facility_code"]),
        arbitrary_file_identifier=xml.get("arbitrary_file_identifier"),
    )
    eligibility = entry.result
    if eligibility is None:  # the server refused the re-check for good
        code = entry.error_code or "error"
        header = ResultHeader(**{**header.__dict__, "segment": SEGMENT_ABNORMAL, "error_code": code,
                                 "error_message": error_message(code, followup_message(entry, original))})
        return TerminalResult(file_id, header, 2, None, search_info=info, kind="followup")
    if eligibility.processing.status == "ok":
        eligibility = eligibility.model_copy(update={"processing": Processing(
            status="ok", code=FOLLOWUP_CODE, message=followup_message(entry, original))})
    reference = state.reference_number(eligibility_person_key(eligibility, info.key))
    return TerminalResult(file_id, header, 2, eligibility, search_info=info, reference_number=reference,
                          kind="followup")


def write_followup(
    root: Path, state: TerminalState, entry: OutageEntry, *, encoding: XmlEncoding = "utf-8",
    now: dt.datetime | None = None, mode: int = RESULT_FILE_MODE,
) -> Path | None:
    """Write ``res/<original>_followup.xml`` once (an existing file is never rewritten)."""
    result = followup_result(entry, state, now=now)
    if result is None:
        return None
    final = Path(root) / RES_DIR / f"{result.file_id}.xml"
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        return final
    state.save_result(result.file_id, result.kind, to_json(result))
    write_atomic(final, render_xml(result, encoding), mode=mode)
    log.info("follow-up result %s written (%s)", final.name, entry.outcome)
    return final


def write_face_outage(
    root: Path, facility_code: str, *, encoding: XmlEncoding = "utf-8", now: dt.datetime | None = None,
) -> Path:
    """The face file of a card check the server could not answer: abnormal end, ``unavailable``."""
    now = now or dt.datetime.now(JST)
    folder = Path(root) / FACE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    file_id = face_file_id(facility_code, now, folder)
    try:
        header = ResultHeader(
            execution_time=now, confirmation_date=now.astimezone(JST).date(), facility_code=facility_code,
            arbitrary_file_identifier=file_id.split("_")[2], segment=SEGMENT_ABNORMAL, error_code="unavailable",
            error_message=error_message("unavailable") + FACE_OUTAGE_TAIL,
        )
        result = TerminalResult(file_id, header, 1, None, kind="face")
        with TerminalState.for_root(Path(root)) as state:
            state.save_result(file_id, "face", to_json(result))
        final = folder / f"{file_id}.xml"
        write_atomic(final, render_xml(result, encoding))
    finally:
        release_face_file_id(file_id)
    return final


def write_face_followup(
    root: Path, entry: OutageEntry, facility_code: str, *, encoding: XmlEncoding = "utf-8",
    now: dt.datetime | None = None,
) -> Path | None:
    """The face file of a kiosk card entry re-checked by number (None when there is no result)."""
    result = entry.result
    if entry.kind != "card" or result is None:
        return None
    if result.processing.status == "ok":
        result = result.model_copy(update={"processing": Processing(
            status="ok", code=FOLLOWUP_CODE, message=face_followup_message(entry))})
    return write_face_result(root, result, None, facility_code, encoding=encoding, now=now)
