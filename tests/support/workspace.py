"""Workspaces for tests: ``ws(settings)`` is the workspace of any test keyspace, on one session
per set of connection settings, kept for the whole test session (a Cassandra connection costs
about a second; the stages take a workspace, not settings)."""

from __future__ import annotations

from contextlib import ExitStack

from cassandra.cluster import Session

from streamfit.cassandra import connect
from streamfit.settings import Settings
from streamfit.workspace import Workspace, workspace

_SESSIONS: dict[tuple[object, ...], Session] = {}
_OPEN = ExitStack()


def _connection(settings: Settings) -> tuple[object, ...]:
    password = settings.cassandra_password
    return (tuple(settings.contact_points), settings.cassandra_port, settings.cassandra_username,
            password.get_secret_value() if password else None,
            settings.consistency("read"), settings.consistency("write"))


def ws(settings: Settings) -> Workspace:
    """The workspace of ``settings.keyspace`` (with the domain it records)."""
    key = _connection(settings)
    if key not in _SESSIONS:
        _SESSIONS[key] = _OPEN.enter_context(connect(settings, keyspace=None))
    return workspace(settings, _SESSIONS[key])


def close_sessions() -> None:
    """Close every session ``ws`` opened (the test session's end, or before a stack restart)."""
    _SESSIONS.clear()
    _OPEN.close()


def stages_run_here(settings: Settings) -> None:
    """Retire ``settings.keyspace`` from the pipeline Airflow serves: the test runs the stages
    itself. Else the ingest signal starts Airflow's runs for the keyspace, and their builds,
    trainings and scorings race the test's own (a fresh clone once saw Airflow promote v1 first;
    CI once saw the parity test fail where an Airflow run was building the same date)."""
    from streamfit.progress import set_retired

    set_retired(ws(settings).session, settings.keyspace, True)
