"""``streamfit db``: the Cassandra schema; ``streamfit selfcheck``: a round trip through the services."""

from __future__ import annotations

import typer
from rich.table import Table

from app.cli.common import console, current_settings, handle_errors

db_app = typer.Typer(help="Cassandra schema.", no_args_is_help=True)
#: top-level commands of this module
commands = typer.Typer()


@db_app.command("migrate")
@handle_errors
def db_migrate() -> None:
    """Create the keyspace and tables (idempotent) and record the schema version."""
    from streamfit.cassandra import connect
    from streamfit.schema import current_version, migrate

    settings = current_settings()
    with connect(settings, keyspace=None) as session:
        applied = migrate(session, settings)
        version = current_version(session, settings.keyspace)
    if applied:
        console.print(f"applied migrations {applied}; keyspace {settings.keyspace} "
                      f"is at schema version {version}")
    else:
        console.print(f"keyspace {settings.keyspace} already at schema version {version}")


@commands.command("selfcheck")
@handle_errors
def selfcheck() -> None:
    """Round trip through the real services: a Kafka message and a Cassandra row read back."""
    from streamfit.selfcheck import run_selfcheck

    settings = current_settings()
    table = Table(title="round trip")
    for col in ("service", "where", "sent", "read back", "ms"):
        table.add_column(col)
    for name, result in zip(("kafka", "cassandra"), run_selfcheck(settings), strict=True):
        table.add_row(name, result.where, result.sent, result.received, f"{result.millis:.0f}")
    console.print(table)
    console.print("[green]round trip OK[/]: Kafka and Cassandra returned what was written")
