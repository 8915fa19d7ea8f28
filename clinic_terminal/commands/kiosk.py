"""`clinic-terminal kiosk`: the patient screen (``/``) and the reception screen (``/staff``)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from clinic_terminal.config import default_data_dir, get_settings, journal_key

EXIT_OK = 0
EXIT_USAGE = 2


@click.command("kiosk")
@click.option("--host", default="127.0.0.1", show_default=True, help="address of the local screens")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--server", "server_url", help="central server URL (default SHIKAKU_SERVER_URL)")
@click.option("--token", help="facility token (default SHIKAKU_FACILITY_TOKEN)")
@click.option("--role", type=click.Choice(["reception", "physician", "dentist", "pharmacist"]), default="reception",
              show_default=True, help="the token's role: physicians/pharmacists see the drug history button")
@click.option("--reader", help="PC/SC reader name (default: the first virtual or real reader found)")
@click.option("--demo-card", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="demo mode: an in-process virtual card from this profile folder instead of PC/SC (needs testbed: "
              "python -m testbed.kiosk_demo makes one)")
@click.option("--camera", help="camera index, video file or stream URL (enables 顔認証 with the options below)")
@click.option("--card-front", help="camera index, image/video file or URL showing the card front: 照合番号B is read "
              "by OCR (Tesseract) for 顔認証")
@click.option("--terminal-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="this terminal's P-256 private key (PEM) signing face attestations")
@click.option("--terminal-id", help="this terminal's registered id")
@click.option("--facility-code", help="10-digit 医療機関コード (default SHIKAKU_FACILITY_CODE)")
@click.option("--xml-root", type=click.Path(file_okay=False, path_type=Path),
              help="write a face file per card check into XML_ROOT/face (default SHIKAKU_XML_ROOT)")
@click.option("--setting", type=click.Choice(["outpatient", "inpatient", "home"]), default="outpatient",
              show_default=True, help="care setting of the consents taken here")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="the terminal's data folder: the outage journal (default SHIKAKU_TERMINAL_DATA_DIR, else "
              "XML_ROOT/state, else ~/.local/share/shikaku-terminal)")
@click.option("--verbose", "-v", is_flag=True)
def kiosk(
    host: str, port: int, server_url: str | None, token: str | None, role: str, reader: str | None,
    demo_card: Path | None, camera: str | None, card_front: str | None, terminal_key: Path | None,
    terminal_id: str | None,
    facility_code: str | None, xml_root: Path | None, setting: str, data_dir: Path | None, verbose: bool,
) -> None:
    """Run the kiosk until stopped (Ctrl-C)."""
    import uvicorn

    from clinic_terminal.kiosk.wiring import KioskConfig, build_kiosk

    settings = get_settings()
    if reader and demo_card:
        raise click.UsageError("--reader and --demo-card exclude each other")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    root = xml_root or (Path(settings.xml_root) if settings.xml_root else None)
    config = KioskConfig(
        server_url=server_url or settings.server_url,
        token=token or settings.facility_token,
        reader=reader,
        demo_card=demo_card,
        camera=camera,
        card_front=card_front,
        terminal_key=terminal_key,
        terminal_id=terminal_id,
        facility_code=facility_code or settings.facility_code,
        xml_root=root,
        xml_encoding=settings.xml_encoding,
        role=role,  # type: ignore[arg-type]
        setting=setting,  # type: ignore[arg-type]
        data_dir=data_dir or default_data_dir(settings, root),
        journal_key=journal_key(settings),
    )
    try:
        runtime = build_kiosk(config)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    face = "on" if runtime.face_enabled else "off"
    click.echo(f"kiosk on http://{host}:{port}/ (staff: /staff), server {config.server_url}, 顔認証 {face}", err=True)
    try:
        # access_log off: paths only would be harmless, but the kiosk keeps its logs minimal.
        uvicorn.run(runtime.app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        runtime.close()
