"""Putting a card to use: the one way the kiosk's check and the patient portal open the card on
the reader (connect, check it is a My Number card with JPKI, read the authentication certificate
and how many PIN tries are left). Nothing here needs the PIN."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clinic_terminal.card.errors import CardError
from clinic_terminal.card.reader import MyNumberCard
from clinic_terminal.card.transport import CardTransport


@dataclass(frozen=True)
class OpenedCard:
    transport: CardTransport
    card: MyNumberCard
    certificate: bytes  # the user-authentication certificate (DER)
    tries_left: int  # authentication PIN tries left (0: blocked)


def open_card(connect_card: Callable[[], CardTransport]) -> OpenedCard:
    """Connect and read what is readable without the PIN; raises ``CardError`` (the transport is
    closed again when anything fails)."""
    transport: CardTransport | None = None
    try:
        transport = connect_card()
        card = MyNumberCard(transport)
        card.check_jpki()
        certificate = card.read_auth_certificate()
        tries = card.auth_pin_tries_left()
    except CardError:
        if transport is not None:
            transport.close()
        raise
    return OpenedCard(transport, card, certificate, tries)
