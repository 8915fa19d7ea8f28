"""``shikaku-admin``: the operator's CLI. Thin commands over the services."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.orm import Session, sessionmaker

from shikaku_server.config import get_settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.errors import DomainError

if TYPE_CHECKING:
    from shikaku_server.card.service import CertificateVerifier


def _factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(get_settings().database_url))


def _verifier() -> CertificateVerifier:
    """The server's trust anchors (files and database), as the server trusts them."""
    from shikaku_server.card.service import CertificateVerifier

    return CertificateVerifier(get_settings().trust_anchor_paths(), 1)


@click.group()
def cli() -> None:
    """Operate the central server (database from SHIKAKU_DATABASE_URL)."""


@cli.command()
def migrate() -> None:
    """Create or upgrade the schema (alembic upgrade head)."""
    from shikaku_server.migrate import upgrade

    upgrade(get_settings().database_url)
    click.echo("database is at the latest schema")


@cli.group()
def facility() -> None:
    """Clinics and pharmacies."""


@facility.command("add")
@click.option("--code", required=True, help="10-digit 医療機関コード")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["reception", "physician", "dentist", "pharmacist"]), default="reception")
@click.option("--label", default=None, help="who holds the token (for the operator's records)")
@click.option(
    "--emergency/--no-emergency",
    default=None,
    help="mark (or unmark) the facility as an emergency hospital (救急時医療情報閲覧)",
)
def facility_add(code: str, name: str, role: str, label: str | None, emergency: bool | None) -> None:
    """Register a facility (if new) and print a new facility-user token for ROLE."""
    from shikaku_server.auth.service import add_facility
    from shikaku_server.emergency.service import set_emergency

    with transaction(_factory()) as session:
        token = add_facility(session, code=code, name=name, role=role, label=label)
        if emergency is not None:
            set_emergency(session, code, emergency)
    click.echo(token)


@cli.group()
def cards() -> None:
    """一時利用停止: suspend a lost card for its holder (the call centre), and resume it.

    The caller is identified by the insurance number (保険者番号, 記号, 番号, 枝番) and the four
    facts (name, birth date, sex, address), all of which must match the person's current record;
    every card linked to the person is suspended. Logged with the operator in the audit trail."""


def _person_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--insurer-number", required=True, help="保険者番号"),
            click.option("--symbol", required=True, help="記号"),
            click.option("--number", required=True, help="番号"),
            click.option("--branch", required=True, help="枝番 (2 digits)"),
            click.option("--name", required=True),
            click.option("--birth-date", required=True, type=click.DateTime(["%Y-%m-%d"])),
            click.option("--sex", required=True, type=click.Choice(["1", "2", "3"])),
            click.option("--address", required=True),
            click.option("--operator", required=True, help="the operator's name or id (the audit trail)"),
        ]
    ):
        command = option(command)
    return command


def _person(session: Session, options: dict[str, Any]) -> int:
    from shikaku_server.me.suspension import person_by_facts

    return person_by_facts(
        session,
        insurer_number=options["insurer_number"],
        symbol=options["symbol"],
        number=options["number"],
        branch=options["branch"],
        name=options["name"],
        birth_date=options["birth_date"].date(),
        sex=options["sex"],
        address=options["address"],
    )


@cards.command("suspend")
@_person_options
def cards_suspend(**options: Any) -> None:
    """Suspend every card of the person (refused everywhere with card_suspended until resumed)."""
    from shikaku_server.me.suspension import suspend_person

    with transaction(_factory()) as session:
        count = suspend_person(session, _person(session, options), by=f"operator:{options['operator']}")
    click.echo(f"{count} card(s) suspended")


@cards.command("resume")
@_person_options
def cards_resume(**options: Any) -> None:
    """End the suspension of the person's cards."""
    from shikaku_server.me.suspension import resume_person

    with transaction(_factory()) as session:
        count = resume_person(session, _person(session, options), by=f"operator:{options['operator']}")
    click.echo(f"{count} card(s) resumed")


@cli.group()
def insurer() -> None:
    """Insurers (保険者)."""


@insurer.command("add")
@click.option("--number", "numbers", required=True, multiple=True, help="insurer number (repeatable)")
@click.option("--name", required=True)
@click.option("--label", default=None)
def insurer_add(numbers: tuple[str, ...], name: str, label: str | None) -> None:
    """Register insurer number(s) and print an upload token that may write them."""
    from shikaku_server.auth.service import add_insurer

    with transaction(_factory()) as session:
        token = add_insurer(session, numbers=list(numbers), name=name, label=label)
    click.echo(token)


@cli.group()
def token() -> None:
    """API tokens: list and revoke (a revocation takes effect in every server process within
    about SHIKAKU_TOKEN_REVOCATION_CHECK_SECONDS)."""


@token.command("list")
@click.option("--all", "show_all", is_flag=True, help="include revoked tokens")
def token_list(show_all: bool) -> None:
    """Tokens by id: kind, facility or insurer numbers, role, label, created, revoked (never the
    token or its hash)."""
    from shikaku_server.auth.service import list_tokens

    with transaction(_factory()) as session:
        rows = [t for t in list_tokens(session) if show_all or t["revoked"] is None]
    click.echo("id\tkind\tfacility/insurers\trole\tlabel\tcreated\trevoked")
    for t in rows:
        owner = t["facility"] or ",".join(t["insurers"])
        fields = (t["id"], t["kind"], owner, t["role"] or "-", t["label"] or "-", t["created"], t["revoked"] or "-")
        click.echo("\t".join(str(f) for f in fields))


@token.command("revoke")
@click.argument("token_ids", nargs=-1, type=int)
@click.option("--facility", "facility_code", default=None, help="every token of this facility")
@click.option("--insurer", "insurer_number", default=None, help="every token that may write this insurer number")
def token_revoke(token_ids: tuple[int, ...], facility_code: str | None, insurer_number: str | None) -> None:
    """Revoke TOKEN_ID(s) (see ``token list``), or every live token of a facility or an insurer."""
    from shikaku_server.auth.service import revoke_tokens

    with transaction(_factory()) as session:
        revoked = revoke_tokens(
            session, token_ids=token_ids, facility_code=facility_code, insurer_number=insurer_number
        )
    click.echo(f"{len(revoked)} token(s) revoked" + (f": {', '.join(map(str, revoked))}" if revoked else ""))


@cli.group()
def terminal() -> None:
    """Kiosk terminals (face attestations are signed with their keys)."""


@terminal.command("add")
@click.option("--id", "terminal_id", required=True)
@click.option("--facility", "facility_code", required=True)
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM file of the terminal's EC P-256 public key",
)
def terminal_add(terminal_id: str, facility_code: str, public_key: Path) -> None:
    """Register (or re-key) a terminal's public key."""
    from shikaku_server.auth.service import add_terminal

    with transaction(_factory()) as session:
        add_terminal(
            session, terminal_id=terminal_id, facility_code=facility_code, public_key_pem=public_key.read_text()
        )
    click.echo(f"terminal {terminal_id} registered for facility {facility_code}")


@cli.group()
def revocations() -> None:
    """Certificate revocation lists."""


@revocations.command("import")
@click.argument("crl_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def revocations_import(crl_file: Path) -> None:
    """Import a full or delta CRL (DER or PEM) published by the identity authority."""
    from shikaku_server.card.crl_watch import apply_crl

    with transaction(_factory()) as session:
        applied = apply_crl(session, crl_file.read_bytes(), verifier=_verifier())
    released = f", {applied.removed} released (removeFromCRL)" if applied.removed else ""
    click.echo(f"{applied.added} revoked certificate(s) imported{released}")


@revocations.command("watch")
@click.argument("sources", nargs=-1, required=True)
@click.option("--interval", default=300.0, show_default=True, help="seconds between two polls")
@click.option("--once", is_flag=True, help="poll once and exit")
def revocations_watch(sources: tuple[str, ...], interval: float, once: bool) -> None:
    """Poll full and delta CRLs at SOURCES (http(s) URLs or directories) and import them."""
    from shikaku_server.card.crl_watch import Watch

    Watch(_factory(), list(sources), _verifier()).run(interval, passes=1 if once else None, echo=click.echo)


@cli.group()
def trust() -> None:
    """Trusted JPKI user-authentication CA certificates."""


@trust.command("add")
@click.argument("ca_cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def trust_add(ca_cert: Path) -> None:
    """Trust a CA certificate (PEM or DER) for card certificates."""
    from shikaku_server.card.service import add_trust_anchor

    with transaction(_factory()) as session:
        subject = add_trust_anchor(session, ca_cert.read_bytes())
    click.echo(f"trusted: {subject}")


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DomainError as exc:
        click.echo(f"error ({exc.code}): {exc.detail}", err=True)
        sys.exit(2)
