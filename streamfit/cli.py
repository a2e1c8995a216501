"""The ``streamfit`` command line: one entry point for people and for the Makefile.

Each command validates its arguments, loads the settings once, calls a plain function from the
packages, and turns our narrow exceptions into a one-line error and exit code 2 (bad input or
settings) or 1 (a service failed).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from streamfit.settings import Settings, SettingsError, get_settings

app = typer.Typer(help="streamfit: an event-driven ML pipeline on Kafka, Cassandra and Airflow.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
stack_app = typer.Typer(help="Run the local stack (Kafka, Cassandra, Airflow) without Docker.",
                        no_args_is_help=True)
db_app = typer.Typer(help="Cassandra schema.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")

# Wide tables when piped (make demo, CI logs); the terminal's width when interactive.
console = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def handle_errors(func: F) -> F:
    """Translate our narrow errors into a clear message and exit code, never a traceback."""
    from streamfit.airflow_api import AirflowAPIError
    from streamfit.cassandra import CassandraUnavailable
    from streamfit.schema import MigrationError
    from streamfit.selfcheck import SelfCheckFailed
    from streamfit.stack.process import StackError

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (StackError, CassandraUnavailable, MigrationError, SelfCheckFailed,
                AirflowAPIError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


ServicesOpt = Annotated[
    list[str] | None,
    typer.Option("--service", "-s", help="Only this service (repeatable): cassandra, kafka, airflow."),
]


def _validate_services(services: list[str] | None) -> list[str] | None:
    from streamfit.stack.control import SERVICE_NAMES

    for name in services or []:
        if name not in SERVICE_NAMES:
            raise typer.BadParameter(f"{name!r} is not a service; choose from "
                                     f"{', '.join(SERVICE_NAMES)}", param_hint="--service")
    return services


def _status_table(settings: Settings, rows: list[Any]) -> Table:
    table = Table(title=f"streamfit stack (state and logs below {settings.home})")
    for col in ("service", "component", "version", "ports", "pid", "RSS MiB", "health", "log"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.service, r.component, r.version, ",".join(map(str, r.ports)) or "",
            str(r.pid) if r.pid else "-", f"{r.rss_mb:.0f}" if r.rss_mb else "-",
            "[green]healthy[/]" if r.healthy else ("[red]down[/]" if r.pid is None
                                                   else "[yellow]unhealthy[/]"),
            r.log.replace(str(settings.home) + "/", ""),
        )
    return table


@stack_app.command("up")
@handle_errors
def stack_up(services: ServicesOpt = None) -> None:
    """Start the services that are not running and wait until all are usable."""
    from streamfit.stack import control
    from streamfit.stack.services import AirflowService

    settings = _settings()
    services = _validate_services(services)
    start = time.monotonic()
    took = control.up(settings, services, on_event=lambda m: console.print(f"[dim]{m}[/]"))
    console.print(_status_table(settings, control.status(settings, services)))
    for name, seconds in took.items():
        if seconds:
            console.print(f"{name} ready after {seconds:.1f}s")
    if services is None or "airflow" in services:
        airflow = AirflowService(settings)
        console.print(f"Airflow UI: {settings.airflow_api_url}  (user [bold]"
                      f"{settings.airflow_username}[/], password in {airflow.password_file})")
    console.print(f"stack up took {time.monotonic() - start:.1f}s")


@stack_app.command("down")
@handle_errors
def stack_down(services: ServicesOpt = None) -> None:
    """Stop the services (SIGTERM, then wait) and leave no process of ours running."""
    from streamfit.stack import control

    stopped = control.down(_settings(), _validate_services(services),
                           on_event=lambda m: console.print(m))
    if not stopped:
        console.print("nothing was running")


@stack_app.command("status")
@handle_errors
def stack_status(services: ServicesOpt = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False
                 ) -> None:
    """Report each service's health, version, pid, memory and log. Exit 1 if any is down."""
    from streamfit.stack import control

    settings = _settings()
    rows = control.status(settings, _validate_services(services))
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        console.print(_status_table(settings, rows))
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@stack_app.command("logs")
@handle_errors
def stack_logs(
    component: Annotated[str, typer.Argument(help="kafka, cassandra, airflow-api-server, "
                                             "airflow-scheduler, airflow-dag-processor, "
                                             "airflow-triggerer, or airflow (all four)")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, max=100000)] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Show the last lines of a service's log (and follow it with -f)."""
    from streamfit.stack import control
    from streamfit.stack.services import all_services

    settings = _settings()
    services = all_services(settings)
    components = [c for s in services.values() for c in s.components]
    if component in services:
        names = list(services[component].components)
    elif component in components:
        names = [component]
    else:
        raise typer.BadParameter(f"{component!r} is not a service or component; choose from "
                                 f"{', '.join([*services, *components])}", param_hint="COMPONENT")
    sup = control.supervisor(settings)
    for name in names:
        if len(names) > 1:
            console.rule(name)
        for line in sup.tail(name, lines):
            print(line)
    if follow:
        path = sup.log_file(names[0])
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            try:
                while True:
                    chunk = fh.readline()
                    if chunk:
                        sys.stdout.write(chunk.decode("utf-8", "replace"))
                        sys.stdout.flush()
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                pass


@db_app.command("migrate")
@handle_errors
def db_migrate() -> None:
    """Create the keyspace and tables (idempotent) and record the schema version."""
    from streamfit.cassandra import connect
    from streamfit.schema import current_version, migrate

    settings = _settings()
    with connect(settings, keyspace=None) as session:
        applied = migrate(session, settings)
        version = current_version(session, settings.keyspace)
    if applied:
        console.print(f"applied migrations {applied}; keyspace {settings.keyspace} "
                      f"is at schema version {version}")
    else:
        console.print(f"keyspace {settings.keyspace} already at schema version {version}")


@app.command("selfcheck")
@handle_errors
def selfcheck() -> None:
    """Round trip through the real services: a Kafka message and a Cassandra row read back."""
    from streamfit.selfcheck import run_selfcheck

    settings = _settings()
    table = Table(title="round trip")
    for col in ("service", "where", "sent", "read back", "ms"):
        table.add_column(col)
    for name, result in zip(("kafka", "cassandra"), run_selfcheck(settings), strict=True):
        table.add_row(name, result.where, result.sent, result.received, f"{result.millis:.0f}")
    console.print(table)
    console.print("[green]round trip OK[/]: Kafka and Cassandra returned what was written")


@app.command("settings")
def show_settings(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Print the effective settings (secrets masked) and where each comes from."""
    settings = _settings()
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


if __name__ == "__main__":  # pragma: no cover
    app()
