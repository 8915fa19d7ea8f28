"""Request files as clinic software writes them (golden/requests/): Shift_JIS with CRLF, UTF-8 in
another element order, every family. Each parses to exactly the expected request."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from clinic_terminal.xmlif.documents import parse_request

REQUESTS = Path(__file__).parent / "golden" / "requests"
HEADER = {"facility_code": "0110113719", "confirmation_date": dt.date(2026, 11, 28)}
FULL = {
    "insurer_number": "138057",
    "number": "５６７８",
    "birth_date": dt.date(1950, 4, 1),
    "symbol": "１２－３４",
    "branch": "01",
}

EXPECTED: dict[str, dict[str, Any]] = {
    "OQSsiquc01req_sjis_crlf.xml": {
        "kind": "single",
        "header": HEADER | {"arbitrary_file_identifier": "RECE-20261128-0001"},
        "search_info": FULL | {"limit_consent": True, "arbitrary_identifier": "カルテ①-0001"},
    },
    "OQSsiquc01req_utf8_reordered.xml": {
        "kind": "single",
        "header": HEADER | {"arbitrary_file_identifier": None},
        "search_info": {
            "insurer_number": "06139992",
            "number": "123",
            "birth_date": dt.date(1990, 1, 2),
            "symbol": "ABC",
            "branch": "00",
            "limit_consent": False,
            "arbitrary_identifier": None,
        },
    },
    "OQSmuquc01req_sjis.xml": {
        "kind": "bulk_registration",
        "header": {"facility_code": "0110113719", "confirmation_date": dt.date(2026, 11, 29)}
        | {"arbitrary_file_identifier": "BULK-1"},
        "search_infos": (
            FULL | {"limit_consent": False, "arbitrary_identifier": None},
            {
                "insurer_number": "39130018",
                "number": "00012345",
                "birth_date": dt.date(1940, 1, 1),
                "symbol": "",
                "branch": None,
                "limit_consent": True,
                "arbitrary_identifier": None,
            },
        ),
    },
    "OQSmuquc02req_utf8.xml": {
        "kind": "bulk_download",
        "header": {"facility_code": "0110113719", "confirmation_date": None, "arbitrary_file_identifier": None},
        "reception_number": "20261128093015000001",
    },
    "OQSsiimm01req_sjis.xml": {
        "kind": "reference_registration",
        "header": {
            "facility_code": "0110113719",
            "confirmation_date": None,
            "arbitrary_file_identifier": "20261128093015123-1a2b3c4d",
        },
        "reference_number": "24434",
        "insurer_number": "138057",
        "number": "５６７８",
        "symbol": "１２－３４",
        "branch": "01",
    },
}


def test_every_golden_request_is_listed() -> None:
    assert sorted(p.name for p in REQUESTS.glob("*.xml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_request_parses_to_the_expected_request(name: str) -> None:
    request = parse_request(name, (REQUESTS / name).read_bytes())
    assert dataclasses.asdict(request) == EXPECTED[name]
