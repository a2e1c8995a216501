"""The cluster topology under faults (issue 33): three Cassandra nodes, three Kafka brokers,
Airflow's CeleryExecutor with two workers, replication factor 3 everywhere, all of it over TLS
(issue 34): clients to servers, and the nodes among themselves (Cassandra's internode
encryption with certificate checks, Kafka's controller and broker listeners).

Airflow's tasks run with the Spark engine: feature builds and scoring are Spark jobs on the
cluster's standalone master. These tests run last in a session (``pytest.mark.cluster``). The
``cluster`` fixture stops the single-node stack (restarting it afterwards only if it ran before
the session), starts the cluster topology, checks that every node and worker reports healthy,
and at the end stops it and checks that no process is left (scenario 5, the lifecycle).
`make test` runs the scenarios reduced, last; `make cluster-chaos` at full size
(``CHAOS_SIZE=full``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest

from app.stack.settings import StackSettings, load_stack_settings
from tests.chaos.conftest import Row, own_stream, record
from tests.conftest import DROPPER, STARTED, external_services, migrated_keyspace

#: Each scenario's own cap (pytest-timeout): the cluster part of `make test` cannot run away.
SCENARIO_CAP_S = 900


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[StackSettings]:
    from app.stack import control
    from streamfit.cassandra import connect
    from streamfit.schema import migrate
    from tests.support.workspace import close_sessions

    single = load_stack_settings(stack_topology="single")
    # Airflow's tasks run the Spark engine here: a feature build or a scoring run is a job the
    # Celery worker submits to the standalone master and its two workers, against the three
    # Cassandra nodes (the scale-out a user reaches for when one machine is not enough).
    topology = load_stack_settings(stack_topology="cluster")
    # Over TLS, as the clusters our users run are: every client trusts the stack's own CA.
    wanted = load_stack_settings(
        stack_topology="cluster", stack_tls=True, engine="spark",
        spark_master=f"spark://127.0.0.1:{topology.stack_spark_master_port}")
    if external_services(single):  # the environment itself names other hosts
        pytest.skip("the settings point at external services: the cluster topology is local")
    # The single-node stack goes down first (one stack per machine): its sessions and pending
    # keyspace drops are finished while it still answers.
    close_sessions()
    DROPPER.drain()
    single_was_running = ([name for name in control.ALL_SERVICE_NAMES
                           if control.running(single, name)]
                          if control.running_topology(single) == "single" else [])
    session_started_it = bool(request.config.stash.get(STARTED, []))
    if single_was_running:
        control.down(single)
    started = time.monotonic()
    control.up(wanted)
    up_s = time.monotonic() - started
    rows = control.status(wanted)
    unhealthy = [r.component for r in rows if not r.healthy]
    assert not unhealthy, f"cluster components not healthy after `stack up`: {unhealthy}"
    n = wanted.stack_cluster_size
    components = {r.component for r in rows}
    assert {f"cassandra-{i}" for i in range(1, n + 1)} <= components
    assert {f"kafka-{i}" for i in range(1, n + 1)} <= components
    assert {"redis", "airflow-celery-1", "airflow-celery-2", "spark-worker-1",
            "spark-worker-2"} <= components
    with connect(wanted, keyspace=None) as session:
        migrate(session, wanted)  # the default keyspace, which the DAG tasks serve
    record(Row("5. cluster stack up", 0, 0, 0, 0, 0, round(up_s, 1),
               f"{len(rows)} components healthy"))
    yield wanted

    close_sessions()
    DROPPER.drain()
    ours: set[int] = set()
    for row in control.status(wanted):
        if row.pid:
            proc = psutil.Process(row.pid)
            ours |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
    control.down(wanted)

    def stack_process(info: dict[str, Any]) -> bool:
        if info["pid"] in ours:
            return True
        cmdline = " ".join(info["cmdline"] or [])
        # this session's own local SparkSession (the Spark integration tests' fixture, ended
        # after this one): pyspark's gateway JVM, a child of pytest, names the home's jar cache
        return str(wanted.home) in cmdline and not (
            info["ppid"] == os.getpid() and cmdline.endswith("pyspark-shell"))

    def survivors() -> list[str]:
        left = [p for p in psutil.process_iter(["pid", "ppid", "cmdline", "status"])
                if p.info["status"] != psutil.STATUS_ZOMBIE and stack_process(p.info)]
        return [f"{p.info['pid']} {' '.join(p.info['cmdline'] or [])[:120]}" for p in left]

    # a process of a stopped group may still be exiting: a few seconds of grace
    deadline = time.monotonic() + 15
    while survivors() and time.monotonic() < deadline:
        time.sleep(1)
    assert not survivors(), f"processes left after the cluster's stack down: {survivors()}"
    assert not (wanted.home / "run" / "local-stack.json").exists()
    if single_was_running and not session_started_it:
        control.up(single, single_was_running)  # as the session found it


@pytest.fixture(scope="session")
def cluster_keyspace(cluster: StackSettings) -> Iterator[StackSettings]:
    """One keyspace for the ingest scenarios (each lands days of its own): a migration at RF 3
    waits for schema agreement of three nodes, some 40 s here."""
    with migrated_keyspace(cluster, f"t_cluster_{uuid.uuid4().hex[:10]}") as ks:
        yield ks


@pytest.fixture
def cluster_settings(cluster_keyspace: StackSettings) -> StackSettings:
    return own_stream(cluster_keyspace, "cluster", 1000)


@pytest.fixture
def pipeline_cluster_settings(cluster: StackSettings) -> Iterator[StackSettings]:
    """A keyspace of its own too: the pipeline's backlog is judged per keyspace."""
    with migrated_keyspace(cluster, f"t_cluster_p_{uuid.uuid4().hex[:10]}") as ks:
        yield own_stream(ks, "cluster", 1000)


def kill(settings: StackSettings, component: str) -> None:
    """SIGKILL ``component``'s whole process group, as a lost host would end it."""
    from app.stack import control

    proc = control.supervisor(settings).process(component)
    assert proc is not None, f"{component} is not running"
    members = [proc, *proc.children(recursive=True)]
    os.killpg(proc.pid, signal.SIGKILL)
    for member in members:  # descendants that started a session of their own die with it too
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(members, timeout=30)


@contextmanager
def restarted_after(settings: StackSettings, service: str) -> Iterator[None]:
    """Bring ``service``'s killed components back on exit (``stack up`` starts what is missing
    and waits for all of them)."""
    from app.stack import control

    try:
        yield
    finally:
        control.up(settings, [service])
