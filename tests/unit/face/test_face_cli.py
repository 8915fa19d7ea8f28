"""`clinic-terminal face-check`: one JSON line, exit 0 match / 1 refused / 2 could not check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from clinic_terminal.commands.face_check import EXIT_ERROR, EXIT_MATCH, EXIT_NO_MATCH, face_check

REPO = Path(__file__).resolve().parents[3]
KEYS = {"match", "distance", "threshold", "liveness", "elapsed_ms"}


@pytest.fixture(scope="module")
def card_file(card_photos: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("card") / "card.jp2"
    path.write_bytes(card_photos["obama.jpg"])
    return path


def _run(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(face_check, list(args))
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.output
    return result.exit_code, json.loads(lines[0])


@pytest.mark.slow
def test_match_exits_0(card_file: Path, clip_files: dict[str, Path]) -> None:
    code, line = _run("--card-photo", str(card_file), "--camera", str(clip_files["genuine"]))
    assert code == EXIT_MATCH == 0
    assert set(line) >= KEYS
    assert line["match"] is True and line["liveness"] is True
    assert isinstance(line["distance"], float) and isinstance(line["elapsed_ms"], int)
    assert line["threshold"] == 0.5


@pytest.mark.slow
def test_still_photo_exits_1(card_file: Path, clip_files: dict[str, Path]) -> None:
    code, line = _run("--card-photo", str(card_file), "--camera", str(clip_files["static"]), "--frames", "12")
    assert code == EXIT_NO_MATCH == 1
    assert line["liveness"] is False
    assert line["reason"] == "liveness_failed"


@pytest.mark.slow
def test_threshold_flag(card_file: Path, clip_files: dict[str, Path]) -> None:
    code, line = _run("--card-photo", str(card_file), "--camera", str(clip_files["genuine"]), "--threshold", "0.2")
    assert code == EXIT_NO_MATCH
    assert line["threshold"] == 0.2
    assert line["match"] is False
    assert line["reason"] == "no_match"


def test_missing_camera_exits_2(card_file: Path, tmp_path: Path) -> None:
    code, line = _run("--card-photo", str(card_file), "--camera", str(tmp_path / "none.avi"))
    assert code == EXIT_ERROR == 2
    assert set(line) >= KEYS
    assert line["reason"] == "camera_unavailable"


@pytest.mark.parametrize("content", [None, b"garbage"])
def test_unreadable_card_photo_exits_2(content: bytes | None, tmp_path: Path, clip_files: dict[str, Path]) -> None:
    photo = tmp_path / "card.jp2"
    if content is not None:
        photo.write_bytes(content)
    code, line = _run("--card-photo", str(photo), "--camera", str(clip_files["genuine"]))
    assert code == EXIT_ERROR
    assert line["reason"] == "card_photo_unreadable"


@pytest.mark.slow
def test_console_script(card_file: Path, clip_files: dict[str, Path]) -> None:
    script = Path(sys.executable).parent / "clinic-terminal"
    if not script.exists():
        script = REPO / ".venv" / "bin" / "clinic-terminal"
    done = subprocess.run(
        [str(script), "face-check", "--card-photo", str(card_file), "--camera", str(clip_files["impostor"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_NO_MATCH, done.stderr
    line = json.loads(done.stdout.strip())
    assert line["reason"] == "no_match"
    assert set(line) >= KEYS
