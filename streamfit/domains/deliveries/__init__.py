"""A second, small domain: will a parcel be delivered after the time it was promised by?

Synthetic and deterministic (no download), small enough for CI, and with a label that can be
learnt: each courier has a fixed reliability, each depot goes through "storms" that last a few
days, and long or express parcels are late more often. Two event types:

- ``parcel_booked`` (key: parcel id): 6 to 30 hours before its pickup, with the pickup time and
  the time delivery is promised by;
- ``parcel_delivered`` (key: parcel id): when it reaches the customer.

A prediction is about a booked parcel before it is picked up (as a flight is predicted before it
departs). Everything streamfit needs is declared here: the schemas, the entity (a parcel, dated
by its pickup date), the label, the point-in-time features (``features.py``) and the replay
(``replay.py``).
Select it with ``STREAMFIT_DOMAIN=deliveries``, in a keyspace of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import ConfigDict, Field

from streamfit.domains import Domain, Entity, FeatureSpec, Label, RawEvents, TileSpec
from streamfit.domains.contract import PRINTABLE, Payload, Time, code

if TYPE_CHECKING:
    import pandas as pd

PARCEL_ID = r"^P[0-9]{8}-[0-9]{4}(~[0-9]+)?$"
#: a parcel is delivered within this many days of shipping; its label is known by then
MAX_TRANSIT_DAYS = 4
#: a booking comes at most this many days before its pickup
MAX_LEAD_DAYS = 2
FEATURES = ("late_rate_depot_3d", "late_rate_courier_7d", "depot_pickups_24h", "weight_kg",
            "distance_km", "express", "hour", "day_of_week")

#: the trailing aggregates the features read from tiles (``streamfit.tiles``): (keys, value) of
#: ``features.tile_source``'s events
TILE_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "late_depot": (("depot",), "late"), "late_courier": (("courier",), "late"),
    "pickups_depot": (("depot",), "pickup")}


DEPOT = Annotated[str, code(r"D[0-9]{2}", "depot code, e.g. D03"), PRINTABLE]
COURIER = Annotated[str, code(r"C[0-9]{2}", "courier code, e.g. C07"), PRINTABLE]
PARCEL = Annotated[str, code(PARCEL_ID[1:-1], "parcel id, e.g. P20240105-0042"), PRINTABLE]
SERVICE = Annotated[str, code(r"standard|express", "standard or express"), PRINTABLE]
#: an event carries the time it happened; a booking's pickup and promise lie ahead of it
AT_EVENT = (-timedelta(hours=1), timedelta(hours=1))
AHEAD = (timedelta(0), timedelta(days=10))


class _Parcel(Payload):
    key_field: ClassVar[str | None] = "parcel_id"

    parcel_id: PARCEL
    depot: DEPOT
    courier: COURIER
    service: SERVICE
    weight_kg: float = Field(gt=0, le=100)
    distance_km: float = Field(gt=0, le=2000)
    pickup_at: Time


class ParcelBooked(_Parcel):
    time_bounds: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "booked_at": AT_EVENT, "pickup_at": (timedelta(0), timedelta(days=MAX_LEAD_DAYS + 1)),
        "promised_by": AHEAD}

    booked_at: Time
    promised_by: Time


class ParcelDelivered(Payload):
    key_field: ClassVar[str | None] = "parcel_id"
    time_bounds: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "delivered_at": AT_EVENT, "promised_by": (-AHEAD[1], AHEAD[1])}

    parcel_id: PARCEL
    depot: DEPOT
    courier: COURIER
    promised_by: Time
    delivered_at: Time


class ParcelIn(_Parcel):
    """A parcel to score on demand (``POST /score``): its booking, before it is picked up."""

    model_config = ConfigDict(extra="forbid")


def _days_affected(event_dates: Iterable[date]) -> list[date]:
    """Bookings of E are parcels picked up on E..E+2; deliveries of E label the parcels picked
    up on E-4..E."""
    return sorted({day + timedelta(days=i) for day in event_dates
                   for i in range(-MAX_TRANSIT_DAYS, MAX_LEAD_DAYS + 1)})


def _tile_source(raw: RawEvents, day: date) -> pd.DataFrame:
    from streamfit.domains.deliveries import features

    return features.tile_source(raw, day)


def _tile_days_affected(event_dates: Iterable[date]) -> list[date]:
    """Deliveries of event date E happened on E-1..E+1 (an event comes within an hour of its
    time); bookings of E are pickups of E-1..E+MAX_LEAD_DAYS+1."""
    return sorted({day + timedelta(days=i) for day in event_dates
                   for i in range(-1, MAX_LEAD_DAYS + 2)})


def _build_day(raw: RawEvents, day: date, horizon: timedelta) -> pd.DataFrame:
    from streamfit.domains.deliveries import features

    return features.build_day(raw, day, horizon)


def _build_for(raw: RawEvents, parcels: pd.DataFrame, horizon: timedelta) -> pd.DataFrame:
    from streamfit.domains.deliveries import features

    return features.build_for(raw, parcels, horizon)


def _replay(options: object) -> Iterable[dict[str, object]]:
    from streamfit.domains.deliveries import replay

    return replay.synthetic(options)  # type: ignore[arg-type]


DOMAIN = Domain(
    name="deliveries",
    schemas={"parcel_booked": {1: ParcelBooked}, "parcel_delivered": {1: ParcelDelivered}},
    entity=Entity(name="parcel", key="parcel_id", key_pattern=PARCEL_ID, day="pickup_date",
                  time="pickup_at", columns=("depot", "courier", "service"), request=ParcelIn),
    label=Label(name="late", outcome="delay_hours",
                description="delivered after the time it was promised by"),
    features=FeatureSpec(names=FEATURES, model=FEATURES, naive="late_rate_depot_3d",
                         build_day=_build_day, days_affected=_days_affected,
                         build_for=_build_for,
                         tiles=TileSpec(source=_tile_source, time="time",
                                        families=TILE_FAMILIES,
                                        days_affected=_tile_days_affected),
                         # bookings come 6 to 30 hours ahead: 6 h before pickup, every parcel is
                         # known
                         horizons={"6 h before pickup": timedelta(hours=6)}),
    model_name="parcel_late",
    datasets={"synthetic": _replay},
    description="synthetic parcel deliveries (deterministic)",
)
