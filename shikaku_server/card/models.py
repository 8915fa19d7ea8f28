"""Card certificates linked to insured persons, the audit of every link, and revocations."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shikaku_server.database import Base, utcnow


class CardLink(Base):
    """(issuer, serial) of a user-authentication certificate → insured person."""

    __tablename__ = "card_link"
    __table_args__ = (UniqueConstraint("issuer", "serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500))
    serial: Mapped[str] = mapped_column(String(64))  # hex
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    not_after: Mapped[dt.datetime]
    linked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CardLinkAudit(Base):
    """Every registration attempt and its outcome (linked / no_match / ambiguous)."""

    __tablename__ = "card_link_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    facility_code: Mapped[str] = mapped_column(String(10))
    fingerprint: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    insured_id: Mapped[int | None] = mapped_column(ForeignKey("insured.id"))
    candidates: Mapped[int]


class RevokedCertificate(Base):
    __tablename__ = "revoked_certificate"
    __table_args__ = (UniqueConstraint("issuer", "serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500))
    serial: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None]
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TrustAnchor(Base):
    """Trusted JPKI user-authentication CA certificates added with ``shikaku-admin trust add``
    (in addition to the ``SHIKAKU_TRUST_ANCHORS`` files)."""

    __tablename__ = "trust_anchor"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(500))
    pem: Mapped[str]
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CardSuspension(Base):
    """一時利用停止: a card (issuer, serial) suspended by its holder (``/v1/me/suspension``) or by
    the call centre (``shikaku-admin cards suspend``), until resumed. Rows are kept: who suspended
    and who resumed, and when, is the audit trail. A card is suspended while a row of it has no
    ``resumed_at``; every card check reads this table (no cache), so a suspension is refused by
    every server process at its next request."""

    __tablename__ = "card_suspension"
    __table_args__ = (Index("ix_card_suspension_card", "issuer", "serial", "resumed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500))
    serial: Mapped[str] = mapped_column(String(64))
    insured_id: Mapped[int] = mapped_column(ForeignKey("insured.id"))
    suspended_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    suspended_by: Mapped[str] = mapped_column(String(200))  # "patient" or "operator:<name>"
    resumed_at: Mapped[dt.datetime | None]
    resumed_by: Mapped[str | None] = mapped_column(String(200))
