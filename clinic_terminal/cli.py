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


def main() -> None:
    _register()
    cli()
