"""`clinic-terminal`: the reception kiosk and its tools.

Each sub-command lives in its own thin module under ``clinic_terminal/commands/``; this file only
assembles them. Logic lives in the domain packages (``card``, ``face``, ``kiosk``, ``xmlif``).
"""

from __future__ import annotations

import importlib

import click

# module name under clinic_terminal.commands -> attribute holding the click command
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("watch", "watch"),
    ("kiosk", "kiosk"),
    ("portal", "portal"),
    ("face_check", "face_check"),
)


@click.group(invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Clinic / pharmacy reception terminal."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _register() -> None:
    for module_name, attr in _COMMANDS:
        module = importlib.import_module(f"clinic_terminal.commands.{module_name}")
        cli.add_command(getattr(module, attr))


INSTALL_HINT = "pip install 'shikaku[terminal]'"


def main() -> None:
    try:
        _register()
        cli()
    except ModuleNotFoundError as exc:  # the project installed without the terminal extra
        click.echo(f"clinic-terminal: the Python module {exc.name!r} is not installed: {INSTALL_HINT}", err=True)
        raise SystemExit(2) from None
