"""``hokensha-load`` in an install without the loader extra: it names the pip command, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hokensha_loader.status_codes import ExitCode

REPO = Path(__file__).resolve().parents[3]


def test_missing_loader_libraries_name_the_extra() -> None:
    code = "import sys\nsys.modules['httpx'] = None\nfrom hokensha_loader.cli import main\nmain()\n"
    done = subprocess.run([sys.executable, "-c", code, "eligibility", "x.csv", "--dry-run"], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, check=False)
    assert done.returncode == ExitCode.USAGE_ERROR
    assert done.stderr == "hokensha-load: the Python module 'httpx' is not installed: pip install 'shikaku[loader]'\n"
