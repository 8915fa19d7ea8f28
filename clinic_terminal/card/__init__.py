"""The My Number card below the terminal: transports, errors, the card reader and the monitor.

Only :mod:`clinic_terminal.card.pyscard_transport` (and its sibling ``pyscard_monitor``) import
``smartcard``; everything else speaks to a :class:`~clinic_terminal.card.transport.CardTransport`.
"""

from clinic_terminal.card.errors import (
    CardError,
    CardProtocolError,
    CardRemovedError,
    CollationBFormatError,
    CollationBLockedError,
    CollationBWrongError,
    ForbiddenFileError,
    NoCardError,
    NoReaderError,
    NotMyNumberCardError,
    PinBlockedError,
    PinFormatError,
    PinWrongError,
)
from clinic_terminal.card.models import BasicFacts
from clinic_terminal.card.reader import MyNumberCard
from clinic_terminal.card.transport import CardTransport

__all__ = [
    "BasicFacts",
    "CardError",
    "CardProtocolError",
    "CardRemovedError",
    "CardTransport",
    "CollationBFormatError",
    "CollationBLockedError",
    "CollationBWrongError",
    "ForbiddenFileError",
    "MyNumberCard",
    "NoCardError",
    "NoReaderError",
    "NotMyNumberCardError",
    "PinBlockedError",
    "PinFormatError",
    "PinWrongError",
]
