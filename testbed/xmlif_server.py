"""An in-memory central server and sample data for tests, the bench and demos.

``InMemoryServer`` implements ``EligibilityServer`` directly; ``contract_transport`` puts it behind
``httpx.MockTransport`` answering contract-shaped JSON, so the real ``ServerClient`` is exercised.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from clinic_terminal.client import ServerError
from clinic_terminal.xmlif.model import person_key
from schemas.eligibility import (
    BatchCreated,
    BatchItem,
    BatchResult,
    ByNumberQuery,
    Elderly,
    EligibilityResult,
    Insured,
    LimitCertificate,
    SpecificDisease,
)

FACILITY_CODE = "0110113719"
CLOCK = dt.datetime(2026, 11, 28, 9, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def full_insured() -> Insured:
    """A 国保 member whose name holds 𠮷 (outside Shift_JIS) and whose symbol is full-width."""
    return Insured(
        insurer_number="138057",
        insurer_name="千代田区",
        symbol="１２－３４",
        number="５６７８",
        branch="01",
        card_classification="01",
        personal_family="1",
        name="𠮷田　花子",
        name_kana="ヨシダ　ハナコ",
        sex="2",
        birth_date=dt.date(1950, 4, 1),
        address="東京都千代田区霞が関１－２－２",
        post_number="1008916",
        valid_from=dt.date(2020, 4, 1),
        valid_to=None,
        reason_of_loss=None,
        copay_ratio=30,
    )


def full_result(as_of: dt.date = CLOCK.date(), *, query_kind: str = "number") -> EligibilityResult:
    """Every optional block: elderly, limit certificate, two specific-disease certificates."""
    return EligibilityResult(
        validity=1,
        query_kind="card" if query_kind == "card" else "number",
        as_of=as_of,
        visit_id="v-1" if query_kind == "card" else None,
        insured=full_insured(),
        elderly=Elderly(
            certificate_date=dt.date(2020, 3, 15),
            valid_from=dt.date(2020, 4, 1),
            valid_to=dt.date(2027, 7, 31),
            copay_ratio=20,
        ),
        limit_certificate=LimitCertificate(
            kind="01", classification="A03", valid_from=dt.date(2026, 8, 1), valid_to=dt.date(2027, 7, 31)
        ),
        specific_diseases=[
            SpecificDisease(category="1", valid_from=dt.date(2024, 1, 1), valid_to=None, self_pay=10000),
            SpecificDisease(category="2", valid_from=dt.date(2025, 4, 1), valid_to=dt.date(2027, 3, 31), self_pay=None),
        ],
    )


def simple_insured() -> Insured:
    return Insured(
        insurer_number="06139992",
        insurer_name="試験健康保険組合",
        symbol="ABC",
        number="123",
        branch="00",
        card_classification="01",
        personal_family="2",
        name="試験　太郎",
        name_kana="シケン　タロウ",
        sex="1",
        birth_date=dt.date(1990, 1, 2),
        address=None,
        post_number=None,
        valid_from=dt.date(2015, 4, 1),
        valid_to=dt.date(2026, 3, 31),
        reason_of_loss="03",
        copay_ratio=30,
    )


def simple_result(as_of: dt.date = CLOCK.date()) -> EligibilityResult:
    return EligibilityResult(validity=2, query_kind="number", as_of=as_of, insured=simple_insured())


def key_of(insured: Insured) -> str:
    return person_key(insured.insurer_number, insured.symbol, insured.number, insured.branch)


@dataclass
class _Batch:
    queries: list[ByNumberQuery]
    created_at: dt.datetime
    done: bool = False


@dataclass
class InMemoryServer:
    """Answers by-number queries from a dict of people (key → result without ``as_of``).

    ``delay`` seconds per by-number query; ``failure`` makes every call raise it (server down);
    batches stay pending until ``finish_batches()`` (or at once with ``batches_ready``)."""

    people: dict[str, EligibilityResult] = field(default_factory=dict)
    delay: float = 0.0
    failure: ServerError | None = None
    batches_ready: bool = False
    calls: int = 0
    batches: dict[str, _Batch] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def with_samples(cls, *, delay: float = 0.0) -> InMemoryServer:
        """The two sample people (``full_result`` and ``simple_result``)."""
        server = cls(delay=delay)
        for result in (full_result(), simple_result()):
            assert result.insured is not None
            server.people[key_of(result.insured)] = result
        return server

    def _check(self) -> None:
        with self._lock:
            self.calls += 1
        if self.failure is not None:
            raise self.failure

    def by_number(self, query: ByNumberQuery) -> EligibilityResult:
        self._check()
        if self.delay:
            time.sleep(self.delay)
        as_of = query.as_of or CLOCK.date()
        found = self.people.get(person_key(query.insurer_number, query.symbol, query.number, query.branch))
        if found is None or found.insured is None or found.insured.birth_date != query.birth_date:
            return EligibilityResult(validity=4, query_kind="number", as_of=as_of)
        update: dict[str, object] = {"as_of": as_of}
        if not query.include_limit_certificate:
            update |= {"limit_certificate": None, "specific_diseases": []}
        return found.model_copy(update=update)

    def create_batch(self, queries: list[ByNumberQuery], label: str | None = None) -> BatchCreated:
        self._check()
        with self._lock:
            batch_id = f"b{len(self.batches) + 1}"
            self.batches[batch_id] = _Batch(list(queries), CLOCK, self.batches_ready)
        return BatchCreated(batch_id=batch_id, status="done" if self.batches_ready else "pending", count=len(queries))

    def finish_batches(self) -> None:
        for batch in self.batches.values():
            batch.done = True

    def get_batch(self, batch_id: str) -> BatchResult:
        self._check()
        batch = self.batches.get(batch_id)
        if batch is None:
            raise ServerError("not_found", f"no batch {batch_id}", 404)
        results = None
        if batch.done:
            results = [BatchItem(index=i, query=q, result=self.by_number(q)) for i, q in enumerate(batch.queries)]
        return BatchResult(
            batch_id=batch_id,
            status="done" if batch.done else "pending",
            count=len(batch.queries),
            created_at=batch.created_at,
            completed_at=batch.created_at if batch.done else None,
            results=results,
        )


def contract_transport(server: InMemoryServer) -> httpx.MockTransport:
    """``server`` behind the contract's HTTP API (JSON in, JSON or problem+json out)."""

    def problem(exc: ServerError) -> httpx.Response:
        status = exc.status or (503 if exc.code == "unavailable" else 400)
        body = {
            "type": "about:blank",
            "title": exc.code,
            "status": status,
            "code": exc.code,
            "detail": exc.message,
        }
        return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        try:
            if request.method == "POST" and path == "/v1/eligibility/by-number":
                query = ByNumberQuery.model_validate(json.loads(request.content))
                return httpx.Response(200, json=server.by_number(query).model_dump(mode="json"))
            if request.method == "POST" and path == "/v1/eligibility/batches":
                body = json.loads(request.content)
                queries = [ByNumberQuery.model_validate(q) for q in body["queries"]]
                return httpx.Response(201, json=server.create_batch(queries).model_dump(mode="json"))
            if request.method == "GET" and path.startswith("/v1/eligibility/batches/"):
                batch = server.get_batch(path.rsplit("/", 1)[1])
                return httpx.Response(200, json=batch.model_dump(mode="json"))
        except ServerError as exc:
            return problem(exc)
        return problem(ServerError("not_found", f"{request.method} {path}", 404))

    return httpx.MockTransport(handle)


class ContractHttpServer:
    """The contract's HTTP API on a real socket, answered by an ``InMemoryServer``."""

    def __init__(self, server: InMemoryServer) -> None:
        self.server = server
        transport = contract_transport(server)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = httpx.Request(self.command, f"http://fake{self.path}", content=body)
                response = transport.handle_request(request)
                response.read()
                try:
                    self.send_response(response.status_code)
                    self.send_header("content-type", response.headers.get("content-type", "application/json"))
                    self.send_header("content-length", str(len(response.content)))
                    self.end_headers()
                    self.wfile.write(response.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (e.g. a watcher killed on purpose)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> ContractHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(5)


# --- request documents as clinic software writes them


def document(body: str, encoding: str = "UTF-8", *, header: str | None = None) -> bytes:
    header = (
        header
        if header is not None
        else (
            "<MessageHeader>"
            "<QualificationConfirmationDate>20261128</QualificationConfirmationDate>"
            f"<MedicalInstitutionCode>{FACILITY_CODE}</MedicalInstitutionCode>"
            "<ArbitraryFileIdentifier>F-0001</ArbitraryFileIdentifier>"
            "</MessageHeader>"
        )
    )
    text = f'<?xml version="1.0" encoding="{encoding}" standalone="no"?>\n<XmlMsg>{header}{body}</XmlMsg>\n'
    return text.encode("cp932" if encoding.lower().replace("-", "_") == "shift_jis" else "utf-8")


FULL_SEARCH = (
    "<QualificationConfirmSearchInfo>"
    "<InsurerNumber>  138057</InsurerNumber>"
    "<InsuredCardSymbol>１２－３４</InsuredCardSymbol>"
    "<InsuredIdentificationNumber>５６７８</InsuredIdentificationNumber>"
    "<InsuredBranchNumber>01</InsuredBranchNumber>"
    "<Birthdate>19500401</Birthdate>"
    "<LimitApplicationCertificateRelatedConsFlg>1</LimitApplicationCertificateRelatedConsFlg>"
    "<ArbitraryIdentifier>患者-0001</ArbitraryIdentifier>"
    "</QualificationConfirmSearchInfo>"
)

# the same search info in another element order
SHUFFLED_SEARCH = (
    "<QualificationConfirmSearchInfo>"
    "<ArbitraryIdentifier>患者-0001</ArbitraryIdentifier>"
    "<Birthdate>19500401</Birthdate>"
    "<LimitApplicationCertificateRelatedConsFlg>1</LimitApplicationCertificateRelatedConsFlg>"
    "<InsuredBranchNumber>01</InsuredBranchNumber>"
    "<InsuredIdentificationNumber>５６７８</InsuredIdentificationNumber>"
    "<InsuredCardSymbol>１２－３４</InsuredCardSymbol>"
    "<InsurerNumber>  138057</InsurerNumber>"
    "</QualificationConfirmSearchInfo>"
)

SIMPLE_SEARCH = (
    "<QualificationConfirmSearchInfo>"
    "<InsurerNumber>06139992</InsurerNumber>"
    "<InsuredCardSymbol>ABC</InsuredCardSymbol>"
    "<InsuredIdentificationNumber>123</InsuredIdentificationNumber>"
    "<InsuredBranchNumber>00</InsuredBranchNumber>"
    "<Birthdate>19900102</Birthdate>"
    "<LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg>"
    "</QualificationConfirmSearchInfo>"
)

UNKNOWN_SEARCH = (
    "<QualificationConfirmSearchInfo>"
    "<InsurerNumber>39130018</InsurerNumber>"
    "<InsuredIdentificationNumber>999</InsuredIdentificationNumber>"
    "<Birthdate>19400101</Birthdate>"
    "</QualificationConfirmSearchInfo>"
)


def single(search: str = FULL_SEARCH, encoding: str = "UTF-8") -> bytes:
    return document(f"<MessageBody>{search}</MessageBody>", encoding)


def bulk_registration(*searches: str, encoding: str = "UTF-8") -> bytes:
    inner = "".join(searches)
    return document(
        f"<MessageBody><QualificationConfirmSearchInfoList>{inner}</QualificationConfirmSearchInfoList></MessageBody>",
        encoding,
    )


def bulk_download(reception_number: str, encoding: str = "UTF-8") -> bytes:
    return document(f"<MessageBody><ReceptionNumber>{reception_number}</ReceptionNumber></MessageBody>", encoding)


def reference_registration(reference: str = "24434", encoding: str = "Shift_JIS") -> bytes:
    header = (
        f"<MessageHeader><MedicalInstitutionCode>{FACILITY_CODE}</MedicalInstitutionCode>"
        "<ArbitraryFileIdentifier>R-1</ArbitraryFileIdentifier></MessageHeader>"
    )
    body = (
        "<MessageBody><ReferenceNumberRegistrationInfo>"
        f"<ReferenceNumber>{reference}</ReferenceNumber>"
        "<InsurerNumber>  138057</InsurerNumber>"
        "<InsuredCardSymbol>１２－３４</InsuredCardSymbol>"
        "<InsuredIdentificationNumber>５６７８</InsuredIdentificationNumber>"
        "<InsuredBranchNumber>01</InsuredBranchNumber>"
        "</ReferenceNumberRegistrationInfo></MessageBody>"
    )
    return document(body, encoding, header=header)
