"""Pipeline benchmarks: freshness through Airflow, incremental feature rebuilds, scoring.

    .venv/bin/python bench/pipeline.py [--part freshness|round|rebuild|scoring|all] [--rounds 5]
                                       [--year-days 364] [--json FILE]

Needs the local stack (`streamfit stack up`); every part works in keyspaces and topics of its
own and drops them afterwards. Figures measured side by side in one run:

(a) freshness: a pipeline is seeded with two weeks (model v1, predictions); then, per round, one
    more event date is produced with the ingest service running, and Airflow's scheduler does
    the rest. Per round: producing -> landed and committed; signal -> first build_features start
    (trigger latency); the build_features, train_model and score_batch task times; producing ->
    the end of the first run that wrote the champion's new predictions (the feature task's own
    scoring, or score_batch's), -> the moment a client polling for some of the new day's
    flights first reads one (``FirstSeen``), and -> the last new
    prediction once the pipeline is quiet (a retrain's promotion rescoring). p50 over the rounds.
(b) incremental rebuild: features for one new event date on top of a year of raw events, against
    a full rebuild of the year (the same functions the DAG runs, called directly).
(c) scoring throughput: rows/s of ``score_dates`` over a month, with reading, predicting and
    writing timed separately, against the bare-driver ceiling of the same writes (prepared
    statements, execute_concurrent, tuples built up front).
(d) ``--part round`` (not in ``all``): one freshness round's feature and scoring stages called
    in this process after a seed, under pyinstrument: what a round costs without Airflow, and
    where it goes.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from features.build import run_build  # noqa: E402
from ingest.producer import send_events  # noqa: E402
from ingest.service import ensure_topics, running_in_background  # noqa: E402
from ingest.signal import signal_now  # noqa: E402
from ingest.status import group_status  # noqa: E402
from scoring.batch import score_dates  # noqa: E402
from scoring.predictions import INSERT_BY_DATE, INSERT_HISTORY, INSERT_LATEST  # noqa: E402
from streamfit import kafka as kafka_io  # noqa: E402
from streamfit.airflow_api import airflow_client  # noqa: E402
from streamfit.cassandra import connect  # noqa: E402
from streamfit.domains import load_domain  # noqa: E402
from streamfit.progress import set_retired  # noqa: E402
from streamfit.schema import migrate  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402
from streamfit.workspace import open_workspace  # noqa: E402
from training.train import train_and_maybe_promote  # noqa: E402

PIPELINE = ("build_features", "train_model", "score_batch")
SEED_FIRST = date(2013, 3, 1)
SEED_DAYS = 14


def events_of_days(s: Settings, first: date, last: date, scale: int = 1) -> list[dict[str, Any]]:
    """The events of the settings' domain on ``first``..``last``."""
    return load_domain(s.domain).events_of_days(first, last, scale)


def fresh(base: Settings, name: str, served: bool = False) -> Settings:
    """A keyspace and topic of the benchmark's own. Retired at once unless ``served``: the
    benchmark runs the stages itself, and Airflow's pipeline runs (which serve every announced
    keyspace) must neither compete for the cores nor survive the benchmark if it is killed
    before ``cleanup`` drops the keyspace (``streamfit pipeline keyspaces`` lists it retired)."""
    tag = uuid.uuid4().hex[:8]
    s = base.model_copy(update={"keyspace": f"bench_{name}_{tag}",
                                "events_topic": f"bench.{name}.{tag}",
                                "ingest_group": f"bench-{name}-{tag}", "ingest_metrics_port": 0})
    # Kafka first: a benchmark started with Kafka down stops before it makes a keyspace
    ensure_topics(s)
    with connect(s, keyspace=None) as session:
        migrate(session, s)
        if not served:
            set_retired(session, s.keyspace, True)
    return s


def cleanup(s: Settings) -> None:
    with connect(s, keyspace=None) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=120)
    admin = kafka_io.admin(s)
    try:
        admin.delete_topics([s.events_topic, s.events_topic + ".dlq"])
    finally:
        admin.close()


def caught_up(s: Settings) -> bool:
    rows = group_status(s, 0)["partitions"]
    return bool(rows) and all(r["committed"] >= r["end"] for r in rows)


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def _t(stamp: str | None) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else float("nan")


def signal_times(s: Settings, after: float) -> list[float]:
    from cassandra.util import datetime_from_uuid1

    with connect(s) as session:
        rows = session.execute("SELECT signal_id, rows FROM ingest_signals WHERE signal_day = %s",
                               (datetime.now(UTC).date(),))
        return sorted(t for t in (datetime_from_uuid1(r.signal_id).replace(tzinfo=UTC).timestamp()
                                  for r in rows if r.rows) if t >= after)


def _scored(run: Any) -> bool:
    """A build_features run whose task also scored the build with the champion."""
    scoring = (run.summary or {}).get("scoring")
    return isinstance(scoring, dict) and bool(scoring.get("scored"))


class FirstSeen:
    """A client's view, polled in a thread: when the first of some new flights (scheduled in
    the round's events for the next day, so without a prediction before it) can be read
    (``PredictionClient.latest``, one single-row read each, every 0.2 s)."""

    def __init__(self, s: Settings, events: list[dict[str, Any]], day: date) -> None:
        import threading

        ahead = (day + timedelta(days=1)).isoformat()
        self.ids = sorted({e["entity_key"] for e in events
                           if e["event_type"] == "flight_scheduled"
                           and e["payload"]["scheduled_departure"][:10] == ahead})[:5]
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(s,), daemon=True)

    def _poll(self, s: Settings) -> None:
        from scoring.client import PredictionClient

        with PredictionClient.open(s) as client:
            while not self._stop.wait(0.2):
                if any(client.latest(i) is not None for i in self.ids):
                    self.at = time.time()
                    return

    def start(self) -> FirstSeen:
        if self.ids:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def freshness(base: Settings, rounds: int) -> dict[str, Any]:
    s = fresh(base, "fresh", served=True).model_copy(update={"signal_interval_s": 2.0})
    try:
        with airflow_client(s) as client:
            # seed: two weeks, announced at once, until v1 scored the next day
            last = SEED_FIRST + timedelta(days=SEED_DAYS - 1)
            send_events(s, events_of_days(s, SEED_FIRST, last))
            quiet = s.model_copy(update={"airflow_url": "http://127.0.0.1:9"})
            with running_in_background(quiet):
                wait(lambda: caught_up(s), 600, "the seed to land")
            since = datetime.now(UTC).isoformat()
            signal_now(s)
            wait(lambda: any(r.summary for r in client.pipeline_runs("score_batch", since,
                                                                      s.keyspace)),
                 900, "the seeded pipeline to score")
            wait(lambda: not client.pipeline_busy(PIPELINE), 600, "Airflow to be idle")
            print(f"seeded {SEED_DAYS} days; rounds follow", flush=True)
            results: list[dict[str, Any]] = []
            with running_in_background(s):
                for i in range(rounds):
                    day = last + timedelta(days=1 + i)
                    events = events_of_days(s, day, day)
                    since = datetime.now(UTC).isoformat()
                    seen = FirstSeen(s, events, day).start()
                    t0 = time.time()
                    send_events(s, events)
                    wait(lambda: caught_up(s), 300, "the day to land")
                    landed = time.time() - t0
                    time.sleep(s.signal_interval_s + 1)  # the trailing signal goes out
                    wait(lambda: not client.pipeline_busy(PIPELINE) and caught_up(s), 900, "the pipeline")
                    time.sleep(6)  # asset events queued by the last run turn into runs
                    wait(lambda: not client.pipeline_busy(PIPELINE), 900, "the pipeline to be quiet")
                    seen.stop()
                    runs = {d: client.pipeline_runs(d, since, s.keyspace) for d in PIPELINE}
                    score_runs = [r for r in runs["score_batch"] if r.summary]
                    # a run that wrote predictions: score_batch's, or the feature task's own
                    # scoring (STREAMFIT_PIPELINE_SCORE_ON_BUILD) in its summary's "scoring"
                    first = [_t(r.end_date) for r in score_runs if (r.summary or {}).get("scored")]
                    first += [_t(r.end_date) for r in runs["build_features"] if _scored(r)]
                    ends = [_t(r.end_date) for r in score_runs] + [
                        _t(r.end_date) for r in runs["build_features"] if _scored(r)]
                    signals = signal_times(s, t0)
                    builds = sorted(runs["build_features"], key=lambda r: _t(r.start_date))
                    stage = {d: sum(_t(r.end_date) - _t(r.start_date) for r in runs[d]
                                    if r.start_date and r.end_date) for d in PIPELINE}
                    row = {
                        "day": day.isoformat(), "events": len(events),
                        "landing_s": landed,
                        "trigger_s": (_t(builds[0].start_date) - signals[0]
                                      if builds and signals else float("nan")),
                        "features_s": stage["build_features"], "train_s": stage["train_model"],
                        "score_s": stage["score_batch"],
                        # the champion's first predictions of the new day (issue 36's
                        # "produce -> champion prediction updated")...
                        "first_prediction_s": min(first) - t0 if first else float("nan"),
                        # ... and as a client polling for it saw it (the run ends later: it
                        # evaluates and judges matured days after writing the predictions)
                        "first_seen_s": seen.at - t0 if seen.at else float("nan"),
                        "scored_in_build": any(_scored(r) for r in runs["build_features"]),
                        # ... and the last, after a retrain's promotion rescoring
                        "end_to_end_s": max(ends) - t0 if ends else float("nan"),
                        "rows_scored": sum(r.summary.get("scored", 0) for r in score_runs
                                           if r.summary),
                        "rows_unchanged": sum(r.summary.get("unchanged", 0) for r in score_runs
                                              if r.summary),
                        "runs": {d: len(runs[d]) for d in PIPELINE},
                        "promoted": any(r.summary for r in runs["train_model"]),
                    }
                    results.append(row)
                    print(json.dumps(row), flush=True)
        keys = ["landing_s", "trigger_s", "features_s", "train_s", "score_s",
                "first_prediction_s", "first_seen_s", "end_to_end_s"]
        return {"rounds": results,
                "p50": {k: statistics.median(r[k] for r in results) for k in keys}}
    finally:
        cleanup(s)


def land_days(s: Settings, first: date, last: date, scale: int = 1) -> None:
    """Replay ``first``..``last`` (``--scale``: copies of every flight) through Kafka and land it
    with the ingest service (no signals to Airflow: the benchmarks call the stages themselves)."""
    t0 = time.time()
    events = events_of_days(s, first, last, scale)
    send_events(s, events)
    with running_in_background(s.model_copy(update={"airflow_url": "http://127.0.0.1:9"})):
        wait(lambda: caught_up(s), 1800, f"the events of {first}..{last} to land")
    print(f"landed {len(events):,} events of {first}..{last} x{scale} in "
          f"{time.time() - t0:.0f}s",
          flush=True)


def land_and_build(s: Settings, first: date, last: date) -> None:
    """Replay and land ``first``..``last``, then build every date's features (the backtest's
    and the alert benchmark's starting point)."""
    land_days(s, first, last)
    t0 = time.time()
    with open_workspace(s) as ws:
        built = run_build(ws, days=[first + timedelta(days=i)
                                    for i in range((last - first).days + 1)])
    print(f"built {built['entities']:,} flights' features in {time.time() - t0:.0f}s",
          flush=True)


def year_of_data(base: Settings, days: int) -> tuple[Settings, date]:
    s = fresh(base, "year").model_copy(update={"signal_interval_s": 3600.0})
    first = date(2013, 1, 1)
    last = first + timedelta(days=days - 1)
    land_days(s, first, last)
    return s, last


def rebuild(s: Settings, last: date) -> dict[str, Any]:
    """Full rebuild of every scheduled date so far, then one new event date incrementally."""
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range((last - date(2013, 1, 1)).days + 2)]
    t0 = time.perf_counter()
    with open_workspace(s) as ws:
        full = run_build(ws, days=days)
    full_s = time.perf_counter() - t0
    new_day = last + timedelta(days=1)
    events = events_of_days(s, new_day, new_day)
    send_events(s, events)
    with running_in_background(s.model_copy(update={"airflow_url": "http://127.0.0.1:9"})):
        wait(lambda: caught_up(s), 300, "the new day to land")
    t0 = time.perf_counter()
    with open_workspace(s) as ws:
        inc = run_build(ws, event_dates=[new_day])
    inc_s = time.perf_counter() - t0
    full_dates: list[str] = full["dates"]  # type: ignore[assignment]
    return {"full_s": full_s, "full_dates": len(full_dates), "full_flights": full["entities"],
            "incremental_s": inc_s, "incremental_dates": inc["dates"],
            "incremental_flights": inc["entities"], "ratio": inc_s / full_s}


def scoring(s: Settings, last: date, days: int = 30) -> dict[str, Any]:
    from cassandra.concurrent import execute_concurrent

    with open_workspace(s) as ws:
        if not len(ws.feature_store().partitions()):
            # run on its own (--part scoring): build the window it trains and scores on
            run_build(ws, days=[last - timedelta(days=i) for i in range(s.train_days + 1)])
        trained = train_and_maybe_promote(ws, force=True)
        dates = [last - timedelta(days=days - 1 - i) for i in range(days)]
        t0 = time.perf_counter()
        ours = score_dates(ws, dates)
        total_s = time.perf_counter() - t0
    # the ceiling: the same three writes per row, prepared, tuples built before the clock starts
    with connect(s) as session:
        select = session.prepare(
            "SELECT day, entity_id, horizon_min, event_time, attributes, probability "
            "FROM day_predictions_by_horizon WHERE day = ?")
        rows = [r for d in dates for r in session.execute(select, (d,))]
        latest = session.prepare(INSERT_LATEST.format(ks=s.keyspace))
        by_date = session.prepare(INSERT_BY_DATE.format(ks=s.keyspace))
        history = session.prepare(INSERT_HISTORY.format(ks=s.keyspace))
        now = datetime.now(UTC)
        statements: list[Any] = []
        for r in rows:
            common = (r.event_time, r.attributes, r.probability, 99, now)
            statements += [(latest, (r.entity_id, r.horizon_min, r.day, *common)),
                           (by_date, (r.day, r.entity_id, r.horizon_min, *common)),
                           (history, (r.entity_id, 99, r.horizon_min, r.probability, now))]
        t0 = time.perf_counter()
        execute_concurrent(session, statements, concurrency=64, raise_on_first_error=True,
                           results_generator=False)
        bare_s = time.perf_counter() - t0
    n = ours.scored
    return {"model_version": trained.version, "roc_auc": trained.metrics.get("roc_auc"),
            "naive_roc_auc": trained.metrics.get("naive_roc_auc"),
            "rows": n, "total_s": total_s, "timings": ours.timings,
            "rows_per_s": n / total_s, "predict_rows_per_s": n / ours.timings["predict"],
            "write_rows_per_s": n / ours.timings["write"],
            "bare_write_rows_per_s": len(rows) / bare_s,
            "write_vs_bare": (n / ours.timings["write"]) / (len(rows) / bare_s),
            "metrics": trained.metrics}


def one_round(base: Settings) -> dict[str, Any]:
    """A freshness round's stages called here, in order, as the DAG tasks call them (no
    Airflow: its trigger and task start are what ``freshness`` adds): seeded with two weeks, a
    champion and its predictions; then one more event date lands and the feature stage, then
    the scoring stage (the champion scores it) run once each under pyinstrument. Stage times
    and where they go."""
    from pyinstrument import Profiler

    from features.run import _build_keyspace
    from scoring.run import _score_keyspace
    from training.run import _train_keyspace

    s = fresh(base, "round").model_copy(update={"signal_interval_s": 3600.0})
    try:
        last = SEED_FIRST + timedelta(days=SEED_DAYS - 1)
        land_days(s, SEED_FIRST, last)
        with open_workspace(s) as ws:
            for step in (_build_keyspace, _train_keyspace, _score_keyspace):
                print(f"seed: {step.__name__} {str(step(ws))[:160]}", flush=True)
        day = last + timedelta(days=1)
        land_days(s, day, day)
        out: dict[str, Any] = {"day": day.isoformat(), "stages": {}, "profiles": {}}
        for name, step in (("features", _build_keyspace), ("score", _score_keyspace)):
            p = Profiler(interval=0.002)
            t0 = time.perf_counter()
            p.start()
            with open_workspace(s) as ws:  # a task opens its own session
                summary = step(ws)
            p.stop()
            took = time.perf_counter() - t0
            out["stages"][name] = {"seconds": took, "summary": summary}
            out["profiles"][name] = profile_text(p)
            print(f"{name}: {took:.2f} s {str(summary)[:200]}", flush=True)
        for name, text in out["profiles"].items():
            print(f"\n--- profile: {name}\n{text}")
        return out
    finally:
        cleanup(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["freshness", "round", "rebuild", "scoring", "all"],
                    default="all")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--year-days", type=int, default=364)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base = get_settings()
    figures: dict[str, Any] = {"machine": "2 shared cores, 24 GB; Kafka, Cassandra and Airflow "
                               "co-located", "when": datetime.now(UTC).isoformat()}
    if args.part in ("rebuild", "scoring", "all"):
        s, last = year_of_data(base, args.year_days)
        try:
            if args.part in ("rebuild", "all"):
                figures["rebuild"] = rebuild(s, last)
                print(json.dumps(figures["rebuild"]), flush=True)
                save(args.json, figures)
            if args.part in ("scoring", "all"):
                figures["scoring"] = scoring(s, last)
                print(json.dumps(figures["scoring"], default=str), flush=True)
                save(args.json, figures)
        finally:
            cleanup(s)
    if args.part == "round":
        figures["round"] = one_round(base)
    if args.part in ("freshness", "all"):
        figures["freshness"] = freshness(base, args.rounds)
        print(json.dumps(figures["freshness"]["p50"]), flush=True)
    save(args.json, figures)


def profile_text(profiler: Any, share: float = 0.02) -> str:
    """A pyinstrument profile as text, without the frames under ``share`` of its time: the
    whole tree of where the time goes, short enough to print and to keep in a JSON file."""
    lines = profiler.output_text(unicode=False, color=False).splitlines()
    total = None
    kept = []
    for line in lines:
        found = re.match(r"^[\s|`-]*([0-9.]+) ", line)
        if found and total is None:
            total = float(found.group(1))
        if found and total and float(found.group(1)) < share * total:
            continue
        kept.append(line)
    return "\n".join(kept)


def save(path: Path | None, figures: dict[str, Any]) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
