"""The feature store: the raw events a feature builder reads, and the feature rows it keeps.

Written by the feature stage (``features.build``), read by training, batch scoring and the HTTP
server. One table family, generic over the domain:

- ``features_by_horizon``: one partition per entity date, one row per entity and prediction
  horizon (``horizon_min``), with its event time, its descriptive ``attributes``, every stored
  feature as of that horizon (one frozen map, so a rebuild overwrites the cell without a
  tombstone), the outcome and the label (None until known);
- ``feature_partitions``: one small row per built date (entities, labelled, Kafka lineage), in
  the partition of the domain's name.

``RawReader`` reads raw-event partitions for the builders, parsing each at most once per run.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
import orjson
import pandas as pd
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args

from streamfit.cassandra import FAST_ROWS, as_utc, cql_date, partition_batches, rows_per_batch
from streamfit.domains import ENTITY_ID, EVENT_TIME, HORIZON, LABEL, OUTCOME, Domain, TileSpec
from streamfit.store import RAW_BUCKETS, IngestStore
from streamfit.tiles import TIME_NS, event_times

#: Parsed raw partitions kept by one reader: a date's window in the flights domain is 69 of
#: them (arrivals and schedules of 32 event dates, weather and departures of two), with room to
#: spare.
CACHED_PARTITIONS = 96
#: The column of ``features_for`` that says where a row's features came from.
FEATURE_SOURCE = "feature_source"
#: Values derived from raw partitions kept by one reader, under the same expiry as the
#: partitions: in the flights domain a date's context and its scheduled inputs, so a
#: ``POST /score`` of STREAMFIT_API_MAX_SCORE_DATES dates (3 by default) keeps all six.
CACHED_DERIVED = 8
#: The same for a build's reader, which walks dates in order and reuses a date's derived values
#: only across that date's horizons: a flights context at ``--scale 4`` holds ~10 MB of
#: arrivals, and keeping eight cost a build ~100 MiB of RSS.
CACHED_DERIVED_BUILD = 2


class ReadBudgetExceeded(RuntimeError):
    """The work asked for needs more Cassandra partition reads than it may cause."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"needs more than {limit} partition reads")
        self.limit = limit


#: [reads left, the limit] for the code running in this context (None: unbounded).
_reads_left: ContextVar[list[int] | None] = ContextVar("reads_left", default=None)


@contextmanager
def read_budget(limit: int) -> Iterator[None]:
    """Inside, raw reads that miss the cache may cost at most ``limit`` partition reads in all;
    the read that would pass it raises ReadBudgetExceeded before reaching Cassandra (the HTTP
    server bounds one request's cost this way)."""
    token = _reads_left.set([limit, limit])
    try:
        yield
    finally:
        _reads_left.reset(token)


def _charge(reads: int) -> None:
    left = _reads_left.get()
    if left is None:
        return
    if left[0] < reads:
        raise ReadBudgetExceeded(left[1])
    left[0] -= reads

INSERT_FEATURES = """
INSERT INTO {ks}.features_by_horizon (day, entity_id, horizon_min, event_time, attributes,
                                      feature_values, outcome, label, feature_version, built_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
SELECT_FEATURE_ROW = """
SELECT feature_values, feature_version FROM {ks}.features_by_horizon
WHERE day = ? AND entity_id = ? AND horizon_min = ?"""
SELECT_FEATURES = """
SELECT entity_id, horizon_min, event_time, attributes, feature_values, outcome, label
FROM {ks}.features_by_horizon WHERE day = ?"""
INSERT_PARTITION = """
INSERT INTO {ks}.feature_partitions (feature_set, day, entities, labelled, sources, built_at)
VALUES (?, ?, ?, ?, ?, ?)"""
SELECT_PARTITIONS = """
SELECT day, entities, labelled, sources, built_at FROM {ks}.feature_partitions
WHERE feature_set = ?"""

INSERT_TILES = """
INSERT INTO {ks}.feature_tiles (family, day, tiles, tile_count, built_at) VALUES (?, ?, ?, ?, ?)"""
#: a read making a day nobody made: never over a cell the feature stage wrote meanwhile (it read
#: newer raw events)
INSERT_TILES_IF_ABSENT = INSERT_TILES + " IF NOT EXISTS"
SELECT_TILES = """
SELECT day, tiles FROM {ks}.feature_tiles WHERE family = ? AND day >= ? AND day <= ?"""
SELECT_TILE_DAYS = """
SELECT day FROM {ks}.feature_tiles WHERE family = ? AND day >= ? AND day <= ?"""


@dataclass(frozen=True)
class BuildResult:
    day: date
    entities: int
    labelled: int


def feature_rows(domain: Domain, day: date, frame: pd.DataFrame, built_at: datetime
                 ) -> tuple[list[tuple[Any, ...]], BuildResult]:
    """The ``features_by_horizon`` rows of a builder's frame for ``day`` (in INSERT_FEATURES'
    column order), and the date's summary. Both engines store exactly these."""
    names = domain.stored
    columns = list(domain.entity.columns)
    values = frame.reindex(columns=names).to_numpy(dtype=float)
    attrs = frame[columns].astype(str).to_numpy() if columns else None
    times = pd.to_datetime(frame[EVENT_TIME], utc=True)
    params = []
    labelled: set[str] = set()
    for i, (entity, horizon, when, outcome, label) in enumerate(zip(
            frame[ENTITY_ID], frame[HORIZON], times, frame[OUTCOME], frame[LABEL],
            strict=True)):
        known = label is not None and not pd.isna(label)
        if known:
            labelled.add(str(entity))
        params.append((day, str(entity), int(horizon), when.to_pydatetime(),
                       dict(zip(columns, attrs[i], strict=True)) if attrs is not None else {},
                       dict(zip(names, values[i].tolist(), strict=True)),
                       None if pd.isna(outcome) else float(outcome),
                       bool(label) if known else None, domain.features.version, built_at))
    return params, BuildResult(day, int(frame[ENTITY_ID].nunique()), len(labelled))


def feature_row_bytes(domain: Domain) -> int:
    """A ``features_by_horizon`` row's size, estimated from its names: each map entry is its
    key, an 8-byte double and two 4-byte lengths; attributes take about 16 bytes a value."""
    names = domain.stored
    return 128 + sum(len(n.encode()) + 16 for n in names) + sum(
        len(c.encode()) + 24 for c in domain.entity.columns)


def build_frame(domain: Domain, raw: Any, day: date) -> pd.DataFrame:
    """``day``'s rows at every horizon from the domain's builder (empty: no entity that day)."""
    spec = domain.features
    frames = [spec.build_day(raw, day, spec.horizons[name]).assign(**{HORIZON: minutes})
              for minutes, name in spec.horizon_minutes.items()]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stored_frame(domain: Domain, entities: Iterable[Any], horizons: Iterable[Any],
                 times: Iterable[Any], attributes: Iterable[Any], values: Iterable[Any],
                 outcomes: Iterable[Any], labels: Iterable[Any]) -> pd.DataFrame:
    """Stored feature rows as a frame: entity_id, horizon_min, event_time, the entity's
    columns, every stored feature and label measure (NaN where a row lacks one), outcome and
    label. Both engines' scoring reads rows through this."""
    names = domain.stored
    nan = float("nan")
    data = pd.DataFrame([[(v or {}).get(n, nan) for n in names] for v in values], columns=names,
                        dtype=float)
    attrs = [a or {} for a in attributes]
    meta: dict[str, list[Any]] = {ENTITY_ID: list(entities), HORIZON: list(horizons),
                                  EVENT_TIME: [as_utc(t) for t in times]}
    for c in domain.entity.columns:
        meta[c] = [a.get(c) for a in attrs]
    meta[OUTCOME] = list(outcomes)
    meta[LABEL] = list(labels)
    return pd.concat([pd.DataFrame(meta), data], axis=1)


class Lru:
    """At most ``size`` values by key, least recently used out first; with ``ttl_s``, a value
    older than that is made again. Thread-safe: the API's handlers share one reader."""

    def __init__(self, size: int, ttl_s: float | None = None) -> None:
        self.size = size
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._items: OrderedDict[object, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: object, make: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (self._ttl is None or now - hit[0] <= self._ttl):
                self._items.move_to_end(key)
                return hit[1]
        value = make()  # outside the lock: other keys are served meanwhile
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class RawReader:
    """Parsed payloads of raw-event partitions. Consecutive dates share most of their window
    (a full flights rebuild asked each partition ~60 times), so a small LRU of parsed
    partitions keeps it to about one read each; memory stays bounded by CACHED_PARTITIONS."""

    def __init__(self, session: Session, keyspace: str, cache_ttl_s: float | None = None) -> None:
        """``cache_ttl_s``: how long a parsed partition may be reused. None (a build run, which
        is short): for the whole run. A long-lived reader (the API) passes a few seconds, so
        data that lands later is seen."""
        self.store = IngestStore(session, keyspace)
        self.tile_store: TileStore | None = None
        self._cache = Lru(CACHED_PARTITIONS, cache_ttl_s)
        self._derived = Lru(CACHED_DERIVED_BUILD if cache_ttl_s is None else CACHED_DERIVED,
                            cache_ttl_s)

    def payloads(self, day: date, event_type: str) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            _charge(RAW_BUCKETS)
            return [orjson.loads(p) for p in self.store.read_payloads(day, event_type)]

        return self._cache.get((day, event_type), read)  # type: ignore[no-any-return]

    def frame(self, days: Iterable[date], event_type: str) -> pd.DataFrame:
        return pd.DataFrame([row for d in days for row in self.payloads(d, event_type)])

    def tiles(self, first: date, last: date) -> dict[str, pd.DataFrame] | None:
        """The domain's tiles of ``first``..``last`` (``TileStore.read``); None: it keeps none,
        and its builder recomputes from the raw events."""
        return self.tile_store.read(first, last) if self.tile_store is not None else None

    def tile_sources(self, days: Iterable[date]) -> pd.DataFrame | None:
        """The tile source events of ``days`` (``TileStore.source``, each day kept like a
        parsed partition); None: it keeps none."""
        tiles = self.tile_store
        if tiles is None:
            return None
        frames = [self._cache.get((d, SOURCE), partial(tiles.source, d)) for d in days]
        return pd.concat(frames, ignore_index=True) if frames else None

    def memo(self, key: object, make: Callable[[], Any]) -> Any:
        """``make()``, reused under ``key`` for as long as a parsed partition would be: a
        builder keeps what it derives from many partitions (a date's context) across the
        horizons of a build, or across requests in the API (CACHED_DERIVED values; a build's
        reader, without expiry, CACHED_DERIVED_BUILD)."""
        return self._derived.get(key, make)


def encode_tiles(tiles: pd.DataFrame, value: str) -> bytes:
    """One family's tiles of one day as a cell: JSON columns key, hour (ns), n, s (orjson
    writes floats so that they read back to the same bits)."""
    return orjson.dumps({"key": tiles["key"].tolist(), "hour": tiles["hour"].astype("int64").tolist(),
                         "n": tiles[f"n_{value}"].astype("int64").tolist(),
                         "s": tiles[f"s_{value}"].astype(float).tolist()})


#: The family name under which ``feature_tiles`` keeps each day's source events (its key, time
#: and value columns): a window's partial hours read them instead of the raw partitions that
#: ``TileSpec.source`` joins (a third of a tiled build went to reading and joining those).
SOURCE = "_source"


def _source_columns(spec: TileSpec) -> tuple[list[str], set[str]]:
    """The columns a source cell keeps (every family's keys and value, and the time), and
    which of them are values."""
    values = {v for _, v in spec.families.values()}
    keys = {c for cols, _ in spec.families.values() for c in cols}
    return sorted(keys | {spec.time} | values), values


def encode_source(events: pd.DataFrame, spec: TileSpec) -> bytes:
    """A day's source events (``spec.source``) as a cell: JSON columns (missing values as
    null)."""
    columns, _ = _source_columns(spec)
    frame = events.reindex(columns=columns)
    return orjson.dumps({c: frame[c].astype(object).where(frame[c].notna(), None).tolist()
                         for c in columns})


def decode_source(cells: Iterable[bytes], spec: TileSpec) -> pd.DataFrame:
    """Several days' source events as one frame: the values as floats, the others as read."""
    columns, values = _source_columns(spec)
    out: dict[str, list[Any]] = {c: [] for c in columns}
    for cell in cells:
        d = orjson.loads(cell)
        for c in columns:
            out[c] += d[c]
    frame = pd.DataFrame({c: np.asarray(v, dtype=float) if c in values
                          else np.asarray(v, dtype=object) for c, v in out.items()})
    # the times parsed once here, where the reader keeps the frame, not by every window made
    # from it (parsing them was a fifth of a chunk's tiled windows on Spark)
    frame[TIME_NS] = event_times(frame[spec.time]) if len(frame) else np.empty(0, "int64")
    return frame


def decode_tiles(cells: Iterable[bytes], value: str) -> pd.DataFrame:
    """The tiles of several cells of one family as one frame (one frame, not one per cell:
    making 279 small frames was most of a read)."""
    keys: list[str] = []
    hours: list[int] = []
    n: list[int] = []
    s: list[float] = []
    for cell in cells:
        d = orjson.loads(cell)
        keys += d["key"]
        hours += d["hour"]
        n += d["n"]
        s += d["s"]
    return pd.DataFrame({"key": np.asarray(keys, dtype=object),
                         "hour": np.asarray(hours, dtype="int64"),
                         f"n_{value}": np.asarray(n, dtype="int64"),
                         f"s_{value}": np.asarray(s, dtype=float)})


class TileStore:
    """``feature_tiles``: each tile family's hourly tiles (``streamfit.tiles``), one cell per
    family and day, made from the raw events alone. The feature stage makes again the days its
    landed ranges touch (``refresh``) before it builds; a read makes a day nobody made yet.

    A family's cells sit under ``<family>@v<feature version>``: a new feature version (which may
    count differently) never reads the cells an older one made, and makes its own as it reads."""

    def __init__(self, session: Session, keyspace: str, domain: Domain, raw: RawReader) -> None:
        spec = domain.features.tiles
        if spec is None:
            raise ValueError(f"the {domain.name} domain keeps no tiles (FeatureSpec.tiles)")
        if SOURCE in spec.families:
            raise ValueError(f"the {domain.name} domain names a tile family {SOURCE!r}, which "
                             "feature_tiles keeps for the source events: rename it")
        self.session, self.spec, self.raw = session, spec, raw
        self.version = domain.features.version
        self._insert = session.prepare(INSERT_TILES.format(ks=keyspace))
        self._insert_absent = session.prepare(INSERT_TILES_IF_ABSENT.format(ks=keyspace))
        self._select = session.prepare(SELECT_TILES.format(ks=keyspace))
        self._select_days = session.prepare(SELECT_TILE_DAYS.format(ks=keyspace))

    @property
    def cells(self) -> dict[str, str]:
        """Each family (and the kept source events, ``SOURCE``) -> the ``family`` key its cells
        sit under for this feature version."""
        return {name: self._key(name) for name in [*self.spec.families, SOURCE]}

    def made_days(self, first: date, last: date) -> set[date]:
        """The days of ``first``..``last`` that have every cell (each family's and the source
        events'): a build can read them without making any."""
        made: set[date] | None = None
        for key in self.cells.values():
            days = {cql_date(r.day) for r in self.session.execute(self._select_days,
                                                                  (key, first, last))}
            made = days if made is None else made & days
        return made or set()

    def refresh(self, days: Iterable[date], missing_only: bool = False) -> int:
        """Make the tiles of ``days`` again from the raw events; the number of days.
        ``missing_only``: write a cell only where none is (a read filling a gap must not
        overwrite what a feature-stage run wrote from newer events meanwhile)."""
        from streamfit.tiles import day_tiles

        now = datetime.now(UTC)
        params = []
        wanted = sorted(set(days))
        for day in wanted:
            events = self.spec.source(self.raw, day)
            for family, tiles in day_tiles(self.spec, self.raw, day, events).items():
                value = self.spec.families[family][1]
                params.append((self._key(family), day, encode_tiles(tiles, value), len(tiles),
                               now))
            params.append((self._key(SOURCE), day, encode_source(events, self.spec),
                           len(events), now))
        execute_concurrent_with_args(self.session,
                                     self._insert_absent if missing_only else self._insert,
                                     params, concurrency=32, raise_on_first_error=True)
        return len(wanted)

    def _cells(self, first: date, last: date, families: Iterable[str] | None = None
               ) -> dict[str, dict[date, bytes]]:
        cells: dict[str, dict[date, bytes]] = {}
        for family in self.spec.families if families is None else families:
            rows = self.session.execute(self._select, (self._key(family), first, last))
            cells[family] = {cql_date(r.day): r.tiles for r in rows}
        return cells

    def _key(self, family: str) -> str:
        return f"{family}@v{self.version}"

    def _complete(self, days: list[date], families: Iterable[str] | None = None
                  ) -> dict[str, dict[date, bytes]]:
        """The cells of ``days`` (of ``families``; None: every family), making the days that
        lack one first (``refresh(missing_only=True)``)."""
        families = list(self.spec.families if families is None else families)
        cells = self._cells(days[0], days[-1], families)
        missing = [d for d in days if any(d not in c for c in cells.values())]
        if missing:
            self.refresh(missing, missing_only=True)
            cells = self._cells(days[0], days[-1], families)
        return cells

    def source(self, day: date) -> pd.DataFrame:
        """The source events of ``day`` (``TileSpec.source``, as kept by ``refresh``)."""
        return decode_source([self._complete([day], [SOURCE])[SOURCE][day]], self.spec)

    def read(self, first: date, last: date) -> dict[str, pd.DataFrame]:
        """Every family's tiles of ``first``..``last``; days not made yet are made first."""
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        cells = self._complete(days)
        out = {}
        for family, by_day in cells.items():
            value = self.spec.families[family][1]
            out[family] = decode_tiles((by_day[d] for d in days), value)
        return out


class FeatureStore:
    def __init__(self, session: Session, keyspace: str, domain: Domain,
                 cache_ttl_s: float | None = None) -> None:
        self.session = session
        self.domain = domain
        self.raw = RawReader(session, keyspace, cache_ttl_s)
        self.tiles = (TileStore(session, keyspace, domain, self.raw)
                      if domain.features.tiles is not None else None)
        self.raw.tile_store = self.tiles
        self._insert = session.prepare(INSERT_FEATURES.format(ks=keyspace))
        self._rows_per_batch = rows_per_batch(feature_row_bytes(domain))
        self._select = session.prepare(SELECT_FEATURES.format(ks=keyspace))
        self._select_row = session.prepare(SELECT_FEATURE_ROW.format(ks=keyspace))
        self._insert_partition = session.prepare(INSERT_PARTITION.format(ks=keyspace))
        self._partitions = session.prepare(SELECT_PARTITIONS.format(ks=keyspace))

    def partitions(self) -> pd.DataFrame:
        """The built entity dates (one small partition): day, entities, labelled, sources,
        built_at."""
        rows = list(self.session.execute(self._partitions, (self.domain.name,)))
        return pd.DataFrame([{"day": cql_date(r.day), "entities": r.entities,
                              "labelled": r.labelled, "sources": json.loads(r.sources or "{}"),
                              "built_at": r.built_at} for r in rows])

    def build_day(self, day: date, sources: dict[str, Any] | None = None) -> BuildResult:
        """Build ``day``'s rows at every horizon with the domain's builder and write them (a
        rebuild overwrites)."""
        frame = build_frame(self.domain, self.raw, day)
        if frame.empty:
            return BuildResult(day, 0, 0)
        return self.write_day(day, frame, sources)

    def write_day(self, day: date, frame: pd.DataFrame,
                  sources: dict[str, Any] | None = None) -> BuildResult:
        """Write ``frame``'s rows (one per entity and ``horizon_min``) and the date's summary:
        its entities, and those labelled."""
        now = datetime.now(UTC)
        params, result = feature_rows(self.domain, day, frame, now)
        # One date is one partition: its rows travel in unlogged batches.
        execute_concurrent(self.session, partition_batches(
            self._insert, params, self._rows_per_batch, lambda row: row[0]),
            concurrency=16, raise_on_first_error=True, results_generator=False)
        self.record_partition(result, sources, now)
        return result

    def record_partition(self, result: BuildResult, sources: dict[str, Any] | None,
                         built_at: datetime) -> None:
        """The date's summary row, once its feature rows are durable (whichever engine wrote
        them): its entities, those labelled, and the Kafka offsets it was built from."""
        self.session.execute(self._insert_partition, (
            self.domain.name, result.day, result.entities, result.labelled,
            json.dumps(sources or {}), built_at))

    def read_day(self, day: date) -> pd.DataFrame:
        """``day``'s rows, one per entity and horizon (``stored_frame``)."""
        rows = list(self.session.execute(self._select, (day,)))
        if not rows:
            return pd.DataFrame()
        return stored_frame(self.domain, [r.entity_id for r in rows],
                            [r.horizon_min for r in rows], [r.event_time for r in rows],
                            [r.attributes for r in rows], [r.feature_values for r in rows],
                            [r.outcome for r in rows], [r.label for r in rows])

    def features_for(self, entities: pd.DataFrame, stored: bool = False) -> pd.DataFrame:
        """Point-in-time features of entities given in a request, as of the freshest horizon
        (``POST /score``, transient requests), in their order: computed now from the raw
        events, or, with ``stored`` (the caller knows every landed event is built), read from
        the stored row of each entity the domain says was built from exactly these inputs.
        Column ``feature_source`` says which ("computed" or "stored")."""
        spec = self.domain.features
        if spec.build_for is None:
            raise NotImplementedError(f"the {self.domain.name} domain does not score entities "
                                      "given in a request")
        minutes, name = next(iter(spec.horizon_minutes.items()))
        entities = entities.reset_index(drop=True)
        found: dict[int, dict[str, float]] = {}
        if stored and spec.built_as_given is not None:
            found = self._stored_rows(entities, spec.built_as_given(self.raw, entities), minutes)
        rest = [i for i in range(len(entities)) if i not in found]
        parts = []
        if found:
            e = self.domain.entity
            rows = sorted(found)
            names = list(spec.names)
            nan = float("nan")
            # one block of floats, then the few key columns: cheap enough for a request
            part = pd.DataFrame(np.array([[found[i].get(n, nan) for n in names] for i in rows],
                                         dtype=float).reshape(len(rows), len(names)),
                                columns=names)
            part.insert(0, ENTITY_ID, [str(entities.at[i, e.key]) for i in rows])
            part[EVENT_TIME] = pd.to_datetime(entities[e.time].iloc[rows], utc=True).to_numpy()
            part[FEATURE_SOURCE] = "stored"
            part["_order"] = rows
            parts.append(part)
        if rest:
            parts.append(spec.build_for(self.raw, entities.iloc[rest], spec.horizons[name])
                         .assign(_order=rest, **{FEATURE_SOURCE: "computed"}))
        out = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        if len(parts) > 1:
            out = out.sort_values("_order", kind="stable")
        out = out.drop(columns="_order").reset_index(drop=True)
        out[HORIZON] = minutes
        return out

    def _stored_rows(self, entities: pd.DataFrame, same: Any, minutes: int
                     ) -> dict[int, dict[str, float]]:
        """Row index -> stored feature values, for the rows ``same`` marks whose stored row
        exists at ``minutes`` and has the domain's current feature version."""
        e = self.domain.entity
        wanted = [i for i in range(len(entities)) if same[i]]
        if not wanted:
            return {}
        days = pd.to_datetime(entities[e.time], utc=True).dt.date
        results = execute_concurrent_with_args(
            self.session, self._select_row,
            [(days.iat[i], str(entities.at[i, e.key]), minutes) for i in wanted],
            concurrency=32, raise_on_first_error=True, execution_profile=FAST_ROWS)
        version = self.domain.features.version
        out = {}
        for i, (_ok, rows) in zip(wanted, results, strict=True):
            row = rows.one()
            if row is not None and row.feature_version == version and row.feature_values:
                out[i] = dict(row.feature_values)
        return out
