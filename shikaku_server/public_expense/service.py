"""公費負担医療 in the eligibility answer (docs/assistance.md): the 受給者証 of each person of a
card number, read with the bundle (``attach``) and shown, under the 限度額 consent, by
``public_expenses`` (called from ``eligibility.service.result_dict``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, select

from shikaku_server.eligibility.models import Insured
from shikaku_server.eligibility.rules import covers
from shikaku_server.pgasync import Prepared
from shikaku_server.public_expense.models import PublicExpense

QUERY: Any = (
    select(
        PublicExpense.insured_id,
        PublicExpense.payer_number,
        PublicExpense.recipient_number,
        PublicExpense.monthly_cap,
        PublicExpense.valid_from,
        PublicExpense.valid_to,
    )
    .join(Insured, Insured.id == PublicExpense.insured_id)
    .where(
        Insured.insurer_number == bindparam("insurer_number"),
        Insured.symbol_norm == bindparam("symbol_norm"),
        Insured.number_norm == bindparam("number_norm"),
    )
    .order_by(PublicExpense.insured_id, PublicExpense.payer_number, PublicExpense.valid_from)
)
PG_QUERY = Prepared("shikaku_public_expense", QUERY)
_COLUMNS = ("payer_number", "recipient_number", "monthly_cap", "valid_from", "valid_to")


def attach(bundle: dict[str, Any], rows: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """Put each person's certificates (rows of ``QUERY``) into the bundle, dates as ISO text."""
    by_id: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        values = [v.isoformat() if hasattr(v, "isoformat") else v for v in row[1:]]
        by_id.setdefault(row[0], []).append(dict(zip(_COLUMNS, values, strict=True)))
    for insured in bundle["insureds"]:
        insured["public_expenses"] = by_id.get(insured["id"], [])
    return bundle


def public_expenses(insured: dict[str, Any], day: str) -> list[dict[str, Any]]:
    """The person's certificates in force on ``day`` (ISO), as the answer shows them."""
    return [
        e
        for e in insured.get("public_expenses", ())
        if covers(e["valid_from"], e["valid_to"], day)
    ]
