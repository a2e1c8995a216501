"""Point-in-time feature computation for flights: pure functions of DataFrames, no I/O.

Called by ``streamfit.domains.flights.features`` (batch builds and ``POST /score``) and by
``streamfit backtest`` for one scheduled-departure date at a time. Every feature of a flight uses
only information available strictly before its *as-of* time ``a = t - horizon``, where ``t`` is
its scheduled departure (the pipeline's horizon is 0: as of the departure):

- trailing delay rates (share of arrivals 15+ minutes late) by carrier, origin, route
  (origin-dest) and scheduled hour, over several windows ending at ``a``, counting only arrivals
  whose ``actual_arrival < a`` (never the flight's own arrival, which comes after its departure);
- the origin's latest weather observation at or before ``a``'s hour;
- plane attributes (static reference data);
- calendar features of ``t`` (known from the schedule).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from streamfit.domains.flights.names import (
    GROUPS,
    LATE_MINUTES,
    PLANE_COLS,
    WEATHER_COLS,
    WINDOW_DAYS,
    feature_names,
)

__all__ = ["LATE_MINUTES", "WINDOWS", "build_features", "feature_names"]

WINDOWS: dict[str, pd.Timedelta] = {name: pd.Timedelta(days=days)
                                   for name, days in WINDOW_DAYS.items()}
#: Rates need a few arrivals to mean something; fewer than this give the global prior instead.
MIN_SUPPORT = 5
#: Late share used before any arrival is known (about the 2013 average).
DEFAULT_PRIOR = 0.2


def _utc(values: pd.Series) -> pd.Series:
    """One datetime dtype everywhere: merge_asof refuses keys of different resolutions."""
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def _trailing(flights: pd.DataFrame, history: pd.DataFrame, keys: list[str],
              window: pd.Timedelta, prior: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Late-arrival share and count per flight over (a - window, a), by ``keys`` ([] = all)."""
    hist = history.sort_values("actual_arrival")
    q = flights[[*keys, "as_of"]].reset_index()
    q["lo"] = q["as_of"] - window
    if hist.empty:
        n = np.zeros(len(q))
        return np.broadcast_to(prior, (len(q),)).astype(float), n
    hist = hist.assign(_one=1.0)
    if keys:
        grouped = hist.groupby(keys, sort=False)
        hist = hist.assign(cum_n=grouped["_one"].cumsum(), cum_late=grouped["late"].cumsum())
    else:
        hist = hist.assign(cum_n=hist["_one"].cumsum(), cum_late=hist["late"].cumsum())
    right = hist[[*keys, "actual_arrival", "cum_n", "cum_late"]]

    def upto(times: str) -> pd.DataFrame:
        left = q[[*keys, times, "index"]].sort_values(times)
        # strictly before: an arrival exactly at t is not yet known at t
        m = pd.merge_asof(left, right, left_on=times, right_on="actual_arrival", by=keys or None,
                          allow_exact_matches=False, direction="backward")
        return m.set_index("index")[["cum_n", "cum_late"]].fillna(0.0)

    hi, lo = upto("as_of"), upto("lo")
    n = (hi["cum_n"] - lo["cum_n"]).reindex(q["index"]).to_numpy()
    late = (hi["cum_late"] - lo["cum_late"]).reindex(q["index"]).to_numpy()
    rate = np.where(n >= MIN_SUPPORT, late / np.maximum(n, 1), prior)
    return rate, n


def build_features(flights: pd.DataFrame, history: pd.DataFrame, weather: pd.DataFrame,
                   planes: pd.DataFrame, horizon: pd.Timedelta | None = None) -> pd.DataFrame:
    """One row per flight of ``flights`` with ``feature_names()`` columns, as of ``horizon``
    before each flight's scheduled departure (None: as of the departure).

    flights: flight_id, carrier, origin, dest, tailnum, scheduled_departure (UTC), distance.
    history: arrivals before these flights: carrier, origin, dest, sched_hour, actual_arrival,
             arr_delay (rows at or after a flight's as-of time are ignored for that flight).
    weather: origin, observed_at, WEATHER_COLS (observations after it are ignored too).
    planes: tailnum, year, seats, engines.
    """
    f = flights.copy()
    f["scheduled_departure"] = _utc(f["scheduled_departure"])
    f["as_of"] = f["scheduled_departure"] - (horizon or pd.Timedelta(0))
    f["sched_hour"] = f["scheduled_departure"].dt.hour.astype("int64")
    hist = history.copy()
    if not hist.empty:
        hist["actual_arrival"] = _utc(hist["actual_arrival"])
        hist["sched_hour"] = hist["sched_hour"].astype("int64")
        hist["late"] = (hist["arr_delay"] >= LATE_MINUTES).astype(float)
    else:
        hist = pd.DataFrame(columns=["carrier", "origin", "dest", "sched_hour", "actual_arrival",
                                     "arr_delay", "late"])
    # The fallback for thin groups is itself point-in-time: all arrivals of the 28 days before t.
    # (A mean over the whole history would leak later arrivals, the flight's own included.)
    prior, _ = _trailing(f, hist, [], WINDOWS["28d"], DEFAULT_PRIOR)
    out = pd.DataFrame({"flight_id": f["flight_id"].to_numpy()})
    for gname, keys in GROUPS.items():
        for wname, window in WINDOWS.items():
            rate, n = _trailing(f, hist, keys, window, prior)
            out[f"late_rate_{gname}_{wname}"] = rate
            out[f"n_{gname}_{wname}"] = n
    # weather: latest observation at or before the as-of hour, per origin
    w = weather.copy()
    w["observed_at"] = _utc(w["observed_at"])
    # merge_asof wants the same dtype on both sides: an empty weather frame has object columns
    w["origin"] = w["origin"].astype(f["origin"].dtype)
    left = f[["origin", "as_of"]].reset_index()
    left["hour"] = left["as_of"].dt.floor("h")
    wx = pd.merge_asof(left.sort_values("hour"), w.sort_values("observed_at"),
                       left_on="hour", right_on="observed_at", by="origin", direction="backward")
    wx = wx.set_index("index").reindex(left["index"])
    for c in WEATHER_COLS:
        out[f"wx_{c}"] = wx[c].to_numpy(dtype=float) if c in wx else np.nan
    p = planes.rename(columns={"year": "plane_year", "seats": "plane_seats",
                               "engines": "plane_engines"})
    merged = f[["tailnum"]].merge(p[["tailnum", *PLANE_COLS]], on="tailnum", how="left")
    for c in PLANE_COLS:
        out[c] = merged[c].to_numpy(dtype=float)
    out["sched_hour"] = f["sched_hour"].to_numpy()
    out["day_of_week"] = f["scheduled_departure"].dt.day_of_week.to_numpy()
    out["month"] = f["scheduled_departure"].dt.month.to_numpy()
    out["day_of_year"] = f["scheduled_departure"].dt.day_of_year.to_numpy()
    out["distance"] = f["distance"].to_numpy(dtype=float)
    return out[["flight_id", *feature_names()]]
