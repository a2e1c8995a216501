"""The Spark engine's pure parts: what a chunk of dates reads, and how a task's rows are read
back as a feature builder reads Cassandra (no services: the same builder, fed in memory)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import orjson
import pandas as pd
import pytest

from features.spark_build import FrameRaw, build_chunk, chunks_of, partition_keys
from streamfit.domains import ENTITY_ID, HORIZON, ReplayOptions, load_domain
from streamfit.featurestore import build_frame, feature_rows
from streamfit.store import RAW_BUCKETS, bucket_of
from tests.replay import one_origin

FLIGHTS = load_domain("flights")
DAY = date(2013, 3, 5)


class Recording:
    """Raw events in memory (what Cassandra would return), recording each partition read."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.by: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            self.by[(date.fromisoformat(str(e["event_time"])[:10]), str(e["event_type"]))].append(
                e["payload"])
        self.read: set[tuple[date, str]] = set()

    def payloads(self, day: date, event_type: str) -> list[dict[str, Any]]:
        self.read.add((day, event_type))
        return self.by.get((day, event_type), [])

    def frame(self, days: Iterable[date], event_type: str) -> pd.DataFrame:
        return pd.DataFrame([p for d in days for p in self.payloads(d, event_type)])


@pytest.fixture(scope="module")
def march() -> list[dict[str, Any]]:
    return one_origin(list(FLIGHTS.replay("nycflights13", ReplayOptions(
        DAY - timedelta(days=33), DAY + timedelta(days=2)))))


def test_a_date_reads_only_the_partitions_its_domain_declares(march: list[dict[str, Any]]
                                                              ) -> None:
    """Spark fetches exactly FeatureSpec.reads(day) for a date: a read outside it would see
    nothing there, so the declaration must cover every read the builder makes."""
    raw = Recording(march)
    frame = build_frame(FLIGHTS, raw, DAY)
    assert len(frame) > 300
    declared = set(FLIGHTS.features.reads(DAY))  # type: ignore[misc]
    assert raw.read <= declared and raw.read  # nothing read beyond the declaration
    assert {t for _, t in declared} == {"flight_scheduled", "flight_arrived", "flight_departed",
                                        "weather_observed"}


def test_a_task_rebuilds_its_dates_from_its_rows_as_the_store_would(
        march: list[dict[str, Any]]) -> None:
    """FrameRaw hands a builder the rows one task was given, per event date and type, in the
    pandas engine's read order; the rows it makes are the store's rows."""
    rows = pd.DataFrame([{
        "event_date": date.fromisoformat(str(e["event_time"])[:10]),
        "bucket": bucket_of(str(e["entity_key"])), "event_type": e["event_type"],
        "event_time": pd.Timestamp(e["event_time"]), "event_id": e["event_id"],
        "payload": orjson.dumps(e["payload"]).decode()} for e in march])
    shuffled = rows.sample(frac=1.0, random_state=3)  # Spark gives a task its rows in any order
    built_at = pd.Timestamp("2026-12-01", tz="UTC").to_pydatetime()
    days = [DAY, DAY + timedelta(days=1)]
    out, summaries = build_chunk(FLIGHTS, days, shuffled, built_at)
    assert [r.day for r in summaries] == days
    raw = Recording(march)
    expected = [r for d in days
                for r in feature_rows(FLIGHTS, d, build_frame(FLIGHTS, raw, d), built_at)[0]]
    assert len(out) == len(expected) > 600
    got = out.sort_values(["day", ENTITY_ID, HORIZON]).reset_index(drop=True)
    want = pd.DataFrame(expected, columns=[*out.columns[:5], "feature_values", *out.columns[6:]])
    want = want.sort_values(["day", ENTITY_ID, HORIZON]).reset_index(drop=True)
    assert got[ENTITY_ID].tolist() == want[ENTITY_ID].tolist()
    for mine, theirs in zip(got["feature_json"], want["feature_values"], strict=True):
        assert orjson.loads(mine.replace("NaN", "null")) == {
            k: (None if v != v else v) for k, v in theirs.items()}

    # within one (date, type), payloads come back in bucket, time, id order
    back = FrameRaw(shuffled).payloads(DAY, "flight_departed")
    order = rows[(rows.event_date == DAY) & (rows.event_type == "flight_departed")].sort_values(
        ["bucket", "event_time", "event_id"])
    assert back == [orjson.loads(p) for p in order["payload"]]


def test_chunks_and_their_partition_keys() -> None:
    days = [date(2013, 3, 1) + timedelta(days=i) for i in range(10)]
    chunks = chunks_of([*days, days[0]], 4)
    assert chunks == [days[:4], days[4:8], days[8:]]
    keys = partition_keys(FLIGHTS, chunks)
    # every partition of every date's declared reads, for each of its buckets, once per chunk
    for i, chunk in enumerate(chunks):
        wanted = {(d, t) for day in chunk for d, t in FLIGHTS.features.reads(day)}  # type: ignore[misc]
        mine = [(d, b, t) for c, d, b, t in keys if c == i]
        assert len(mine) == len(set(mine)) == len(wanted) * RAW_BUCKETS


def test_a_domain_that_declares_no_reads_is_refused_with_the_fix() -> None:
    deliveries = load_domain("deliveries")
    with pytest.raises(ValueError, match="STREAMFIT_ENGINE=pandas"):
        partition_keys(deliveries, [[date(2024, 1, 1)]])


def test_a_task_keeps_a_bounded_number_of_partitions_parsed() -> None:
    """A chunk's rows span many windows; FrameRaw parses at most CACHED_PARTITIONS of them at
    once (and derived values of CACHED_DERIVED_BUILD dates), and re-parses an evicted one the
    same way."""
    from streamfit.featurestore import CACHED_DERIVED_BUILD, CACHED_PARTITIONS

    days = [DAY + timedelta(days=i) for i in range(CACHED_PARTITIONS + 10)]
    rows = pd.DataFrame([{
        "event_date": d, "bucket": 0, "event_type": "weather_observed",
        "event_time": pd.Timestamp(d, tz="UTC"), "event_id": f"e{i}",
        "payload": orjson.dumps({"n": i}).decode()} for i, d in enumerate(days)])
    raw = FrameRaw(rows)
    first = raw.payloads(days[0], "weather_observed")
    for d in days:
        raw.payloads(d, "weather_observed")
    assert len(raw._parsed) == CACHED_PARTITIONS
    assert raw.payloads(days[0], "weather_observed") == first == [{"n": 0}]
    made = [raw.memo(d, lambda d=d: d.isoformat()) for d in days[:5]]
    assert made == [d.isoformat() for d in days[:5]] and len(raw._memo) == CACHED_DERIVED_BUILD


def _rows(events: list[dict[str, Any]], partitions: set[tuple[date, str]] | None = None
          ) -> pd.DataFrame:
    """The raw_events rows of ``events`` (of ``partitions`` only, when given), as a task gets
    them."""
    rows = pd.DataFrame([{
        "event_date": date.fromisoformat(str(e["event_time"])[:10]),
        "bucket": bucket_of(str(e["entity_key"])), "event_type": e["event_type"],
        "event_time": pd.Timestamp(e["event_time"]), "event_id": e["event_id"],
        "payload": orjson.dumps(e["payload"]).decode()} for e in events])
    if partitions is not None:
        rows = rows[[(d, t) in partitions for d, t in zip(rows["event_date"], rows["event_type"],
                                                           strict=True)]]
    return rows


def _tile_rows(events: list[dict[str, Any]], days: list[date]) -> pd.DataFrame:
    """The feature_tiles cells of ``days`` (every family's and the source events'), made from
    ``events`` as TileStore.refresh makes them, as a task gets them."""
    from streamfit.featurestore import SOURCE, encode_source, encode_tiles
    from streamfit.tiles import day_tiles

    spec = FLIGHTS.features.tiles
    assert spec is not None
    raw = FrameRaw(_rows(events))
    out = []
    for day in days:
        source = spec.source(raw, day)
        for name, tiles in day_tiles(spec, raw, day, source).items():
            out.append((name, day, encode_tiles(tiles, spec.families[name][1])))
        out.append((SOURCE, day, encode_source(source, spec)))
    return pd.DataFrame(out, columns=["name", "day", "tiles"])


def test_a_tiled_chunk_builds_the_same_rows_from_a_fraction_of_the_raw_partitions(
        march: list[dict[str, Any]]) -> None:
    """A chunk that reads tiles is given only TileSpec.reads of its dates (a build reading
    anything else would see nothing there) and the tile cells of TileSpec.span: its rows equal
    the rows recomputed from a month of raw events. A tile day it was not given fails the
    task, naming the day, instead of a silent recomputation from events it does not hold."""
    from features.spark_build import tile_days

    spec = FLIGHTS.features.tiles
    assert spec is not None and spec.reads is not None and spec.span is not None
    days = [DAY, DAY + timedelta(days=1)]
    built_at = pd.Timestamp("2026-12-01", tz="UTC").to_pydatetime()
    full, full_summary = build_chunk(FLIGHTS, days, _rows(march), built_at)
    reads = {p for d in days for p in spec.reads(d)}
    assert len(reads) * 3 < len({p for d in days for p in FLIGHTS.features.reads(d)})  # type: ignore[misc]
    cells = _tile_rows(march, tile_days(spec, days))
    tiled, tiled_summary = build_chunk(FLIGHTS, days, _rows(march, reads), built_at, cells)
    assert tiled_summary == full_summary and len(full) > 600
    key = ["day", ENTITY_ID, HORIZON]
    a, b = (f.sort_values(key).reset_index(drop=True) for f in (full, tiled))
    pd.testing.assert_frame_equal(a.drop(columns="feature_json"), b.drop(columns="feature_json"))
    for mine, theirs in zip(b["feature_json"], a["feature_json"], strict=True):
        x, y = (orjson.loads(v.replace("NaN", "null")) for v in (mine, theirs))
        assert x.keys() == y.keys()
        assert all((x[k] is None and y[k] is None) or abs(x[k] - y[k]) <= 1e-9 for k in x), \
            [k for k in x if x[k] != y[k]]

    first = min(cells["day"])
    with pytest.raises(LookupError, match=f"no .* tiles of {first}"):
        build_chunk(FLIGHTS, days, _rows(march, reads), built_at,
                    cells[cells["day"] != first])


def test_only_chunks_with_every_tile_day_made_read_tiles() -> None:
    from features.spark_build import tile_days, tile_keys, tiled_chunks
    from streamfit.featurestore import SOURCE

    spec = FLIGHTS.features.tiles
    assert spec is not None and spec.span is not None
    days = [date(2013, 3, 1) + timedelta(days=i) for i in range(9)]
    chunks = chunks_of(days, 3)
    spans = [tile_days(spec, c) for c in chunks]
    # each chunk's tile days run from the first date's span start to its last date
    assert all(s[0] == spec.span(c[0])[0] and s[-1] == c[-1] for s, c in zip(spans, chunks,
                                                                             strict=True))
    made = set(spans[1]) | set(spans[2])
    made.discard(spans[2][-1])  # the last chunk's last day was never made
    assert tiled_chunks(FLIGHTS, chunks, made) == {1}
    assert tiled_chunks(load_domain("deliveries"), chunks, made) == set()  # declares no span
    cells = {name: f"{name}@v4" for name in [*spec.families, SOURCE]}
    keys = tile_keys(FLIGHTS, chunks, {1}, cells)
    assert len(keys) == len(set(keys)) == len(spans[1]) * len(cells)
    assert {(c, d) for c, _k, d, _n in keys} == {(1, d) for d in spans[1]}
    # a tiled chunk's raw reads are TileSpec.reads, the others' FeatureSpec.reads
    raw = partition_keys(FLIGHTS, chunks, {1})
    assert {(d, t) for c, d, _b, t in raw if c == 1} == {
        p for day in chunks[1] for p in spec.reads(day)}  # type: ignore[misc]
    assert {(d, t) for c, d, _b, t in raw if c == 0} == {
        p for day in chunks[0] for p in FLIGHTS.features.reads(day)}  # type: ignore[misc]
