"""``streamfit produce``: send events to Kafka, a data set replayed or your own file."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from app.cli.common import console, current_settings, err, handle_errors
from streamfit.settings import Settings

produce_app = typer.Typer(help="Send events to Kafka.", no_args_is_help=True)


def _progress(total: int | None, description: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>10} ev/s"), TimeElapsedColumn(),
                    console=console, transient=False)


def _run_produce(settings: Settings, events: Any, speed: float | None, total: int | None,
                 label: str) -> Any:
    from ingest.producer import send_events
    from ingest.service import ensure_topics

    ensure_topics(settings)
    started = time.monotonic()
    with _progress(total, label) as progress:
        task = progress.add_task(label, total=total, rate="-")

        def update(n: int) -> None:
            rate = n / max(1e-9, time.monotonic() - started)
            progress.update(task, completed=n, rate=f"{rate:,.0f}")

        stats = send_events(settings, events, speed=speed, on_progress=update)
    console.print(f"sent {stats.sent:,} events to {settings.events_topic} in {stats.seconds:.1f}s "
                  f"({stats.rate:,.0f} ev/s); event time {stats.first_event_time} .. "
                  f"{stats.last_event_time}")
    return stats


@produce_app.command("replay")
@handle_errors
def produce_replay(
    dataset: Annotated[str | None, typer.Option(
        help="Data set of the domain to replay. Default: the domain's first.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive (YYYY-MM-DD).")] = None,
    speed: Annotated[float | None, typer.Option(
        min=0.001, help="N x real time, by event time. Default: --max-speed.")] = None,
    max_speed: Annotated[bool, typer.Option("--max-speed", help="As fast as possible.")] = False,
    shift_to_now: Annotated[bool, typer.Option(
        "--shift-to-now", help="Move event times so the first event is now.")] = False,
    scale: Annotated[int, typer.Option(min=1, max=1000,
                                       help="Clone the data K times with distinct ids.")] = 1,
) -> None:
    """Replay a data set as events, in event-time order."""
    from datetime import date

    from streamfit.domains import ReplayOptions, load_domain

    if speed is not None and max_speed:
        raise typer.BadParameter("give either --speed or --max-speed", param_hint="--speed")

    def day(value: str | None, name: str) -> date | None:
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD",
                                     param_hint=name) from None

    start, end = day(from_, "--from"), day(to, "--to")
    if start and end and end < start:
        raise typer.BadParameter(f"--to {end} is before --from {start}", param_hint="--to")
    settings = current_settings()
    try:
        domain = load_domain(settings.domain)
        dataset = dataset or next(iter(domain.datasets), "")
        events = domain.replay(dataset, ReplayOptions(start, end, scale, shift_to_now))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dataset") from None
    _run_produce(settings, events, speed, None, f"replay {dataset}")


@produce_app.command("file")
@handle_errors
def produce_file(
    path: Annotated[str, typer.Argument(help="JSON lines, one event envelope per line.")],
    speed: Annotated[float | None, typer.Option(min=0.001, help="N x real time.")] = None,
) -> None:
    """Send your own events from a JSON-lines file; invalid lines are reported and skipped."""
    from pathlib import Path

    from ingest.producer import read_jsonl
    from streamfit.domains import load_domain

    file = Path(path)
    if not file.is_file():
        raise typer.BadParameter(f"{path} is not a readable file", param_hint="PATH")
    settings = current_settings()
    rejected: list[str] = []
    events = read_jsonl(file, load_domain(settings.domain), settings.ingest_max_message_bytes,
                        rejected)
    _run_produce(settings, events, speed, None, f"file {file.name}")
    for line in rejected[:20]:
        err.print(f"[yellow]skipped[/] {line}")
    if rejected:
        err.print(f"{len(rejected)} invalid line(s) skipped")
        raise typer.Exit(2)
