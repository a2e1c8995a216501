"""Shared fixtures. Integration and e2e tests run against the real services: the session starts
whatever part of the local stack is not running, and stops only what it started."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from streamfit.settings import Settings, get_settings

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS).parts
        if parts[0] == "integration":
            item.add_marker(pytest.mark.integration)
        elif parts[0] == "e2e":
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[Settings]:
    """The running local stack; started here if needed, and then stopped here at the end."""
    from app.stack import control

    started = [name for name in control.SERVICE_NAMES
               if not control.running(base_settings, name)]
    if started:
        control.up(base_settings, started)
    # The default keyspace is what DAG tasks use (their settings come from the environment).
    from streamfit.cassandra import connect
    from streamfit.schema import migrate

    with connect(base_settings, keyspace=None) as session:
        migrate(session, base_settings)
    yield base_settings
    if started:
        ours: set[int] = set()
        for row in control.status(base_settings, started):
            if row.pid:
                proc = psutil.Process(row.pid)
                ours |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        control.down(base_settings, started)
        # `stack down` must leave no process of ours: nothing the stack started may survive.
        survivors = [pid for pid in ours if _alive(pid)]
        if set(started) == set(control.SERVICE_NAMES):  # else the others are still running
            survivors += [p.pid for p in psutil.process_iter(["cmdline"])
                          if str(base_settings.home) in " ".join(p.info["cmdline"] or [])]
        assert not survivors, f"processes left after stack down: {survivors}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name per test (created by the test with the partitions it needs)."""
    return f"test.{uuid.uuid4().hex[:12]}"


@contextmanager
def migrated_keyspace(stack: Settings, name: str, domain: str = "flights") -> Iterator[Settings]:
    """Settings pointing at keyspace ``name`` for ``domain``, created and migrated here, dropped
    afterwards."""
    from streamfit.cassandra import connect
    from streamfit.schema import migrate

    settings = stack.model_copy(update={"keyspace": name, "domain": domain})
    with connect(settings, keyspace=None) as session:
        migrate(session, settings)
    yield settings
    with connect(settings, keyspace=None) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)


@pytest.fixture(scope="module")
def keyspace_settings(stack: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings pointing at a fresh keyspace for this test module, migrated, dropped afterwards."""
    name = f"t_{request.module.__name__.rsplit('.', 1)[-1][:24]}_{uuid.uuid4().hex[:8]}"
    with migrated_keyspace(stack, name) as settings:
        yield settings


@pytest.fixture
def fresh_keyspace_settings(stack: Settings) -> Iterator[Settings]:
    """Like keyspace_settings, but a keyspace of its own for every test."""
    with migrated_keyspace(stack, f"t_fn_{uuid.uuid4().hex[:12]}") as settings:
        yield settings
