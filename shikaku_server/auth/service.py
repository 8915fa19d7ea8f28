"""Tokens: issued once (the plain token is shown to the operator and never stored), kept as
SHA-256, resolved to a ``Principal`` on every request."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas.identifiers import facility_code_problem, insurer_number_problem
from shikaku_server.auth.models import ApiToken, Facility, Insurer, Terminal
from shikaku_server.database import utcnow
from shikaku_server.digests import sha256_text
from shikaku_server.errors import ForbiddenRoleError, NotFoundError, UnauthorizedError, ValidationFailedError

FACILITY_ROLES = ("reception", "physician", "dentist", "pharmacist")


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    kind: str  # facility / insurer
    facility_code: str | None
    role: str | None
    insurer_numbers: frozenset[str]

    def require_facility(self, *roles: str) -> str:
        """The facility code, when this is a facility token (of one of ``roles``, if given)."""
        if self.kind != "facility" or self.facility_code is None:
            raise ForbiddenRoleError("a facility token is required")
        if roles and self.role not in roles:
            raise ForbiddenRoleError(f"role {self.role!r} may not do this (needs {' or '.join(roles)})")
        return self.facility_code

    def require_insurer(self) -> frozenset[str]:
        if self.kind != "insurer":
            raise ForbiddenRoleError("an insurer token is required")
        return self.insurer_numbers

    def writable(self, upload_kind: str) -> frozenset[str]:
        """What this token may write in an upload of ``upload_kind``: an insurer token its
        insurer numbers, a 福祉事務所 token (``welfare``) its office code for ``assistance``, a
        公費負担者 token (``payer``) its 公費負担者番号s for ``public_expense``; any other
        pairing is refused (403 ``forbidden_role``)."""
        needed = UPLOADER_KINDS.get(upload_kind, "insurer")
        if self.kind != needed:
            raise ForbiddenRoleError(f"an upload of kind {upload_kind} needs a {needed} token")
        return self.insurer_numbers


# the token kind that uploads each file kind (the rest: ``insurer``); the token's
# ``insurer_numbers`` hold what it may write (docs/assistance.md)
UPLOADER_KINDS = {"assistance": "welfare", "public_expense": "payer"}


def hash_token(token: str) -> str:
    return sha256_text(token.encode())


def _new_token(kind: str) -> str:
    return f"shk_{kind[:3]}_{secrets.token_urlsafe(32)}"


def add_facility(session: Session, *, code: str, name: str, role: str, label: str | None = None) -> str:
    problem = facility_code_problem(code)
    if problem:
        raise ValidationFailedError(f"facility code {code!r}: {problem}")
    if role not in FACILITY_ROLES:
        raise ValidationFailedError(f"role must be one of {', '.join(FACILITY_ROLES)}")
    if session.get(Facility, code) is None:
        session.add(Facility(code=code, name=name))
        session.flush()
    token = _new_token("facility")
    session.add(ApiToken(token_hash=hash_token(token), kind="facility", facility_code=code, role=role, label=label))
    session.flush()
    return token


def add_insurer(session: Session, *, numbers: list[str], name: str, label: str | None = None) -> str:
    for number in numbers:
        problem = insurer_number_problem(number)
        if problem:
            raise ValidationFailedError(f"insurer number {number!r}: {problem}")
        existing = session.get(Insurer, number)
        if existing is None:
            session.add(Insurer(number=number, name=name))
        elif name:
            existing.name = name
    token = _new_token("insurer")
    session.add(ApiToken(token_hash=hash_token(token), kind="insurer", insurer_numbers=sorted(numbers), label=label))
    session.flush()
    return token


def add_welfare_office(session: Session, *, office_code: str, label: str | None = None) -> str:
    """A token of a 福祉事務所: it may write the 医療券/調剤券 of its own office code only."""
    if len(office_code) != 6 or not office_code.isascii() or not office_code.isdigit():
        raise ValidationFailedError("the 福祉事務所 code is 6 digits")
    token = _new_token("welfare")
    session.add(ApiToken(token_hash=hash_token(token), kind="welfare", insurer_numbers=[office_code], label=label))
    session.flush()
    return token


def add_payer(session: Session, *, numbers: list[str], label: str | None = None) -> str:
    """A token of a prefecture or municipality: it may write the 公費負担医療 受給者証 of these
    公費負担者番号s only."""
    from schemas.insurer_files import ASSISTANCE_LAW, payer_number_problem

    for number in numbers:
        problem = payer_number_problem(number)
        if problem or number.startswith(ASSISTANCE_LAW):
            why = problem or "医療扶助 is loaded by a welfare office"
            raise ValidationFailedError(f"公費負担者番号 {number!r}: {why}")
    token = _new_token("payer")
    session.add(ApiToken(token_hash=hash_token(token), kind="payer", insurer_numbers=sorted(numbers), label=label))
    session.flush()
    return token


def add_terminal(session: Session, *, terminal_id: str, facility_code: str, public_key_pem: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if session.get(Facility, facility_code) is None:
        raise ValidationFailedError(f"unknown facility {facility_code!r}: add it first")
    try:
        key = load_pem_public_key(public_key_pem.encode())
    except ValueError as exc:
        raise ValidationFailedError("the terminal key is not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValidationFailedError("the terminal key must be an EC P-256 public key (ES256)")
    existing = session.get(Terminal, terminal_id)
    if existing is not None:
        existing.facility_code, existing.public_key_pem, existing.revoked_at = facility_code, public_key_pem, None
    else:
        session.add(Terminal(id=terminal_id, facility_code=facility_code, public_key_pem=public_key_pem))
    session.flush()


class PrincipalCache:
    """Resolved tokens, kept ``ttl`` seconds per process. A revocation empties it at once
    (``clear``, called by the app's revocation watcher within a second of the revocation).

    ``generation`` is read before a token is resolved and given back to ``put``: a principal
    resolved before a ``clear`` (perhaps before the revocation committed) is never stored after it."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000) -> None:
        self._ttl = ttl
        self._size = size
        self._items: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, token_hash: str) -> Principal | None:
        item = self._items.get(token_hash)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, token_hash: str, principal: Principal, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            if len(self._items) >= self._size:
                self._items.clear()
            self._items[token_hash] = (time.monotonic() + self._ttl, principal)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._items = {}


def revocation_mark(session: Session) -> tuple[int, str | None]:
    """Changes whenever a token is revoked: (revoked tokens, latest revocation time)."""
    count, latest = session.execute(
        select(func.count(ApiToken.id), func.max(ApiToken.revoked_at)).where(ApiToken.revoked_at.is_not(None))
    ).one()
    return int(count), None if latest is None else str(latest)


def list_tokens(session: Session) -> list[dict[str, Any]]:
    """Every token as the operator may see it: never the token, never its hash."""
    rows = session.execute(select(ApiToken).order_by(ApiToken.id)).scalars()
    return [
        {
            "id": t.id,
            "kind": t.kind,
            "facility": t.facility_code,
            "insurers": sorted(t.insurer_numbers or ()),
            "role": t.role,
            "label": t.label,
            "created": t.created_at.isoformat(timespec="seconds"),
            "revoked": t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None,
        }
        for t in rows
    ]


def revoke_tokens(
    session: Session,
    *,
    token_ids: Sequence[int] = (),
    facility_code: str | None = None,
    insurer_number: str | None = None,
) -> list[int]:
    """Revoke the live tokens selected (by id, every token of a facility, every token that may
    write an insurer number); the ids revoked. Unknown ids are refused (nothing is revoked)."""
    if not token_ids and facility_code is None and insurer_number is None:
        raise ValidationFailedError("name the token id(s), --facility or --insurer to revoke")
    live = session.execute(select(ApiToken).where(ApiToken.revoked_at.is_(None))).scalars().all()
    known = set(session.execute(select(ApiToken.id)).scalars())
    unknown = sorted(set(token_ids) - known)
    if unknown:
        raise NotFoundError(f"no token with id {', '.join(map(str, unknown))}")
    chosen = [
        t
        for t in live
        if t.id in token_ids
        or (facility_code is not None and t.facility_code == facility_code)
        or (insurer_number is not None and insurer_number in (t.insurer_numbers or ()))
    ]
    now = utcnow()
    for token in chosen:
        token.revoked_at = now
    session.flush()
    return [t.id for t in chosen]


def resolve_token(session: Session, token: str) -> Principal:
    token_hash = hash_token(token)
    row = session.execute(
        select(ApiToken).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        raise UnauthorizedError("the token is unknown or revoked")
    return Principal(
        token_id=row.id,
        kind=row.kind,
        facility_code=row.facility_code,
        role=row.role,
        insurer_numbers=frozenset(row.insurer_numbers or ()),
    )
