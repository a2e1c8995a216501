"""Batch scoring against the real Cassandra, with a trained champion."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from scoring.batch import NoChampion, score_dates
from streamfit.cassandra import connect
from streamfit.settings import Settings
from tests.integration.training.test_registry_and_training import (
    FLIGHTS,
    START,
    _write_features,
)
from tests.support.workspace import ws
from training.train import train_and_maybe_promote

DAY = START + timedelta(days=29)


@pytest.fixture(scope="module")
def champion(keyspace_settings: Settings) -> Settings:
    """One keyspace with 30 labelled days and champion v1 for the module: the tests score and
    evaluate other days or rescore DAY (a rerun overwrites), so they do not disturb each other."""
    s = keyspace_settings.model_copy(update={"train_days": 30, "holdout_days": 5})
    _write_features(s, 30)
    assert train_and_maybe_promote(ws(s)).promoted
    return s


def _rows(s: Settings, table: str, where: str, *args: object) -> list:
    with connect(s) as session:
        return list(session.execute(f"SELECT * FROM {table} WHERE {where}", args))


def test_scoring_writes_all_three_tables_and_is_idempotent(champion: Settings) -> None:
    from scoring.client import PredictionClient

    first = score_dates(ws(champion), [DAY])  # no as-of: every flight at every horizon
    assert first.model_version == 1 and first.scored == 300
    by_date = _rows(champion, "day_predictions_by_horizon", "day = %s", DAY)
    assert len(by_date) == 300 and {r.horizon_min for r in by_date} == {120, 1440}
    assert all(0.0 < r.probability < 1.0 and r.model_version == 1 for r in by_date)
    # the flight's descriptive columns travel with its prediction
    assert {tuple(sorted(r.attributes)) for r in by_date} == {("carrier", "dest", "origin")}
    some = by_date[0].entity_id
    latest = _rows(champion, "predictions_by_horizon", "entity_id = %s", some)
    assert [r.horizon_min for r in latest] == [120, 1440]  # freshest first
    near = next(r for r in by_date if r.entity_id == some and r.horizon_min == 120)
    assert latest[0].probability == near.probability and latest[0].attributes == near.attributes
    with connect(champion) as session:
        client = PredictionClient(session, champion.keyspace, FLIGHTS)
        got = client.latest(some)
        page = client.for_date(DAY, page_size=1000)
    assert got is not None and (got.horizon_min, got.probability) == (120, near.probability)
    assert got.as_of == got.event_time - timedelta(hours=2)
    # a date's listing has one row per flight: its freshest prediction
    assert len(page.items) == 150 and {p.horizon_min for p in page.items} == {120}
    assert first.unchanged == 0
    again = score_dates(ws(champion), [DAY])  # a rerun: the same predictions, none rewritten
    assert again.scored == 300 and again.unchanged == 300
    rows = _rows(champion, "day_predictions_by_horizon", "day = %s", DAY)
    assert len(rows) == 300
    assert {(r.entity_id, r.horizon_min): r.scored_at for r in rows} == {
        (r.entity_id, r.horizon_min): r.scored_at for r in by_date}
    # a stored prediction that differs from what the features now give is written again, alone
    with connect(champion) as session:
        session.execute("UPDATE day_predictions_by_horizon SET probability = 0.5 "
                        "WHERE day = %s AND entity_id = %s AND horizon_min = 120",
                        (DAY, some))
    third = score_dates(ws(champion), [DAY])
    assert third.unchanged == 299
    restored = _rows(champion, "day_predictions_by_horizon", "day = %s AND entity_id = %s",
                     DAY, some)
    assert {r.horizon_min: r.probability for r in restored}[120] == near.probability
    history = _rows(champion, "prediction_history_by_horizon", "entity_id = %s", some)
    assert [(h.model_version, h.horizon_min) for h in history] == [(1, 120), (1, 1440)]


def test_a_flight_is_scored_at_a_horizon_once_the_stream_reaches_it(champion: Settings) -> None:
    """Departures at 06:00 + 0..149 minutes. At 05:00 every flight is inside the day-ahead
    horizon and those until 07:00 inside the 2-hour one; at 07:39 only those after 07:39 are
    still ahead, and all of them are inside both horizons."""
    six = datetime(DAY.year, DAY.month, DAY.day, 6, 0, tzinfo=UTC)
    assert score_dates(ws(champion), [DAY], six - timedelta(hours=1)).scored == 150 + 61
    assert score_dates(ws(champion), [DAY], six + timedelta(minutes=99)).scored == 50 + 50


def test_no_champion_is_a_clear_error(fresh_keyspace_settings: Settings) -> None:
    with pytest.raises(NoChampion, match="streamfit train"):
        score_dates(ws(fresh_keyspace_settings), [date(2013, 3, 1)])


def test_each_run_records_drift_and_matured_predictions_are_evaluated(champion: Settings
                                                                       ) -> None:
    from scoring.monitoring import PSI_SHIFTED, MonitoringStore

    result = score_dates(ws(champion), [DAY], evaluate=[DAY])
    # DAY is labelled in the fixture: its predictions mature at once
    assert result.evaluated == {DAY.isoformat(): {1: 150.0}}
    shifted = DAY + timedelta(days=1)
    _write_shifted_day(champion, shifted)
    later = score_dates(ws(champion), [shifted], evaluate=[shifted])
    # the shift raised a drift alert naming the feature and what moved; the day like the
    # training days raised none
    [alert] = later.alerts
    assert alert.startswith(f"{shifted}: 1 feature(s) left the range of the training days")
    assert "late_rate_route_28d mean 3.5" in alert and "moved" in alert, alert
    assert result.alerts == []
    with connect(champion) as session:
        monitor = MonitoringStore(session, champion.keyspace, "flight_delay")
        runs = monitor.runs()
        perf = monitor.performance()
    latest, earlier = runs[0], runs[1]
    assert latest.dates == [shifted.isoformat()] and earlier.dates == [DAY.isoformat()]
    # the shifted feature is flagged; on the training distribution it was not (150 rows make
    # PSI noisy, so the unshifted reading is only held below the "shifted" line)
    assert earlier.drift["late_rate_route_28d"] < PSI_SHIFTED
    assert latest.drift["late_rate_route_28d"] > 10 * PSI_SHIFTED
    assert latest.max_psi == max(latest.drift.values())
    # each run judged its completed day: the shifted day out of range, DAY within it
    [judged] = latest.checks
    assert judged.day == shifted.isoformat() and judged.rows == 300
    assert [(f.feature, f.stat) for f in judged.findings] == [("late_rate_route_28d", "mean")]
    assert judged.findings[0].value > judged.findings[0].high
    [ordinary] = earlier.checks
    assert ordinary.day == DAY.isoformat() and ordinary.findings == []
    assert ordinary.calibration is None  # 150 outcomes: too few to judge calibration
    assert set(latest.drift) == set(earlier.drift) and len(latest.drift) > 20
    assert latest.predictions["count"] == latest.rows == 300
    row = perf[(perf["model_version"] == 1) & (perf["day"] == DAY)].iloc[0]
    assert row["entities"] == 150 and 0 < row["late"] < 150 and 0.5 < row["roc_auc"] <= 1.0


def test_models_show_and_report_read_what_monitoring_stored(champion: Settings,
                                                            tmp_path: Path) -> None:
    score_dates(ws(champion), [DAY], evaluate=[DAY])
    shifted = DAY + timedelta(days=1)
    _write_shifted_day(champion, shifted)
    score_dates(ws(champion), [shifted], evaluate=[shifted])  # the latest run: a drifted input
    env = {**os.environ, "STREAMFIT_KEYSPACE": champion.keyspace}
    cli = str(Path(sys.executable).parent / "streamfit")
    shown = subprocess.run([cli, "models", "show"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "scoring run(s) of v1" in shown.stdout and DAY.isoformat() in shown.stdout
    assert "late_rate_route_28d (mean)" in shown.stdout  # the day judged out of range
    assert "realised on 1 matured dates, 150 flights" in shown.stdout
    out = tmp_path / "r.html"
    made = subprocess.run([cli, "report", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    page = out.read_text()
    assert f"keyspace <code>{champion.keyspace}</code>" in page and "Champion: v1" in page
    # realised quality beside the holdout's, and the drift alert the last run raised, as
    # `models show` gives it
    assert "realised_roc_auc" in page and "<strong>ALERT</strong>: " in page
    alert = page.split("<strong>ALERT</strong>: ", 1)[1].split("</li>", 1)[0]
    assert "late_rate_route_28d" in alert and "ALERT" in shown.stdout
    shown_alert = shown.stdout.split("ALERT: ", 1)[1].split("\n", 1)[0]
    assert shown_alert[:60] in alert
    # every chart but calibration (150 outcomes a day: too few to judge one)
    assert page.count("data:image/png;base64,") == 5 and "No matured day judged yet" in page


def _write_shifted_day(s: Settings, day: date) -> None:
    """150 flights whose route delay rate sits far above anything seen in training; every
    other input is as the fixture's training days have it (the signal columns uniform, the rest
    missing), so that rate is the one feature that drifts."""
    import pandas as pd

    from streamfit.featurestore import FeatureStore
    from tests.integration.training.test_registry_and_training import FLIGHTS, SIGNAL

    rng = np.random.default_rng(7)
    names = list(FLIGHTS.features.names)
    frame = pd.DataFrame(np.nan, index=range(150), columns=names)
    frame[list(SIGNAL)] = rng.uniform(size=(150, len(SIGNAL)))
    frame["late_rate_route_28d"] = 3.0 + rng.uniform(size=150)
    frame = frame.assign(entity_id=[f"S{i}" for i in range(150)],
                         event_time=[datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
                                     + timedelta(minutes=i) for i in range(150)],
                         carrier="UA", origin="EWR", dest="ORD", outcome=np.nan, label=None)
    frame = pd.concat([frame.assign(horizon_min=m) for m in FLIGHTS.features.horizon_minutes],
                      ignore_index=True)
    with connect(s) as session:
        FeatureStore(session, s.keyspace, FLIGHTS).write_day(day, frame)


def _write_day(s: Settings, day: date, ground_added: float) -> None:
    """150 labelled flights like the fixture's training days, their ground time (the label's
    measure) ``ground_added`` minutes longer."""
    import pandas as pd

    from streamfit.featurestore import FeatureStore
    from tests.integration.training.test_registry_and_training import SIGNAL, ground_minutes

    rng = np.random.default_rng(int(ground_added) + 11)
    frame = pd.DataFrame(np.nan, index=range(150), columns=list(FLIGHTS.features.names))
    frame[list(SIGNAL)] = rng.uniform(size=(150, len(SIGNAL)))
    late = rng.uniform(size=150) < (0.05 + 0.35 * frame["late_rate_route_28d"]
                                    + 0.55 * frame["wx_precip"])
    frame = frame.assign(entity_id=[f"G{i}" for i in range(150)],
                         event_time=[datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
                                     + timedelta(minutes=i) for i in range(150)],
                         carrier="UA", origin="EWR", dest="ORD",
                         outcome=np.where(late, 30.0, 0.0), label=late.astype(object),
                         ground_min=ground_minutes(rng, 150) + ground_added)
    frame = pd.concat([frame.assign(horizon_min=m) for m in FLIGHTS.features.horizon_minutes],
                      ignore_index=True)
    with connect(s) as session:
        FeatureStore(session, s.keyspace, FLIGHTS).write_day(day, frame)


def test_a_day_whose_every_outcome_moved_is_named_by_the_label_measure(champion: Settings
                                                                       ) -> None:
    """The ground time is stored with the features, kept out of the model, and judged on its
    lower tenth: 20 minutes added to every flight is named; an ordinary day is not."""
    from streamfit.registry import Registry

    with connect(champion) as session:
        version = next(v for v in Registry(session, champion.keyspace, "flight_delay").versions()
                       if v.version == 1)
    assert "ground_min" not in version.features
    band = version.reference["days"]["ground_min"]
    assert set(band) == {"p10", "sd", "days"} and 15 < band["p10"][0] < band["p10"][1] < 25
    ordinary, shifted = DAY + timedelta(days=5), DAY + timedelta(days=6)
    _write_day(champion, ordinary, 0.0)
    _write_day(champion, shifted, 20.0)
    # (other alerts of the model, on its realised quality, are not this test's concern)
    calm = score_dates(ws(champion), [ordinary], evaluate=[ordinary]).alerts
    assert not [a for a in calm if "ground_min" in a], calm
    [alert] = [a for a in score_dates(ws(champion), [shifted], evaluate=[shifted]).alerts
               if "ground_min" in a]
    assert alert.startswith(f"{shifted}: how the outcome came about left the range"), alert
    assert "ground_min (minutes on the ground: the block time (gate to gate) less the air " \
        "time" in alert and "lower tenth" in alert, alert
    assert "nearly every entity's outcome moved" in alert
    assert version.reference["measures"] == dict(FLIGHTS.label.measures)


def test_a_completed_day_is_judged_once_per_build(champion: Settings) -> None:
    from scoring.monitoring import MonitoringStore

    day = DAY + timedelta(days=3)
    _write_shifted_day(champion, day)
    first = score_dates(ws(champion), [day], evaluate=[day])
    assert [a.split(":", 1)[0] for a in first.alerts] == [day.isoformat()]
    # rescored on the same build (a later event date rebuilt its neighbours, not this day):
    # nothing new to judge, so no second alert
    again = score_dates(ws(champion), [day], evaluate=[day])
    assert again.alerts == []
    with connect(champion) as session:
        monitor = MonitoringStore(session, champion.keyspace, "flight_delay")
        assert monitor.runs(1)[0].checks == []
        assert day in monitor.judged(1)
    # rebuilt (late data): judged again, and still out of range
    _write_shifted_day(champion, day)
    rebuilt = score_dates(ws(champion), [day], evaluate=[day])
    assert [a.split(":", 1)[0] for a in rebuilt.alerts] == [day.isoformat()]


def test_the_feature_task_scores_what_it_built_with_the_champion(champion: Settings) -> None:
    """``score_built``, which the ``build_features`` task runs after its build: the champion
    scores the new build's date at once, through the scoring watermarks (a second call finds
    nothing pending), and a run that holds the scoring lease, or a scoring error, leaves the
    work to ``score_batch`` with the reason in the build's summary instead of failing it."""
    from scoring.run import score_built
    from streamfit.progress import NOTHING_PENDING

    day = DAY + timedelta(days=6)
    _write_shifted_day(champion, day)
    progress = ws(champion).progress
    progress.record_build({day}, 150, datetime(day.year, day.month, day.day, tzinfo=UTC))
    ks = champion.keyspace

    held: dict[str, dict[str, object]] = {ks: {}}
    with progress.lease("scoring"):  # score_batch is scoring this keyspace
        score_built(champion, held)
    assert "another scoring run" in str(held[ks]["scoring"])

    built: dict[str, dict[str, object]] = {ks: {"dates": [day.isoformat()]}}
    score_built(champion, built)
    scoring = built[ks]["scoring"]
    assert isinstance(scoring, dict) and scoring["model_version"] == 1
    assert scoring["dates"] == [day.isoformat()] and scoring["scored"] > 0
    assert _rows(champion, "day_predictions_by_horizon", "day = %s", day)

    again: dict[str, dict[str, object]] = {ks: {}}
    score_built(champion, again)
    assert again[ks]["scoring"] == NOTHING_PENDING

    unreachable = champion.model_copy(update={"cassandra_port": 9})
    broken: dict[str, dict[str, object]] = {ks: {}}
    score_built(unreachable, broken)
    assert "score_batch retries it" in str(broken[ks]["scoring"])
