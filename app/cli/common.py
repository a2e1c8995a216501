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
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from streamfit.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from app.stack.settings import StackSettings
    from streamfit.workspace import Workspace

# Wide tables when piped (make demo, CI logs); the terminal's width when interactive.
console = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=Settings)


def _or_exit(load: Callable[[], S]) -> S:
    try:
        return load()
    except SettingsError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def current_settings() -> Settings:
    """The process's settings (validated once); exit 2 with the reason when they are invalid."""
    return _or_exit(get_settings)


def current_stack_settings() -> StackSettings:
    """The settings of the local stack's commands: the process's and STREAMFIT_STACK_*."""
    from app.stack.settings import get_stack_settings

    return _or_exit(get_stack_settings)


@contextmanager
def workspace() -> Iterator[Workspace]:
    """The workspace of STREAMFIT_KEYSPACE (a session, and the domain the keyspace records)."""
    from streamfit.workspace import open_workspace

    with open_workspace(current_settings()) as ws:
        yield ws


def plural(ws: Workspace) -> str:
    """The domain's entity in the plural, for messages ("flights", "parcels")."""
    return f"{ws.domain.entity.name}s"


def parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD",
                                 param_hint=name) from None


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
    from streamfit.kafka import KafkaAuthError, KafkaTLSError
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
            SparkUnavailable, SparkJobFailed, MemoryBudgetExceeded, KafkaTLSError)


def handle_errors(func: F) -> F:
    """Translate our narrow errors into a clear message and exit code, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
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
