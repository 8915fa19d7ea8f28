"""``shikaku-admin revocations watch URL|DIR``: full and delta CRLs polled and imported, from a
directory and from a local HTTP server."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from fastapi.testclient import TestClient

from shikaku_server.admin import cli
from shikaku_server.card.models import RevokedCertificate
from shikaku_server.config import Settings, get_settings
from shikaku_server.digests import serial_text
from testbed.pki import IssuedCertificate, TestCA, rsa_key
from tests.integration.test_card_api import by_card, problem_code, register

HTTP_PORT = 9321  # this work tree's port range
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def crl(
    ca: TestCA,
    number: int,
    entries: dict[int, x509.ReasonFlags | None],
    *,
    delta_of: int | None = None,
    freshest: str | None = None,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=3650))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    if freshest is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(freshest)], None, None, None)
        builder = builder.add_extension(x509.FreshestCRL([point]), critical=False)
    for serial, reason in entries.items():
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.root.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def admin(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("SHIKAKU_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SHIKAKU_TRUST_ANCHORS", settings.trust_anchors or "")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.fixture
def two_cards(client: TestClient, tokens: dict[str, str], test_ca: TestCA, loaded: None) -> list[IssuedCertificate]:
    held, other = test_ca.issue_auth_certificate(), test_ca.issue_auth_certificate()
    assert register(client, tokens["reception"], held).status_code == 200
    return [held, other]


@pytest.fixture
def loaded(client: TestClient, tokens: dict[str, str]) -> None:
    from tests.factories import eligibility_csv, person
    from tests.integration.test_eligibility_api import upload

    upload(client, tokens["insurer"], eligibility_csv([person()]))


def revoked(session_factory: Any) -> set[str]:
    with session_factory() as s:
        return set(s.execute(sa.select(RevokedCertificate.serial)).scalars())


def watch(admin: CliRunner, *args: str) -> str:
    result = admin.invoke(cli, ["revocations", "watch", *args, "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_watch_a_directory_full_then_delta(
    admin: CliRunner,
    client: TestClient,
    tokens: dict[str, str],
    test_ca: TestCA,
    two_cards: list[IssuedCertificate],
    session_factory: Any,
    tmp_path: Path,
) -> None:
    held, other = two_cards
    hold = x509.ReasonFlags.certificate_hold
    (tmp_path / "1-full.crl").write_bytes(crl(test_ca, 1, {held.serial_number: hold}))
    out = watch(admin, str(tmp_path))
    assert "full CRL 1" in out and "1 revoked" in out
    assert problem_code(by_card(client, tokens["reception"], held)) == "certificate_revoked"
    # the delta: the hold on the held card released, the other card revoked
    delta = {held.serial_number: x509.ReasonFlags.remove_from_crl, other.serial_number: None}
    (tmp_path / "2-delta.crl").write_bytes(crl(test_ca, 2, delta, delta_of=1))
    out = watch(admin, str(tmp_path))
    assert "delta CRL 2" in out and "1 released" in out
    assert revoked(session_factory) == {serial_text(other.serial_number)}
    assert by_card(client, tokens["reception"], held).status_code == 200
    # a CRL signed by someone else is not imported
    stranger = TestCA.create(common_name="JPKI Test User Authentication CA", key=rsa_key(999))
    (tmp_path / "3-forged.crl").write_bytes(crl(stranger, 3, {held.serial_number: None}, delta_of=2))
    watch(admin, str(tmp_path))
    assert by_card(client, tokens["reception"], held).status_code == 200


def test_watch_a_url_follows_the_freshest_crl_to_its_delta(
    admin: CliRunner,
    client: TestClient,
    tokens: dict[str, str],
    test_ca: TestCA,
    two_cards: list[IssuedCertificate],
    tmp_path: Path,
) -> None:
    held, other = two_cards
    base = f"http://127.0.0.1:{HTTP_PORT}"
    (tmp_path / "full.crl").write_bytes(crl(test_ca, 7, {other.serial_number: None}, freshest=f"{base}/delta.crl"))
    (tmp_path / "delta.crl").write_bytes(crl(test_ca, 8, {held.serial_number: None}, delta_of=7))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", HTTP_PORT), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = watch(admin, f"{base}/full.crl")
    finally:
        server.shutdown()
        server.server_close()
    assert "full CRL 7" in out and "delta CRL 8" in out
    assert problem_code(by_card(client, tokens["reception"], held)) == "certificate_revoked"


def test_an_unreachable_source_is_reported_and_the_watch_goes_on(admin: CliRunner, tmp_path: Path) -> None:
    out = watch(admin, f"http://127.0.0.1:{HTTP_PORT + 1}/none.crl", str(tmp_path))
    assert "Traceback" not in out


def test_import_by_hand_applies_a_delta_too(
    admin: CliRunner,
    client: TestClient,
    tokens: dict[str, str],
    test_ca: TestCA,
    two_cards: list[IssuedCertificate],
    tmp_path: Path,
) -> None:
    held, _ = two_cards
    full = tmp_path / "full.crl"
    full.write_bytes(crl(test_ca, 1, {held.serial_number: x509.ReasonFlags.certificate_hold}))
    delta = tmp_path / "delta.crl"
    delta.write_bytes(crl(test_ca, 2, {held.serial_number: x509.ReasonFlags.remove_from_crl}, delta_of=1))
    out = admin.invoke(cli, ["revocations", "import", str(full)], catch_exceptions=False).output
    assert "1 revoked certificate(s) imported" in out
    assert problem_code(by_card(client, tokens["reception"], held)) == "certificate_revoked"
    out = admin.invoke(cli, ["revocations", "import", str(delta)], catch_exceptions=False).output
    assert "1 released" in out
    assert by_card(client, tokens["reception"], held).status_code == 200
