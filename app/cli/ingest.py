"""``streamfit ingest``: land events from Kafka in Cassandra, and watch the group."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli.common import console, current_settings, handle_errors

ingest_app = typer.Typer(help="Land events from Kafka in Cassandra.", no_args_is_help=True)


@ingest_app.command("run")
@handle_errors
def ingest_run(
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes "
                                                "(default STREAMFIT_INGEST_WORKERS).")] = None,
) -> None:
    """Run the ingest service until SIGTERM/SIGINT (Ctrl-C): Kafka -> Cassandra, DLQ, ledger."""
    import logging

    from ingest.service import IngestService

    settings = current_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    n = workers or settings.ingest_workers
    console.print(f"ingest: {n} worker(s), group {settings.ingest_group}, topic "
                  f"{settings.events_topic} -> {settings.keyspace}.raw_events; Ctrl-C stops")
    IngestService(settings, n, on_event=lambda m: console.print(f"[dim]{m}[/]")).run()


@ingest_app.command("status")
@handle_errors
def ingest_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    sample_s: Annotated[float, typer.Option(min=0.0, max=60.0,
                                            help="Seconds between two samples for rates.")] = 2.0,
) -> None:
    """Lag per partition of the ingest group and the current landing rate."""
    from ingest.status import group_status

    settings = current_settings()
    status = group_status(settings, sample_s)
    if as_json:
        print(json.dumps(status, indent=2))
        return
    table = Table(title=f"ingest group {settings.ingest_group} on {settings.events_topic}")
    for col in ("partition", "committed", "end", "lag"):
        table.add_column(col, justify="right")
    table.add_column("stalled")
    for row in status["partitions"]:
        table.add_row(str(row["partition"]), str(row["committed"]), str(row["end"]),
                      str(row["lag"]), f"[red]{row['stalled']}[/]" if row["stalled"] else "")
    console.print(table)
    console.print(f"total lag {status['lag']:,}; committing {status['rate']:,.0f} ev/s; "
                  f"dead letters {status['dead_letters']:,}")


@ingest_app.command("signal")
@handle_errors
def ingest_signal() -> None:
    """Send the data-arrival signal now for whatever landed since the last one."""
    from ingest.signal import signal_now

    extra = signal_now(current_settings())
    console.print(json.dumps(extra, indent=2) if extra else "nothing new landed since the last "
                  "signal")
