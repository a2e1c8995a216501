"""Shared fixtures. Integration and e2e tests run against the real services: the session starts
whatever part of the local stack is not running, and stops only what it started."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from app.stack.settings import StackSettings, get_stack_settings
from streamfit.settings import Settings

TESTS = Path(__file__).parent


#: Tests that restart the whole stack with other settings run last: when the session started
#: the stack, they leave it stopped instead of starting it again only to stop it.
RESTARTS_STACK = "restarts_stack"
STARTED = pytest.StashKey[list[str]]()


#: Tests on the cluster topology (tests/chaos/cluster) run after everything else: they stop the
#: single-node stack and start the cluster.
CLUSTER = "cluster"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: (item.get_closest_marker(CLUSTER) is not None,
                                 item.get_closest_marker(RESTARTS_STACK) is not None))
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS).parts
        if parts[0] == "integration":
            item.add_marker(pytest.mark.integration)
        elif parts[0] == "e2e":
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def base_settings() -> StackSettings:
    """The session's settings: the process's and the local stack's (STREAMFIT_STACK_*)."""
    return get_stack_settings()


def external_services(settings: Settings) -> set[str]:
    """The services the settings point outside the local stack (as kafka-python's fixtures
    honour ``KAFKA_URI``): ``STREAMFIT_KAFKA_BOOTSTRAP_SERVERS``, ``STREAMFIT_CASSANDRA_HOSTS``,
    ``STREAMFIT_AIRFLOW_URL``. The session never starts or stops those; it checks they answer."""
    return {name for name, given in (("kafka", settings.kafka_bootstrap_servers),
                                     ("cassandra", settings.cassandra_hosts),
                                     ("airflow", settings.airflow_url)) if given}


def _require_external(settings: Settings, names: set[str]) -> None:
    """Fail loudly, naming the setting, when an external service does not answer."""
    problems = []
    if "kafka" in names:
        from streamfit import kafka as kafka_io

        try:
            kafka_io.admin(settings, client_id="streamfit-tests").close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            problems.append(f"Kafka at STREAMFIT_KAFKA_BOOTSTRAP_SERVERS="
                            f"{settings.kafka_bootstrap_servers}: {exc}")
    if "cassandra" in names:
        from streamfit.cassandra import connect

        try:
            with connect(settings, keyspace=None):
                pass
        except Exception as exc:  # noqa: BLE001
            problems.append(f"Cassandra at STREAMFIT_CASSANDRA_HOSTS={settings.cassandra_hosts}: "
                            f"{exc}")
    if "airflow" in names:
        from streamfit.airflow_api import airflow_client

        with airflow_client(settings) as client:
            try:
                healthy = client.healthy()
            except Exception as exc:  # noqa: BLE001
                healthy, why = False, str(exc)
            else:
                why = "not healthy"
            if not healthy:
                problems.append(f"Airflow at STREAMFIT_AIRFLOW_URL={settings.airflow_url}: {why}")
    if problems:
        pytest.fail("external services the settings name do not answer: " + "; ".join(problems))


@pytest.fixture(scope="session")
def stack(base_settings: StackSettings, request: pytest.FixtureRequest
          ) -> Iterator[StackSettings]:
    """The services the tests talk to: external ones when the settings name them, else the
    local stack, started here if needed and then stopped here at the end."""
    from app.stack import control

    external = external_services(base_settings)
    _require_external(base_settings, external)
    started = [name for name in control.SERVICE_NAMES if name not in external
               and not control.running(base_settings, name)]
    if started:
        control.up(base_settings, started)
    request.config.stash[STARTED] = started
    # The default keyspace is what DAG tasks use (their settings come from the environment).
    from streamfit.cassandra import connect
    from streamfit.schema import migrate

    with connect(base_settings, keyspace=None) as session:
        migrate(session, base_settings)
    yield base_settings
    from tests.support.workspace import close_sessions

    close_sessions()
    DROPPER.drain()
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


def restore_after_restart(request: pytest.FixtureRequest) -> bool:
    """Whether a test that restarted the stack must start it again as it was: not when it is
    the session's last test and the session started the whole stack (it would stop it next)."""
    from app.stack import control

    single = [item for item in request.session.items if item.get_closest_marker(CLUSTER) is None]
    last = bool(single) and single[-1] is request.node
    owned = set(request.config.stash.get(STARTED, [])) == set(control.SERVICE_NAMES)
    return not (last and owned)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name per test (created by the test with the partitions it needs)."""
    return f"test.{uuid.uuid4().hex[:12]}"


class KeyspaceDropper:
    """Drops the tests' keyspaces in one background thread: a teardown hands its keyspace over
    instead of waiting 1-5 s for Cassandra to drop it (some 50 keyspaces a session). ``drain``
    waits for every drop; the session drains before it stops the stack, and before a test that
    restarts the stack."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Settings, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failed: list[str] = []

    def drop(self, settings: Settings, name: str) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="keyspace-dropper",
                                            daemon=True)
            self._thread.start()
        self._queue.put((settings, name))

    def _run(self) -> None:
        from streamfit.cassandra import connect

        while (item := self._queue.get()) is not None:
            settings, name = item
            try:
                with connect(settings, keyspace=None) as session:
                    session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)
            except Exception as exc:  # noqa: BLE001 - reported by drain, never lost silently
                self.failed.append(f"{name}: {exc}")

    def drain(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=600)
        assert not self.failed, f"test keyspaces not dropped: {self.failed}"


DROPPER = KeyspaceDropper()


@pytest.fixture(autouse=True)
def _drops_done_before_a_restart(request: pytest.FixtureRequest) -> None:
    """A test that restarts the stack finds no drop still queued for it to break."""
    if request.node.get_closest_marker(RESTARTS_STACK) is not None:
        from tests.support.workspace import close_sessions

        close_sessions()  # sessions of the stack before the restart: never reused after it
        DROPPER.drain()


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
    DROPPER.drop(settings, name)


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
