"""Without the face libraries the face module says what to install (not a bare ImportError).

Each case runs in a fresh interpreter in which ``dlib`` and ``face_recognition_models`` cannot be
imported (``sys.modules[name] = None``), as on a terminal installed without ``.[terminal]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HINT = "pip install 'shikaku[terminal]'"
BLOCK = "import sys\nfor _name in ('dlib', 'face_recognition_models'):\n    sys.modules[_name] = None\n"


def _python(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", BLOCK + code, *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120, check=False)


def test_importing_the_face_module_names_what_to_install() -> None:
    done = _python(
        "try:\n"
        "    import clinic_terminal.face\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc.missing)\n"
        "    print(exc)\n"
    )
    name, message = done.stdout.splitlines()
    assert name == "FaceLibrariesMissingError ('dlib-bin', 'face_recognition_models')"
    assert message == f"the face check needs dlib-bin, face_recognition_models (not installed): {HINT}"


def test_face_check_command_says_what_to_install_and_exits_2(tmp_path: Path) -> None:
    photo = tmp_path / "card.jpg"
    photo.write_bytes(b"not read: the libraries are checked first")
    done = _python("from clinic_terminal.cli import main\nsys.argv[0] = 'clinic-terminal'\nmain()",
                   "face-check", "--card-photo", str(photo), "--camera", "0")
    assert done.returncode == 2
    assert done.stdout == ""
    assert HINT in done.stderr and "dlib-bin" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_kiosk_refuses_a_camera_at_start_with_the_hint(tmp_path: Path) -> None:
    done = _python("from clinic_terminal.cli import main\nsys.argv[0] = 'clinic-terminal'\nmain()",
                   "kiosk", "--server", "http://127.0.0.1:9", "--token", "t", "--camera", "0",
                   "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2, done.stderr
    assert "--camera: the face check needs dlib-bin" in done.stderr and HINT in done.stderr
    assert "Traceback" not in done.stderr
