"""Transient models: a model trained for one request, never registered, never champion.

Run by the ``transient_score`` DAG (started by the HTTP server's ``POST /transient``) and by
``streamfit score --transient``. It trains on the current feature window as ``streamfit train``
would, scores the entities of the given dates (from the feature store) and/or entities given in
the request (features computed on demand, point-in-time), stores the predictions under the
request id (kept a week) and discards the model.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from cassandra.cluster import Session

from streamfit.domains import ENTITY_ID, EVENT_TIME, HORIZON
from streamfit.registry import predict
from streamfit.settings import Settings
from streamfit.workspace import Workspace, open_workspace

log = logging.getLogger("streamfit.training")

INSERT_TRANSIENT = """
INSERT INTO {ks}.entity_transient_predictions (request_id, entity_id, day, probability, scored_at)
VALUES (?, ?, ?, ?, ?)"""
INSERT_TRANSIENT_META = """
INSERT INTO {ks}.entity_transient_predictions (request_id, algorithm, train_window, metrics,
                                               finished_at)
VALUES (?, ?, ?, ?, ?)"""
SELECT_TRANSIENT = """
SELECT entity_id, day, probability, scored_at, algorithm, train_window, metrics, finished_at
FROM {ks}.entity_transient_predictions WHERE request_id = ?"""


class TransientError(RuntimeError):
    """A transient request cannot be served (e.g. no labelled features to train on yet)."""


class TransientStore:
    """The transient-prediction table, its statements prepared once per session."""

    def __init__(self, session: Session, keyspace: str) -> None:
        self.session = session
        self._insert = session.prepare(INSERT_TRANSIENT.format(ks=keyspace))
        self._meta = session.prepare(INSERT_TRANSIENT_META.format(ks=keyspace))
        self._select = session.prepare(SELECT_TRANSIENT.format(ks=keyspace))

    def write(self, request_id: str, rows: list[tuple[Any, ...]], algorithm: str,
              window: dict[str, str], metrics: dict[str, float]) -> None:
        from cassandra.concurrent import execute_concurrent_with_args

        execute_concurrent_with_args(self.session, self._insert, rows, concurrency=64,
                                     raise_on_first_error=True)
        # the static row last: a request counts as finished only once its predictions are in
        self.session.execute(self._meta, (request_id, algorithm, json.dumps(window),
                                          json.dumps(metrics), datetime.now(UTC)))

    def results(self, request_id: str, key: str = ENTITY_ID, day: str = "day"
                ) -> dict[str, Any] | None:
        """The stored result, or None while the request has not finished. ``key``/``day``: the
        domain's names for the entity key and date in the answer."""
        rows = list(self.session.execute(self._select, (request_id,)))
        if not rows or rows[0].finished_at is None:
            return None
        first = rows[0]
        return {"request_id": request_id, "algorithm": first.algorithm,
                "train_window": json.loads(first.train_window),
                "metrics": json.loads(first.metrics),
                "finished_at": first.finished_at.replace(tzinfo=UTC).isoformat(),
                "predictions": [{key: r.entity_id, day: str(r.day), "probability": r.probability}
                                for r in rows if r.entity_id]}


def run_transient(ws: Workspace, request_id: str, dates: list[date] | None = None,
                  entities: pd.DataFrame | None = None, end: date | None = None
                  ) -> dict[str, Any]:
    """Train a throw-away model on the current feature window, score the entities of ``dates``
    and/or ``entities`` (request rows), store the predictions under ``request_id`` and return a
    summary. The model is never registered."""
    from training.train import (
        choose,
        load_window,
        refit,
        score,
        time_split,
        window_dates,
    )

    if not dates and (entities is None or entities.empty):
        raise TransientError("give dates or entities to score")
    settings, domain = ws.settings, ws.domain
    names = domain.features.inputs
    store = ws.feature_store()
    parts = store.partitions()
    labelled = parts[parts["labelled"] > 0] if len(parts) else parts
    if labelled.empty:
        raise TransientError("no labelled features to train on yet: land data first")
    end = end or max(labelled["day"])
    dates_in_window = window_dates(end, settings.train_days)
    train, holdout = time_split(load_window(store, dates_in_window), settings.holdout_days)
    if len(train) < 200 or holdout["label"].nunique() < 2:
        raise TransientError(f"too little data to train: {len(train)} rows")
    name, _params, model, _cv = choose(train, names, threads=settings.train_threads)
    y = holdout["label"].to_numpy(dtype=int)
    metrics = score(y, predict(model, holdout, names))
    metrics["naive_roc_auc"] = score(
        y, holdout[domain.features.naive].to_numpy(dtype=float))["roc_auc"]
    if settings.refit_with_holdout:  # as a registered version serves
        model = refit(model, [train, holdout], names, settings.train_threads)
    frames = [store.read_day(d) for d in dates or []]
    if entities is not None and not entities.empty:
        frames.append(store.features_for(entities))
    frames = [f for f in frames if not f.empty]
    rows = []
    if frames:
        # one prediction per entity: as of its freshest horizon
        frame = pd.concat(frames, ignore_index=True).sort_values(HORIZON, kind="stable")
        frame = frame.drop_duplicates(ENTITY_ID).sort_index()
        probability = predict(model, frame, names)
        days = pd.to_datetime(frame[EVENT_TIME], utc=True).dt.date
        now = datetime.now(UTC)
        rows = [(request_id, str(e), day, float(p), now)
                for e, day, p in zip(frame[ENTITY_ID], days, probability, strict=True)]
    window = {"start": dates_in_window[0].isoformat(), "end": end.isoformat()}
    TransientStore(ws.session, ws.keyspace).write(request_id, rows, name, window, metrics)
    del model  # discarded: a transient model is never registered
    log.info("transient request %s: %d %ss scored by a %s trained on %s", request_id,
             len(rows), domain.entity.name, name, window)
    return {"request_id": request_id, "algorithm": name, "train_window": window,
            "metrics": metrics, "scored": len(rows)}


def run_transient_conf(settings: Settings, conf: dict[str, Any]) -> dict[str, Any]:
    """``run_transient`` from a DAG-run conf, validated like an API request."""
    from pydantic import ValidationError

    from streamfit.catalog import valid_keyspace

    request_id = str(conf.get("request_id") or "")
    if not request_id or len(request_id) > 64 or not request_id.replace("-", "").isalnum():
        raise TransientError("conf needs a request_id (letters, digits, -; at most 64)")
    keyspace = str(conf.get("keyspace") or settings.keyspace)
    if not valid_keyspace(keyspace):
        raise TransientError(f"conf keyspace {keyspace!r} is not a keyspace name")
    try:
        dates = [date.fromisoformat(str(d)) for d in conf.get("dates") or []]
    except ValueError as exc:
        raise TransientError(f"conf dates: {exc} (write YYYY-MM-DD)") from None
    given = conf.get("entities") or conf.get("flights") or []
    with open_workspace(settings, keyspace) as ws:
        request = ws.domain.entity.request
        if given and request is None:
            raise TransientError(f"the {ws.domain.name} domain does not score entities given "
                                 "in a request; give dates")
        try:
            rows = [request.model_validate(e).model_dump() for e in given]  # type: ignore[union-attr]
        except ValidationError as exc:
            raise TransientError(f"conf entities: {exc.errors()[0]['msg']} "
                                 f"at {exc.errors()[0]['loc']}") from None
        return run_transient(ws, request_id, dates, pd.DataFrame(rows))
