"""Point-in-time features of parcels: every feature of a parcel picked up at ``t`` and predicted
``h`` before it uses only deliveries and bookings known before ``a = t - h``.

- trailing late shares of the parcel's depot (3 days) and courier (7 days) before ``a``;
- the depot's load: parcels it picks up in the 24 hours before ``t`` (their bookings come
  before ``a``: a booking is at least 6 hours ahead, and the horizon is 6 hours);
- the parcel itself: weight, distance, express service, hour and weekday of its pickup.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from streamfit.domains import ENTITY_ID, EVENT_TIME, LABEL, OUTCOME, RawEvents
from streamfit.domains.deliveries import FEATURES, MAX_LEAD_DAYS, MAX_TRANSIT_DAYS

#: a depot's storms last days, a courier's reliability does not change: short and long windows
WINDOWS = {"depot": pd.Timedelta(days=3), "courier": pd.Timedelta(days=7)}
#: fewer known deliveries than this give the prior instead of a share
MIN_SUPPORT = 5
PRIOR = 0.25


def _ns(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]").astype("int64").to_numpy()


def _latest(frame: pd.DataFrame, time_col: str) -> pd.DataFrame:
    """One event per parcel (a re-sent event counts once; the latest wins)."""
    if frame.empty:
        return frame
    return frame.sort_values(time_col).drop_duplicates("parcel_id", keep="last")


def _window_sums(t: np.ndarray, keys: np.ndarray, hist_t: np.ndarray, hist_k: np.ndarray,
                 values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query (time t, key): the count and the sum of ``values`` of the history rows of the
    same key with ``t - window <= time < t`` (strictly before t)."""
    n = np.zeros(len(t))
    total = np.zeros(len(t))
    for key in np.unique(keys):
        mine = hist_k == key
        order = np.argsort(hist_t[mine], kind="stable")
        times, vals = hist_t[mine][order], values[mine][order]
        cum = np.concatenate([[0.0], np.cumsum(vals)])
        q = keys == key
        hi = np.searchsorted(times, t[q], side="left")
        lo = np.searchsorted(times, t[q] - window, side="left")
        n[q], total[q] = hi - lo, cum[hi] - cum[lo]
    return n, total


def _late(done: pd.DataFrame) -> np.ndarray:
    """Per delivery: 1.0 if it came after the time it was promised by (the label's rule)."""
    return (_ns(done["delivered_at"]) > _ns(done["promised_by"])).astype(float)


def tile_source(raw: RawEvents, day: date) -> pd.DataFrame:
    """The events of ``day`` that the trailing features count, one row each with a ``time`` on
    ``day`` (UTC): deliveries (at ``delivered_at``: ``late``, by depot and courier) and bookings
    (at their ``pickup_at``: ``pickup``, by depot). A delivery event sits within an hour of its
    time; a booking up to ``MAX_LEAD_DAYS + 1`` days before its pickup and an hour after."""
    columns = ["depot", "courier", "time", "late", "pickup"]
    around = [day - timedelta(days=1), day, day + timedelta(days=1)]
    done = _latest(raw.frame(around, "parcel_delivered"), "delivered_at")
    frames = []
    if not done.empty:
        at = pd.to_datetime(done["delivered_at"], utc=True)
        done = done[(at.dt.date == day).to_numpy()]
        frames.append(pd.DataFrame({
            "depot": done["depot"], "courier": done["courier"], "time": done["delivered_at"],
            "late": _late(done), "pickup": np.nan}))
    booked = _latest(raw.frame([day + timedelta(days=i) for i in range(-MAX_LEAD_DAYS - 2, 2)],
                               "parcel_booked"), "booked_at")
    if not booked.empty:
        booked = booked[(pd.to_datetime(booked["pickup_at"], utc=True).dt.date == day).to_numpy()]
        frames.append(pd.DataFrame({"depot": booked["depot"], "courier": None,
                                    "time": booked["pickup_at"], "late": np.nan, "pickup": 1.0}))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def _tiled_sums(parcels: pd.DataFrame, raw: RawEvents, t: np.ndarray, pickup: np.ndarray
                ) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The three trailing windows from the tiles, when ``raw`` keeps them (None otherwise)."""
    from streamfit.domains.deliveries import DOMAIN
    from streamfit.tiles import tiled

    spec = DOMAIN.features.tiles
    assert spec is not None
    first = pd.Timestamp(int(t.min()) - WINDOWS["courier"].value, tz="UTC").date()
    last = pd.Timestamp(int(max(t.max(), pickup.max())), tz="UTC").date()
    view = tiled(spec, raw, first, last)
    if view is None:
        return None
    return {"depot": view.sums("late_depot", parcels, t, WINDOWS["depot"].value),
            "courier": view.sums("late_courier", parcels, t, WINDOWS["courier"].value),
            "pickups": view.sums("pickups_depot", parcels, pickup,
                                 pd.Timedelta(hours=24).value)}


def features_of(parcels: pd.DataFrame, raw: RawEvents,
                horizon: timedelta = timedelta(0)) -> pd.DataFrame:
    """FEATURES of ``parcels`` (parcel_id, depot, courier, service, weight_kg, distance_km,
    pickup_at), from what had happened ``horizon`` before each one's pickup: from the tiles
    when the reader keeps them, else from the raw events (the same values: the parity test)."""
    pickup = _ns(parcels["pickup_at"])
    t = pickup - pd.Timedelta(horizon).value
    out = pd.DataFrame(index=parcels.index)
    sums = _tiled_sums(parcels, raw, t, pickup)
    if sums is not None:
        for name, col in (("late_rate_depot_3d", "depot"), ("late_rate_courier_7d", "courier")):
            n, k = sums[col]
            out[name] = np.where(n >= MIN_SUPPORT, k / np.maximum(n, 1), PRIOR)
        out["depot_pickups_24h"] = sums["pickups"][0]
        return _own(parcels, out)
    first = pd.Timestamp(int(t.min()), tz="UTC").date()
    last = pd.Timestamp(int(t.max()), tz="UTC").date()
    span = [first - timedelta(days=i) for i in range(8, 0, -1)]
    span += [first + timedelta(days=i) for i in range((last - first).days + 1)]
    done = _latest(raw.frame(span, "parcel_delivered"), "delivered_at")
    booked_dates = [first - timedelta(days=i) for i in range(MAX_LEAD_DAYS + 1, 0, -1)] + \
        [d for d in span if d >= first]
    booked = _latest(raw.frame(booked_dates, "parcel_booked"), "booked_at")
    depot, courier = parcels["depot"].to_numpy(), parcels["courier"].to_numpy()
    for name, keys, col in (("late_rate_depot_3d", depot, "depot"),
                            ("late_rate_courier_7d", courier, "courier")):
        if done.empty:
            out[name] = PRIOR
            continue
        n, k = _window_sums(t, keys, _ns(done["delivered_at"]), done[col].to_numpy(), _late(done),
                            WINDOWS[col].value)
        out[name] = np.where(n >= MIN_SUPPORT, k / np.maximum(n, 1), PRIOR)
    if booked.empty:
        out["depot_pickups_24h"] = 0.0
    else:
        n, _ = _window_sums(pickup, depot, _ns(booked["pickup_at"]), booked["depot"].to_numpy(),
                            np.ones(len(booked)), pd.Timedelta(hours=24).value)
        out["depot_pickups_24h"] = n
    return _own(parcels, out)


def _own(parcels: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """``out`` (the trailing features) with the parcel's own features, in FEATURES order."""
    when = pd.to_datetime(parcels["pickup_at"], utc=True)
    out["weight_kg"] = parcels["weight_kg"].astype(float).to_numpy()
    out["distance_km"] = parcels["distance_km"].astype(float).to_numpy()
    out["express"] = (parcels["service"] == "express").astype(float).to_numpy()
    out["hour"] = when.dt.hour.to_numpy(dtype=float)
    out["day_of_week"] = when.dt.day_of_week.to_numpy(dtype=float)
    return out[list(FEATURES)]


def build_day(raw: RawEvents, day: date, horizon: timedelta = timedelta(0)) -> pd.DataFrame:
    """The parcels picked up on ``day``, with their features, delay (hours) and late label."""
    booked = _latest(raw.frame([day - timedelta(days=i) for i in range(MAX_LEAD_DAYS + 1)],
                               "parcel_booked"), "booked_at")
    if booked.empty:
        return pd.DataFrame()
    parcels = booked[pd.to_datetime(booked["pickup_at"], utc=True).dt.date == day]
    if parcels.empty:
        return pd.DataFrame()
    parcels = parcels.reset_index(drop=True)
    later = [day + timedelta(days=i) for i in range(MAX_TRANSIT_DAYS + 1)]
    done = _latest(raw.frame(later, "parcel_delivered"), "delivered_at")
    delay = pd.Series(np.nan, index=parcels.index)
    if not done.empty:
        hours = (_ns(done["delivered_at"]) - _ns(done["promised_by"])) / 3.6e12
        delay = parcels["parcel_id"].map(dict(zip(done["parcel_id"], hours, strict=True)))
    known = delay.notna().to_numpy()
    label = np.where(known, delay.to_numpy() > 0, None)
    frame = pd.DataFrame({ENTITY_ID: parcels["parcel_id"],
                          EVENT_TIME: pd.to_datetime(parcels["pickup_at"], utc=True),
                          "depot": parcels["depot"], "courier": parcels["courier"],
                          "service": parcels["service"]})
    return pd.concat([frame, features_of(parcels, raw, horizon)], axis=1).assign(
        **{OUTCOME: delay.astype(float).to_numpy(), LABEL: label})


def build_for(raw: RawEvents, parcels: pd.DataFrame,
              horizon: timedelta = timedelta(0)) -> pd.DataFrame:
    """Features of parcels given in a request (as of ``horizon`` before pickup), in their
    order."""
    parcels = parcels.reset_index(drop=True)
    feats = features_of(parcels, raw, horizon)
    return pd.concat([pd.DataFrame({ENTITY_ID: parcels["parcel_id"],
                                    EVENT_TIME: pd.to_datetime(parcels["pickup_at"], utc=True)}),
                      feats], axis=1)
