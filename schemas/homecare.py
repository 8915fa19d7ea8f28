"""Wire model of 再照会 (居宅同意取得型: a re-check without the card while the home-care consent lasts)."""

from __future__ import annotations

import datetime as dt

from schemas.base import RequestModel


class RecheckRequest(RequestModel):
    as_of: dt.date | None = None  # the day asked about (the visit's day of care); default today (JST)
