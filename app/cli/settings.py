"""``streamfit settings``: the effective settings, secrets masked."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli.common import console, current_stack_settings

#: top-level commands of this module
commands = typer.Typer()


@commands.command("settings")
def show_settings(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Every setting with its default and meaning, as docs/settings.md "
        "(the file is this output).")] = False,
) -> None:
    """Print the effective settings (secrets masked), the local stack's included."""
    if markdown:
        from app.settings_doc import settings_markdown

        print(settings_markdown(), end="")
        return
    settings = current_stack_settings()
    data = json.loads(settings.model_dump_json())
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(title="streamfit settings")
    table.add_column("env var")
    table.add_column("value")
    for name, value in data.items():
        table.add_row(f"STREAMFIT_{name.upper()}", str(value))
    console.print(table)
