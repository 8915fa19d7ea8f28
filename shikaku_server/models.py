"""Every table, imported once so Alembic and the app see the whole metadata."""

from shikaku_server.access_log.models import AccessLogEntry
from shikaku_server.assistance.models import AssistanceRead, AssistanceTicket
from shikaku_server.auth.models import ApiToken, Facility, Insurer, Terminal
from shikaku_server.batch.models import Batch
from shikaku_server.card.models import CardLink, CardLinkAudit, CardSuspension, RevokedCertificate, TrustAnchor
from shikaku_server.clinical.models import Checkup, Medication, Procedure
from shikaku_server.consent.models import Consent, Visit
from shikaku_server.database import Base
from shikaku_server.eligibility.models import EligibilityPeriod, Insured
from shikaku_server.emergency.models import EmergencyRead
from shikaku_server.expenses.models import Expense
from shikaku_server.public_expense.models import PublicExpense
from shikaku_server.upload.models import Upload

__all__ = [
    "AccessLogEntry",
    "ApiToken",
    "AssistanceRead",
    "AssistanceTicket",
    "Base",
    "Batch",
    "CardLink",
    "CardLinkAudit",
    "CardSuspension",
    "Checkup",
    "Consent",
    "EligibilityPeriod",
    "EmergencyRead",
    "Expense",
    "Facility",
    "Insured",
    "Insurer",
    "Medication",
    "Procedure",
    "PublicExpense",
    "RevokedCertificate",
    "Terminal",
    "TrustAnchor",
    "Upload",
    "Visit",
]
