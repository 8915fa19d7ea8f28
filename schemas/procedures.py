"""Wire models of 診療・手術 information (clinical information loaded from claims).

Shown to a facility under the patient's ``clinical`` consent (``GET /v1/visits/{id}/procedures``)
and to the patient themself (``POST /v1/me/procedures``). See docs/consent.md."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from schemas.base import ResponseModel

ProcedureKind = Literal["診療", "手術"]
PROCEDURE_KINDS: frozenset[str] = frozenset({"診療", "手術"})


class ProcedureItem(ResponseModel):
    performed_on: dt.date
    facility_code: str
    procedure_code: str  # 診療行為コード, 9 digits
    procedure_name: str
    kind: ProcedureKind
    inpatient: bool


class Procedures(ResponseModel):
    visit_id: str
    since: dt.date
    consent_id: int
    items: list[ProcedureItem]


class MyProcedures(ResponseModel):
    since: dt.date
    items: list[ProcedureItem]
