"""The card's proof for the patient's own calls: ONE function, ``prove``.

A ``/v1/me/*`` call carries a challenge (from ``/v1/me/challenges``, or at a kiosk one of its
facility from ``/v1/card/challenges``), the card's certificate and the card's signature over the
challenge's nonce, made with the user-authentication key after the PIN. ``prove`` redeems the
challenge (single use: a reused one is ``challenge_reused``), checks the certificate (chain,
expiry, revocation), the signature, the link to an insured person and the suspension, in that
order, and answers the linked person. Nothing else in ``me/`` looks at a card.

It is built from the card path's own async steps (``card.service``: ``aredeem_challenge``, the
verifier's ``acheck_chain``, ``card_facts_async`` / ``card_facts``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from shikaku_server.card import service as card
from shikaku_server.card import verify
from shikaku_server.digests import serial_text
from shikaku_server.eligibility.service import today_jst
from shikaku_server.errors import CardNotRegisteredError, CardSuspendedError, CertificateRevokedError

if TYPE_CHECKING:
    from shikaku_server.state import AppState

ME_SCOPE = "me"  # the "facility" of a challenge from /v1/me/challenges: good for /v1/me/* only


@dataclass(frozen=True, slots=True)
class Proven:
    """The person the card is linked to, and the card itself."""

    insured_id: int
    issuer: str
    serial_hex: str
    facility_code: str | None  # the kiosk's facility when the call came with its token


async def check_card(
    state: AppState, cert_der: bytes, facility_code: str
) -> tuple[card.CardFacts, verify.VerifiedCertificate, str]:
    """Chain, expiry and revocation of a certificate, and what the database knows of the card."""
    today = today_jst()
    verified, _ = await state.verifier.acheck_chain(state.session_factory, cert_der, today)
    serial_hex = serial_text(verified.serial_number)
    if state.pg is not None:
        facts = await card.card_facts_async(state.pg, verified.issuer, serial_hex, facility_code)
    else:
        facts = await run_in_threadpool(
            card.card_facts, state.session_factory, verified.issuer, serial_hex, facility_code
        )
    if facts.revoked:
        raise CertificateRevokedError()
    return facts, verified, serial_hex


async def prove(
    state: AppState, *, challenge_id: str, cert_der: bytes, signature: bytes, facility_code: str | None = None
) -> Proven:
    """The linked person of the card that signed this fresh challenge, or the contract's error."""
    scope = facility_code or ME_SCOPE
    nonce = await card.aredeem_challenge(state.cache, challenge_id, scope, state.settings.challenge_ttl_seconds)
    facts, verified, serial_hex = await check_card(state, cert_der, scope)
    verify.verify_pin_signature(verified.certificate, nonce, signature)
    if facts.insured_id is None:
        raise CardNotRegisteredError()
    if facts.suspended:
        raise CardSuspendedError()
    return Proven(facts.insured_id, verified.issuer, serial_hex, facility_code)
