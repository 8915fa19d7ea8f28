"""The terminal's client for the central server: one place that speaks HTTP to it.

``ServerClient`` takes an ``httpx`` transport (tests pass ``httpx.ASGITransport`` over the app or
a ``MockTransport``); it builds the real one only when none is given. Problem+json answers
become ``ServerError`` with the contract's ``code``; connection failures become
``ServerError("unavailable")`` (refused, timed out, 5xx without a problem body) so the kiosk, the
staff screen and the XML interface go to outage mode (``clinic_terminal.outage``).
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from clinic_terminal.closing import Closing
from schemas.assistance import AssistanceMonth, AssistanceMonthQuery, AssistanceQuery, AssistanceResult
from schemas.card import (
    AccessLog,
    BasicFacts,
    Challenge,
    Checkups,
    ConsentRecord,
    ConsentRequest,
    Medications,
    Registered,
)
from schemas.eligibility import (
    BatchCreate,
    BatchCreated,
    BatchResult,
    ByNumberQuery,
    EligibilityResult,
)
from schemas.homecare import Care, CourseFilter, HomeCourses, VisualCheckRequest
from schemas.procedures import Procedures

#: 20 s for an answer (the CAQH CORE round trip), but 5 s to connect: a server or network that is
#: away is known quickly and the kiosk goes to outage mode (申立書) instead of holding the patient.
DEFAULT_TIMEOUT: Final = httpx.Timeout(20.0, connect=5.0)


class ServerError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body


class ServerClient(Closing):
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.has_token = bool(token)
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, json: Any = None) -> Any:
        return self.send(method, path, json).json()

    def send(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """The answer itself (a file download); a problem answer raises ``ServerError``."""
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise ServerError("unavailable", f"the server cannot be reached: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ServerError(
                str(body.get("code", "unavailable" if response.status_code >= 500 else "error")),
                str(body.get("detail") or body.get("title") or response.reason_phrase),
                response.status_code,
                body,
            )
        return response

    # --- eligibility
    def by_number(self, query: ByNumberQuery) -> EligibilityResult:
        data = self.request("POST", "/v1/eligibility/by-number", query.model_dump(mode="json", exclude_none=True))
        return EligibilityResult.model_validate(data)

    def create_batch(self, queries: list[ByNumberQuery], label: str | None = None) -> BatchCreated:
        body = BatchCreate(queries=queries, label=label).model_dump(mode="json", exclude_none=True)
        return BatchCreated.model_validate(self.request("POST", "/v1/eligibility/batches", body))

    def get_batch(self, batch_id: str) -> BatchResult:
        return BatchResult.model_validate(self.request("GET", f"/v1/eligibility/batches/{batch_id}"))

    # --- 医療扶助 (docs/assistance.md)
    def assistance_by_number(self, query: AssistanceQuery) -> AssistanceResult:
        data = self.request("POST", "/v1/assistance/by-number", query.model_dump(mode="json", exclude_none=True))
        return AssistanceResult.model_validate(data)

    def assistance_by_month(self, month: str) -> AssistanceMonth:
        data = self.request("POST", "/v1/assistance/by-month", AssistanceMonthQuery(month=month).model_dump())
        return AssistanceMonth.model_validate(data)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


class CardClient(ServerClient):
    """The card, consent and data-access calls of the contract."""

    def challenge(self) -> Challenge:
        return Challenge.model_validate(self.request("POST", "/v1/card/challenges"))

    def register(self, challenge_id: str, certificate: bytes, signature: bytes, facts: BasicFacts) -> Registered:
        body = {
            "challenge_id": challenge_id,
            "certificate": _b64(certificate),
            "signature": _b64(signature),
            "basic_facts": facts.model_dump(mode="json"),
        }
        return Registered.model_validate(self.request("POST", "/v1/card/registrations", body))

    def by_card(
        self,
        challenge_id: str,
        certificate: bytes,
        *,
        signature: bytes | None = None,
        attestation: str | None = None,
        as_of: str | None = None,
    ) -> EligibilityResult:
        body: dict[str, Any] = {
            "challenge_id": challenge_id,
            "certificate": _b64(certificate),
            "auth_method": "pin" if signature is not None else "face",
        }
        if signature is not None:
            body["signature"] = _b64(signature)
        if attestation is not None:
            body["attestation"] = attestation
        if as_of is not None:
            body["as_of"] = as_of
        return EligibilityResult.model_validate(self.request("POST", "/v1/eligibility/by-card", body))

    def consent(self, request: ConsentRequest) -> ConsentRecord:
        return ConsentRecord.model_validate(self.request("POST", "/v1/consents", request.model_dump(mode="json")))

    def medications(self, visit_id: str) -> Medications:
        return Medications.model_validate(self.request("GET", f"/v1/visits/{visit_id}/medications"))

    def checkups(self, visit_id: str) -> Checkups:
        return Checkups.model_validate(self.request("GET", f"/v1/visits/{visit_id}/checkups"))

    # --- 居宅同意取得型 (docs/homecare.md)
    def visual_check(self, body: VisualCheckRequest) -> EligibilityResult:
        """目視確認: the first visit of a course of care, without reading the card."""
        data = self.request("POST", "/v1/visits/visual", body.model_dump(mode="json", exclude_none=True))
        return EligibilityResult.model_validate(data)

    def home_courses(self, only: CourseFilter | None = None) -> HomeCourses:
        """The facility's ongoing courses of care (one person's, with ``only``)."""
        path = "/v1/home-courses"
        if only is not None:
            import urllib.parse

            path += "?" + urllib.parse.urlencode(only.model_dump(exclude_none=True))
        return HomeCourses.model_validate(self.request("GET", path))

    def recheck(self, visit_id: str, *, care: Care = "visit", as_of: str | None = None) -> EligibilityResult:
        """再照会 through the course's first visit, without the card."""
        body: dict[str, Any] = {"care": care} | ({"as_of": as_of} if as_of else {})
        return EligibilityResult.model_validate(self.request("POST", f"/v1/visits/{visit_id}/recheck", body))
    def procedures(self, visit_id: str) -> Procedures:
        return Procedures.model_validate(self.request("GET", f"/v1/visits/{visit_id}/procedures"))

    def access_log(self, challenge_id: str, certificate: bytes, signature: bytes) -> AccessLog:
        body = {"challenge_id": challenge_id, "certificate": _b64(certificate), "signature": _b64(signature)}
        return AccessLog.model_validate(self.request("POST", "/v1/me/access-log", body))

    # --- the patient's own side (/v1/me/*, docs/patient.md)
    def me_challenge(self) -> Challenge:
        """At home (no token) a patient challenge; at a kiosk (its token) the facility's: the
        reads are then logged with the kiosk's facility code."""
        path = "/v1/card/challenges" if self.has_token else "/v1/me/challenges"
        return Challenge.model_validate(self.request("POST", path))

    def me(self, what: str, proof: CardProofBody, **extra: Any) -> Any:
        """``POST /v1/me/{what}`` with the card's proof; the JSON answer."""
        return self.request("POST", f"/v1/me/{what}", {**proof.json(), **extra})

    def me_file(self, what: str, proof: CardProofBody, **extra: Any) -> tuple[bytes, str, str]:
        """A download of ``/v1/me/{what}``: (content, media type, file name)."""
        response = self.send("POST", f"/v1/me/{what}", {**proof.json(), **extra})
        disposition = response.headers.get("content-disposition", "")
        name = disposition.partition('filename="')[2].rstrip('"') or "download"
        return response.content, response.headers.get("content-type", "application/octet-stream"), name


class CardProofBody:
    """A challenge signed by the card: the body every ``/v1/me`` call carries."""

    def __init__(self, challenge_id: str, certificate: bytes, signature: bytes) -> None:
        self.challenge_id = challenge_id
        self.certificate = certificate
        self.signature = signature

    def json(self) -> dict[str, str]:
        return {"challenge_id": self.challenge_id, "certificate": _b64(self.certificate),
                "signature": _b64(self.signature)}
