"""The card-front image stays in memory: no file is created or opened for writing, Tesseract included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import datetime as dt
from testbed.card_front import render_card_front
from clinic_terminal.ocr import read_collation_b
frame = render_card_front(birth_date=dt.date(1980, 4, 1), expiry=dt.date(2034, 4, 1), security_code="5831",
                          rotation=3.0, noise=5.0, blur=0.8)
print(read_collation_b(frame))
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_no_file_is_written_by_the_ocr_or_tesseract(tmp_path: Path) -> None:
    log = tmp_path / "strace.log"
    work = tmp_path / "cwd"
    work.mkdir()
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=openat,open,creat,rename,renameat,renameat2,link,linkat",
         "-o", str(log), sys.executable, "-c", SCRIPT],
        cwd=work, capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "TMPDIR": str(work), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "55040120345831"
    writes = [
        line for line in log.read_text().splitlines()
        if any(flag in line for flag in ("O_WRONLY", "O_RDWR", "O_CREAT", "creat(", "rename", "link("))
        and not any(dev in line for dev in ("/dev/null", "/dev/tty", "/dev/shm/sem."))
    ]
    assert writes == []
    assert list(work.iterdir()) == []


def test_pytesseract_temp_file_api_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    import pytesseract

    from clinic_terminal.ocr import read_collation_b
    from testbed.card_front import render_card_front

    def refuse(*_args: object, **_kwargs: object) -> str:
        raise AssertionError("image_to_string writes a temporary file")

    monkeypatch.setattr(pytesseract, "image_to_string", refuse)
    frame = render_card_front(birth_date=dt.date(2001, 2, 3), expiry=dt.date(2031, 2, 3), security_code="1357")
    assert read_collation_b(frame) == "13020320311357"
