"""``shikaku-admin``: the operator's CLI. Thin commands over the services."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shikaku_server.install import missing_library, refuse

try:
    from sqlalchemy.orm import Session, sessionmaker

    from shikaku_server.config import get_settings
    from shikaku_server.database import make_engine, make_session_factory, transaction
    from shikaku_server.errors import DomainError
except ModuleNotFoundError as _exc:
    _MISSING: str | None = missing_library(_exc)
else:
    _MISSING = None


def _factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(get_settings().database_url))


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
def facility_add(code: str, name: str, role: str, label: str | None) -> None:
    """Register a facility (if new) and print a new facility-user token for ROLE."""
    from shikaku_server.auth.service import add_facility

    with transaction(_factory()) as session:
        token = add_facility(session, code=code, name=name, role=role, label=label)
    click.echo(token)


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
    """Import a CRL (DER or PEM) published by the identity authority."""
    from shikaku_server.card.service import import_crl

    with transaction(_factory()) as session:
        count = import_crl(session, crl_file.read_bytes())
    click.echo(f"{count} revoked certificate(s) imported")


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
    if _MISSING is not None:
        refuse("shikaku-admin", _MISSING)
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
