"""診療・手術 information (the ``procedures`` upload kind) on both backends: rows accepted and
refused with line, field and code; re-sends; Shift_JIS and NDJSON; the facility's read under the
patient's ``clinical`` consent (physician, dentist; not the pharmacist), logged; the patient's own
read; one retention period (``SHIKAKU_CLINICAL_RETENTION_YEARS``) for drugs, checkups and these."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from schemas.insurer_files import PROCEDURE_COLUMNS
from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.config import get_settings
from shikaku_server.eligibility.service import today_jst
from testbed.pki import IssuedCertificate
from tests.conftest import FACILITY_CODE, auth
from tests.factories import INSURER_A, csv_bytes
from tests.integration.test_card_api import problem_code
from tests.integration.test_consent_api import card, consent, visit
from tests.integration.test_eligibility_api import upload
from tests.integration.test_me_api import me

__all__ = ["card"]  # the fixture, shared with test_consent_api

TODAY = today_jst()
APPENDECTOMY = "虫垂切除術（虫垂周囲膿瘍を伴わないもの）"


def procedure(**over: Any) -> dict[str, Any]:
    return {
        "insurer_number": INSURER_A,
        "symbol": "123",
        "number": "4567",
        "branch": "00",
        "performed_on": (TODAY - dt.timedelta(days=60)).isoformat(),
        "facility_code": FACILITY_CODE,
        "procedure_code": "150060010",
        "procedure_name": APPENDECTOMY,
        "kind": "手術",
        "inpatient": "1",
    } | over


def procedures_csv(rows: list[dict[str, Any]]) -> bytes:
    return csv_bytes(list(PROCEDURE_COLUMNS), rows)


def send(client: TestClient, token: str, body: bytes, media: str = "text/csv") -> dict[str, Any]:
    return upload(client, token, body, kind="procedures", content_type=media)


def stored(session_factory: Any) -> list[tuple[Any, ...]]:
    with session_factory() as s:
        rows = s.execute(
            sa.text(
                "SELECT performed_on, facility_code, procedure_code, procedure_name, kind, inpatient"
                " FROM procedure ORDER BY performed_on, procedure_code"
            )
        ).all()
    return [(str(r[0]), r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


@pytest.fixture
def with_procedures(client: TestClient, tokens: dict[str, str], card: IssuedCertificate) -> IssuedCertificate:
    """The ``card`` person with a surgery (2 months ago), an outpatient 診療 (4 years ago) and
    one 6 years ago (outside the 5 years)."""
    rows = [
        procedure(),
        procedure(
            performed_on=(TODAY - dt.timedelta(days=4 * 365)).isoformat(),
            procedure_code="111000110",
            procedure_name="初診料",
            kind="診療",
            inpatient="0",
        ),
        procedure(
            performed_on=(TODAY - dt.timedelta(days=6 * 365)).isoformat(),
            procedure_code="160000310",
            procedure_name="末梢血液一般検査",
            kind="診療",
            inpatient="0",
        ),
    ]
    assert send(client, tokens["insurer"], procedures_csv(rows))["accepted"] == 3
    return card


# ---------------------------------------------------------------- the upload


def test_rows_are_checked_and_refused_with_line_field_and_code(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()
    rows = [
        procedure(),  # line 2: fine
        procedure(procedure_code="15006001"),  # 8 digits
        procedure(procedure_code="1500600100"),  # 10 digits
        procedure(kind="処置"),
        procedure(inpatient="yes"),
        procedure(performed_on=tomorrow),
        procedure(facility_code="0110113710"),  # check digit
        procedure(procedure_name=""),
        procedure(number="0000"),  # nobody
        procedure(procedure_code="123456789018"),  # a My Number
    ]
    out = send(client, tokens["insurer"], procedures_csv(rows))
    assert (out["accepted"], out["rejected"]) == (1, 9)
    got = {(e["line"], e["field"], e["code"]) for e in out["errors"]}
    assert got == {
        (3, "procedure_code", "invalid_format"),
        (4, "procedure_code", "invalid_format"),
        (5, "kind", "invalid_code"),
        (6, "inpatient", "invalid_code"),
        (7, "performed_on", "out_of_range"),
        (8, "facility_code", "check_digit"),
        (9, "procedure_name", "required"),
        (10, "number", "unknown_person"),
        (11, "procedure_code", "my_number_detected"),
    }
    assert "123456789018" not in json.dumps(out)  # never echoed
    assert stored(session_factory) == [
        ((TODAY - dt.timedelta(days=60)).isoformat(), FACILITY_CODE, "150060010", APPENDECTOMY, "手術", True)
    ]


def test_a_resend_changes_nothing_and_shift_jis_and_ndjson_load_the_same(
    client: TestClient, tokens: dict[str, str], card: IssuedCertificate, session_factory: Any
) -> None:
    rows = [procedure(), procedure(procedure_code="111000110", procedure_name="初診料", kind="診療", inpatient="0")]
    first = send(client, tokens["insurer"], procedures_csv(rows))
    assert (first["accepted"], first["rejected"]) == (2, 0)
    again = send(client, tokens["insurer"], procedures_csv(rows))
    assert again["duplicate"] is True and (again["accepted"], again["upload_id"]) == (0, first["upload_id"])
    after = stored(session_factory)
    sjis = procedures_csv(rows).decode().encode("cp932")
    cumulative = send(client, tokens["insurer"], sjis)
    assert cumulative["duplicate"] is False
    assert (cumulative["accepted"], cumulative["rejected"], cumulative["unchanged"]) == (0, 0, 2)
    ndjson = "\n".join(json.dumps(r | {"inpatient": r["inpatient"] == "1"}, ensure_ascii=False) for r in rows)
    out = send(client, tokens["insurer"], ndjson.encode(), media="application/x-ndjson")
    assert (out["accepted"], out["rejected"], out["unchanged"]) == (0, 0, 2)
    assert stored(session_factory) == after
    # a changed name for the same day, facility and code is an update, not a second row
    renamed = send(client, tokens["insurer"], procedures_csv([procedure(procedure_name="虫垂切除術")]))
    assert renamed["accepted"] == 1
    assert {r[3] for r in stored(session_factory)} == {"虫垂切除術", "初診料"}


# ---------------------------------------------------------------- the facility's read


def procs(client: TestClient, token: str, visit_id: str) -> Any:
    return client.get(f"/v1/visits/{visit_id}/procedures", headers=auth(token))


def test_procedures_need_the_clinical_consent(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate
) -> None:
    v = visit(client, tokens["physician"], with_procedures)
    assert problem_code(procs(client, tokens["physician"], v)) == "consent_required"
    # drug and checkup consent do not open clinical information
    assert consent(client, tokens["physician"], v, drug=True, checkup=True).status_code == 200
    assert problem_code(procs(client, tokens["physician"], v)) == "consent_required"


def test_consented_procedures_five_years_for_physician_and_dentist_logged(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate, session_factory: Any
) -> None:
    v = visit(client, tokens["physician"], with_procedures)
    given = consent(client, tokens["physician"], v, clinical=True)
    assert given.status_code == 200, given.text
    for role in ("physician", "dentist"):
        r = procs(client, tokens[role], v)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["since"] == TODAY.replace(year=TODAY.year - 5).isoformat()
        assert body["consent_id"] == given.json()["consent_id"]
        assert [(i["procedure_name"], i["kind"], i["inpatient"]) for i in body["items"]] == [
            (APPENDECTOMY, "手術", True),
            ("初診料", "診療", False),
        ]
    with session_factory() as s:
        entries = s.execute(sa.select(AccessLogEntry).where(AccessLogEntry.what == "procedures")).scalars().all()
    assert [(e.role, e.consent_id, e.query_kind) for e in entries] == [
        ("physician", given.json()["consent_id"], "card"),
        ("dentist", given.json()["consent_id"], "card"),
    ]
    # clinical consent opens neither drugs nor checkups
    r = client.get(f"/v1/visits/{v}/medications", headers=auth(tokens["physician"]))
    assert problem_code(r) == "consent_required"


def test_the_pharmacist_and_reception_do_not_see_procedures(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate
) -> None:
    v = visit(client, tokens["pharmacist"], with_procedures)
    assert consent(client, tokens["pharmacist"], v, drug=True, clinical=True).status_code == 200
    r = procs(client, tokens["pharmacist"], v)
    assert r.status_code == 403 and problem_code(r) == "forbidden_role"
    v = visit(client, tokens["reception"], with_procedures)
    assert consent(client, tokens["reception"], v, clinical=True).status_code == 200
    assert problem_code(procs(client, tokens["reception"], v)) == "forbidden_role"


def test_the_patient_reads_their_own_procedures(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate
) -> None:
    r = me(client, "/v1/me/procedures", with_procedures)
    assert r.status_code == 200, r.text
    assert r.json()["since"] == TODAY.replace(year=TODAY.year - 5).isoformat()
    assert [i["procedure_code"] for i in r.json()["items"]] == ["150060010", "111000110"]


# ---------------------------------------------------------------- one retention setting


@pytest.fixture
def two_years(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SHIKAKU_CLINICAL_RETENTION_YEARS", "2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_one_setting_sets_the_period_of_all_three(
    client: TestClient, tokens: dict[str, str], with_procedures: IssuedCertificate, two_years: None
) -> None:
    since = TODAY.replace(year=TODAY.year - 2).isoformat() if (TODAY.month, TODAY.day) != (2, 29) else None
    v = visit(client, tokens["physician"], with_procedures)
    assert consent(client, tokens["physician"], v, drug=True, checkup=True, clinical=True).status_code == 200
    for kind in ("medications", "checkups", "procedures"):
        r = client.get(f"/v1/visits/{v}/{kind}", headers=auth(tokens["physician"]))
        assert r.status_code == 200, r.text
        if since:
            assert r.json()["since"] == since, kind
    assert [i["procedure_code"] for i in procs(client, tokens["physician"], v).json()["items"]] == ["150060010"]
    for path in ("/v1/me/medications", "/v1/me/checkups", "/v1/me/procedures"):
        r = me(client, path, with_procedures)
        assert r.status_code == 200, r.text
        if since:
            assert r.json()["since"] == since, path
