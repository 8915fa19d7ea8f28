"""What ``shikaku-server`` and ``shikaku-admin`` say when the project was installed without the
``server`` extra: the pip command to run, not a traceback (the loader does the same)."""

from __future__ import annotations

import sys
from typing import NoReturn

INSTALL_HINT = "pip install 'shikaku[server]'"
EXIT_NOT_INSTALLED = 2  # as for a usage error: the command cannot run as installed
_OURS = ("shikaku_server", "schemas")


def missing_library(exc: ModuleNotFoundError) -> str:
    """The (top-level) name of the third-party module that is not installed; ``exc`` itself again when the
    missing module is one of the project's own (a bug, not an install problem)."""
    top = (exc.name or "").split(".")[0]
    if not top or top in _OURS:
        raise exc
    return top


def refuse(prog: str, module: str) -> NoReturn:
    print(f"{prog}: the Python module {module!r} is not installed: {INSTALL_HINT}", file=sys.stderr)
    sys.exit(EXIT_NOT_INSTALLED)
