"""A second domain through the whole pipeline, driven by Airflow: synthetic parcel deliveries.

Three weeks of the ``deliveries`` domain are landed in a keyspace created for it. The same DAGs
that run flights (started by the stack with the default ``STREAMFIT_DOMAIN=flights``) read the
keyspace's recorded domain and build parcel features, train the ``parcel_late`` model and score
the next day's parcels as the stream reaches 6 hours before their pickup; the HTTP API serves
them under the domain's own names.
Nothing of the flights domain takes part: its registry partition stays empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from app.pipeline import caught_up, pipeline_status
from ingest.producer import send_events
from ingest.service import ensure_topics
from streamfit.airflow_api import airflow_client
from streamfit.cassandra import connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.registry import Registry
from streamfit.settings import Settings
from tests.conftest import migrated_keyspace
from tests.serve import serving
from tests.support.ingest import running_ingest, wait_caught_up
from tests.support.waiting import wait_for

START, END = date(2024, 1, 1), date(2024, 1, 21)
NEXT = END + timedelta(days=1)
DELIVERIES = load_domain("deliveries")


@pytest.fixture
def parcels(stack: Settings) -> Iterator[Settings]:
    import uuid

    tag = uuid.uuid4().hex[:10]
    with migrated_keyspace(stack, f"t_parcels_{tag}", "deliveries") as s:
        s = s.model_copy(update={"events_topic": f"t.parcels.{tag}",
                                 "ingest_group": f"t-parcels-{tag}", "ingest_metrics_port": 0,
                                 "signal_interval_s": 1.0})
        ensure_topics(s)
        yield s


def test_deliveries_run_the_whole_pipeline_through_airflow(parcels: Settings) -> None:
    s = parcels
    # three weeks, and the next day's events until 09:00: the stream's "now"
    events = [e for e in DELIVERIES.replay("synthetic", ReplayOptions(START, NEXT))
              if e["event_time"] < f"{NEXT.isoformat()}T09:00"]
    now = datetime.fromisoformat(max(e["event_time"] for e in events))
    horizon = DELIVERIES.features.horizons["6 h before pickup"]
    # the next day's parcels inside their 6-hour horizon then, and not picked up yet: due
    booked_next = {e["entity_key"] for e in events if e["event_type"] == "parcel_booked"
                   and e["payload"]["pickup_at"][:10] == NEXT.isoformat()
                   and now < datetime.fromisoformat(e["payload"]["pickup_at"]) <= now + horizon}
    assert len(events) > 15_000 and len(booked_next) > 50

    since = datetime.now(UTC).isoformat()
    send_events(s, events)
    last: list[object] = []

    def done() -> bool:
        last[:] = pipeline_status(s, [s.keyspace])
        with connect(s) as session:
            predicted = session.execute("SELECT entity_id FROM day_predictions_by_horizon "
                                        "WHERE day = %s LIMIT 1", (NEXT,)).one()
        return predicted is not None and caught_up(last)  # type: ignore[arg-type]

    with running_ingest(s, workers=1):  # with its signaller: Airflow is told data landed
        wait_caught_up(s)
        try:
            wait_for(done, 600, "Airflow to build, train and score the parcels")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; backlog: {last}") from None

    # it was Airflow's scheduler that built, trained and scored this keyspace. A run is listed
    # once it has ended, which may be after its writes are visible (seen: the predictions read
    # while score_batch still ran); a fallback run is filed under a tick before `since`
    with airflow_client(s) as client:
        for dag_id in ("build_features", "train_model", "score_batch"):
            wait_for(lambda d=dag_id: any(r.summary for r in client.pipeline_runs(  # type: ignore[misc]
                d, since, s.keyspace, ended=True)), 120, f"a {dag_id} run for {s.keyspace}")
    with connect(s) as session:
        registry = Registry(session, s.keyspace, DELIVERIES.model_name)
        versions = {v.version: v for v in registry.versions()}
        assert set(versions) == {0, 1}  # the naive baseline (the floor) and the trained model
        v1 = versions[1]
        assert versions[0].features == [DELIVERIES.features.naive]
        assert registry.aliases()["champion"] == v1.version
        assert v1.features == DELIVERIES.features.inputs
        # the synthetic label is learnable from the point-in-time features, beyond the naive rate
        assert v1.metrics["roc_auc"] > v1.metrics["naive_roc_auc"] + 0.02, v1.metrics
        assert v1.lineage["kafka_offsets"][s.events_topic]
        # Airflow's tasks run with the default domain (flights) and follow the keyspace's: every
        # build and every model of this keyspace is the deliveries domain's
        families = {r.model for r in session.execute("SELECT DISTINCT model FROM model_versions")}
        assert families == {DELIVERIES.model_name}
        feature_sets = {r.feature_set for r in session.execute(
            "SELECT DISTINCT feature_set FROM feature_partitions")}
        assert feature_sets == {DELIVERIES.name}
        features = {r.entity_id: r for r in session.execute(
            "SELECT entity_id, feature_values, attributes, label FROM features_by_horizon "
            "WHERE day = %s", (END - timedelta(days=7),))}
        predicted = {r.entity_id: r for r in session.execute(
            "SELECT entity_id, probability, model_version, attributes "
            "FROM day_predictions_by_horizon WHERE day = %s", (NEXT,))}
    day_booked = {e["entity_key"] for e in events if e["event_type"] == "parcel_booked"
                  and e["payload"]["pickup_at"][:10] == (END - timedelta(days=7)).isoformat()}
    assert set(features) == day_booked
    assert all(r.label is not None and set(r.feature_values) == set(DELIVERIES.features.names)
               for r in features.values())
    # every parcel of the next day inside its horizon was scored by the champion, before its
    # pickup, and none further ahead
    assert set(predicted) == booked_next
    assert {r.model_version for r in predicted.values()} == {v1.version}
    assert all(0 < r.probability < 1 and set(r.attributes) == {"depot", "courier", "service"}
               for r in predicted.values())

    # --- the HTTP API serves them in the domain's own names ---------------------------------
    some = sorted(predicted)[0]
    booking = next(e["payload"] for e in events
                   if e["event_type"] == "parcel_booked" and e["entity_key"] == some)
    with serving(s) as api:
        health = httpx.get(f"{api}/health").json()
        assert health["domain"] == "deliveries" and health["champion"] == v1.version
        got = httpx.get(f"{api}/predictions/{some}").json()
        assert got["parcel_id"] == some and got["pickup_date"] == NEXT.isoformat()
        assert got["probability"] == predicted[some].probability
        assert got["depot"] == booking["depot"] and got["courier"] == booking["courier"]
        assert httpx.get(f"{api}/predictions/not-a-parcel").status_code == 422
        depot = booking["depot"]
        page = httpx.get(f"{api}/predictions", params={"date": NEXT.isoformat(), "depot": depot,
                                                        "page_size": 1000}).json()
        assert {p["parcel_id"] for p in page["items"]} == {
            k for k, r in predicted.items() if r.attributes["depot"] == depot}
        # on demand, from the raw events: the same features, so the same probability
        body = {k: booking[k] for k in ("parcel_id", "depot", "courier", "service", "weight_kg",
                                        "distance_km", "pickup_at")}
        scored = httpx.post(f"{api}/score", json={"parcels": [body]}, timeout=60).json()
        assert scored["model_version"] == v1.version
        assert abs(scored["predictions"][0]["probability"] - predicted[some].probability) < 1e-9
        assert httpx.post(f"{api}/score", json={"flights": [body]}).status_code == 422
