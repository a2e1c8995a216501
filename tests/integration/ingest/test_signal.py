"""Data-arrival signals: ledger-driven asset events that make Airflow's scheduler run a DAG."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

from ingest.producer import send_events
from ingest.signal import ArrivalSignaller
from streamfit import catalog
from streamfit.airflow_api import AirflowClient
from streamfit.cassandra import connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings
from streamfit.stack.services import AirflowService
from tests.integration.ingest.conftest import running_ingest, wait_caught_up, wait_for

DOMAIN = load_domain("flights")


def _announced(client: AirflowClient, group: str) -> list[dict]:
    """The raw_events asset events Airflow holds from this ingest group (newest 100 first)."""
    return [e for e in client.asset_events(catalog.RAW_EVENTS.uri, limit=100)
            if (e.get("extra") or {}).get("consumer_group") == group]


def _signaller_view(s: Settings) -> str:
    """What the signaller works from, for a failure message: committed offsets, its state, the
    ledger and the signals it recorded (a once-seen stall of several minutes left no trace)."""
    from ingest.signal import ArrivalSignaller
    from ingest.status import committed, end_offsets

    with connect(s) as session:
        state = list(session.execute(
            "SELECT partition, signalled_upto FROM ingest_signal_state "
            "WHERE consumer_group = %s AND topic = %s", (s.ingest_group, s.events_topic)))
        signals = list(session.execute("SELECT signal_id, rows, extra FROM ingest_signals"))
        fresh = ArrivalSignaller(s, session)
        try:
            pending = fresh.pending()
        finally:
            fresh.close()
    return (f"end offsets {end_offsets(s)}; committed {committed(s)}; signal state "
            f"{[(r.partition, r.signalled_upto) for r in state]}; recorded signals "
            f"{[(r.rows, r.extra) for r in signals]}; a new signaller would send "
            f"{pending.rows} rows up to {pending.upto}")


def test_replay_triggers_the_raw_events_dag_through_the_scheduler(
        ingest_settings: Settings) -> None:
    s = ingest_settings
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 5, 1), date(2013, 5, 1))))
    since = datetime.now(UTC).isoformat()
    send_events(s, events)

    def announced(client: AirflowClient) -> int:
        return sum(int(e["extra"]["rows"]) for e in _announced(client, s.ingest_group))

    with AirflowService(s).client() as client:
        with running_ingest(s, workers=2):
            wait_caught_up(s)
            try:
                wait_for(lambda: announced(client) >= len(events), 240,
                         "Airflow to hold asset events announcing every landed row")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_signaller_view(s)}") from None
            # and the scheduler acted on them: the feature stage ran for this keyspace
            wait_for(lambda: any(r.summary for r in client.pipeline_runs(
                "build_features", since, s.keyspace)), 300,
                "the scheduler to run build_features for the announced rows")
        found = _announced(client, s.ingest_group)
    # every landed row was announced exactly once (no loss, no double count) ...
    assert sum(int(e["extra"]["rows"]) for e in found) == len(events)
    # ... with the event dates it touched and the keyspace it landed in
    days = {e["event_time"][:10] for e in events}
    assert set().union(*(e["extra"]["event_dates"] for e in found)) == days
    assert {e["extra"]["keyspace"] for e in found} == {s.keyspace}


def test_no_signal_is_lost_while_airflow_is_unreachable(ingest_settings: Settings) -> None:
    s = ingest_settings
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 6, 1), date(2013, 6, 1))))
    send_events(s, events)
    # Airflow "down": the signaller points at a port where nothing listens.
    down = s.model_copy(update={"airflow_url": "http://127.0.0.1:9", "airflow_password": "x",
                                "signal_interval_s": 0.0})
    with running_ingest(down, workers=1):
        wait_caught_up(s)
        time.sleep(3)  # a few failed signal attempts
    with connect(s) as session:
        # nothing was recorded as signalled while Airflow was unreachable ...
        assert list(session.execute(
            "SELECT * FROM ingest_signal_state WHERE consumer_group = %s AND topic = %s",
            (s.ingest_group, s.events_topic))) == []
        # ... and once it is back, one signal covers everything that landed meanwhile.
        signaller = ArrivalSignaller(s, session)
        try:
            extra = signaller.tick(force=True)
            assert extra is not None and extra["rows"] == len(events)
            assert signaller.tick(force=True) is None  # and only once
        finally:
            signaller.close()
