"""``shikaku-admin token list`` / ``token revoke``: a revoked token stops working in every server
process within a second or two (the principal caches are emptied by each app's revocation
watcher), on SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shikaku_server.admin import cli
from shikaku_server.app import create_app
from shikaku_server.auth.service import hash_token
from shikaku_server.config import Settings, get_settings
from tests.conftest import FACILITY_CODE, auth
from tests.factories import INSURER_A

QUERY = {"insurer_number": INSURER_A, "symbol": "123", "number": "4567", "branch": "00", "birth_date": "1980-04-01"}


@pytest.fixture
def admin(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("SHIKAKU_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def rows(runner: CliRunner, *flags: str) -> list[list[str]]:
    return [line.split("\t") for line in run(runner, "token", "list", *flags).splitlines()[1:]]


def token_id(runner: CliRunner, *, role: str) -> int:
    for line in run(runner, "token", "list").splitlines()[1:]:
        fields = line.split("\t")
        if fields[3] == role:
            return int(fields[0])
    raise AssertionError(role)


def test_list_shows_tokens_without_their_secret(admin: CliRunner, tokens: dict[str, str]) -> None:
    out = run(admin, "token", "list")
    lines = out.splitlines()
    assert lines[0].split("\t") == ["id", "kind", "facility/insurers", "role", "label", "created", "revoked"]
    assert len(lines) == 1 + len(tokens)
    assert any(f"\tfacility\t{FACILITY_CODE}\treception\t" in line for line in lines)
    assert any(line.split("\t")[1] == "insurer" and INSURER_A in line.split("\t")[2] for line in lines)
    for token in tokens.values():
        assert token not in out and hash_token(token) not in out


def _status(client: TestClient, token: str) -> int:
    return int(client.post("/v1/eligibility/by-number", json=QUERY, headers=auth(token)).status_code)


def test_revoked_token_stops_working_in_every_process_within_two_seconds(
    settings: Settings, admin: CliRunner, tokens: dict[str, str]
) -> None:
    """Two app instances on one database (and one Redis on PostgreSQL): both have the token
    resolved and cached; after ``token revoke`` both answer 401 within 2 s."""
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        for client in (one, two):
            assert _status(client, tokens["reception"]) == 200
            assert _status(client, tokens["physician"]) == 200
        reception_id = token_id(admin, role="reception")
        assert run(admin, "token", "revoke", str(reception_id)) == f"1 token(s) revoked: {reception_id}\n"
        start = time.monotonic()
        pending = {id(one): one, id(two): two}
        while pending:
            for key, client in list(pending.items()):
                if _status(client, tokens["reception"]) == 401:
                    del pending[key]
            assert time.monotonic() - start < 2.0, "a revoked token still works"
            time.sleep(0.05)
        for client in (one, two):
            assert _status(client, tokens["physician"]) == 200  # the others keep working
        assert str(reception_id) not in [r[0] for r in rows(admin)]
        revoked = [r for r in rows(admin, "--all") if r[0] == str(reception_id)]
        assert len(revoked) == 1 and revoked[0][6] != "-"


def test_revoke_by_facility_or_insurer(admin: CliRunner, client: TestClient, tokens: dict[str, str]) -> None:
    assert run(admin, "token", "revoke", "--insurer", INSURER_A).startswith("1 token(s) revoked")
    assert run(admin, "token", "revoke", "--facility", FACILITY_CODE).startswith("3 token(s) revoked")
    assert run(admin, "token", "revoke", "--facility", FACILITY_CODE) == "0 token(s) revoked\n"
    assert [r[3] for r in rows(admin)] == ["pharmacist", "-"]  # the pharmacy, insurer B


def test_revoke_needs_a_selector_and_known_ids(admin: CliRunner, tokens: dict[str, str]) -> None:
    from shikaku_server.errors import DomainError

    with pytest.raises(DomainError):
        admin.invoke(cli, ["token", "revoke"], catch_exceptions=False)
    with pytest.raises(DomainError):
        admin.invoke(cli, ["token", "revoke", "999"], catch_exceptions=False)
    assert all(r[6] == "-" for r in rows(admin, "--all"))
