"""Face files: one result per card check at the reader, written to ``face/`` for clinic software."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

from clinic_terminal.xmlif.clinical import remember_visit
from clinic_terminal.xmlif.documents import render_xml, to_json
from clinic_terminal.xmlif.files import write_atomic
from clinic_terminal.xmlif.model import ConsentChoices, XmlEncoding
from clinic_terminal.xmlif.render import JST
from clinic_terminal.xmlif.service import card_result
from clinic_terminal.xmlif.state import TerminalState
from schemas.eligibility import EligibilityResult
from schemas.identifiers import facility_code_problem

FACE_DIR = "face"
_lock = threading.Lock()
_reserved: set[str] = set()  # names handed out and not yet written (threads of this process)


def face_file_id(facility_code: str, now: dt.datetime, folder: Path) -> str:
    """``OQSsiquc01res_face_<facility code><20 chars>_<yyyyMMddHHmmss>`` not yet used in ``folder``.

    The 20 characters are the execution time to the microsecond (yyyyMMddHHmmssffffff), moved
    on by one microsecond while a file of that name exists."""
    stamp = now.strftime("%Y%m%d%H%M%S")
    with _lock:
        for step in range(1_000_000):
            unique = f"{stamp}{(now.microsecond + step) % 1_000_000:06d}"
            file_id = f"OQSsiquc01res_face_{facility_code}{unique}_{stamp}"
            # lexists: any entry counts as taken, a dangling link too (never replaced or followed)
            if file_id not in _reserved and not os.path.lexists(folder / f"{file_id}.xml"):
                _reserved.add(file_id)
                return file_id
    raise RuntimeError("no free face file name within this second")


def write_face_result(
    root: Path,
    result: EligibilityResult,
    consents: ConsentChoices | None,
    facility_code: str,
    *,
    encoding: XmlEncoding = "utf-8",
    now: dt.datetime | None = None,
    state: TerminalState | None = None,
) -> Path:
    """Write the face file of a card check and keep its JSON rendering; returns the file's path.

    ReferenceClassification 1, no search-info echo, a system-made ArbitraryFileIdentifier (the
    file's 30-character facility code + unique part), every consent item, and the 照会番号
    registered for the person (if any)."""
    problem = facility_code_problem(facility_code)
    if problem:
        raise ValueError(f"facility code {facility_code!r}: {problem}")
    now = now or dt.datetime.now(JST)
    folder = Path(root) / FACE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    own_state = state is None
    st = TerminalState.for_root(Path(root)) if state is None else state
    try:
        file_id = face_file_id(facility_code, now, folder)
        arbitrary = file_id.split("_")[2]
        terminal_result = card_result(
            st, file_id, result, consents, facility_code, arbitrary_file_identifier=arbitrary, now=now
        )
        st.save_result(file_id, "face", to_json(terminal_result))
        remember_visit(st, result, facility_code)
        final = folder / f"{file_id}.xml"
        try:
            write_atomic(final, render_xml(terminal_result, encoding))
        finally:
            with _lock:
                _reserved.discard(file_id)
        return final
    finally:
        if own_state:
            st.close()


def release_face_file_id(file_id: str) -> None:
    """Hand back a name from :func:`face_file_id` once its file is written (or given up)."""
    with _lock:
        _reserved.discard(file_id)
