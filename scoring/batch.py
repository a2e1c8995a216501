"""Batch scoring with the champion: ``streamfit score`` and the ``score_batch`` DAG.

Run by ``scoring.run`` for the feature builds and champion changes pending since the scoring
watermarks (the ``score_batch`` DAG, its time fallback, ``streamfit pipeline run``), or for explicit
dates by ``streamfit score``. Scores every entity of the given dates whose event time is after
``as_of`` (for flights: not yet departed), reading one feature partition per date, and writes the
probability with the model version and score time to three tables (latest per entity, per date,
history). Keys are deterministic, so a rerun overwrites the same rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from scoring.predictions import PredictionWriter
from streamfit.domains import EVENT_TIME, HORIZON
from streamfit.featurestore import FeatureStore
from streamfit.memory import budget
from streamfit.registry import predict
from streamfit.workspace import Workspace

log = logging.getLogger("streamfit.scoring")

class NoChampion(RuntimeError):
    """There is no champion model yet: train one first (`streamfit train`)."""


@dataclass(frozen=True)
class ScoreResult:
    model_version: int
    dates: list[str]
    scored: int
    #: matured dates evaluated: {date: {model version: flights}}
    evaluated: dict[str, dict[int, float]] = field(default_factory=dict)
    #: seconds spent reading features, predicting and writing predictions
    timings: dict[str, float] = field(default_factory=dict)
    #: what is wrong with the champion's realised quality or inputs (alerted; empty: nothing)
    alerts: list[str] = field(default_factory=list)
    #: of ``scored``, the rows equal to their stored prediction, not written again
    unchanged: int = 0


def due(frame: pd.DataFrame, now: datetime) -> pd.Series:
    """The rows to score at ``now``: past their horizon's as-of time, before their event time."""
    when = pd.to_datetime(frame[EVENT_TIME], utc=True)
    as_of = when - pd.to_timedelta(frame[HORIZON].astype(float), unit="m")
    now_ts = pd.Timestamp(now)
    return (as_of <= now_ts) & (when > now_ts)


@dataclass
class Scored:
    """What one scoring pass did: the dates it scored, how many rows, and the rows' features and
    probabilities (all of them here; a bounded random sample from Spark) for drift."""

    dates: list[str]
    scored: int
    sample: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    #: the feature partitions read, by date (evaluation reuses them)
    read: dict[date, pd.DataFrame] = field(default_factory=dict)
    #: scored rows equal to their stored prediction, so not written again
    unchanged: int = 0


#: Drift and the prediction distribution of a run come from a uniform sample of at most this many
#: scored rows (both engines), so a run over many dates holds one date and the sample, not all:
#: PSI over 100k rows is as good as over all.
DRIFT_SAMPLE = 100_000


def keep_sample(sample: pd.DataFrame, frame: pd.DataFrame, rng: np.random.Generator,
                size: int = DRIFT_SAMPLE) -> pd.DataFrame:
    """``sample`` with ``frame``'s rows added, kept to a uniform sample of at most ``size`` of
    all rows seen: every row draws a key, and the ``size`` smallest keys stay (a bottom-k
    sample). Until there are more than ``size`` rows, every row stays, in order."""
    both = pd.concat([sample, frame.assign(_key=rng.random(len(frame)))], ignore_index=True)
    return both.nsmallest(size, "_key") if len(both) > size else both


#: ``(dates, as_of, model, its features, its version, scored_at)`` -> the pass, predictions
#: written: the Spark engine's scorer (``scoring.spark_score``) replaces ``score_here``.
Scorer = Callable[[list[date], datetime | None, Any, list[str], int, datetime], Scored]


def score_here(store: FeatureStore, writer: PredictionWriter, model: Any, features: list[str],
               version: int, dates: Iterable[date], as_of: datetime | None,
               scored_at: datetime, memory_mb: int = 0, keep: Iterable[date] = ()) -> Scored:
    """The pandas engine: each date's partition read, scored and written in this process,
    stopping once it has passed ``memory_mb`` MiB (``streamfit.memory.budget``; 0: no limit). The
    partitions of ``keep`` (dates to evaluate next) are returned; the others are let go."""
    done, total, unchanged, sample = [], 0, 0, pd.DataFrame()
    rng = np.random.default_rng(7)
    clock = {"read": 0.0, "predict": 0.0, "write": 0.0}
    read: dict[date, pd.DataFrame] = {}
    wanted = set(keep)
    with budget(memory_mb, "batch scoring") as work:
        for day in sorted(set(dates)):
            work.step(f"batch scoring of {day}")
            t = time.perf_counter()
            frame = store.read_day(day)
            if day in wanted:
                read[day] = frame
            clock["read"] += time.perf_counter() - t
            if frame.empty:
                continue
            if as_of is not None:
                frame = frame[due(frame, as_of)]
            if frame.empty:
                continue
            t = time.perf_counter()
            frame = frame.assign(probability=predict(model, frame, features))
            clock["predict"] += time.perf_counter() - t
            t = time.perf_counter()
            fresh = writer.changed(day, frame, version)
            writer.write(day, frame[fresh], version, scored_at)
            clock["write"] += time.perf_counter() - t
            done.append(day.isoformat())
            total += len(frame)
            unchanged += int(len(frame) - fresh.sum())
            sample = keep_sample(sample, frame, rng)
    return Scored(done, total, sample.drop(columns="_key", errors="ignore"), clock, read,
                  unchanged)


def _built_at(store: FeatureStore) -> dict[date, datetime | None]:
    """When each date's stored features were last built (``feature_partitions``)."""
    parts = store.partitions()
    if parts.empty:
        return {}
    return {d: (None if pd.isna(b) else pd.Timestamp(b).to_pydatetime())
            for d, b in zip(parts["day"], parts["built_at"], strict=True)}


def score_dates(ws: Workspace, dates: Iterable[date], as_of: datetime | None = None,
                evaluate: Iterable[date] = (), scorer: Scorer | None = None) -> ScoreResult:
    """Score the rows of ``dates`` due at ``as_of`` (None: every row) with the champion, record the
    run's drift and prediction distribution, and evaluate the stored predictions of ``evaluate``
    (dates whose outcomes have landed) against their outcomes. With ``STREAMFIT_ENGINE=spark``
    (and no ``scorer``) this is a Spark job the process submits and waits for."""
    evaluate = sorted(set(evaluate))
    settings, domain = ws.settings, ws.domain
    if settings.engine == "spark" and scorer is None:
        from streamfit.spark import submit

        ran = submit(settings, "scoring.spark_score:job", {
            "keyspace": ws.keyspace, "dates": sorted({d.isoformat() for d in dates}),
            "as_of": as_of.isoformat() if as_of else None,
            "evaluate": sorted({d.isoformat() for d in evaluate})})
        return ScoreResult(ran["model_version"], ran["dates"], ran["scored"],
                           {d: {int(v): n for v, n in m.items()}
                            for d, m in ran["evaluated"].items()},
                           ran["timings"], ran["alerts"])
    from scoring.monitoring import (
        MonitoringStore,
        ScoringRun,
        check_day,
        complete,
        drift,
        performance_summary,
        prediction_summary,
    )
    from streamfit.alerts import quality_alert
    from streamfit.quality import quality_alerts

    registry = ws.registry
    # digest-checked: a corrupted artifact never scores; the previous champion does
    loaded = registry.load_champion()
    if loaded is None:
        raise NoChampion("no champion model yet: train one first (`streamfit train`)")
    champion, model = loaded
    version = next(v for v in registry.versions() if v.version == champion)
    store = ws.feature_store()
    monitor = MonitoringStore(ws.session, ws.keyspace, domain.model_name)
    scored_at = datetime.now(UTC)
    if scorer is None:
        writer = PredictionWriter(ws.session, ws.keyspace, domain)
        out = score_here(store, writer, model, version.features, champion, dates, as_of,
                         scored_at, settings.pandas_memory_mb, evaluate)
    else:
        out = scorer(sorted(set(dates)), as_of, model, version.features, champion, scored_at)
    done, total, clock, read = out.dates, out.scored, out.timings, out.read
    matured, checks = {}, []
    judged = monitor.judged(champion) if evaluate else {}
    builds = _built_at(store) if evaluate else {}
    for day in evaluate:
        labelled = read[day] if day in read else store.read_day(day)
        joined = monitor.matured(day, labelled)
        result = monitor.evaluate(day, joined)
        if result:
            matured[day.isoformat()] = {v: m["entities"] for v, m in result.items()}
        if complete(labelled, as_of) and not (day in judged
                                              and judged[day] == builds.get(day)):
            # judged once every entity of the day has happened: its rows are final, and it is
            # a whole day, like the training days it is compared with. Once per champion and
            # build of the day: a later run that rescored it judges it again only when the day
            # was rebuilt (late data, its outcomes landed), so an alert is not repeated
            mine = joined[joined["model_version"] == champion] if len(joined) else joined
            gaps = domain.gaps(store.raw, day) if domain.gaps else []
            checks.append(check_day(version.reference, day, labelled, mine,
                                    settings.alert_drift_margin, gaps))
            monitor.mark_judged(champion, day, builds.get(day))
    if out.dates or checks:
        # a run that only judged days it had nothing left to score is recorded too
        psi = drift(version.reference.get("features", {}), out.sample) if out.dates else {}
        summary = (prediction_summary(out.sample["probability"].to_numpy()) if out.dates
                   else {"count": 0.0})
        monitor.record_run(ScoringRun(scored_at, champion, done, total, summary, psi,
                                      max(psi.values(), default=0.0), checks))
    problems = quality_alerts(
        version.metrics, performance_summary(monitor.performance()).get(champion) if matured
        else None, settings.alert_quality_gap) + [a for c in checks for a in c.alerts()]
    if problems:
        quality_alert(ws.keyspace, domain.model_name, champion, problems,
                      settings.alert_webhook_url)
    log.info("scored %d %ss of %s with model v%d; evaluated %s", total, domain.entity.name,
             done, champion, matured)
    return ScoreResult(champion, done, total, matured, clock, problems, out.unchanged)
