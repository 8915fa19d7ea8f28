"""``hokensha-load eligibility|medications|checkups|expenses FILE``: one command per file kind.

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
from hokensha_loader.errors import FileRefusedError, UsageError
from hokensha_loader.messages import DEFAULT_LANG, LANGS, Lang, lang_of, row_message, text
from hokensha_loader.progress import make_progress
from schemas.insurer_files import FILE_KINDS, FileKind

_HELP = {
    "eligibility": "Load an eligibility file (add / change / loss rows).",
    "medications": "Load a drug-history (medications) file.",
    "checkups": "Load a health-checkup (特定健診) file.",
    "expenses": "Load a medical-expenses (医療費通知情報) file: per person, month and facility.",
    "assistance": "Load a 福祉事務所's 医療扶助 file (医療券/調剤券 of a month; a welfare token).",
    "public_expense": "Load 公費負担医療 受給者証 (難病, 小児慢性, 自立支援, ...; a 公費負担者 token).",
    "procedures": "Load a 診療・手術 (procedures) file: per person, day, facility and 診療行為コード.",
}


def summary_line(s: Summary, lang: Lang = DEFAULT_LANG) -> str:
    """The one line printed after every run, TTY or not: the counts, then the outcome."""
    what = text("checked" if s.mode == "dry-run" else "loaded", lang)
    sep = "、" if lang == "ja" else ", "
    parts = [f"{s.kind}: {s.path.name} {what}", text("accepted", lang, n=s.accepted),
             text("rejected", lang, n=s.rejected)]
    if s.mode == "upload":
        parts.append(text("unchanged", lang, n=s.unchanged))
        parts.append(text("duplicate_yes" if s.duplicate else "duplicate_no", lang))
    if s.warnings:  # after the counts that scripts parse (bench/loader_bench.py)
        parts.append(text("warnings", lang, n=s.warnings))
    parts.append(text("rate", lang, rate=s.rows_per_s))
    parts.append(text("elapsed", lang, s=s.elapsed_s))
    return sep.join(parts) + " — " + outcome_line(s, lang)


def outcome_line(s: Summary, lang: Lang = DEFAULT_LANG) -> str:
    """Which of the outcomes this run had (each has its own exit code)."""
    dry = s.mode == "dry-run"
    if s.unread:
        return text("outcome_unread", lang, records=s.records, counted=s.accepted + s.rejected + s.unchanged)
    if s.rejected:
        return text("outcome_rejects_dry" if dry else "outcome_rejects", lang, n=s.rejected)
    return text("outcome_ok_dry" if dry else "outcome_ok", lang)


def print_summary(s: Summary, out: TextIO, *, quiet: bool, verbose: bool, lang: Lang = DEFAULT_LANG) -> None:
    print(summary_line(s, lang), file=out)
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
        print(text("row_error", lang, line=e.line, field=e.field or "-", code=e.code,
                   message=row_message(e, lang)), file=out)
    if s.rejected > len(s.sample_errors) and s.sample_errors:
        print(text("more_rejected", lang, n=s.rejected - len({e.line for e in s.sample_errors})), file=out)
    if s.errors_truncated:
        print(text("truncated", lang), file=out)
    if s.report_path is not None:
        print(text("report", lang, path=s.report_path, n=s.report_lines), file=out)


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
    @click.option("--lang", "lang_name", type=click.Choice(LANGS),
                  help="Language of the messages and the report: ja (default) or en [env SHIKAKU_LANG].")
    def command(file: Path, server_url: str | None, token: str | None, dry_run: bool, fmt: Format | None,
                report_path: Path | None, quiet: bool, verbose: bool, lang_name: str | None) -> int:
        settings = get_settings()
        lang = lang_of(lang_name or settings.lang)
        if quiet and verbose:
            raise UsageError("--quiet and --verbose exclude each other", key="quiet_verbose")
        fmt = format_for(file, fmt)
        report_path = report_path or default_report_path(file)
        progress = make_progress(sys.stderr, file_size(file), kind, enabled=False if quiet else None, lang=lang)
        try:
            if dry_run:
                summary = validate_file(file, kind, fmt, report_path=report_path, progress=progress, lang=lang)
            else:
                token = token or settings.insurer_token
                if not token:
                    raise UsageError("no upload token: pass --token or set SHIKAKU_INSURER_TOKEN", key="no_token")
                with UploadClient(server_url or settings.server_url, token,
                                  timeout_s=settings.upload_timeout_s) as client:
                    summary = upload_file(file, kind, fmt, client=client, report_path=report_path,
                                          progress=progress, lang=lang)
        except FileRefusedError:
            # the outcome on stdout like every other run's; the reason goes to stderr (cli.run)
            print(f"{kind}: {file.name} — {text('outcome_refused', lang)}", file=sys.stdout)
            raise
        print_summary(summary, sys.stdout, quiet=quiet, verbose=verbose, lang=lang)
        return int(summary.exit_code)

    return command


commands = [make_command(kind) for kind in FILE_KINDS]
