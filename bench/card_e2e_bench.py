"""Card insertion → eligibility result, through the PC/SC stack AND the central server.

emulated card → vpcd → pcscd → pyscard → ``MyNumberCard`` + ``CardClient`` → ``shikaku-server``
(uvicorn in a subprocess; SQLite + in-process cache by default, PostgreSQL + Redis with ``--pg``).

Set-up (not timed): a test CA the server trusts (``SHIKAKU_TRUST_ANCHORS``), a synthetic
population of ``--people`` uploaded by an insurer, one card whose four basic facts are those of a
valid insured person, linked once at first use through PC/SC (that one link is reported apart).

Then ``--n`` insertions (default 100). Each is timed from the moment the virtual card connects to
vpcd (the patient places it; at a random phase of pcscd's 400 ms poll) to the eligibility result:

* ``detect``: until the terminal's ``PyscardCardMonitor`` reports the card;
* ``card``: PC/SC connect, read the authentication certificate, VERIFY the PIN, SIGN the nonce,
  disconnect (card reset);
* ``server``: ``POST /v1/card/challenges`` + ``POST /v1/eligibility/by-card`` (HTTP/1.1 over a
  kept-alive TCP connection to uvicorn);
* ``total``: all of it (the three parts add up to it).

For each part: p50, p99 (nearest rank: with 100 insertions, the slowest one), mean and max;
``slowest`` is the breakdown of the insertion with the largest total.

Every result is checked (validity 1, the holder's name and copay). Prints one JSON object
(milliseconds). Usage, from the repository root::

    .venv/bin/python -m bench.card_e2e_bench [--n 100] [--pg] [--people 2000]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from clinic_terminal.card.monitor import CardEventKind, wait_for
from clinic_terminal.card.pyscard_monitor import PyscardCardMonitor
from clinic_terminal.card.pyscard_transport import PyscardTransport
from clinic_terminal.card.reader import MyNumberCard
from clinic_terminal.client import CardClient
from schemas.card import BasicFacts
from shikaku_server.auth.service import add_facility, add_insurer
from shikaku_server.database import make_engine, make_session_factory, transaction
from shikaku_server.migrate import upgrade
from testbed.card_emulator import BasicFactsRecord, MyNumberCardEmulator, assert_no_violations, build_card
from testbed.pcscd import ensure_pcscd, wait_for_card_state
from testbed.pki import TestCA
from testbed.population import Person, default_insurers, iter_people, write_eligibility_csv
from testbed.vpcd_bridge import DEFAULT_READER, VpcdBridge

try:
    from bench.common import REDIS, fresh_database, ms_summary, server
except ModuleNotFoundError:  # run as ``python bench/card_e2e_bench.py``: the repository is not on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.common import REDIS, fresh_database, ms_summary, server

FACILITY = "0110113719"
PIN = "1234"
PG_DATABASE = "shikaku_bench_card_e2e"


def _slowest(times: dict[str, list[float]]) -> dict[str, float]:
    """The breakdown of the slowest insertion: shows which part a p99 outlier came from."""
    worst = max(range(len(times["total"])), key=times["total"].__getitem__)
    return {part: round(values[worst], 2) for part, values in times.items()}


def _holder(people: int, today: dt.date) -> tuple[list[Person], Person]:
    """The population and the card holder: insured today, no pending change, unique four facts."""
    population = list(iter_people(people, seed=11))
    facts = [(p.name, p.birth_date, p.sex, p.address_on(today)) for p in population]
    for person, key in zip(population, facts, strict=True):
        if person.is_valid_on(today) and person.change is None and facts.count(key) == 1:
            return population, person
    raise RuntimeError("no suitable card holder in the population")


def _prepare_database(database_url: str) -> tuple[str, str]:
    """Migrate; a reception token and an insurer token (for every default insurer)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with transaction(make_session_factory(engine)) as s:
            reception = add_facility(s, code=FACILITY, name="bench clinic", role="reception")
            insurer = add_insurer(s, numbers=[i.number for i in default_insurers()], name="bench insurer")
    finally:
        engine.dispose()
    return reception, insurer


def _upload(base_url: str, token: str, path: Path) -> int:
    r = httpx.post(
        f"{base_url}/v1/uploads?kind=eligibility",
        content=path.read_bytes(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        timeout=600,
    )
    r.raise_for_status()
    return int(r.json()["accepted"])


def _link(reader: str, client: CardClient) -> float:
    """初回登録 through PC/SC (four facts with the PIN, signature, register); milliseconds."""
    started = time.perf_counter()
    with PyscardTransport(reader) as transport:
        card = MyNumberCard(transport)
        certificate = card.read_auth_certificate()
        facts = card.read_basic_facts(PIN)
        card.verify_auth_pin(PIN)
        challenge = client.challenge()
        signature = card.sign_challenge(base64.b64decode(challenge.nonce))
    registered = client.register(
        challenge.challenge_id,
        certificate,
        signature,
        BasicFacts(name=facts.name, birth_date=facts.birth_date, sex=facts.sex, address=facts.address),
    )
    if registered.status != "linked":
        raise RuntimeError(f"first-use link: {registered.status}")
    return (time.perf_counter() - started) * 1000


def _insertions(
    n: int, reader: str, bridge: VpcdBridge, card: MyNumberCardEmulator, client: CardClient, holder: Person
) -> dict[str, list[float]]:
    today = dt.date.today()
    times: dict[str, list[float]] = {"total": [], "detect": [], "card": [], "server": []}
    monitor = PyscardCardMonitor(reader)
    try:
        for _ in range(n):
            if monitor.present:
                wait_for(monitor, CardEventKind.REMOVED, 5.0)
            time.sleep(random.uniform(0.0, 0.4))  # the phase of pcscd's 400 ms poll
            bridge.insert(card, wait_powered=False)
            wait_for(monitor, CardEventKind.INSERTED, 5.0)
            t_seen = time.perf_counter()
            with PyscardTransport(reader) as transport:
                reader_card = MyNumberCard(transport)
                certificate = reader_card.read_auth_certificate()
                reader_card.verify_auth_pin(PIN)
                t_pin = time.perf_counter()
                challenge = client.challenge()
                t_challenge = time.perf_counter()
                signature = reader_card.sign_challenge(base64.b64decode(challenge.nonce))
            t_signed = time.perf_counter()
            result = client.by_card(challenge.challenge_id, certificate, signature=signature)
            t_done = time.perf_counter()
            bridge.remove()

            assert bridge.inserted_at is not None
            if not (result.usable and result.insured is not None and result.insured.name == holder.name):
                raise RuntimeError(f"unexpected result: {result.model_dump_json()}")
            if result.insured.copay_ratio != holder.copay_on(today):
                raise RuntimeError(f"copay {result.insured.copay_ratio} != {holder.copay_on(today)}")
            times["detect"].append((t_seen - bridge.inserted_at) * 1000)
            times["card"].append(((t_pin - t_seen) + (t_signed - t_challenge)) * 1000)
            times["server"].append(((t_challenge - t_pin) + (t_done - t_signed)) * 1000)
            times["total"].append((t_done - bridge.inserted_at) * 1000)
    finally:
        monitor.close()
    return times


def run(n: int, *, pg: bool, people: int, reader: str = DEFAULT_READER) -> dict[str, object]:
    ensure_pcscd(reader)
    today = dt.date.today()
    population, holder = _holder(people, today)
    ca = TestCA.create(common_name="JPKI Bench E2E CA")
    card = build_card(
        ca,
        pin=PIN,
        facts=BasicFactsRecord(
            name=holder.name, address=holder.address_on(today), birth_date=holder.birth_date, sex=holder.sex
        ),
    )
    with tempfile.TemporaryDirectory(prefix="card-e2e-bench-") as tmp:
        workdir = Path(tmp)
        anchors = ca.write_trust_anchor(workdir / "jpki-root.pem")
        csv_path = workdir / "eligibility.csv"
        write_eligibility_csv(csv_path, population)
        if pg:
            database_url: str = fresh_database(PG_DATABASE)
            redis_url: str | None = REDIS
            redis.Redis.from_url(REDIS).flushdb()
            workers = 2
        else:
            database_url, redis_url, workers = f"sqlite:///{workdir / 'shikaku.sqlite3'}", None, 1
        reception, insurer = _prepare_database(database_url)
        with server(database_url, redis_url, workers=workers, extra_env={"SHIKAKU_TRUST_ANCHORS": str(anchors)}) as url:
            accepted = _upload(url, insurer, csv_path)
            with CardClient(url, reception) as client, VpcdBridge() as bridge:
                wait_for_card_state(reader, present=False)
                bridge.insert(card)
                first_use_ms = _link(reader, client)
                bridge.remove()
                times = _insertions(n, reader, bridge, card, client, holder)
    assert_no_violations(card)
    return {
        "benchmark": "card_e2e",
        "insertions": n,
        "path": "emulator -> vpcd -> pcscd -> pyscard -> MyNumberCard + CardClient -> HTTP -> shikaku-server",
        "backend": "postgresql+redis" if pg else "sqlite",
        "server_workers": workers,
        "people": people,
        "eligibility_rows_accepted": accepted,
        "unit": "ms",
        "total": ms_summary(times["total"]),
        "detect": ms_summary(times["detect"]),
        "card": ms_summary(times["card"]),
        "server": ms_summary(times["server"]),
        "slowest": _slowest(times),
        "first_use_link": round(first_use_ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100, help="insertions (default 100)")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL + Redis instead of SQLite")
    parser.add_argument("--people", type=int, default=2000, help="synthetic insured people to load")
    parser.add_argument("--reader", default=DEFAULT_READER)
    args = parser.parse_args(argv)
    json.dump(run(args.n, pg=args.pg, people=args.people, reader=args.reader), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
