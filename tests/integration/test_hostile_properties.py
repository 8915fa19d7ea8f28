"""Hostile bytes, property-based (hypothesis), on both backends: strings with NUL, lone
surrogates, very long lines, deep nesting and 12-digit My Numbers (valid check digit, with and
without separators, ASCII or full-width) into every field of every JSON route (every leaf of a
valid body, and every path and query parameter of the OpenAPI document), every column of every
upload kind (CSV and NDJSON) and every element of the XML folder interface's requests.

Never a 5xx; never a My Number in an answer, an upload's reject report or an XML result file. After
each test the database is dumped (``sqlite3 .dump`` / ``pg_dump``) and scanned; the module's log
lines (formatted as the server writes them) are scanned once at the end (a module-scoped check).
Bounded and deterministic: ``derandomize=True``, no example database."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import subprocess
import unicodedata
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from clinic_terminal.client import ServerClient
from clinic_terminal.xmlif.parse import result_name
from schemas.identifiers import is_my_number, my_number_in
from schemas.insurer_files import ELIGIBILITY_COLUMNS
from shikaku_server.config import Settings
from shikaku_server.logging_setup import JsonFormatter
from testbed import xmlif_server as t
from tests.conftest import auth
from tests.factories import csv_bytes, eligibility_csv, person
from tests.folder_terminal import folder_terminal
from tests.integration.fhir_helpers import eligibility_request
from tests.integration.test_hostile_input import (
    CHK,
    CHK_COLUMNS,
    MED,
    MED_COLUMNS,
    QUERY,
    REGISTRATION,
    assert_no_my_number_anywhere,
)

# hypothesis describes large examples (150,000-character lines) for its reports: a warning, not a fault
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")
INJECTED: set[str] = set()  # every My Number sent (12 ASCII digits), for the scans
HYPOTHESIS = hsettings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)
SEPARATORS = ["", " ", "-", ".", "/", "|", "－", "\u3000", "・", "--"]


def _with_check_digit(eleven: str) -> str:
    return next(d for d in (eleven + str(c) for c in range(10)) if is_my_number(d))


def _written(digits: str, sep: str, wide: bool) -> str:
    INJECTED.add(digits)
    text = sep.join((digits[:4], digits[4:8], digits[8:]))
    return text.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"}) if wide else text


my_numbers = st.builds(
    _written,
    st.integers(0, 10**11 - 1).map(lambda n: _with_check_digit(f"{n:011d}")),
    st.sampled_from(SEPARATORS),
    st.booleans(),
)
with_nul = st.tuples(st.text(max_size=8), st.text(max_size=8)).map(lambda p: p[0] + "\x00" + p[1])
lone_surrogate = st.tuples(st.text(max_size=8), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)).map(
    lambda p: p[0] + p[1]
)
long_line = st.tuples(st.sampled_from(["x", "あ", "𠮷", "1"]), st.integers(2_000, 150_000)).map(lambda p: p[0] * p[1])
hostile_text = st.one_of(my_numbers, with_nul, lone_surrogate, long_line)


class Raw(str):
    """JSON text sent as is (a nesting no encoder writes)."""


deep_nesting = st.tuples(st.sampled_from(["[", '{"a":']), st.integers(100, 20_000)).map(
    lambda p: Raw(p[0] * p[1] + "1" + ("]" if p[0] == "[" else "}") * p[1])
)
hostile_json = st.one_of(hostile_text, deep_nesting, my_numbers.map(lambda s: Raw(re.sub(r"\D", "", s) or "0")))


def _json_text(value: str) -> str:
    return str(value) if isinstance(value, Raw) else json.dumps(value)  # ensure_ascii: a surrogate as \\udXXX


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _body_with(base: Any, path: tuple[Any, ...], value: str) -> bytes:
    marker = "\u2063HOSTILE\u2063"
    doc = json.loads(json.dumps(base))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(doc).replace(json.dumps(marker), _json_text(value)).encode("utf-8", "surrogatepass")


CARD_PROOF = {"challenge_id": "c", "certificate": "AA==", "signature": "AA=="}
BASES: dict[str, Any] = {
    "/v1/eligibility/by-number": {**QUERY, "as_of": "2025-04-01", "include_limit_certificate": True},
    "/v1/eligibility/batches": {"queries": [QUERY, QUERY], "label": "朝の一括"},
    "/v1/card/registrations": REGISTRATION,
    "/v1/eligibility/by-card": {**CARD_PROOF, "auth_method": "pin", "as_of": "2025-04-01"},
    "/v1/me/access-log": CARD_PROOF,
    "/v1/me/eligibility": {**CARD_PROOF, "as_of": "2025-04-01"},
    "/v1/me/medications": CARD_PROOF,
    "/v1/me/checkups": CARD_PROOF,
    "/v1/me/consents": CARD_PROOF,
    "/v1/me/consents/withdraw": {**CARD_PROOF, "consent_id": 1},
    "/v1/me/suspension": CARD_PROOF,
    "/v1/me/procedures": CARD_PROOF,
    "/v1/me/expenses": {**CARD_PROOF, "year": 2025},
    "/v1/me/expenses/export": {**CARD_PROOF, "year": 2025, "format": "csv"},
    "/v1/visits/{visit_id}/recheck": {"as_of": "2025-04-01"},
    "/v1/assistance/by-number": {"payer_number": "12131011", "recipient_number": "1234566", "birth_date": "1950-01-01",
                                 "as_of": "2025-04-01"},
    "/v1/assistance/by-month": {"month": "2026-10"},
    "/v1/visits/visual": {"confirmed_by": "訪問 看護師", "insurance": QUERY},
    "/v1/emergency/medications": {"challenge_id": "c", "certificate": "AA==", "reason": "意識障害"},
    "/v1/consents": {"visit_id": "v", "drug": True, "checkup": False},
    "/fhir/R4/CoverageEligibilityRequest": eligibility_request(),
    "/fhir/R4": {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "POST", "url": "CoverageEligibilityRequest"}, "resource": eligibility_request()}
        ],
    },
}
# no JSON body: empty (challenges), a file (uploads), a form (AuditEvent search)
NO_JSON_BODY = {"/v1/card/challenges", "/v1/me/challenges", "/v1/uploads", "/fhir/R4/AuditEvent/_search"}
TOKEN_FOR = {"/v1/eligibility/by-card": "reception", "/v1/me/access-log": None}


def _targets(spec: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(method, path, where, field) for every leaf of every JSON body and every parameter."""
    out: list[tuple[str, str, str, Any]] = []
    json_routes = set()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if "requestBody" in op and path not in NO_JSON_BODY:
                json_routes.add(path)
                out += [(method, path, "body", leaf) for leaf in _leaves(BASES[path])]
            for param in op.get("parameters", []):
                if param["in"] in ("path", "query"):
                    out.append((method, path, param["in"], param["name"]))
    assert json_routes == set(BASES), "a JSON route without a base body here: add one"
    return out


def _url(path: str, where: str, name: str, value: str) -> str:
    encoded = urllib.parse.quote(str(value)[:URL_VALUE_LIMIT].encode("utf-8", "surrogatepass"), safe="")
    if where == "path":
        return re.sub(r"\{[^}]+\}", lambda m: encoded if m.group(0) == "{" + name + "}" else "x", path)
    return re.sub(r"\{[^}]+\}", "x", path) + f"?{name}={encoded}"


def _assert_clean(text: str, where: str) -> None:
    assert not my_number_in(text), where
    runs = _runs(text)
    assert not [d for d in INJECTED if d in runs], where


def _runs(text: str) -> str:
    """The digit groups of ``text`` (separators between them dropped), each group on its own."""
    norm = unicodedata.normalize("NFKC", text)
    return "\n".join(re.sub(r"[\s\-./|,_:・－]", "", m) for m in re.findall(r"[0-9][0-9\s\-./|,_:・－]*", norm))


def _dump(settings_: Settings) -> str:
    url = settings_.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return "\n".join(conn.iterdump())
    pg_dump = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    libpq = url.replace("postgresql+psycopg2://", "postgresql://")
    return subprocess.run([pg_dump, "--data-only", libpq], check=True, capture_output=True, text=True).stdout


def assert_database_clean(settings_: Settings, session_factory: Any, logs: pytest.LogCaptureFixture) -> None:
    dump = _dump(settings_)
    assert "INSERT INTO" in dump or "COPY " in dump  # a real dump with rows
    runs = _runs(dump)
    leaked = sorted(d for d in INJECTED if d in runs)
    assert not leaked, f"{len(leaked)} injected My Numbers in the database dump"
    assert_no_my_number_anywhere(session_factory, logs)


OUR_LOGGERS = ("shikaku_server", "clinic_terminal", "hokensha_loader", "schemas", "uvicorn")
URL_VALUE_LIMIT = 4_000  # a value in a URL (httpx refuses longer URLs); long lines go in the bodies


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.formatter_ = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(OUR_LOGGERS):
            return  # the test's own HTTP client logs the URLs it sends
        self.lines.append(self.formatter_.format(record) + " " + str(record.msg) + " " + repr(record.args))


@pytest.fixture(scope="module", autouse=True)
def every_log_line() -> Iterator[_Lines]:
    """Every log line of the module, scanned once at the end (5xx are logged as errors too)."""
    handler = _Lines()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)
    assert handler.lines, "no log line captured: the scan would be empty"
    runs = _runs("\n".join(handler.lines))
    assert not [d for d in INJECTED if d in runs], "an injected My Number in a log line"
    assert not [line for line in handler.lines if my_number_in(line)][:1]
    assert not [line for line in handler.lines if "unhandled error" in line][:1]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpx")  # the test's client logs the URLs it sends
    return caplog


@pytest.mark.slow
def test_hostile_values_in_every_field_of_every_route(
    client: TestClient,
    tokens: dict[str, str],
    settings: Settings,
    session_factory: Any,
    logs: pytest.LogCaptureFixture,
) -> None:
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content=eligibility_csv([person(symbol="123", number="4567")]),
        headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    targets = _targets(client.get("/openapi.json").json())
    statuses: dict[int, int] = {}

    @hsettings(HYPOTHESIS, max_examples=200)
    @given(target=st.sampled_from(targets), value=hostile_json)
    def one(target: tuple[str, str, str, Any], value: str) -> None:
        method, path, where, field = target
        if path.startswith("/v1/insurer/"):
            token: str | None = tokens["insurer"]
        else:
            token = tokens["reception"] if TOKEN_FOR.get(path, "reception") else None
        headers = auth(token) if token else {}
        if where == "body":
            r = client.request(
                method,
                path,
                content=_body_with(BASES[path], field, value),
                headers={**headers, "Content-Type": "application/json"},
            )
        else:
            r = client.request(
                method, _url(path, where, field, value if not isinstance(value, Raw) else str(value)), headers=headers
            )
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (method, path, where, field, r.status_code, r.text[:300])
        _assert_clean(r.text, f"{method} {path} {where} {field}")

    one()
    print(f"hostile routes: {sum(statuses.values())} requests over {len(targets)} fields, statuses {statuses}")
    assert set(statuses) & {400, 404, 413, 422}  # refused, not silently accepted
    assert_database_clean(settings, session_factory, logs)


UPLOADS = {
    "eligibility": (list(ELIGIBILITY_COLUMNS), [person(number=str(500 + i)) for i in range(4)]),
    "medications": (MED_COLUMNS, [{**MED, "drug_code": f"62000000{i}"} for i in range(4)]),
    "checkups": (CHK_COLUMNS, [{**CHK, "checked_on": f"2025-04-0{i + 1}"} for i in range(4)]),
}


def _file(kind: str, fmt: str, edits: list[tuple[int, int, str]]) -> bytes:
    columns, rows = UPLOADS[kind]
    rows = [dict(r) for r in rows]
    for row, col, value in edits:
        rows[row % len(rows)][columns[col % len(columns)]] = value
    if fmt == "csv":
        return csv_bytes(columns, rows, errors="surrogatepass")
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


@pytest.mark.slow
def test_hostile_values_in_every_column_of_every_upload(
    client: TestClient,
    tokens: dict[str, str],
    settings: Settings,
    session_factory: Any,
    logs: pytest.LogCaptureFixture,
) -> None:
    client.post(
        "/v1/uploads?kind=eligibility",
        content=eligibility_csv([person(number=str(500 + i)) for i in range(4)]),
        headers={**auth(tokens["insurer"]), "Content-Type": "text/csv"},
    )
    seen = {"files": 0, "rejected": 0}

    @hsettings(HYPOTHESIS, max_examples=45)
    @given(
        kind=st.sampled_from(sorted(UPLOADS)),
        fmt=st.sampled_from(["csv", "ndjson"]),
        edits=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30), hostile_text), min_size=1, max_size=4),
    )
    def one(kind: str, fmt: str, edits: list[tuple[int, int, str]]) -> None:
        body = _file(kind, fmt, edits)
        ctype = "text/csv" if fmt == "csv" else "application/x-ndjson"
        r = client.post(
            f"/v1/uploads?kind={kind}", content=body, headers={**auth(tokens["insurer"]), "Content-Type": ctype}
        )
        assert r.status_code < 500, (kind, fmt, r.status_code, r.text[:300])
        _assert_clean(r.text, f"upload {kind} {fmt}")
        seen["files"] += 1
        if r.status_code == 200:
            out = r.json()
            assert out["accepted"] + out["rejected"] + out["unchanged"] == len(UPLOADS[kind][1]), out
            assert out["rejected"] >= 1 or not any(my_number_in(v) for _, _, v in edits), out
            seen["rejected"] += out["rejected"]

    one()
    print(f"hostile uploads: {seen['files']} files, {seen['rejected']} rows rejected")
    assert seen["rejected"] > 0
    assert_database_clean(settings, session_factory, logs)


XML_FIELDS = [
    "InsurerNumber",
    "InsuredCardSymbol",
    "InsuredIdentificationNumber",
    "InsuredBranchNumber",
    "Birthdate",
    "LimitApplicationCertificateRelatedConsFlg",
    "ArbitraryIdentifier",
    "MedicalInstitutionCode",
    "ArbitraryFileIdentifier",
    "QualificationConfirmationDate",
]


def _xml_value(value: str) -> bytes:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;")
    return escaped.encode("utf-8", "surrogatepass")  # a NUL or a lone surrogate as raw bytes: not XML


@pytest.mark.slow
def test_hostile_values_in_every_element_of_xml_requests(
    client: TestClient,
    tokens: dict[str, str],
    settings: Settings,
    session_factory: Any,
    logs: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    root = tmp_path / "oqs"
    counter = [0]
    outcomes: dict[str, int] = {}
    with folder_terminal(
        client, tokens["reception"], root, server_client=ServerClient, workers=1, settle_seconds=0
    ) as (watcher, _):

        @hsettings(HYPOTHESIS, max_examples=40)
        @given(
            kind=st.sampled_from(["single", "bulk"]),
            field=st.sampled_from(XML_FIELDS),
            value=st.one_of(hostile_text, st.integers(50, 5_000).map(lambda n: "<a>" * n + "</a>" * n)),
        )
        def one(kind: str, field: str, value: str) -> None:
            counter[0] += 1
            doc = t.single() if kind == "single" else t.bulk_registration(t.FULL_SEARCH, t.SIMPLE_SEARCH)
            raw = value.encode("utf-8", "surrogatepass") if value.startswith("<a>") else _xml_value(value)
            doc = re.sub(
                f"<{field}>[^<]*</{field}>".encode(), f"<{field}>".encode() + raw + f"</{field}>".encode(), doc, count=1
            )
            name = f"OQS{'si' if kind == 'single' else 'mu'}quc01req_{counter[0]}.xml"
            (root / "req" / name).write_bytes(doc)
            outcome = watcher.handle(name, complete=True)
            assert outcome in ("answered", "error"), (name, outcome)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            written = [root / "res" / result_name(name), root / "req" / f"{name}.err"]
            assert any(p.exists() for p in written), name
            for path in written:
                if path.exists():
                    data = path.read_bytes()
                    _assert_clean(data.decode("cp932", "replace"), f"xml {name}")
                    _assert_clean(data.decode("utf-8", "replace"), f"xml {name}")

        one()
    print(f"hostile xml: {counter[0]} request files, {outcomes}")
    assert outcomes.get("error") and outcomes.get("answered")  # refused files and answered ones
    assert not [r for r in logs.records if r.levelno >= logging.ERROR and r.name.startswith("shikaku_server")]
    assert_database_clean(settings, session_factory, logs)
