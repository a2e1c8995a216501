"""Feature builds on Spark (``STREAMFIT_ENGINE=spark``): the job the feature stage submits.

Submitted by ``features.build.build_days`` through ``streamfit.spark.submit`` (from the
``build_features`` DAG's task, its time fallback, ``streamfit pipeline run`` and ``streamfit
features build``), and run inside spark-submit. The domain's own builder computes every row, in
pandas inside the Spark tasks (``applyInPandas``), so the point-in-time rules are written once;
Spark brings the raw events and the parallelism:

- the entity dates are cut into chunks of ``STREAMFIT_SPARK_CHUNK_DAYS`` consecutive dates, one
  Spark task each;
- a chunk whose tiles are made (``featurestore.TileStore``: every day of each date's
  ``TileSpec.span``) reads the same tiles the pandas engine reads, and only the raw partitions
  ``TileSpec.reads`` names (for flights, 4 days of arrivals instead of 30). A chunk with a tile
  day missing (a backfill over days no build made tiles for) reads ``FeatureSpec.reads`` and
  recomputes: the same features either way, as the parity tests check;
- those partitions and tile cells are fetched by key through the connector's direct join,
  never a scan, and cogrouped by chunk. Neighbouring dates share most of their windows, so a
  chunk reads each partition once;
- the task rebuilds its dates from those rows in the order the pandas engine reads them, and
  returns the ``features_by_horizon`` rows ``streamfit.featurestore.feature_rows`` makes;
- the rows are written through the connector; then the job's driver writes each date's
  ``feature_partitions`` summary and the build log row, as the pandas engine does.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
from pyspark.accumulators import AccumulatorParam

from streamfit.domains import Domain, TileSpec, load_domain
from streamfit.featurestore import (
    CACHED_DERIVED_BUILD,
    CACHED_PARTITIONS,
    SOURCE,
    BuildResult,
    Lru,
    build_frame,
    decode_source,
    decode_tiles,
    feature_rows,
)
from streamfit.store import RAW_BUCKETS, bucket_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from streamfit.settings import Settings
    from streamfit.workspace import Workspace

#: The rows of features_by_horizon as a Spark task returns them. The feature values travel as
#: JSON: Arrow turns a NaN inside a list or map into a null, which Cassandra refuses in a map,
#: while the pandas engine stores the NaN itself (a feature with no data).
ROW_SCHEMA = ("day date, entity_id string, horizon_min int, event_time timestamp, "
              "attributes map<string,string>, feature_json string, "
              "outcome double, label boolean, feature_version int, built_at timestamp")
ROW_COLUMNS = [c.split()[0] for c in ROW_SCHEMA.split(", ")]


class FrameRaw:
    """The raw events one Spark task was given, read as a feature builder reads Cassandra
    (``streamfit.domains.RawEvents``): per event date and type, in the pandas engine's order
    (bucket, then the partition's clustering order of event time and id).

    Given ``tiles`` (rows of ``feature_tiles``: ``name`` (the family, or ``SOURCE``), ``day``,
    ``tiles``) and the domain's ``spec``, it also keeps tiles as ``featurestore.RawReader``
    does, and the builder reads its long windows from them: the task was then given only
    ``TileSpec.reads`` of its dates. A tile day it was not given is an error, never a silent
    recomputation from raw events it does not hold."""

    def __init__(self, rows: pd.DataFrame, tiles: pd.DataFrame | None = None,
                 spec: TileSpec | None = None) -> None:
        rows = rows.sort_values(["event_date", "event_type", "bucket", "event_time", "event_id"],
                                kind="stable")
        self._payloads: dict[tuple[date, str], list[str]] = defaultdict(list)
        for day, event_type, payload in zip(rows["event_date"], rows["event_type"],
                                            rows["payload"], strict=True):
            self._payloads[(pd.Timestamp(day).date(), event_type)].append(payload)
        # Bounded as the pandas engine's reader is: a chunk's rows span its dates' windows, and
        # keeping every partition parsed and every date's context ran a Python worker to
        # 1.4 GiB for a chunk of 14 dates at --scale 4 (one date's window: ~0.65 GiB).
        self._parsed = Lru(CACHED_PARTITIONS)
        self._memo = Lru(CACHED_DERIVED_BUILD)
        self._spec = spec
        self._cells: dict[str, dict[date, bytes]] = defaultdict(dict)
        if tiles is not None and spec is not None:
            for name, day, cell in zip(tiles["name"], tiles["day"], tiles["tiles"], strict=True):
                self._cells[name][pd.Timestamp(day).date()] = bytes(cell)

    def _day_cells(self, name: str, days: Iterable[date]) -> list[bytes]:
        held = self._cells[name]
        missing = [d for d in days if d not in held]
        if missing:
            raise LookupError(
                f"this Spark task holds no {name} tiles of {missing[0]} ({len(missing)} days "
                "missing): the domain's TileSpec.span must cover every tile day its build reads")
        return [held[d] for d in days]

    def tiles(self, first: date, last: date) -> dict[str, pd.DataFrame] | None:
        """Every family's tiles of ``first``..``last`` (None: the task was given no tiles, and
        the builder recomputes from the raw events)."""
        if not self._cells or self._spec is None:
            return None
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        return {family: decode_tiles(self._day_cells(family, days), value)
                for family, (_keys, value) in self._spec.families.items()}

    def tile_sources(self, days: Iterable[date]) -> pd.DataFrame | None:
        """The kept source events of ``days`` (None without tiles)."""
        spec = self._spec
        if not self._cells or spec is None:
            return None

        def source(day: date) -> pd.DataFrame:
            return decode_source(self._day_cells(SOURCE, [day]), spec)

        frames = [self._parsed.get((d, SOURCE), partial(source, d)) for d in days]
        return pd.concat(frames, ignore_index=True) if frames else None

    @classmethod
    def of_events(cls, events: Iterable[dict[str, Any]]) -> FrameRaw:
        """Envelope dicts as their raw-event rows would land (event date, bucket, payload
        JSON): a build of them in this process reads what it would read from Cassandra."""
        events = list(events)
        return cls(pd.DataFrame({
            "event_date": [date.fromisoformat(e["event_time"][:10]) for e in events],
            "event_type": [e["event_type"] for e in events],
            "bucket": [bucket_of(e["entity_key"]) for e in events],
            "event_time": [e["event_time"] for e in events],
            "event_id": [e["event_id"] for e in events],
            "payload": [orjson.dumps(e["payload"]).decode() for e in events]}))

    def payloads(self, day: date, event_type: str) -> list[dict[str, Any]]:
        key = (day, event_type)
        return self._parsed.get(  # type: ignore[no-any-return]
            key, lambda: [orjson.loads(p) for p in self._payloads.get(key, ())])

    def frame(self, days: Iterable[date], event_type: str) -> pd.DataFrame:
        return pd.DataFrame([row for d in days for row in self.payloads(d, event_type)])

    def memo(self, key: object, make: Any) -> Any:
        return self._memo.get(key, make)


def chunks_of(days: Iterable[date], size: int) -> list[list[date]]:
    """Consecutive dates, ``size`` at a time."""
    ordered = sorted(set(days))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def partition_keys(domain: Domain, chunks: list[list[date]], tiled: Iterable[int] = ()
                   ) -> list[tuple[int, date, int, str]]:
    """(chunk, event date, bucket, event type) of every raw partition each chunk reads: the
    domain's ``TileSpec.reads`` for the ``tiled`` chunks, ``FeatureSpec.reads`` for others."""
    reads = domain.features.reads
    if reads is None:
        raise ValueError(f"the {domain.name} domain does not declare the raw partitions a date "
                         "reads (FeatureSpec.reads), which the Spark engine needs; set "
                         "STREAMFIT_ENGINE=pandas or add it")
    spec, tiled = domain.features.tiles, set(tiled)
    if tiled and (spec is None or spec.reads is None):
        raise ValueError(f"the {domain.name} domain declares no TileSpec.reads: no chunk can "
                         "read its tiles")
    wanted = {(i, d, t) for i, chunk in enumerate(chunks) for day in chunk
              for d, t in (spec.reads(day) if i in tiled and spec and spec.reads else reads(day))}
    return [(i, d, b, t) for i, d, t in sorted(wanted) for b in range(RAW_BUCKETS)]


def tile_days(spec: TileSpec, chunk: list[date]) -> list[date]:
    """Every day of tiles the builds of ``chunk`` read (``TileSpec.span`` of each date)."""
    assert spec.span is not None
    spans = [spec.span(day) for day in chunk]
    first, last = min(s[0] for s in spans), max(s[1] for s in spans)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def tiled_chunks(domain: Domain, chunks: list[list[date]], made: set[date]) -> set[int]:
    """The chunks whose every tile day is made (``TileStore.made_days``): they read tiles and
    the shorter ``TileSpec.reads``; the others read a month of raw events and recompute (the
    same features: the parity tests). None without the domain's ``TileSpec.reads`` and
    ``span``."""
    spec = domain.features.tiles
    if spec is None or spec.reads is None or spec.span is None:
        return set()
    return {i for i, chunk in enumerate(chunks) if set(tile_days(spec, chunk)) <= made}


def tile_keys(domain: Domain, chunks: list[list[date]], tiled: Iterable[int],
              cells: dict[str, str]) -> list[tuple[int, str, date, str]]:
    """(chunk, family key, day, name) of every tile cell the ``tiled`` chunks read; ``cells``:
    ``TileStore.cells`` (name -> the key its cells sit under)."""
    spec = domain.features.tiles
    assert spec is not None
    return [(i, key, day, name) for i in sorted(set(tiled)) for day in tile_days(spec, chunks[i])
            for name, key in cells.items()]


def build_chunk(domain: Domain, days: list[date], rows: pd.DataFrame, built_at: datetime,
                tiles: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[BuildResult]]:
    """The stored rows of ``days``, built from the raw ``rows`` of their windows (and their
    ``tiles``, when the chunk reads them), and the summary of each date that has entities."""
    raw = FrameRaw(rows, tiles if tiles is not None and len(tiles) else None,
                   domain.features.tiles)
    out: list[tuple[Any, ...]] = []
    results = []
    for day in days:
        frame = build_frame(domain, raw, day)
        if not frame.empty:
            params, result = feature_rows(domain, day, frame, built_at)
            out.extend((*row[:5], json.dumps(row[5]), *row[6:]) for row in params)
            results.append(result)
    table = pd.DataFrame(out, columns=ROW_COLUMNS)
    # Arrow wants one type per column: a label column of None and bools stays object
    table["label"] = table["label"].astype(object)
    return table, results


class _Summaries(AccumulatorParam):  # type: ignore[misc]
    """Date -> (entities, labelled), merged across tasks."""

    def zero(self, value: dict[date, tuple[int, int]]) -> dict[date, tuple[int, int]]:
        return {}

    def addInPlace(self, a: dict[date, tuple[int, int]], b: dict[date, tuple[int, int]]
                   ) -> dict[date, tuple[int, int]]:
        a.update(b)
        return a


def build_on_spark(spark: SparkSession, ws: Workspace, days: Iterable[date],
                   sources: dict[str, Any] | None = None,
                   timings: dict[str, float] | None = None) -> list[BuildResult]:
    """Build and write the feature partitions of ``days`` in the workspace with Spark; each built
    date's summary row is written after its feature rows. ``timings`` gets the seconds of each
    phase."""
    import time

    clock = timings if timings is not None else {}
    started = time.perf_counter()
    from pyspark.sql import functions as F

    from streamfit.spark import read_partitions, write_table

    domain, keyspace = ws.domain, ws.keyspace
    chunks = chunks_of(days, ws.settings.spark_chunk_days)
    if not chunks:
        return []
    store = ws.feature_store()
    tiled: set[int] = set()
    cells: dict[str, str] = {}
    spec = domain.features.tiles
    if store.tiles is not None and spec is not None and spec.span is not None:
        spans = [d for chunk in chunks for d in tile_days(spec, chunk)]
        cells = store.tiles.cells
        tiled = tiled_chunks(domain, chunks, store.tiles.made_days(min(spans), max(spans)))
    clock["tiled_chunks"] = len(tiled)
    clock["chunks"] = len(chunks)
    keys = spark.createDataFrame(partition_keys(domain, chunks, tiled),
                                 "chunk int, event_date date, bucket short, event_type string")
    raw = read_partitions(spark, keyspace, "raw_events", keys).select(
        "chunk", "event_date", "bucket", "event_type", "event_time", "event_id", "payload")
    # the tile cells of the chunks that read tiles, fetched by primary key as the raw rows are
    wanted = spark.createDataFrame(tile_keys(domain, chunks, tiled, cells),
                                   "chunk int, family string, day date, name string")
    tile_rows = read_partitions(spark, keyspace, "feature_tiles", wanted).select(
        "chunk", "name", "day", "tiles")
    built_at = datetime.now(UTC)
    domain_spec = ws.settings.domain  # each executor's Python worker loads the domain from it
    # Each task reports its dates' summaries through an accumulator instead of the job keeping
    # every row for a second pass: a year of rows held by the executors ran a 512 MB heap out
    # of memory. A retried task reports the same values again, which the merge absorbs.
    summaries = spark.sparkContext.accumulator({}, _Summaries())

    def build(key: tuple[Any, ...], rows: pd.DataFrame, tiles: pd.DataFrame) -> pd.DataFrame:
        out, results = build_chunk(load_domain(domain_spec), chunks[int(key[0])], rows,
                                   built_at, tiles)
        summaries.add({r.day: (r.entities, r.labelled) for r in results})
        return out

    # one task per chunk: repartitioning both sides by chunk puts each chunk's rows and tiles
    # in one place
    tasks = len(chunks)
    features = (raw.repartition(tasks, "chunk").groupBy("chunk")
                .cogroup(tile_rows.repartition(tasks, "chunk").groupBy("chunk"))
                .applyInPandas(build, ROW_SCHEMA)
                .withColumn("feature_values", F.from_json(
                    "feature_json", "map<string,double>", {"allowNonNumericNumbers": "true"}))
                .drop("feature_json"))
    write_table(features, keyspace, "features_by_horizon")
    clock["read_build_write_s"] = time.perf_counter() - started
    results = sorted((BuildResult(day, n, k) for day, (n, k) in summaries.value.items()),
                     key=lambda r: r.day)
    for result in results:
        store.record_partition(result, sources, built_at)
    return results


def job(spark: SparkSession, settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    """spark-submit's job: ``features.build.build_days`` with this engine's builder."""
    from features.build import build_days
    from streamfit.workspace import open_workspace

    days = [date.fromisoformat(d) for d in args["days"]]
    max_event_time = (datetime.fromisoformat(args["max_event_time"])
                      if args.get("max_event_time") else None)
    timings: dict[str, float] = {}
    with open_workspace(settings, args["keyspace"]) as ws:

        def builder(wanted: list[date], sources: dict[str, Any] | None) -> Iterator[BuildResult]:
            return iter(build_on_spark(spark, ws, wanted, sources, timings))

        summary = build_days(ws, days, args.get("sources"), max_event_time, builder=builder)
    return {**summary, "spark_timings": timings}
