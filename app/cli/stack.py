"""``streamfit stack``: run the local stack (Kafka, Cassandra, Airflow, Spark) without Docker."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.common import console, current_stack_settings, handle_errors
from app.stack.settings import StackSettings

stack_app = typer.Typer(help="Run the local stack (Kafka, Cassandra, Airflow) without Docker.",
                        no_args_is_help=True)

ServicesOpt = Annotated[
    list[str] | None,
    typer.Option("--service", "-s", help="Only this service (repeatable): cassandra, kafka, airflow, spark "
                "(spark: a standalone master and worker, started by default only with "
                "STREAMFIT_STACK_SPARK=true)."),
]


def _validate_services(services: list[str] | None) -> list[str] | None:
    from app.stack.control import ALL_SERVICE_NAMES as SERVICE_NAMES

    for name in services or []:
        if name not in SERVICE_NAMES:
            raise typer.BadParameter(f"{name!r} is not a service; choose from "
                                     f"{', '.join(SERVICE_NAMES)}", param_hint="--service")
    return services


def _status_table(settings: StackSettings, rows: list[Any]) -> Table:
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
    from app.stack import control
    from app.stack.services import AirflowService

    settings = current_stack_settings()
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


@stack_app.command("jars")
@handle_errors
def stack_jars() -> None:
    """Fetch the Spark Cassandra Connector's jars from Maven Central (STREAMFIT_ENGINE=spark
    jobs load them; `stack up` does this too when the engine is Spark)."""
    from app.stack.services import install_connector

    console.print(f"connector jars in {install_connector(current_stack_settings())}")


@stack_app.command("down")
@handle_errors
def stack_down(services: ServicesOpt = None) -> None:
    """Stop the services (SIGTERM, then wait) and leave no process of ours running."""
    from app.stack import control

    stopped = control.down(current_stack_settings(), _validate_services(services),
                           on_event=lambda m: console.print(m))
    if not stopped:
        console.print("nothing was running")


@stack_app.command("status")
@handle_errors
def stack_status(services: ServicesOpt = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False
                 ) -> None:
    """Report each service's health, version, pid, memory and log. Exit 1 if any is down."""
    from app.stack import control

    settings = current_stack_settings()
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
    from app.stack import control
    from app.stack.services import all_services

    settings = current_stack_settings()
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
