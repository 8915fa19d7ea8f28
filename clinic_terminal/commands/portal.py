"""`clinic-terminal portal`: the patient's own screens on a PC with a card reader (docs/patient.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from clinic_terminal.config import get_settings


@click.command("portal")
@click.option("--host", default="127.0.0.1", show_default=True, help="address of the local page (keep it local)")
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--server", "server_url", help="central server URL (default SHIKAKU_SERVER_URL)")
@click.option("--reader", help="PC/SC reader name (default: the first reader found)")
@click.option("--demo-card", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="demo mode: an in-process virtual card from this profile folder instead of PC/SC")
@click.option("--idle-timeout", default=180.0, show_default=True, type=float,
              help="seconds without a tap after which the card session ends (the PIN is asked again)")
@click.option("--verbose", "-v", is_flag=True)
def portal(host: str, port: int, server_url: str | None, reader: str | None, demo_card: Path | None,
           idle_timeout: float, verbose: bool) -> None:
    """Serve 「自分の情報を見る」 until stopped (Ctrl-C): card + PIN, then my drugs, checkups,
    medical expenses, access log, consents and card suspension."""
    import uvicorn

    from clinic_terminal.kiosk.wiring import build_portal

    if reader and demo_card:
        raise click.UsageError("--reader and --demo-card exclude each other")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        runtime = build_portal(server_url or get_settings().server_url, reader=reader, demo_card=demo_card,
                               idle_timeout=idle_timeout)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"portal: http://{host}:{port}/ (card: {'demo' if demo_card else reader or 'PC/SC'})")
    try:
        uvicorn.run(runtime.app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        runtime.close()
