"""The clinic's folder interface (``req/`` → ``res/``) wired to the in-process server of a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from clinic_terminal.client import CardClient, ServerClient
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher


@contextmanager
def folder_terminal(
    client: TestClient,
    token: str,
    root: Path,
    *,
    server_client: type[ServerClient] = CardClient,
    **watcher_options: Any,
) -> Iterator[tuple[FolderWatcher, TerminalState]]:
    """A watcher of ``root`` whose terminal asks ``client``'s app with ``token`` (through a
    ``server_client``: the card calls' ``CardClient`` unless told), not durable (a test's files),
    with ``watcher_options`` (e.g. ``encoding``); and the terminal's state."""
    with (
        server_client("http://testserver", token, transport=client._transport) as server,
        TerminalState.for_root(root) as state,
    ):
        yield FolderWatcher(root, XmlTerminal(server, state), durable=False, **watcher_options), state
