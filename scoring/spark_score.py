"""Batch scoring on Spark (``STREAMFIT_ENGINE=spark``): the job the scoring stage submits.

Submitted by ``scoring.batch.score_dates`` through ``streamfit.spark.submit`` (from the
``score_batch`` DAG's task, its time fallback, ``streamfit pipeline run`` and ``streamfit score``),
and run inside spark-submit. The job's driver loads the champion as the pandas engine does
(digest-checked, falling back past a corrupted artifact) and broadcasts it; the feature
partitions of the dates are fetched by partition key through the connector's direct join; each
Spark task turns its rows into the frame the pandas engine reads (``stored_frame``), keeps the
rows due (``due``), predicts (``predict``) and returns the prediction rows, which the connector
writes to the three prediction tables. Their keys are deterministic: a rerun overwrites.

Drift and the prediction distribution are computed on the driver from a random sample of at most
``DRIFT_SAMPLE`` scored rows; the count is exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scoring.batch import DRIFT_SAMPLE, Scored, due, score_dates
from streamfit.domains import ENTITY_ID, EVENT_TIME, HORIZON, load_domain
from streamfit.featurestore import stored_frame
from streamfit.registry import predict

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from streamfit.settings import Settings
    from streamfit.workspace import Workspace

SCORED_SCHEMA = ("day date, entity_id string, horizon_min int, event_time timestamp, "
                 "attributes map<string,string>, probability double, model_version int, "
                 "scored_at timestamp, feature_values map<string,double>")
STORED = ["day", "entity_id", "horizon_min", "event_time", "attributes", "feature_values",
          "outcome", "label"]


def _as_dict(value: Any) -> dict[str, Any]:
    """A map cell as Arrow hands it to pandas (a list of pairs) or as a dict."""
    if value is None:
        return {}
    return dict(value)


def score_batch(batch: pd.DataFrame, domain_spec: str, model: Any, features: list[str],
                version: int, as_of: datetime | None, scored_at: datetime) -> pd.DataFrame:
    """The prediction rows of one batch of stored feature rows (``STORED`` columns)."""
    domain = load_domain(domain_spec)
    attrs = [_as_dict(a) for a in batch["attributes"]]
    values = [_as_dict(v) for v in batch["feature_values"]]
    frame = stored_frame(domain, batch["entity_id"], batch["horizon_min"],
                         [pd.Timestamp(t).to_pydatetime() for t in batch["event_time"]],
                         attrs, values, batch["outcome"], batch["label"])
    mask = (due(frame, as_of).to_numpy() if as_of is not None
            else np.ones(len(frame), dtype=bool))
    frame = frame[mask]
    columns = list(domain.entity.columns)
    return pd.DataFrame({
        "day": batch["day"].to_numpy()[mask], ENTITY_ID: frame[ENTITY_ID].to_numpy(),
        HORIZON: frame[HORIZON].astype("int32").to_numpy(),
        EVENT_TIME: pd.to_datetime(frame[EVENT_TIME], utc=True).to_numpy(),
        "attributes": [{c: str(row[c]) for c in columns}
                       for row in frame[columns].to_dict("records")],
        "probability": predict(model, frame, features) if len(frame) else np.array([]),
        "model_version": version, "scored_at": scored_at,
        "feature_values": [v for v, keep in zip(values, mask, strict=True) if keep]})


def score_on_spark(spark: SparkSession, ws: Workspace, days: list[date],
                   as_of: datetime | None, model: Any, features: list[str], version: int,
                   scored_at: datetime) -> Scored:
    """Score the rows of ``days`` due at ``as_of`` and write the predictions, with Spark."""
    from pyspark import StorageLevel

    from streamfit.spark import read_partitions, write_table

    if not days:
        return Scored([], 0, pd.DataFrame())
    keyspace = ws.keyspace
    keys = spark.createDataFrame([(d,) for d in days], "day date")
    rows = read_partitions(spark, keyspace, "features_by_horizon", keys).select(*STORED)
    shared = spark.sparkContext.broadcast(model)
    spec = ws.settings.domain  # each executor's Python worker loads the domain from it

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            out = score_batch(batch, spec, shared.value, features, version, as_of, scored_at)
            if not out.empty:
                yield out

    started = time.perf_counter()
    # kept on disk, serialised, for the three writes and the sample: executors' heaps stay
    # small however many dates are scored (a year of feature rows held in memory ran a 512 MB
    # heap out of memory in the feature job)
    scored = rows.mapInPandas(score, SCORED_SCHEMA).persist(StorageLevel.DISK_ONLY)
    clock = {}
    try:
        common = ["entity_id", "horizon_min", "day", "event_time", "attributes", "probability",
                  "model_version", "scored_at"]
        write_table(scored.select(*common), keyspace, "predictions_by_horizon")
        write_table(scored.select(*common), keyspace, "day_predictions_by_horizon")
        write_table(scored.select("entity_id", "model_version", "horizon_min", "probability",
                                  "scored_at"), keyspace, "prediction_history_by_horizon")
        clock["read_score_write_s"] = time.perf_counter() - started
        per_day = {r["day"]: int(r["n"]) for r in
                   scored.groupBy("day").count().withColumnRenamed("count", "n").collect()}
        total = sum(per_day.values())
        fraction = min(1.0, DRIFT_SAMPLE / total) if total else 1.0
        picked = (scored.sample(fraction=fraction, seed=7) if fraction < 1.0 else scored) \
            .select("feature_values", "probability").toPandas()
    finally:
        scored.unpersist()
    sample = pd.DataFrame([_as_dict(v) for v in picked["feature_values"]])
    sample["probability"] = picked["probability"].to_numpy()
    clock["count_and_sample_s"] = time.perf_counter() - started - clock["read_score_write_s"]
    return Scored(sorted(d.isoformat() for d in per_day), total, sample, clock)


def job(spark: SparkSession, settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    """spark-submit's job: ``scoring.batch.score_dates`` with this engine's scorer."""
    from streamfit.workspace import open_workspace

    with open_workspace(settings, args["keyspace"]) as ws:

        def scorer(days: list[date], as_of: datetime | None, model: Any, features: list[str],
                   version: int, scored_at: datetime) -> Scored:
            return score_on_spark(spark, ws, days, as_of, model, features, version, scored_at)

        result = score_dates(
            ws, [date.fromisoformat(d) for d in args["dates"]],
            datetime.fromisoformat(args["as_of"]) if args.get("as_of") else None,
            [date.fromisoformat(d) for d in args["evaluate"]], scorer=scorer)
    return {"model_version": result.model_version, "dates": result.dates,
            "scored": result.scored, "evaluated": result.evaluated, "timings": result.timings,
            "alerts": result.alerts}
