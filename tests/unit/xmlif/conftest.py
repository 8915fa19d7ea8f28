from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from testbed.xmlif_server import CLOCK, InMemoryServer

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[TerminalState]:
    with TerminalState(tmp_path / "state") as st:
        yield st


@pytest.fixture
def server() -> InMemoryServer:
    return InMemoryServer.with_samples()


@pytest.fixture
def terminal(server: InMemoryServer, state: TerminalState) -> XmlTerminal:
    return XmlTerminal(server, state, clock=lambda: CLOCK)


@pytest.fixture
def golden() -> Callable[[str, bytes], None]:
    return assert_golden


def assert_golden(name: str, data: bytes) -> None:
    """``data`` equals ``golden/<name>`` byte for byte (SHIKAKU_UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("SHIKAKU_UPDATE_GOLDEN") == "1":
        path.write_bytes(data)
    assert path.exists(), f"golden file {name} missing (run with SHIKAKU_UPDATE_GOLDEN=1 and review it)"
    assert data == path.read_bytes(), f"rendering differs from golden/{name}"
