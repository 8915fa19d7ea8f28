"""`clinic-terminal watch`: answer clinic software's request files (the XML folder interface)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from clinic_terminal.client import CardClient  # the card client: the 薬剤情報 / 特定健診情報 families read data too
from clinic_terminal.config import default_data_dir, get_settings, journal_key
from clinic_terminal.outage import OutageEntry, OutageJournal, Rechecker
from clinic_terminal.xmlif.files import RESULT_FILE_MODE
from clinic_terminal.xmlif.followup import write_followup
from clinic_terminal.xmlif.model import XmlEncoding
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher

EXIT_OK = 0
EXIT_USAGE = 2


@click.command("watch")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), help="folder holding req/ res/ face/")
@click.option("--server", "server_url", help="central server URL (default SHIKAKU_SERVER_URL)")
@click.option("--token", help="facility token (default SHIKAKU_FACILITY_TOKEN)")
@click.option(
    "--encoding",
    type=click.Choice(["utf-8", "shift_jis"], case_sensitive=False),
    help="encoding of the result files (default SHIKAKU_XML_ENCODING or utf-8)",
)
@click.option("--poll", is_flag=True, help="poll req/ instead of inotify (network shares)")
@click.option("--poll-interval", type=float, default=0.5, show_default=True, help="seconds between polls")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="requests at a time")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="the outage journal's folder (default SHIKAKU_TERMINAL_DATA_DIR, else ROOT/state)")
@click.option(
    "--file-mode",
    default=f"{RESULT_FILE_MODE:o}",
    show_default=True,
    callback=lambda ctx, param, value: _file_mode(value),
    help="permissions of the result and .err files (octal; never world-accessible)",
)
@click.option("--verbose", "-v", is_flag=True, help="log every request")
def watch(
    root: Path | None,
    server_url: str | None,
    token: str | None,
    encoding: str | None,
    poll: bool,
    poll_interval: float,
    workers: int,
    data_dir: Path | None,
    file_mode: int,
    verbose: bool,
) -> None:
    """Watch ROOT/req for request files and answer them into ROOT/res until stopped."""
    settings = get_settings()
    root = root or (Path(settings.xml_root) if settings.xml_root else None)
    if root is None:
        raise click.UsageError("--root (or SHIKAKU_XML_ROOT) is required")
    enc: XmlEncoding = "shift_jis" if (encoding or settings.xml_encoding).lower() == "shift_jis" else "utf-8"
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with (
        CardClient(server_url or settings.server_url, token or settings.facility_token) as client,
        TerminalState.for_root(root) as state,
        OutageJournal(data_dir or default_data_dir(settings, root), key=journal_key(settings)) as journal,
    ):
        if not journal.encrypted:
            logging.getLogger(__name__).warning("SHIKAKU_TERMINAL_JOURNAL_KEY is not set: the outage journal "
                                                "is not encrypted")
        xml_root = root

        def follow_up(entry: OutageEntry) -> None:
            write_followup(xml_root, state, entry, encoding=enc, mode=file_mode)

        rechecker = Rechecker(journal, client, sources=("xml",), on_outcome=follow_up).start()
        watcher = FolderWatcher(
            root,
            XmlTerminal(client, state, journal=journal),
            encoding=enc,
            mode="poll" if poll else "inotify",
            poll_interval=poll_interval,
            workers=workers,
            file_mode=file_mode,
        )
        click.echo(f"watching {watcher.req} ({'polling' if poll else 'inotify'}, results in {enc})", err=True)
        try:
            watcher.run(stop)
        finally:
            rechecker.stop()
    click.echo(f"stopped; {watcher.stats.answered} answered, {watcher.stats.errors} refused", err=True)


def _file_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter("an octal mode such as 640 or 600") from None
    if mode & ~0o770 or (mode & 0o600) != 0o600:
        raise click.BadParameter("owner read/write, at most group access, nothing for others (e.g. 640, 600, 660)")
    return mode
