"""Answering requests: parsed request in, result model out. No files here (see ``watcher.py``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Protocol, cast

from clinic_terminal.client import ServerError
from clinic_terminal.outage.journal import OutageJournal
from clinic_terminal.xmlif.model import (
    SEGMENT_ABNORMAL,
    SEGMENT_IN_PROGRESS,
    AnyRequest,
    AnyResult,
    AssistanceBulkRequest,
    AssistanceDownloadRequest,
    AssistanceRequest,
    BulkDownloadRequest,
    BulkDownloadResult,
    BulkRegistrationRequest,
    BulkRegistrationResult,
    BulkUnit,
    ClinicalRequest,
    ConsentChoices,
    HomeCareRequest,
    ReferenceRegistrationRequest,
    ReferenceRegistrationResult,
    RequestHeader,
    ResultHeader,
    SearchInfo,
    SingleRequest,
    TerminalResult,
    person_key,
)
from clinic_terminal.xmlif.render import JST, search_info_json
from clinic_terminal.xmlif.state import TerminalState
from schemas.eligibility import BatchCreated, BatchResult, ByNumberQuery, EligibilityResult

Clock = Callable[[], dt.datetime]
log = logging.getLogger(__name__)


def jst_now() -> dt.datetime:
    return dt.datetime.now(JST)


class EligibilityServer(Protocol):
    """What the terminal needs from the central server (``ServerClient`` is the real one)."""

    def by_number(self, query: ByNumberQuery) -> EligibilityResult: ...

    def create_batch(self, queries: list[ByNumberQuery], label: str | None = None) -> BatchCreated: ...

    def get_batch(self, batch_id: str) -> BatchResult: ...


# ErrorCode values of an abnormal end (SegmentOfResult 9) the terminal makes itself
UNKNOWN_RECEPTION = "reception_unknown"
BAD_SERVER_ANSWER = "bad_server_answer"


# what reception staff read (ErrorMessage); the server's own detail follows in brackets
ERROR_MESSAGES = {
    "unavailable": "資格確認サーバに接続できません。しばらくしてから再度照会してください",
    "rate_limited": "照会が集中しています。しばらくしてから再度照会してください",
    "unauthorized": "端末の認証に失敗しました。端末の設定を確認してください",
    "forbidden_role": "この端末の権限ではこの照会はできません",
    "validation_error": "照会内容に誤りがあります",
    "my_number_detected": "照会内容に個人番号が含まれています。個人番号は送信できません",
    UNKNOWN_RECEPTION: "受付番号が見つかりません",
    BAD_SERVER_ANSWER: "資格確認サーバの応答を読み取れません",
}
DEFAULT_ERROR_MESSAGE = "資格確認サーバがエラーを返しました"
#: Appended to ErrorMessage when an unanswered single query was journalled (outage mode).
JOURNALED_TAIL = "。申立書で受付してください。復旧後に自動で再照会し、結果を {name} に出力します"
#: The follow-up result's name: the original result's file id + this suffix (in ``res/``).
FOLLOWUP_SUFFIX = "_followup"


def error_message(code: str, detail: str | None = None) -> str:
    text = ERROR_MESSAGES.get(code, DEFAULT_ERROR_MESSAGE)
    return f"{text}（{detail}）" if detail else text


def _server_failure(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, ServerError):
        return exc.code, error_message(exc.code, exc.message)
    return BAD_SERVER_ANSWER, error_message(BAD_SERVER_ANSWER, str(exc).splitlines()[0])


def eligibility_person_key(result: EligibilityResult, fallback: str) -> str:
    insured = result.insured
    if insured is None:
        return fallback
    return person_key(insured.insurer_number, insured.symbol, insured.number, insured.branch)


def search_info_from_json(data: dict[str, object]) -> SearchInfo:
    branch = data.get("branch")
    arbitrary = data.get("arbitrary_identifier")
    return SearchInfo(
        insurer_number=str(data["insurer_number"]),
        number=str(data["number"]),
        birth_date=dt.date.fromisoformat(str(data["birth_date"])),
        symbol=str(data.get("symbol") or ""),
        branch=None if branch is None else str(branch),
        limit_consent=bool(data.get("limit_consent")),
        arbitrary_identifier=None if arbitrary is None else str(arbitrary),
    )


def card_result(
    state: TerminalState,
    file_id: str,
    eligibility: EligibilityResult,
    consents: ConsentChoices | None,
    facility_code: str,
    *,
    arbitrary_file_identifier: str | None,
    now: dt.datetime,
) -> TerminalResult:
    """A result after a card check (face file): classification 1, no search-info echo."""
    header = ResultHeader(
        execution_time=now,
        confirmation_date=eligibility.as_of,
        facility_code=facility_code,
        arbitrary_file_identifier=arbitrary_file_identifier,
    )
    reference = None
    if eligibility.insured is not None:
        reference = state.reference_number(eligibility_person_key(eligibility, ""))
    return TerminalResult(file_id, header, 1, eligibility, consents=consents, reference_number=reference, kind="face")


class XmlTerminal:
    """Turns requests into results, talking to the server and keeping the terminal's state."""

    def __init__(
        self, server: EligibilityServer, state: TerminalState, *, clock: Clock = jst_now,
        journal: OutageJournal | None = None,
    ) -> None:
        self.server = server
        self.state = state
        self.clock = clock
        self.journal = journal  # outage mode: single queries the server cannot answer are journalled

    def _header(
        self,
        req: RequestHeader,
        now: dt.datetime,
        *,
        segment: int = 1,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> ResultHeader:
        return ResultHeader(
            execution_time=now,
            confirmation_date=req.confirmation_date or now.date(),
            facility_code=req.facility_code,
            arbitrary_file_identifier=req.arbitrary_file_identifier,
            segment=segment,
            error_code=error_code,
            error_message=error_message,
        )

    def answer(self, file_id: str, request: AnyRequest) -> AnyResult:
        if isinstance(request, HomeCareRequest):
            from clinic_terminal.xmlif.homecare import HomeCareServer, answer_home_care  # builds on render

            return answer_home_care(cast(HomeCareServer, self.server), file_id, request, self.clock())
        if isinstance(request, AssistanceRequest | AssistanceBulkRequest | AssistanceDownloadRequest):
            from clinic_terminal.xmlif.assistance import AssistanceServer, answer_assistance  # builds on render

            server = cast(AssistanceServer, self.server)
            return answer_assistance(server, self.state, file_id, request, self.clock())
        if isinstance(request, ClinicalRequest):
            from clinic_terminal.xmlif.clinical import ClinicalServer, answer_clinical  # builds on render

            return answer_clinical(cast(ClinicalServer, self.server), self.state, file_id, request, self.clock())
        if isinstance(request, SingleRequest):
            return self.answer_single(file_id, request)
        if isinstance(request, BulkRegistrationRequest):
            return self.register_bulk(file_id, request)
        if isinstance(request, BulkDownloadRequest):
            return self.download_bulk(file_id, request)
        return self.register_reference(file_id, request)

    def answer_single(self, file_id: str, request: SingleRequest) -> TerminalResult:
        now = self.clock()
        info = request.search_info
        as_of = request.header.confirmation_date
        try:
            eligibility = self.server.by_number(info.to_query(as_of))
        except (ServerError, ValueError) as exc:  # ValueError: an answer that does not parse
            code, message = _server_failure(exc)
            if code == "unavailable" and self._journal_single(file_id, request, now):
                message += JOURNALED_TAIL.format(name=f"{file_id}{FOLLOWUP_SUFFIX}.xml")
            header = self._header(request.header, now, segment=SEGMENT_ABNORMAL, error_code=code, error_message=message)
            return TerminalResult(file_id, header, 2, None, search_info=info)
        reference = self.state.reference_number(eligibility_person_key(eligibility, info.key))
        return TerminalResult(
            file_id,
            self._header(request.header, now),
            2,
            eligibility,
            search_info=info,
            reference_number=reference,
        )

    def _journal_single(self, file_id: str, request: SingleRequest, now: dt.datetime) -> bool:
        """Journal an unanswered single query for the re-check (and its follow-up result)."""
        if self.journal is None:
            return False
        header = request.header
        xml = {
            "file_id": file_id,
            "facility_code": header.facility_code,
            "arbitrary_file_identifier": header.arbitrary_file_identifier,
            "search_info": search_info_json(request.search_info),
        }
        try:
            self.journal.record_number(
                request.search_info.to_query(None), source="xml",
                visit_date=header.confirmation_date or now.date(), xml=xml, now=now,
            )
        except Exception:  # a journal that cannot be written must not stop the answer
            log.exception("%s: the unanswered query could not be journalled", file_id)
            return False
        return True

    def card_result(
        self,
        file_id: str,
        eligibility: EligibilityResult,
        consents: ConsentChoices | None,
        facility_code: str,
        *,
        arbitrary_file_identifier: str | None = None,
        now: dt.datetime | None = None,
    ) -> TerminalResult:
        return card_result(
            self.state,
            file_id,
            eligibility,
            consents,
            facility_code,
            arbitrary_file_identifier=arbitrary_file_identifier,
            now=now or self.clock(),
        )

    def register_bulk(self, file_id: str, request: BulkRegistrationRequest) -> BulkRegistrationResult:
        now = self.clock()
        as_of = request.header.confirmation_date
        try:
            created = self.server.create_batch([i.to_query(as_of) for i in request.search_infos])
        except (ServerError, ValueError) as exc:  # ValueError: an answer that does not parse
            code, message = _server_failure(exc)
            header = self._header(request.header, now, segment=SEGMENT_ABNORMAL, error_code=code, error_message=message)
            return BulkRegistrationResult(file_id, header, None, len(request.search_infos))
        reception = self.state.add_reception(
            f"{now:%Y%m%d%H%M%S}",
            created.batch_id,
            request.header.facility_code,
            [search_info_json(i) for i in request.search_infos],
        )
        return BulkRegistrationResult(file_id, self._header(request.header, now), reception, created.count)

    def download_bulk(self, file_id: str, request: BulkDownloadRequest) -> BulkDownloadResult:
        now = self.clock()
        reception = self.state.reception(request.reception_number)
        if reception is None or reception[1] != request.header.facility_code:
            header = self._header(
                request.header,
                now,
                segment=SEGMENT_ABNORMAL,
                error_code=UNKNOWN_RECEPTION,
                error_message=error_message(UNKNOWN_RECEPTION, request.reception_number),
            )
            return BulkDownloadResult(file_id, header, request.reception_number)
        batch_id, _facility, infos_json = reception
        try:
            batch = self.server.get_batch(batch_id)
        except (ServerError, ValueError) as exc:  # ValueError: an answer that does not parse
            code, message = _server_failure(exc)
            header = self._header(request.header, now, segment=SEGMENT_ABNORMAL, error_code=code, error_message=message)
            return BulkDownloadResult(file_id, header, request.reception_number)
        if batch.status != "done" or batch.results is None:
            header = self._header(request.header, now, segment=SEGMENT_IN_PROGRESS)
            return BulkDownloadResult(file_id, header, request.reception_number)
        infos = [search_info_from_json(i) for i in infos_json]
        units = []
        for item in sorted(batch.results, key=lambda i: i.index):
            info = infos[item.index] if 0 <= item.index < len(infos) else _info_from_query(item.query)
            key = eligibility_person_key(item.result, info.key)
            current = json.dumps(
                None
                if item.result.limit_certificate is None
                else item.result.limit_certificate.model_dump(mode="json"),
                sort_keys=True,
            )
            previous = self.state.swap_limit(key, request.reception_number, current)
            units.append(
                BulkUnit(
                    search_info=info,
                    eligibility=item.result,
                    reference_number=self.state.reference_number(key),
                    limit_certificate_changed=previous is not None and previous != current,
                )
            )
        return BulkDownloadResult(file_id, self._header(request.header, now), request.reception_number, tuple(units))

    def register_reference(self, file_id: str, request: ReferenceRegistrationRequest) -> ReferenceRegistrationResult:
        now = self.clock()
        self.state.set_reference_number(request.key, request.reference_number, request.header.facility_code)
        return ReferenceRegistrationResult(file_id, self._header(request.header, now), request.reference_number)


def _info_from_query(query: ByNumberQuery) -> SearchInfo:
    return SearchInfo(
        insurer_number=query.insurer_number,
        number=query.number,
        birth_date=query.birth_date,
        symbol=query.symbol,
        branch=query.branch,
        limit_consent=query.include_limit_certificate,
    )
