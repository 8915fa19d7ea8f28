"""The terminal's outage mode (緊急時): journal the checks the server could not answer, re-check later.

See docs/kiosk.md ("Outage mode") and docs/xml-interface.md ("Follow-up results").
"""

from clinic_terminal.outage.journal import (
    OUTAGE_LABEL,
    STATUS_LABEL,
    CardIdentity,
    JournalError,
    OutageEntry,
    OutageJournal,
    visit_date_of,
)
from clinic_terminal.outage.recheck import Backoff, Rechecker

__all__ = [
    "OUTAGE_LABEL",
    "STATUS_LABEL",
    "Backoff",
    "CardIdentity",
    "JournalError",
    "OutageEntry",
    "OutageJournal",
    "Rechecker",
    "visit_date_of",
]
