"""What every ``streamfit`` command shares: the consoles, the process's settings, error
translation, date arguments and the workspace a command works in.

Each command validates its arguments, loads the settings once, calls a plain function from the
packages, and turns our narrow exceptions into a one-line error and exit code 2 (bad input or
settings) or 1 (a service failed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from streamfit.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from app.stack.settings import StackSettings
    from streamfit.workspace import Workspace

# Wide tables when piped (make demo, CI logs); the terminal's width when interactive.
console = Console() if sys.stdout.isatty() else Console(width=160)
# An error is one line, whatever its length: scripts read it, and a wrapped line reads as two.
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=Settings)


def _or_exit(load: Callable[[], S]) -> S:
    try:
        return load()
    except SettingsError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


#: A command's Kafka clients give up on an unreachable Kafka after this (unless
#: STREAMFIT_KAFKA_BOOTSTRAP_TIMEOUT_S says otherwise): a person waits for the answer.
CLI_KAFKA_BOOTSTRAP_S = 5.0


def _for_commands(settings: S) -> S:
    if "kafka_bootstrap_timeout_s" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"kafka_bootstrap_timeout_s": CLI_KAFKA_BOOTSTRAP_S})


def current_settings() -> Settings:
    """The process's settings (validated once); exit 2 with the reason when they are invalid."""
    return _for_commands(_or_exit(get_settings))


def current_stack_settings(as_given: bool = False) -> StackSettings:
    """The settings of the local stack's commands: the process's and STREAMFIT_STACK_*
    (``as_given``: without the CLI's own shorter Kafka bootstrap, as other processes see them)."""
    from app.stack.settings import get_stack_settings

    given = _or_exit(get_stack_settings)
    return given if as_given else _for_commands(given)


@contextmanager
def workspace() -> Iterator[Workspace]:
    """The workspace of STREAMFIT_KEYSPACE (a session, and the domain the keyspace records)."""
    from streamfit.workspace import open_workspace

    with open_workspace(current_settings()) as ws:
        yield ws


#: ``--wait`` of the commands that run a stage by hand (features build, train, score).
WaitOption = Annotated[float, typer.Option(
    "--wait", min=0, max=3600, metavar="SECONDS",
    help="How long to wait, in seconds, for a pipeline run of the same stage that is working "
         "on this keyspace (0: fail at once).")]


@contextmanager
def stage_lease(ws: Workspace, stage: str, wait_s: float) -> Iterator[None]:
    """Hold ``stage``'s lease on the keyspace for the block, as a pipeline run does, waiting up
    to ``wait_s`` seconds for the run that holds it: a stage run by hand never works beside one
    (two builds of a date at once could keep rows of the staler; two trainings race to
    promote)."""

    def waiting(holder: str | None) -> None:
        console.print(f"a {stage} run ({holder}) is working on keyspace {ws.keyspace}; waiting "
                      f"up to {wait_s:g} s for it to finish")

    with ws.progress.lease(stage, wait_s=wait_s, on_wait=waiting):
        yield


def plural(ws: Workspace) -> str:
    """The domain's entity in the plural, for messages ("flights", "parcels")."""
    return f"{ws.domain.entity.name}s"


def parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD",
                                 param_hint=name) from None


#: Our narrow exception classes, by module: an error the command raised is one of them only if
#: its module was imported, so nothing is imported to find out (importing them all pulled in
#: scikit-learn: 3.8 s added to every error message).
KNOWN_ERRORS: dict[str, tuple[str, ...]] = {
    "app.demo": ("DemoFailed",),
    "app.stack.process": ("StackError",),
    "ingest.dlq": ("OriginalUnreadable",),
    "ingest.producer": ("ProduceFailed",),
    "scoring.batch": ("NoChampion",),
    "scoring.client": ("BadPageToken",),
    "streamfit.airflow_api": ("AirflowAPIError",),
    "streamfit.cassandra": ("CassandraUnavailable",),
    "streamfit.kafka": ("KafkaAuthError", "KafkaTLSError"),
    "streamfit.memory": ("MemoryBudgetExceeded",),
    "streamfit.progress": ("LeaseHeld", "ProgressConflict"),
    "streamfit.registry": ("AliasConflict", "ModelIntegrityError", "ModelNotFound"),
    "streamfit.schema": ("MigrationError",),
    "streamfit.selfcheck": ("SelfCheckFailed",),
    "streamfit.spark": ("SparkUnavailable", "SparkJobFailed"),
    "training.backtest": ("BacktestError",),
    "training.transient": ("TransientError",),
}


def _known_errors() -> tuple[type[BaseException], ...]:
    """The classes of ``KNOWN_ERRORS`` whose modules this process imported."""
    return tuple(getattr(sys.modules[module], name) for module, names in KNOWN_ERRORS.items()
                 if module in sys.modules for name in names)


def handle_errors(func: F) -> F:
    """Translate our narrow errors into a clear message and exit code, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise  # typer's own: it prints them
        except SettingsError as exc:  # found late: a TLS file read when a client is made
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        except Exception as exc:
            from kafka.errors import KafkaError

            if isinstance(exc, _known_errors()):
                err.print(f"[red]error:[/] {exc}")
                raise typer.Exit(1) from None
            from cassandra import DriverException, RequestExecutionException
            from cassandra.cluster import NoHostAvailable

            if isinstance(exc, RequestExecutionException | NoHostAvailable | DriverException):
                from streamfit.cassandra import explain_failure

                err.print(f"[red]error:[/] {explain_failure(exc)}")
                raise typer.Exit(1) from None
            if isinstance(exc, KafkaError):
                err.print(f"[red]error:[/] Kafka: {exc}. Is Kafka running (`streamfit stack "
                          "status`) and STREAMFIT_KAFKA_BOOTSTRAP_SERVERS right?")
                raise typer.Exit(1) from None
            raise

    return wrapper  # type: ignore[return-value]
