"""Values read from the card."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class BasicFacts:
    """The four basic facts (基本4情報) from the 券面事項入力補助AP — never the My Number."""

    name: str
    address: str
    birth_date: dt.date
    sex: str  # "1" male, "2" female, "3" unset
