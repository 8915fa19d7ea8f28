"""The demo: the central server (embedded SQLite + in-process store) with a demo dataset, and the kiosk.

``python -m testbed.demo [--dir var/demo] [--port 8000] [--kiosk-port 8080] [--kiosk-2026-port 8081]
[--people 2000] [--host 127.0.0.1] [--reuse] [--faces DIR]`` (``scripts/demo.sh`` runs it after the set-up):

1. state in ``--dir`` (made afresh unless ``--reuse``): two test JPKI roots, one per card
   generation (``jpki-root.pem``: RSA-2048; ``jpki-root-2026.pem``: ECDSA P-384), the SQLite
   database built by the Alembic migrations, a clinic with a physician and a reception token, one
   insurer token for every synthetic insurer, the kiosk terminal's P-256 key (registered), a
   synthetic population plus two demo patients and their virtual cards: 山田 太郎 with today's
   card (RSA) and 佐藤 花子 with a 2026 card (ECDSA P-384, the new application layout);
2. ``shikaku-server`` as a child process; the insurer files go in through ``hokensha-load``;
3. two ``clinic-terminal kiosk`` child processes in demo mode, one per card (the second
   reception terminal holds the 2026 card; with the shared face images the first one also has a
   camera clip so 顔認証 works);
4. a banner with the URLs, the tokens and the PIN; then it waits. Ctrl-C or SIGTERM stops the
   children (the kiosks first) and exits.

Everything here is test material: test keys, test certificates, synthetic people.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
FACILITY_CODE = "0110113719"
FACILITY_NAME = "しかく内科クリニック"
TERMINAL_ID = "kiosk-demo-1"
PIN = "1234"
CARD_PHOTO = "obama.jpg"
CAMERA_PHOTO = "obama2.jpg"
START_TIMEOUT = 60.0
CARD_2026_COLLATION_B = "60061520262026"  # printed on 佐藤 花子's card (test data)
STOP_TIMEOUT = 10.0
READY_LINE = "DEMO READY"


@dataclass(frozen=True)
class DemoPatient:
    """山田 太郎: his eligibility row and the four basic facts on his card agree (first-use linking)."""

    insurer_number: str
    symbol: str = "123"
    number: str = "4567"
    branch: str = "00"
    name: str = "山田 太郎"
    name_kana: str = "ヤマダ タロウ"
    sex: str = "1"
    birth_date: str = "1980-04-01"
    address: str = "東京都千代田区霞が関1-2-2"
    post_number: str = "100-8916"


def patient_2026(insurer_number: str) -> DemoPatient:
    """佐藤 花子, the holder of the 2026 card (ECDSA P-384): an eligibility row, no history."""
    return DemoPatient(insurer_number=insurer_number, symbol="2026", number="384", branch="00", name="佐藤 花子",
                       name_kana="サトウ ハナコ", sex="2", birth_date="1985-06-15",
                       address="大阪府大阪市北区中之島1-3-20", post_number="530-8201")


@dataclass
class DemoState:
    """What ``prepare`` made; saved as ``state.json`` so ``--reuse`` can start from it."""

    root: str
    database_url: str
    trust_anchor: str
    card_profile: str
    terminal_key: str
    physician_token: str
    reception_token: str
    insurer_token: str
    insurer_numbers: list[str]
    patient: dict[str, str]
    camera_clip: str | None
    people: int
    loaded: bool = False
    # the 2026 card and its holder (None: a state made before the demo had them, with --reuse)
    card_profile_2026: str | None = None
    patient_2026: dict[str, str] | None = None

    def save(self) -> None:
        path = Path(self.root) / "state.json"
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2), encoding="utf-8")
        path.chmod(0o600)

    @classmethod
    def load(cls, root: Path) -> DemoState:
        data = json.loads((root / "state.json").read_text(encoding="utf-8"))
        return cls(**data)


def log(message: str) -> None:
    print(f"demo: {message}", flush=True)


def find_faces_dir(explicit: Path | None = None) -> Path | None:
    """The face images (``--faces``, default the test portraits in ``testbed/data/faces``), or
    ``None`` without them."""
    from testbed.faces import FACES_DIR

    candidates = [explicit] if explicit else [FACES_DIR]
    for folder in candidates:
        if folder is not None and (folder / CARD_PHOTO).is_file() and (folder / CAMERA_PHOTO).is_file():
            return folder
    return None


def _tool(name: str) -> str:
    """A console script of this project: next to the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"demo: {name} not found (run scripts/setup.sh)")
    return found


# ---------------------------------------------------------------- the dataset


def _eligibility_row(patient: DemoPatient) -> dict[str, str]:
    key = {"insurer_number": patient.insurer_number, "symbol": patient.symbol, "number": patient.number,
           "branch": patient.branch}
    return {
        "action": "add", **key, "name": patient.name, "name_kana": patient.name_kana, "sex": patient.sex,
        "birth_date": patient.birth_date, "address": patient.address, "post_number": patient.post_number,
        "personal_family": "1", "card_classification": "01", "valid_from": "2024-04-01", "valid_to": "",
        "copay_ratio": "30", "reason_of_loss": "",
    }


def _patient_rows(patient: DemoPatient, today: dt.date) -> tuple[dict[str, str], list[dict[str, str]],
                                                                  list[dict[str, str]]]:
    key = {"insurer_number": patient.insurer_number, "symbol": patient.symbol, "number": patient.number,
           "branch": patient.branch}
    eligibility = {**_eligibility_row(patient), "limit_kind": "01", "limit_class": "A03",
                   "limit_valid_from": "2024-04-01"}
    drugs = [(14, "620000001", "アムロジピン錠5mg", "28", "錠", "28"),
             (14, "620000003", "ランソプラゾールOD錠15mg", "28", "錠", "28"),
             (45, "620000002", "ロキソプロフェンNa錠60mg", "21", "錠", "7"),
             (90, "620000004", "カルボシステイン錠500mg", "21", "錠", "7")]
    medications = [
        {**key, "dispensed_on": (today - dt.timedelta(days=days_ago)).isoformat(), "facility_code": "1341234563",
         "drug_code": code, "drug_name": name, "quantity": quantity, "unit": unit, "days": days}
        for days_ago, code, name, quantity, unit, days in drugs
    ]
    checkups = [
        {**key, "checked_on": (today - dt.timedelta(days=days_ago)).isoformat(), "height_cm": "171.2",
         "weight_kg": weight, "bmi": bmi, "systolic": systolic, "diastolic": diastolic, "hba1c": hba1c,
         "ldl": ldl, "urine_protein": "-"}
        for days_ago, weight, bmi, systolic, diastolic, hba1c, ldl in [
            (200, "70.5", "24.1", "128", "82", "5.6", "118"),
            (565, "72.0", "24.6", "134", "86", "5.8", "131"),
        ]
    ]
    return eligibility, medications, checkups


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[dict[str, str]]) -> None:
    with path.open("a", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for row in rows:
            writer.writerow([row.get(column, "") for column in header])


def write_dataset(folder: Path, people: int, patient: DemoPatient, today: dt.date,
                  others: Sequence[DemoPatient] = ()) -> dict[str, Path]:
    """The synthetic population's three insurer files, with the demo patient's rows appended (and
    the eligibility rows of ``others``: the 2026 card's holder)."""
    from testbed.population import (
        CHECKUP_HEADER,
        ELIGIBILITY_HEADER,
        MEDICATION_HEADER,
        iter_people,
        write_checkups_csv,
        write_eligibility_csv,
        write_medications_csv,
    )

    folder.mkdir(parents=True, exist_ok=True)
    files = {kind: folder / f"{kind}.csv" for kind in ("eligibility", "medications", "checkups")}
    write_eligibility_csv(files["eligibility"], iter_people(people, 0, today=today))
    write_medications_csv(files["medications"], iter_people(people, 0, today=today), today=today)
    write_checkups_csv(files["checkups"], iter_people(people, 0, today=today), today=today)
    eligibility, medications, checkups = _patient_rows(patient, today)
    _write_rows(files["eligibility"], ELIGIBILITY_HEADER, [eligibility, *(_eligibility_row(o) for o in others)])
    _write_rows(files["medications"], MEDICATION_HEADER, medications)
    _write_rows(files["checkups"], CHECKUP_HEADER, checkups)
    return files


def _face_material(root: Path, faces: Path) -> tuple[bytes, Path]:
    """The card photo (obama.jpg) and a live camera clip of the same person (obama2.jpg)."""
    from testbed.faces import card_photo_jp2, natural_frames, write_clip

    photo = card_photo_jp2(CARD_PHOTO, faces_dir=faces)
    clip = write_clip(natural_frames(CAMERA_PHOTO, 45, faces_dir=faces), root / "camera")
    return photo, clip


def prepare(root: Path, *, people: int, faces: Path | None) -> DemoState:
    """Make a fresh demo state in ``root`` (everything but the uploads, which need the server)."""
    from schemas.attestation import generate_terminal_key, private_key_pem, public_key_pem
    from shikaku_server.auth.service import add_facility, add_insurer, add_terminal
    from shikaku_server.database import make_engine, make_session_factory, transaction
    from shikaku_server.migrate import upgrade
    from testbed.card_emulator import CARD_2026, BasicFactsRecord, build_card
    from testbed.kiosk_demo import write_profile
    from testbed.pki import TestCA
    from testbed.population import default_insurers

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    root.chmod(0o700)
    ca = TestCA.create(common_name="JPKI Demo User Authentication CA")
    anchor = ca.write_trust_anchor(root / "jpki-root.pem")
    ca_2026 = TestCA.create_ecdsa(common_name="JPKI Demo User Authentication CA (2026 card)")
    anchor_2026 = ca_2026.write_trust_anchor(root / "jpki-root-2026.pem")

    database_url = f"sqlite:///{root / 'shikaku.sqlite3'}"
    upgrade(database_url)
    insurers = default_insurers()
    terminal_key = generate_terminal_key()
    key_file = root / "terminal-key.pem"
    key_file.write_bytes(private_key_pem(terminal_key))
    key_file.chmod(0o600)
    engine = make_engine(database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            physician = add_facility(session, code=FACILITY_CODE, name=FACILITY_NAME, role="physician",
                                     label="demo kiosk (physician)")
            reception = add_facility(session, code=FACILITY_CODE, name=FACILITY_NAME, role="reception",
                                     label="demo reception")
            for insurer in insurers:  # names first; the one demo upload token covers them all
                add_insurer(session, numbers=[insurer.number], name=insurer.name, label="demo (unused)")
            insurer_token = add_insurer(session, numbers=[i.number for i in insurers], name="",
                                        label="demo uploads")
            add_terminal(session, terminal_id=TERMINAL_ID, facility_code=FACILITY_CODE,
                         public_key_pem=public_key_pem(terminal_key).decode())
    finally:
        engine.dispose()

    patient = DemoPatient(insurer_number=insurers[0].number)
    clip: Path | None = None
    photo: bytes | None = None
    if faces is not None:
        try:
            photo, clip = _face_material(root, faces)
        except Exception as exc:  # the demo goes on with the PIN only
            log(f"face material could not be made ({exc}); 顔認証 is off, PIN only")
            photo, clip = None, None
    facts = BasicFactsRecord(name=patient.name, address=patient.address,
                             birth_date=dt.date.fromisoformat(patient.birth_date), sex=patient.sex)
    card = build_card(ca, pin=PIN, facts=facts, photo_jp2=photo)
    profile = write_profile(root / "card", card.profile)
    # the 2026 card: ECDSA P-384 under its own root, the new layout; no photo (PIN only)
    second = patient_2026(insurers[0].number)
    facts_2026 = BasicFactsRecord(name=second.name, address=second.address,
                                  birth_date=dt.date.fromisoformat(second.birth_date), sex=second.sex)
    card_2026 = build_card(ca_2026, pin=PIN, facts=facts_2026, collation_b=CARD_2026_COLLATION_B, layout=CARD_2026)
    profile_2026 = write_profile(root / "card-2026", card_2026.profile, CARD_2026)

    state = DemoState(
        root=str(root), database_url=database_url, trust_anchor=os.pathsep.join([str(anchor), str(anchor_2026)]),
        card_profile=str(profile), terminal_key=str(key_file), physician_token=physician, reception_token=reception,
        insurer_token=insurer_token, insurer_numbers=[i.number for i in insurers], patient=asdict(patient),
        camera_clip=str(clip) if clip else None, people=people, card_profile_2026=str(profile_2026),
        patient_2026=asdict(second),
    )
    state.save()
    return state


def _write_tokens(state: DemoState, server_url: str) -> Path:
    path = Path(state.root) / "tokens.env"
    path.write_text(
        "# demo tokens (test data). `set -a; . ./tokens.env; set +a` to use them with the CLIs\n"
        f"SHIKAKU_SERVER_URL={server_url}\n"
        f"SHIKAKU_FACILITY_TOKEN={state.physician_token}\n"
        f"SHIKAKU_RECEPTION_TOKEN={state.reception_token}\n"
        f"SHIKAKU_INSURER_TOKEN={state.insurer_token}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def load_dataset(state: DemoState, server_url: str, today: dt.date) -> None:
    """Write the insurer files and upload them through ``hokensha-load``."""
    root = Path(state.root)
    others = [DemoPatient(**state.patient_2026)] if state.patient_2026 else []
    files = write_dataset(root / "data", state.people, DemoPatient(**state.patient), today, others)
    env = {**os.environ, "SHIKAKU_SERVER_URL": server_url, "SHIKAKU_INSURER_TOKEN": state.insurer_token}
    for kind, path in files.items():
        done = subprocess.run([_tool("hokensha-load"), kind, str(path), "--quiet"], env=env, check=False,
                              capture_output=True, text=True)
        summary = (done.stdout.strip() or done.stderr.strip()).splitlines()
        log(f"hokensha-load {kind}: {summary[-1] if summary else f'exit {done.returncode}'}")
        if done.returncode not in (0, 1):  # 1: some rows rejected (see the reject report); the rest loaded
            raise SystemExit(f"demo: hokensha-load {kind} failed ({done.returncode}): {done.stderr.strip()}")
    state.loaded = True
    state.save()


# ---------------------------------------------------------------- the processes


class Child:
    """A child process in its own session (Ctrl-C reaches only us), output to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self._log = log_file.open("ab")
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self._log.close()

    def tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


def wait_until_up(child: Child, url: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n{child.tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f} s:\n{child.tail()}")


def banner(state: DemoState, server_url: str, kiosk_url: str, seconds: float, children: Sequence[Child],
           kiosk_2026_url: str | None = None) -> str:
    p = state.patient
    second: list[str] = []
    if kiosk_2026_url and state.patient_2026:
        q = state.patient_2026
        second = [
            f" 2026年カード(ECDSA P-384) 受付端末2 kiosk 2 : {kiosk_2026_url}/   (staff: {kiosk_2026_url}/staff)",
            f" デモ患者2 / 2026-card patient: {q['name']} ({q['name_kana']}), born {q['birth_date']}",
            f"   保険者番号 {q['insurer_number']}  記号 {q['symbol']}  番号 {q['number']}  枝番 {q['branch']}",
            f"   暗証番号 / PIN: {PIN}   (her 2026 card, on kiosk 2; 暗証番号 only)",
            "",
        ]
    face = ("顔認証 / face: ON (camera = a clip of the card photo's person)" if state.camera_clip
            else "顔認証 / face: OFF — face images not found, PIN only")
    root = Path(state.root)
    return "\n".join([
        "",
        "=" * 78,
        f" オンライン資格確認 デモ / shikaku demo — ready in {seconds:.1f} s",
        "=" * 78,
        f" 受付端末(患者画面) kiosk, patient screen : {kiosk_url}/",
        f" 受付端末(職員画面) kiosk, staff screen   : {kiosk_url}/staff",
        f" 中央サーバ API docs / server API docs    : {server_url}/docs",
        f" 中央サーバ readiness                      : {server_url}/readyz",
        "",
        f" デモ患者 / demo patient: {p['name']} ({p['name_kana']}), born {p['birth_date']}",
        f"   保険者番号 {p['insurer_number']}  記号 {p['symbol']}  番号 {p['number']}  枝番 {p['branch']}",
        f"   暗証番号 / PIN: {PIN}   (「読み取る」 places his virtual card)",
        f"   {face}",
        "",
        *second,
        f" 被保険者 / synthetic people: {state.people:,} (+{1 + bool(state.patient_2026)})",
        "",
        f" facility token (physician): {state.physician_token}",
        f" facility token (reception): {state.reception_token}",
        f" insurer token: {state.insurer_token}",
        f" tokens stored in {root / 'tokens.env'} (and state.json); logs in {root / 'logs'}",
        " processes: " + ", ".join(f"{c.name} pid {c.process.pid}" for c in children),
        "",
        " Ctrl-C で終了 / Ctrl-C stops the server and the kiosk",
        "=" * 78,
        READY_LINE,
    ])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM behaves like Ctrl-C: unwind to ``run``'s clean-up wherever we are (set-up included)."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    root = Path(args.dir).resolve()
    host = args.host
    server_url = f"http://{host}:{args.port}"
    kiosk_url = f"http://{host}:{args.kiosk_port}"
    kiosk_2026_port = args.kiosk_2026_port if args.kiosk_2026_port is not None else args.kiosk_port + 1
    kiosk_2026_url = f"http://{host}:{kiosk_2026_port}"
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)

    if args.reuse and (root / "state.json").is_file():
        state = DemoState.load(root)
        log(f"reusing {root}")
    else:
        faces = find_faces_dir(args.faces)
        if faces is None:
            log(f"face images ({args.faces or 'testbed/data/faces'}) not found: 顔認証 is off, PIN only")
        log(f"making a fresh demo state in {root}")
        state = prepare(root, people=args.people, faces=faces)
    (root / "logs").mkdir(exist_ok=True)
    _write_tokens(state, server_url)

    env = {**os.environ, "SHIKAKU_DATABASE_URL": state.database_url, "SHIKAKU_TRUST_ANCHORS": state.trust_anchor,
           "SHIKAKU_SERVER_URL": server_url, "PYTHONUNBUFFERED": "1"}
    env.pop("SHIKAKU_REDIS_URL", None)  # the embedded default: in-process cache and challenge store
    children: list[Child] = []
    try:
        server = Child("shikaku-server", [_tool("shikaku-server"), "--host", host, "--port", str(args.port)],
                       env, root, root / "logs" / "server.log")
        children.append(server)
        log(f"shikaku-server starting on {server_url} (SQLite {state.database_url})")
        wait_until_up(server, f"{server_url}/readyz")
        if not state.loaded:
            load_dataset(state, server_url, dt.date.today())
        kiosk_argv = [_tool("clinic-terminal"), "kiosk", "--host", host, "--port", str(args.kiosk_port),
                      "--server", server_url, "--role", "physician",
                      "--demo-card", state.card_profile, "--facility-code", FACILITY_CODE,
                      "--xml-root", str(root / "xml")]
        if state.camera_clip:
            kiosk_argv += ["--camera", state.camera_clip, "--terminal-key", state.terminal_key,
                           "--terminal-id", TERMINAL_ID]
        # the token goes by environment, not on the command line (where `ps` would show it)
        kiosk_env = {**env, "SHIKAKU_FACILITY_TOKEN": state.physician_token}
        kiosk = Child("clinic-terminal kiosk", kiosk_argv, kiosk_env, root, root / "logs" / "kiosk.log")
        children.append(kiosk)
        log(f"clinic-terminal kiosk starting on {kiosk_url}")
        wait_until_up(kiosk, f"{kiosk_url}/")
        if state.card_profile_2026:  # the second reception terminal, with the 2026 card (PIN only)
            argv_2026 = [_tool("clinic-terminal"), "kiosk", "--host", host, "--port", str(kiosk_2026_port),
                         "--server", server_url, "--role", "physician", "--demo-card", state.card_profile_2026,
                         "--facility-code", FACILITY_CODE, "--xml-root", str(root / "xml-2026")]
            kiosk_2026 = Child("clinic-terminal kiosk (2026 card)", argv_2026, kiosk_env, root,
                               root / "logs" / "kiosk-2026.log")
            children.append(kiosk_2026)
            log(f"clinic-terminal kiosk (2026 card) starting on {kiosk_2026_url}")
            wait_until_up(kiosk_2026, f"{kiosk_2026_url}/")
        print(banner(state, server_url, kiosk_url, time.monotonic() - started, children,
                     kiosk_2026_url if state.card_profile_2026 else None), flush=True)
        while True:
            time.sleep(0.5)
            for child in children:
                if not child.alive():
                    log(f"{child.name} exited ({child.process.returncode}); stopping.\n{child.tail()}")
                    return 1
    except KeyboardInterrupt:
        log("stopping")
        return 0
    except RuntimeError as exc:
        log(str(exc))
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        if children:
            log("stopped: " + ", ".join(f"{c.name} ({c.process.returncode})" for c in children))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=str(REPO_ROOT / "var" / "demo"), help="state folder (made afresh)")
    parser.add_argument("--port", type=int, default=8000, help="central server port")
    parser.add_argument("--kiosk-port", type=int, default=8080, help="kiosk port")
    parser.add_argument("--kiosk-2026-port", type=int, default=None,
                        help="the second kiosk's port, with the 2026 card (default: --kiosk-port + 1)")
    parser.add_argument("--host", default="127.0.0.1", help="address both listen on")
    parser.add_argument("--people", type=int, default=2000, help="synthetic insured people")
    parser.add_argument("--reuse", action="store_true", help="keep the state of the last run when there is one")
    parser.add_argument("--faces", type=Path, default=None,
                        help="folder with obama.jpg and obama2.jpg (default testbed/data/faces)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
