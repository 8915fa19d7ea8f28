"""The terminal's commands run without ``testbed`` and ``faker``; only ``kiosk --demo-card`` needs them.

Each case runs in a fresh interpreter in which ``testbed`` and ``faker`` cannot be imported, as in
an install of ``.[terminal]`` without the project's source tree. The last case is an install
without the terminal extra at all: ``clinic-terminal`` names it instead of a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BLOCK = "import sys\nfor _name in ('testbed', 'faker'):\n    sys.modules[_name] = None\n"
# uvicorn.run replaced: the kiosk app is built and asked for its page, nothing listens
FAKE_RUN = (
    "import uvicorn\n"
    "from fastapi.testclient import TestClient\n"
    "def _run(app, **options):\n"
    "    with TestClient(app) as client:\n"
    "        print('page', client.get('/').status_code)\n"
    "uvicorn.run = _run\n"
    "from clinic_terminal.cli import main\n"
    "sys.argv[0] = 'clinic-terminal'\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print('testbed loaded:', any(m.split('.')[0] == 'testbed' for m, v in sys.modules.items() if v))\n"
)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", BLOCK + FAKE_RUN, *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120, check=False)


def test_the_kiosk_runs_without_testbed(tmp_path: Path) -> None:
    done = _cli("kiosk", "--server", "http://127.0.0.1:9", "--token", "t", "--reader", "No such reader 00 00",
                "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["page 200", "testbed loaded: False"]


def test_demo_card_without_testbed_says_what_is_missing(tmp_path: Path) -> None:
    card = tmp_path / "card"
    card.mkdir()
    done = _cli("kiosk", "--server", "http://127.0.0.1:9", "--token", "t", "--demo-card", str(card),
                "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2
    assert "--demo-card needs the testbed (testbed.kiosk_demo is missing)" in done.stderr
    assert "pip install 'shikaku[demo]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_other_commands_run_without_testbed() -> None:
    for argv in (("watch", "--help"), ("face-check", "--help"), ("--help",)):
        done = _cli(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "testbed loaded: False" in done.stdout


def test_clinic_terminal_without_its_libraries_names_the_extra() -> None:
    code = "import sys\nsys.modules['lxml'] = None\nfrom clinic_terminal.cli import main\nmain()\n"
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, check=False)
    assert done.returncode == 2
    hint = "pip install 'shikaku[terminal]'"
    assert done.stderr == f"clinic-terminal: the Python module 'lxml' is not installed: {hint}\n"
