"""``hokensha-load eligibility|medications|checkups FILE``: one command per file kind.

Thin: parse options, pick dry run or upload, call the core, print the summary, return the
exit code. Errors propagate to the single handler in ``hokensha_loader.cli``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import click

from hokensha_loader.client import UploadClient
from hokensha_loader.config import get_settings
from hokensha_loader.core import (
    Format,
    Summary,
    default_report_path,
    file_size,
    format_for,
    upload_file,
    validate_file,
)
from hokensha_loader.errors import UsageError
from hokensha_loader.progress import make_progress
from schemas.insurer_files import FileKind

_HELP = {
    "eligibility": "Load an eligibility file (add / change / loss rows).",
    "medications": "Load a drug-history (medications) file.",
    "checkups": "Load a health-checkup (特定健診) file.",
}


def summary_line(s: Summary) -> str:
    """The one line printed after every run, TTY or not."""
    what = "checked" if s.mode == "dry-run" else "loaded"
    parts = [f"{s.kind}: {s.path.name} {what}", f"accepted {s.accepted:,}", f"rejected {s.rejected:,}"]
    if s.mode == "upload":
        parts.append(f"unchanged {s.unchanged:,}")
        parts.append("duplicate: yes (nothing changed)" if s.duplicate else "duplicate: no")
    parts.append(f"{s.rows_per_s:,.0f} rows/s")
    parts.append(f"{s.elapsed_s:.1f} s")
    return ", ".join(parts)


def print_summary(s: Summary, out: TextIO, *, quiet: bool, verbose: bool) -> None:
    print(summary_line(s), file=out)
    if quiet:
        return
    if verbose:
        extra = [f"{s.bytes:,} bytes", f"{s.rows:,} rows"]
        if s.encoding:
            extra.append(f"encoding {s.encoding}")
        if s.upload_id:
            extra.append(f"upload_id {s.upload_id}")
        print("  " + ", ".join(extra), file=out)
    for e in s.sample_errors:
        print(f"  line {e.line}: {e.field or '-'}: {e.code}: {e.message}", file=out)
    if s.rejected > len(s.sample_errors) and s.sample_errors:
        print(f"  ... {s.rejected - len({e.line for e in s.sample_errors}):,} more rejected row(s)", file=out)
    if s.errors_truncated:
        print("  the server sent only the first errors; the report lists those", file=out)
    if s.report_path is not None:
        print(f"reject report: {s.report_path} ({s.report_lines:,} line(s))", file=out)


def make_command(kind: FileKind) -> click.Command:
    @click.command(name=kind, help=_HELP[kind])
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--server", "server_url", metavar="URL", help="Server URL [env SHIKAKU_SERVER_URL].")
    @click.option("--token", metavar="T", help="Insurer upload token [env SHIKAKU_INSURER_TOKEN].")
    @click.option("--dry-run", is_flag=True, help="Validate locally; send nothing.")
    @click.option("--format", "fmt", type=click.Choice(["csv", "ndjson"]),
                  help="File format (default: from the extension: .csv, .ndjson/.jsonl).")
    @click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Reject report path (default: FILE.rejects.csv).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar; only the summary line.")
    @click.option("--verbose", "-v", is_flag=True, help="More detail; tracebacks on errors.")
    def command(file: Path, server_url: str | None, token: str | None, dry_run: bool, fmt: Format | None,
                report_path: Path | None, quiet: bool, verbose: bool) -> int:
        if quiet and verbose:
            raise UsageError("--quiet and --verbose exclude each other")
        fmt = format_for(file, fmt)
        report_path = report_path or default_report_path(file)
        progress = make_progress(sys.stderr, file_size(file), kind, enabled=False if quiet else None)
        if dry_run:
            summary = validate_file(file, kind, fmt, report_path=report_path, progress=progress)
        else:
            settings = get_settings()
            token = token or settings.insurer_token
            if not token:
                raise UsageError("no upload token: pass --token or set SHIKAKU_INSURER_TOKEN")
            with UploadClient(server_url or settings.server_url, token,
                              timeout_s=settings.upload_timeout_s) as client:
                summary = upload_file(file, kind, fmt, client=client, report_path=report_path,
                                      progress=progress)
        print_summary(summary, sys.stdout, quiet=quiet, verbose=verbose)
        return int(summary.exit_code)

    return command


commands = [make_command(kind) for kind in ("eligibility", "medications", "checkups")]
