"""The card's proof for the patient's own calls: ONE function, ``prove``.

A ``/v1/me/*`` call carries a challenge (from ``/v1/me/challenges``, or at a kiosk one of its
facility from ``/v1/card/challenges``), the card's certificate and the card's signature over the
challenge's nonce, made with the user-authentication key after the PIN. ``prove`` redeems the
challenge (single use: a reused one is ``challenge_reused``), checks the certificate (chain,
expiry, revocation), the signature, the link to an insured person and the suspension, in that
order, and answers the linked person. Nothing else in ``me/`` looks at a card.

It is ``card.service.prove_card`` (challenge, chain, revocation, PIN signature, link,
suspension: the card path's own async steps) with the patient's scope."""

from __future__ import annotations

from dataclasses import dataclass

from shikaku_server.card import service as card

ME_SCOPE = "me"  # the "facility" of a challenge from /v1/me/challenges: good for /v1/me/* only


@dataclass(frozen=True, slots=True)
class Proven:
    """The person the card is linked to, and the card itself."""

    insured_id: int
    issuer: str
    serial_hex: str
    facility_code: str | None  # the kiosk's facility when the call came with its token


async def prove(
    ports: card.CardPorts,
    *,
    challenge_id: str,
    cert_der: bytes,
    signature: bytes,
    facility_code: str | None = None,
) -> Proven:
    """The linked person of the card that signed this fresh challenge, or the contract's error."""
    scope = facility_code or ME_SCOPE
    person = await card.prove_card(
        ports,
        challenge_id=challenge_id,
        certificate=cert_der,
        authenticator=card.PinSignature(signature),
        facility_code=scope,
    )
    return Proven(person.insured_id, person.checked.issuer, person.checked.serial_hex, facility_code)
