"""Shared fixtures: the server on both backends.

``backend`` runs each server test twice: on the embedded default (SQLite file + in-process
cache) and on PostgreSQL + Redis. Schemas are built by the Alembic migrations, never by
``create_all``. PostgreSQL and Redis must be reachable: a missing service FAILS the run (never
skips). Override with SHIKAKU_TEST_PG_URL / SHIKAKU_TEST_REDIS_URL.

Two test runs on one machine (two work trees) can run side by side when each sets its own
SHIKAKU_TEST_LOCK, SHIKAKU_TEST_DB_PREFIX and SHIKAKU_TEST_REDIS_URL (another Redis server, or
the same one: the database number then comes from SHIKAKU_TEST_REDIS_DB_BASE).

The suite uses machine-wide resources by fixed names (databases ``shikaku_test_N``, Redis
databases 1–15, the one virtual PC/SC reader), so a second test run on the same machine waits
for the first one (a lock file) instead of corrupting it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shikaku_server.app import create_app
from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.config import Settings
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.pki import TestCA, write_pem_certificates

PG_ADMIN_URL = os.environ.get("SHIKAKU_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("SHIKAKU_TEST_REDIS_URL", "redis://127.0.0.1:6379")
DB_PREFIX = os.environ.get("SHIKAKU_TEST_DB_PREFIX", "shikaku_test")
REDIS_DB_BASE = int(os.environ.get("SHIKAKU_TEST_REDIS_DB_BASE", "1"))
FACILITY_CODE = "0110113719"  # 医科, Luhn-valid
PHARMACY_CODE = "1341234563"


RUN_LOCK = Path(os.environ.get("SHIKAKU_TEST_LOCK", "/tmp/shikaku-test-run.lock"))
_run_lock: list[TextIO] = []  # the open lock file, held for the whole run


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controlling process holds the lock for its workers
    lock = RUN_LOCK.open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for another shikaku test run on this machine ({RUN_LOCK}) ...", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    _run_lock.append(lock)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _run_lock:
        _run_lock.pop().close()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"{DB_PREFIX}_{_worker_index()}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the test suite and is not reachable: {exc}", pytrace=False)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = f"{REDIS_BASE_URL}/{(REDIS_DB_BASE + _worker_index()) % 16}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required for the test suite and is not reachable: {exc}", pytrace=False)
    return url


def _truncate_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'")
            )
        ]
        conn.execute(sa.text("SET session_replication_role = replica"))  # lets the test reset access_log
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(scope="session")
def test_ca() -> TestCA:
    return TestCA.create()


@pytest.fixture(scope="session")
def test_ca_ecdsa() -> TestCA:
    """The 2026 generation's root (ECDSA P-384): the 2026 card's and the smartphone's issuer."""
    return TestCA.create_ecdsa()


@pytest.fixture(scope="session")
def trust_anchor_file(test_ca: TestCA, test_ca_ecdsa: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both generations' roots, as the server trusts them in production (one PEM bundle)."""
    path = tmp_path_factory.mktemp("pki") / "jpki-root.pem"
    return write_pem_certificates(path, test_ca.certificate, test_ca_ecdsa.certificate)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, request: pytest.FixtureRequest, tmp_path: Path, trust_anchor_file: Path) -> Settings:
    anchors = trust_anchor_file
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        db = tmp_path / "shikaku.sqlite3"
        shutil.copy(template, db)
        return Settings(database_url=f"sqlite:///{db}", redis_url=None, trust_anchors=str(anchors))
    url: str = request.getfixturevalue("pg_url")
    rurl: str = request.getfixturevalue("redis_url")
    _truncate_pg(url)
    redis.Redis.from_url(rurl).flushdb()
    return Settings(database_url=url, redis_url=rurl, trust_anchors=str(anchors))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def session_factory(settings: Settings):
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def tokens(session_factory) -> dict[str, str]:
    """A token per role at one clinic, one pharmacist token, and insurer tokens."""
    from tests.factories import INSURER_A, INSURER_B, INSURER_KOKUHO

    out: dict[str, str] = {}
    with transaction(session_factory) as s:
        for role in ("reception", "physician", "dentist"):
            out[role] = add_facility(s, code=FACILITY_CODE, name="しかく内科クリニック", role=role)
        out["pharmacist"] = add_facility(s, code=PHARMACY_CODE, name="さくら薬局", role="pharmacist")
        out["insurer"] = add_insurer(s, numbers=[INSURER_A, INSURER_KOKUHO], name="全国健康保険協会 東京支部")
        out["insurer_b"] = add_insurer(s, numbers=[INSURER_B], name="しかく健康保険組合")
    return out


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
