"""The HA topology (scripts/cluster.sh) under faults: under a bounded load of by-number lookups
and a stream of uploads, kill -9 the PostgreSQL primary, stop Patroni's leader, kill the Redis
master, kill a server process, stop a replica's streaming. For each: zero 500s (only 503
``unavailable`` while it switches), zero acknowledged uploads lost, zero stale answers after an
acknowledged upload, refused uploads can be re-sent. Figures are printed (``-s``) and recorded in
docs/scaling.md. Loopback only; every request has a timeout; every phase is bounded in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.factories import INSURER_A, eligibility_csv, person

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
STATE = Path(os.environ.get("SHIKAKU_CLUSTER_DIR", "/tmp/shikaku-cluster"))
API = "http://127.0.0.1:8800"
FACILITY = "0110113719"  # 医科, Luhn-valid (as tests/conftest.py)
FIXED = {"symbol": "1", "number": "1", "branch": "00", "birth_date": "1980-04-01"}
RATE_LIMITS = [
    f"{what}_PER_{who}"
    for what in ("LOOKUPS", "LOOKUP_FAILURES", "CHALLENGES", "BATCH_QUERIES", "REGISTRATIONS")
    for who in ("TOKEN", "FACILITY")
]
RECOVERY_LIMIT = 60.0  # seconds a fault may take to heal before the test fails
AFTER_RECOVERY = 3.0  # seconds of load kept after the last error


def cluster(*args: str, timeout: float = 400) -> str:
    env = {**os.environ, "SHIKAKU_PYTHON": sys.executable}  # the servers run this interpreter
    # the load drives one facility token at hundreds of lookups a second: limits that never refuse
    env |= {f"SHIKAKU_RATE_LIMIT_{name}": "1000000000" for name in RATE_LIMITS}
    out = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )
    if out.returncode:  # the script's own words (which component, which log) in the failure
        raise AssertionError(f"cluster.sh {' '.join(args)} exited {out.returncode}:\n{out.stderr[-4000:]}")
    return out.stdout


def status() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cluster("status", timeout=30))
    return out


def admin(db_url: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHIKAKU_DATABASE_URL": db_url}
    out = subprocess.run(
        [sys.executable, "-c", "from shikaku_server.admin import cli; cli()", *args],
        check=True, capture_output=True, text=True, timeout=60, env=env,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tokens() -> Iterator[tuple[str, str]]:
    up = json.loads(cluster("up"))
    assert up["api"] == API
    assert sorted(m["role"] for m in up["members"]) in (
        ["leader", "replica", "sync_standby"],
        ["leader", "sync_standby", "sync_standby"],
    )
    assert up["redis"]["master"]
    insurer = admin(up["database_url"], "insurer", "add", "--number", INSURER_A, "--name", "協会")
    facility = admin(up["database_url"], "facility", "add", "--code", FACILITY, "--name", "HA診療所")
    r = upload(insurer, [person(**FIXED)])
    assert r.status_code == 200, r.text
    yield facility, insurer
    if not os.environ.get("SHIKAKU_CLUSTER_KEEP"):
        cluster("down", timeout=120)


def upload(token: str, rows: list[dict[str, Any]], timeout: float = 15.0) -> httpx.Response:
    return httpx.post(
        f"{API}/v1/uploads?kind=eligibility",
        content=eligibility_csv(rows),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        timeout=timeout,
    )


def lookup(client: httpx.Client, token: str, number: str) -> httpx.Response:
    body = {"insurer_number": INSURER_A, **FIXED, "number": number}
    return client.post(
        f"{API}/v1/eligibility/by-number", json=body, headers={"Authorization": f"Bearer {token}"}
    )


@dataclass
class Outcome:
    t: float
    kind: str  # "lookup" | "upload" | "check"
    status: int  # 0: no HTTP answer (connection refused/reset, timeout)
    code: str | None = None
    latency: float = 0.0


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # person numbers whose upload was acked
    refused: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self, kind: str, response: httpx.Response | None, started: float | None = None, error: str | None = None
    ) -> None:
        code = error  # no HTTP answer: the client's exception class
        if response is not None and response.status_code >= 400:
            try:
                code = response.json().get("code")
            except ValueError:
                code = "(not json)"
        with self.lock:
            now = time.monotonic()
            status = response.status_code if response is not None else 0
            self.outcomes.append(Outcome(now, kind, status, code, now - started if started is not None else 0.0))


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("code"))
    except ValueError:
        return "(not json)"


def load(run: Run, facility: str, insurer: str, stop: threading.Event, prefix: str) -> list[threading.Thread]:
    """Two lookup loops on the fixed person, one upload loop: each acknowledged upload adds a new
    person, then is looked up at once (through either server process): not found is stale."""

    def lookups() -> None:
        with httpx.Client(timeout=5.0) as client:
            for _ in range(20_000):  # bounded count
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    r = lookup(client, facility, "1")
                except httpx.HTTPError as exc:
                    run.add("lookup", None, started, type(exc).__name__)
                    time.sleep(0.05)
                    continue
                run.add("lookup", r)
                if r.status_code == 200:
                    assert r.json()["validity"] == 1
                time.sleep(0.01)

    def uploads() -> None:
        with httpx.Client(timeout=5.0) as client:
            for k in range(2_000):
                if stop.is_set():
                    return
                number = f"{prefix}{k}"
                started = time.monotonic()
                try:
                    r = upload(insurer, [person(**{**FIXED, "number": number})])
                except httpx.HTTPError as exc:
                    run.add("upload", None, started, type(exc).__name__)
                    run.refused.append(number)
                    time.sleep(0.1)
                    continue
                run.add("upload", r, started)
                if r.status_code != 200:
                    run.refused.append(number)
                    time.sleep(0.1)
                    continue
                assert r.json()["accepted"] == 1, r.text
                run.acknowledged.append(number)
                for _ in range(2):  # two reads right after the ack: round robin hits both processes
                    try:
                        check = lookup(client, facility, number)
                    except httpx.HTTPError as exc:
                        run.add("check", None, None, type(exc).__name__)
                        continue
                    run.add("check", check)
                    if check.status_code == 200 and check.json()["validity"] != 1:
                        run.stale.append(number)

    threads = [threading.Thread(target=f, daemon=True) for f in (lookups, lookups, uploads)]
    for t in threads:
        t.start()
    return threads


def pid_of(path: Path) -> int:
    return int(path.read_text().split()[0])


def leader(st: dict[str, Any]) -> str:
    return str(next(m["name"] for m in st["members"] if m["role"] == "leader"))


Fault = tuple[str, Callable[[], None] | None]  # what was done, and how to heal it (None: `up` heals)
PARTITION_S = 10.0  # how long a partitioned replica stays cut off


def _kill_pg_primary() -> Fault:
    name = leader(status())
    os.kill(pid_of(STATE / "pg" / name / "data" / "postmaster.pid"), signal.SIGKILL)
    return f"kill -9 the postmaster of {name}", None


def _stop_patroni_leader() -> Fault:
    name = leader(status())
    os.kill(pid_of(STATE / "run" / f"{name}.pid"), signal.SIGTERM)
    return f"stop Patroni on {name} (SIGTERM: it stops PostgreSQL and hands over)", None


def _kill_redis_master() -> Fault:
    master = status()["redis"]["master"]
    port = master.rsplit(":", 1)[1]
    node = "redis0" if port == "6390" else "redis1"
    os.kill(pid_of(STATE / "run" / f"{node}.pid"), signal.SIGKILL)
    return f"kill -9 the Redis master {node}", None


def _kill_server() -> Fault:
    os.kill(pid_of(STATE / "run" / "server0.pid"), signal.SIGKILL)
    return "kill -9 server process server0", None


def _partition_sync_standby() -> Fault:
    """Stop the synchronous standby's streaming (SIGSTOP its walreceiver): the harder case, since
    every commit waits for that standby until the primary gives up on it (wal_sender_timeout)."""
    name = next(m["name"] for m in status()["members"] if m["role"] == "sync_standby")
    postmaster = psutil.Process(pid_of(STATE / "pg" / name / "data" / "postmaster.pid"))
    receiver = next(p for p in postmaster.children() if "walreceiver" in " ".join(p.cmdline()))
    receiver.send_signal(signal.SIGSTOP)

    def heal() -> None:
        receiver.send_signal(signal.SIGCONT)

    return f"stop streaming on the sync standby {name} for {PARTITION_S:.0f} s (SIGSTOP walreceiver)", heal


FAULTS: dict[str, Callable[[], Fault]] = {
    "pg_primary_kill9": _kill_pg_primary,
    "patroni_leader_stop": _stop_patroni_leader,
    "redis_master_kill9": _kill_redis_master,
    "server_kill9": _kill_server,
    "sync_standby_partition": _partition_sync_standby,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault(fault: str, tokens: tuple[str, str]) -> None:
    facility, insurer = tokens
    cluster("up")  # whatever the previous fault left dead is started again (idempotent up)
    run = Run()
    stop = threading.Event()
    threads = load(run, facility, insurer, stop, prefix=f"{list(FAULTS).index(fault) + 2}")
    time.sleep(2.0)  # steady state
    t0 = time.monotonic()
    what, heal = FAULTS[fault]()
    deadline = t0 + RECOVERY_LIMIT
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if heal is not None:
            if time.monotonic() - t0 < PARTITION_S:
                continue
            heal()
            heal = None
        with run.lock:
            last_error = max((o.t for o in run.outcomes if o.status != 200), default=t0)
        if time.monotonic() - max(last_error, t0) > AFTER_RECOVERY + 2.0:
            break
    stop.set()
    for t in threads:
        t.join(30)

    errors = [o for o in run.outcomes if o.status != 200]
    after = [o for o in run.outcomes if o.t >= t0]
    window = (max(o.t for o in errors) - min(o.t for o in errors)) if errors else 0.0
    recovery = (max(o.t for o in errors) - t0) if errors else 0.0
    statuses: dict[str, int] = {}
    for o in errors:
        key = f"{o.kind}:{o.status}:{o.code}"
        statuses[key] = statuses.get(key, 0) + 1
    report = {
        "fault": what,
        "requests_after_fault": len(after),
        "answered_200": sum(1 for o in after if o.status == 200),
        "failed": len(errors),
        "failed_by_kind_status_code": statuses,
        "error_window_s": round(window, 2),
        "time_to_recovery_s": round(recovery, 2),
        "uploads_acknowledged": len(run.acknowledged),
        "uploads_refused": len(run.refused),
        "stale_reads": len(run.stale),
    }
    server_500s = [o for o in errors if o.status >= 500 and o.status != 503]
    if server_500s:  # what the servers logged for them (exception class names only)
        logged: dict[str, int] = {}
        for log in (STATE / "log").glob("server*.log"):
            for line in log.read_text(errors="replace").splitlines():
                for name in ("OperationalError", "InterfaceError", "DisconnectionError", "RedisError"):
                    if name in line:
                        logged[name] = logged.get(name, 0) + 1
        report["server_log_exceptions"] = logged
    with run.lock:
        upload_latency = [o.latency for o in run.outcomes if o.kind == "upload" and o.t >= t0]
    report["slowest_upload_after_fault_s"] = round(max(upload_latency, default=0.0), 2)
    report["no_answer_after_s"] = [round(o.latency, 2) for o in errors if o.status == 0]
    if fault == "sync_standby_partition":  # the cut-off standby catches up once it streams again
        healed = time.monotonic()
        while time.monotonic() - healed < 60 and any(m["lag"] != 0 for m in status()["members"]):
            time.sleep(0.5)
        report["replica_caught_up_s"] = round(time.monotonic() - healed, 2)
        assert all(m["lag"] == 0 for m in status()["members"]), report
    print("\nCLUSTER-FAULT " + json.dumps(report, ensure_ascii=False))
    (STATE.parent / f"shikaku-cluster-{fault}.json").write_text(json.dumps(report, ensure_ascii=False))

    assert time.monotonic() < deadline, f"no recovery within {RECOVERY_LIMIT}s: {report}"
    assert all(o.code == "unavailable" for o in errors if o.status == 503), report
    assert not [o for o in errors if 400 <= o.status < 500], report
    assert run.stale == [], report  # zero stale answers after an acknowledged upload
    with httpx.Client(timeout=10.0) as client:
        # zero acknowledged writes lost: every acked person is found after the failover
        lost = [n for n in run.acknowledged if lookup(client, facility, n).json()["validity"] != 1]
        assert lost == [], report
        # ... and on every member, once each has replayed (the sync standby had it at the ack)
        caught_up = time.monotonic()
        while time.monotonic() - caught_up < 30 and any(m["lag"] != 0 for m in status()["members"]):
            time.sleep(0.5)
        numbers = ",".join(f"'{n}'" for n in run.acknowledged)  # digits generated by this test
        for m in status()["members"]:
            held = subprocess.run(
                ["psql", "-h", m["host"], "-p", str(m["port"]), "-U", "postgres", "-d", "shikaku", "-tAc",
                 f"SELECT count(*) FROM insured WHERE number_norm IN ({numbers or 'NULL'})"],
                check=True, capture_output=True, text=True, timeout=30,
            ).stdout.strip()
            assert int(held) == len(run.acknowledged), (m, report)
        # every refused upload can be re-sent and is then visible
        for number in run.refused:
            r = upload(insurer, [person(**{**FIXED, "number": number})])
            assert r.status_code == 200, r.text
            assert lookup(client, facility, number).json()["validity"] == 1
    assert server_500s == [], f"{len(server_500s)} answers were 500 during the switch: {report}"
