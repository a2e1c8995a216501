"""Data-arrival signals: ledger-driven asset events that make Airflow's scheduler run a DAG."""

from __future__ import annotations

import time
from datetime import date

from ingest.producer import send_events
from ingest.signal import ArrivalSignaller
from streamfit.airflow_api import AirflowClient
from streamfit.cassandra import connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings
from streamfit.stack.services import AirflowService
from tests.integration.ingest.conftest import running_ingest, wait_caught_up, wait_for

DOMAIN = load_domain("flights")


def _summaries_for_group(client: AirflowClient, group: str) -> list[tuple[dict, dict]]:
    """(run, summary) of finished summarize_arrivals runs that counted this ingest group."""
    runs = client.request("GET", "/api/v2/dags/summarize_arrivals/dagRuns",
                          params={"limit": 100, "state": "success",
                                  "order_by": "-run_after"})["dag_runs"]
    found = []
    for run in runs:
        xcom = client.request(
            "GET", f"/api/v2/dags/summarize_arrivals/dagRuns/{run['dag_run_id']}/"
            "taskInstances/count_landed/xcomEntries/return_value")["value"]
        if group in xcom.get("rows_by_group", {}):
            found.append((run, xcom))
    return found


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
    send_events(s, events)

    def announced(client: AirflowClient) -> int:
        return sum(x["rows_by_group"][s.ingest_group]
                   for _, x in _summaries_for_group(client, s.ingest_group))

    with AirflowService(s).client() as client:
        with running_ingest(s, workers=2):
            wait_caught_up(s)
            try:
                wait_for(lambda: announced(client) >= len(events), 240,
                         "summarize_arrivals runs, started by the scheduler, to count every row")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_signaller_view(s)}") from None
        found = _summaries_for_group(client, s.ingest_group)
    assert all(run["run_type"] == "asset_triggered" for run, _ in found)
    # every landed row was announced exactly once (no loss, no double count) ...
    assert sum(x["rows_by_group"][s.ingest_group] for _, x in found) == len(events)
    # ... with the event dates it touched
    days = {e["event_time"][:10] for e in events}
    assert set().union(*(x["dates_by_group"][s.ingest_group] for _, x in found)) == days


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
