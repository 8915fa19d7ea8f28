"""``hokensha-load``: the insurer's bulk loader (contract: Commands, Insurer files).

Assembles the sub-commands and holds the one top-level error handler: known errors become one
clear message and a named exit code (``status_codes.ExitCode``); a traceback only with --verbose.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click

from hokensha_loader.config import get_settings
from hokensha_loader.errors import LoaderError
from hokensha_loader.messages import Lang, lang_of, text
from hokensha_loader.status_codes import ExitCode
from schemas.identifiers import withhold_my_number

INSTALL_HINT = "pip install 'shikaku[loader]'"
try:
    from hokensha_loader.commands.load import commands
except ModuleNotFoundError as _exc:  # the project installed without the loader extra: run() says so
    _MISSING: str | None = _exc.name or "a dependency"
    commands = []
else:
    _MISSING = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Upload (or --dry-run validate) an insurer file: eligibility, medications, checkups, expenses or
    procedures; a welfare office's assistance file or a 公費負担者's public_expense file.

    \b
    exit codes: 0 all loaded, 1 loaded except rejected rows, 2 file refused as a whole,
                3 server/auth/network error, 4 usage error, 5 unexpected error,
                6 not all lines read
    messages in Japanese; --lang en (or SHIKAKU_LANG=en) for English
    """


def _lang(args: list[str]) -> Lang:
    """--lang of the command line (read before click, for the errors click never sees), else the
    settings."""
    for i, arg in enumerate(args):
        if arg == "--lang" and i + 1 < len(args):
            return lang_of(args[i + 1])
        if arg.startswith("--lang="):
            return lang_of(arg.split("=", 1)[1])
    try:
        return lang_of(get_settings().lang)
    except Exception:  # unreadable settings: the default language, the error comes later
        return lang_of(None)


for _command in commands:
    cli.add_command(_command)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (``main`` exits with it)."""
    if _MISSING is not None:
        print(f"hokensha-load: the Python module {_MISSING!r} is not installed: {INSTALL_HINT}", file=sys.stderr)
        return int(ExitCode.USAGE_ERROR)
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    lang = _lang(args)
    try:
        result = cli.main(args=args, prog_name="hokensha-load", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help
        return int(exc.exit_code)
    except click.exceptions.Abort:
        print(text("interrupted", lang), file=sys.stderr)
        return int(ExitCode.SERVER_ERROR)
    except click.ClickException as exc:  # bad option, missing file, ...
        exc.show(file=sys.stderr)
        return int(ExitCode.USAGE_ERROR)
    except LoaderError as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        print(text("error_prefix", lang) + exc.render(lang), file=sys.stderr)
        return int(exc.exit_code)
    except Exception as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        else:
            print(text("unexpected", lang), file=sys.stderr)
        print(f"hokensha-load: {type(exc).__name__}: {withhold_my_number(str(exc))}", file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)


def main() -> None:
    sys.exit(run())
