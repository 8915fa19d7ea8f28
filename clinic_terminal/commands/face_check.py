"""`clinic-terminal face-check`: card photo vs camera, without a card; one JSON line out.

Exit codes: 0 the same person and alive, 1 refused (no match, liveness failed, no face, several
faces), 2 could not check (card photo unreadable, camera unavailable). Without the face libraries
it prints what to install on stderr (no JSON line) and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

EXIT_MATCH = 0
EXIT_NO_MATCH = 1
EXIT_ERROR = 2


@click.command("face-check")
@click.option(
    "--card-photo",
    "card_photo",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Card-face photo: JPEG 2000 as on the chip, or any image Pillow reads.",
)
@click.option(
    "--camera",
    "camera_source",
    required=True,
    help="Device index (0), video file or stream URL.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=None,
    help="Largest accepted face distance (default: SHIKAKU_FACE_THRESHOLD or 0.5).",
)
@click.option(
    "--frames",
    "frames_n",
    type=click.IntRange(min=3, max=300),
    default=None,
    help="Camera frames to read (default: SHIKAKU_FACE_FRAMES or 30).",
)
def face_check(card_photo: Path, camera_source: str, threshold: float | None, frames_n: int | None) -> None:
    """Compare a card photo with the live camera (liveness included) and print one JSON line."""
    try:
        from clinic_terminal.face import FaceCheckError, OpenCVCamera, check_face, get_face_settings
    except ImportError as exc:  # FaceLibrariesMissingError: its message names the pip command
        click.echo(f"face-check: {exc}", err=True)
        raise SystemExit(EXIT_ERROR) from None

    settings = get_face_settings()
    limit = threshold if threshold is not None else settings.threshold
    try:
        try:
            data = card_photo.read_bytes()
        except OSError:
            raise FaceCheckError("card photo cannot be read", code="card_photo_unreadable") from None
        result = check_face(data, OpenCVCamera(camera_source), threshold=limit, frames_n=frames_n)
    except FaceCheckError as exc:
        line = {
            "match": False,
            "distance": None,
            "threshold": limit,
            "liveness": False,
            "elapsed_ms": 0,
            "reason": exc.code,
            "message": str(exc),
        }
        click.echo(json.dumps(line))
        raise SystemExit(EXIT_ERROR) from None
    click.echo(json.dumps(result.to_json_dict()))
    raise SystemExit(EXIT_MATCH if result.accepted else EXIT_NO_MATCH)
