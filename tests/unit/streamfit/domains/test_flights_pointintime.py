"""Point-in-time correctness of the flight features (pure functions, synthetic data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamfit.domains.flights.pointintime import LATE_MINUTES, MIN_SUPPORT, build_features, feature_names

ZONES = {"EWR": "America/New_York", "ORD": "America/Chicago", "HNL": "Pacific/Honolulu"}

T0 = pd.Timestamp("2013-03-01T12:00:00Z")
M = pd.Timedelta(minutes=1)


def _flights(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "flight_id": [f"F{i}" for i in range(n)], "carrier": ["UA"] * n, "origin": ["EWR"] * n,
        "dest": ["ORD"] * n, "tailnum": ["N1"] * n,
        "scheduled_departure": [T0 + pd.Timedelta(hours=i) for i in range(n)],
        "distance": [719.0] * n, "flight": [1545] * n,
        # 07:00 EST + 2 h 30 min in the air and on the ground -> 08:30 CST at O'Hare
        "scheduled_arrival_local": [f"{8 + i:02d}:30" for i in range(n)],
    })


def _history(times: list[pd.Timestamp], delays: list[float],
             flights: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"carrier": "UA", "origin": "EWR", "dest": "ORD", "sched_hour": 10,
                         "flight": flights or [1545] * len(times), "actual_arrival": times,
                         "arr_delay": delays, "air_time": 120.0})


WEATHER = pd.DataFrame({"origin": ["EWR", "EWR"],
                        "observed_at": [T0 - pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=5)],
                        "temp": [40.0, 99.0], "dewp": [30.0, 30.0], "humid": [50.0, 50.0],
                        "wind_speed": [10.0, 10.0], "wind_gust": [np.nan, np.nan],
                        "precip": [0.0, 0.0], "pressure": [1010.0, 1010.0], "visib": [10.0, 10.0]})
PLANES = pd.DataFrame({"tailnum": ["N1"], "year": [2004], "seats": [55], "engines": [2]})


def test_rates_count_only_arrivals_strictly_before_departure() -> None:
    before = [T0 - pd.Timedelta(hours=h) for h in range(1, 11)]  # 10 arrivals, 4 late
    delays = [60, 60, 60, 60, 0, 0, 0, 0, 0, 0]
    after = [T0, T0 + pd.Timedelta(minutes=30)]  # at/after F0's departure: invisible to F0
    hist = _history(before + after, delays + [120, 120])
    feats = build_features(_flights(), hist, WEATHER, PLANES).set_index("flight_id")
    assert feats.loc["F0", "n_carrier_7d"] == 10
    assert feats.loc["F0", "late_rate_carrier_7d"] == pytest.approx(0.4)
    # F1 departs an hour later and has seen both later arrivals (both late)
    assert feats.loc["F1", "n_carrier_7d"] == 12
    assert feats.loc["F1", "late_rate_carrier_7d"] == pytest.approx(6 / 12)


def test_windows_forget_old_arrivals() -> None:
    old = [T0 - pd.Timedelta(days=10, hours=h) for h in range(MIN_SUPPORT)]
    hist = _history(old, [LATE_MINUTES] * MIN_SUPPORT)
    feats = build_features(_flights(1), hist, WEATHER, PLANES).iloc[0]
    assert feats["n_carrier_7d"] == 0 and feats["n_carrier_28d"] == MIN_SUPPORT
    assert feats["late_rate_carrier_28d"] == 1.0


def test_weather_is_the_latest_observation_not_after_the_hour() -> None:
    feats = build_features(_flights(1), _history([], []), WEATHER, PLANES).iloc[0]
    assert feats["wx_temp"] == 40.0  # not the 99 observed five hours later


def test_changing_a_flights_own_actuals_leaves_its_features_unchanged() -> None:
    """Leakage test: a flight's arrival happens after its departure, so it cannot matter."""
    flights = _flights(1)
    base = [T0 - pd.Timedelta(hours=h) for h in range(1, 8)]
    own_arrival = T0 + pd.Timedelta(hours=2)
    a = build_features(flights, _history([*base, own_arrival], [0] * 7 + [0]), WEATHER, PLANES)
    b = build_features(flights, _history([*base, own_arrival], [0] * 7 + [500]), WEATHER, PLANES)
    c = build_features(flights, _history(base, [0] * 7), WEATHER, PLANES)  # removed entirely
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_plane_and_calendar_features() -> None:
    feats = build_features(_flights(1), _history([], []), WEATHER, PLANES).iloc[0]
    assert (feats["plane_year"], feats["plane_seats"], feats["plane_engines"]) == (2004, 55, 2)
    assert (feats["sched_hour"], feats["month"], feats["day_of_week"]) == (12, 3, T0.day_of_week)
    assert list(build_features(_flights(1), _history([], []), WEATHER, PLANES).columns) == [
        "flight_id", *feature_names()]


def test_event_dates_map_to_the_feature_dates_they_affect() -> None:
    from datetime import date

    from features.build import dates_to_rebuild
    from streamfit.domains import load_domain

    # event date E holds schedules of E+1's flights (earlier legs of E+2's early ones), weather
    # and departures of E, and arrivals of flights that departed on E or late on E-1
    assert dates_to_rebuild(load_domain("flights"), ["2013-03-01", "2013-03-02"]) == [
        date(2013, 2, 28), date(2013, 3, 1), date(2013, 3, 2), date(2013, 3, 3),
        date(2013, 3, 4)]


def test_offset_ranges_merge_per_topic_and_partition() -> None:
    from streamfit.progress import merge_offsets

    merged = merge_offsets([{"t": {"0": [10, 19], "1": [0, 4]}}, {"t": {"0": [20, 29]}},
                            {"u": {"0": [5, 5]}}])
    assert merged == {"t": {"0": [10, 29], "1": [0, 4]}, "u": {"0": [5, 5]}}


def test_a_resent_event_counts_once() -> None:
    from streamfit.domains.flights.features import _latest_per_flight

    frame = pd.DataFrame({"flight_id": ["A", "A", "B"], "arr_delay": [5.0, 50.0, 1.0],
                          "actual_arrival": ["2013-01-01T10:00Z", "2013-01-01T11:00Z",
                                             "2013-01-01T09:00Z"]})
    out = _latest_per_flight(frame, "actual_arrival").set_index("flight_id")
    assert len(out) == 2 and out.loc["A", "arr_delay"] == 50.0


def test_models_are_not_fed_features_that_only_tell_the_time() -> None:
    from streamfit.domains.flights.names import model_features

    used = model_features()
    assert set(used) < set(feature_names())
    assert not [n for n in used if n.startswith("n_")] and "day_of_year" not in used
    assert {"late_rate_route_28d", "wx_visib", "plane_seats", "sched_hour"} <= set(used)


def test_a_day_without_any_weather_yet_builds_with_missing_weather() -> None:
    """Seen in a full rebuild: an empty weather frame (object dtype) broke merge_asof."""
    empty = pd.DataFrame(columns=["origin", "observed_at"])
    feats = build_features(_flights(), _history([], []), empty, PLANES)
    assert len(feats) == 3 and feats["wx_temp"].isna().all()
    assert (feats["plane_seats"] == 55).all()


@pytest.mark.parametrize("hours", [2, 24])
def test_events_after_a_horizons_as_of_time_leave_its_features_unchanged(hours: int) -> None:
    """Leakage test per horizon: arrivals and weather after ``departure - horizon`` cannot
    matter to that horizon's features (they do matter at departure: the test can fail)."""
    horizon = pd.Timedelta(hours=hours)
    flights = _flights(1)
    as_of = T0 - horizon
    known = [as_of - pd.Timedelta(hours=h) for h in range(1, 8)]
    later = [as_of + pd.Timedelta(minutes=m) for m in (0, 30, 90)]  # at or after as-of
    weather = pd.concat([WEATHER.assign(observed_at=[as_of - pd.Timedelta(hours=1), T0]),
                         WEATHER.iloc[:1].assign(observed_at=as_of + pd.Timedelta(hours=1),
                                                 temp=-40.0)])

    def feats(delays_later: list[float], wx: pd.DataFrame, h: pd.Timedelta | None,
              air_later: float = 120.0) -> pd.DataFrame:
        hist = _history(known + later, [0.0] * 7 + delays_later)
        hist.loc[7:, "air_time"] = air_later  # time lost in the air by the later arrivals
        return build_features(flights, hist, wx, PLANES, h, zones=ZONES)

    base = feats([0.0] * 3, weather, horizon)
    changed = feats([500.0] * 3, weather.assign(temp=weather["temp"].where(
        weather["observed_at"] < as_of.floor("h"), 77.0)), horizon, air_later=400.0)
    pd.testing.assert_frame_equal(base, changed)
    assert base.iloc[0]["wx_temp"] == 40.0  # the observation before as-of, not the later ones
    # as of the departure the same changes are seen
    at_departure = feats([500.0] * 3, weather, None)
    assert at_departure.iloc[0]["late_rate_carrier_7d"] > feats([0.0] * 3, weather, None).iloc[0][
        "late_rate_carrier_7d"]
    assert at_departure.iloc[0]["mean_delay_flight_28d"] > base.iloc[0]["mean_delay_flight_28d"]


def test_flight_number_rates_follow_only_that_flight_number() -> None:
    """Flight 1545 was late 3 times of 5, another flight never; a 20-hour delay counts as 120
    minutes in the mean (clipped), and a request without a number gets the all-flights share."""
    times = [T0 - pd.Timedelta(days=d) for d in range(1, 11)]
    delays = [60.0, 1200.0, 20.0, 0.0, 0.0] + [0.0] * 5
    hist = _history(times, delays, [1545] * 5 + [7] * 5)
    feats = build_features(_flights(1), hist, WEATHER, PLANES).iloc[0]
    assert (feats["n_flight_7d"], feats["late_rate_flight_7d"]) == (5, pytest.approx(3 / 5))
    assert feats["mean_delay_flight_28d"] == pytest.approx((60 + 120 + 20) / 5)
    assert feats["mean_delay_route_7d"] == pytest.approx((60 + 120 + 20) / 7)  # days 1-7
    anonymous = build_features(_flights(1).drop(columns="flight"), hist, WEATHER, PLANES).iloc[0]
    assert anonymous["n_flight_7d"] == 0
    assert anonymous["late_rate_flight_7d"] == pytest.approx(feats["late_rate_carrier_28d"])


def test_time_lost_in_the_air_counts_the_arrivals_known_at_the_as_of_time() -> None:
    """Six flights to O'Hare landed in the hour before F0 leaves, 140 minutes in the air on a
    route that took 120 two days before, and each 30 minutes later than it left; one more lands
    300 minutes after its departure half an hour after F0 leaves, before F1 does. The route's
    mean is the one known at the build's first as-of time (1/64 minute)."""
    old = [T0 - pd.Timedelta(days=2, hours=h) for h in range(20)]
    recent = [T0 - pd.Timedelta(minutes=10 * k) for k in range(1, 7)]
    hist = pd.DataFrame({
        "flight_id": [f"O{i}" for i in range(20)] + [f"R{k}" for k in range(6)] + ["L"],
        "carrier": "UA", "origin": "EWR", "dest": "ORD", "sched_hour": 10, "flight": 7,
        "actual_arrival": [*old, *recent, T0 + pd.Timedelta(minutes=30)],
        "arr_delay": [0.0] * 20 + [40.0] * 6 + [100.0],
        "air_time": [120.0] * 20 + [140.0] * 6 + [300.0]})
    departed = _departed([(f"R{k}", T0 - H, 10.0) for k in range(6)] + [("L", T0 - H, 10.0)])
    feats = build_features(_flights(2), hist, WEATHER, PLANES, departures=departed)
    mean = round((20 * 120 + 6 * 140) / 26 * 64) / 64
    f0, f1 = feats.iloc[0], feats.iloc[1]
    for window in ("dest_3h", "dest_24h", "origin_2h", "all_2h"):
        assert f0[f"air_excess_{window}"] == 140 - mean  # exact: the mean is a binary fraction
        assert f1[f"air_excess_{window}"] == pytest.approx((6 * (140 - mean) + 300 - mean) / 7)
    assert (f0["delay_gained_dest_3h"], f0["delay_gained_all_2h"]) == (30.0, 30.0)
    assert f1["delay_gained_all_2h"] == pytest.approx((6 * 30 + 90) / 7)
    # two hours before F0 leaves none of them had landed: too few to say anything
    early = build_features(_flights(1), hist, WEATHER, PLANES, pd.Timedelta(hours=2),
                           departures=departed).iloc[0]
    assert np.isnan(early["air_excess_dest_3h"]) and np.isnan(early["delay_gained_dest_3h"])


def test_block_time_is_measured_in_the_destinations_time_zone() -> None:
    """07:00 EST to 08:30 CST is 150 minutes; the route flew 120 minutes in the air before, so
    30 are left for taxiing and delay. Across midnight and to Honolulu too."""
    hist = _history([T0 - pd.Timedelta(days=1)], [0.0])
    feats = build_features(_flights(1), hist, WEATHER, PLANES, zones=ZONES).iloc[0]
    assert (feats["sched_block_min"], feats["block_slack_min"]) == (150.0, 30.0)
    late = _flights(1).assign(scheduled_departure=T0 + pd.Timedelta(hours=11),  # 18:00 EST
                              dest="HNL", scheduled_arrival_local="00:10")  # 13:00 HST, on at 00:10
    assert build_features(late, hist, WEATHER, PLANES, zones=ZONES).iloc[0][
        "sched_block_min"] == 11 * 60 + 10
    unknown = build_features(_flights(1), hist, WEATHER, PLANES).iloc[0]  # no zones given
    assert np.isnan(unknown["sched_block_min"]) and np.isnan(unknown["block_slack_min"])


def _schedule(rows: list[tuple[str, str, str, pd.Timestamp]], dest: str = "ORD") -> pd.DataFrame:
    """(flight_id, origin, tailnum, scheduled departure) -> the schedule frame (UA, 719 mi)."""
    return pd.DataFrame({"flight_id": [r[0] for r in rows], "carrier": "UA",
                         "origin": [r[1] for r in rows], "dest": dest,
                         "tailnum": [r[2] for r in rows],
                         "scheduled_departure": [r[3] for r in rows], "distance": 719.0})


def _departed(rows: list[tuple[str, pd.Timestamp, float]]) -> pd.DataFrame:
    return pd.DataFrame({"flight_id": [r[0] for r in rows],
                         "actual_departure": [r[1] for r in rows],
                         "dep_delay": [r[2] for r in rows]})


H = pd.Timedelta(hours=1)


def test_same_day_congestion_counts_what_was_known_at_the_as_of_time() -> None:
    """As of T0 at EWR: A left 40 min late, B on time, C (due 30 min ago) has not left, so it
    is late too; D leaves late but only after T0, and E is at another airport."""
    flights = _flights(1)  # F0: EWR, T0
    schedule = _schedule([("A", "EWR", "N2", T0 - 90 * M), ("B", "EWR", "N3", T0 - 60 * M),
                          ("C", "EWR", "N4", T0 - 30 * M), ("D", "EWR", "N5", T0 - 10 * M),
                          ("E", "JFK", "N6", T0 - 60 * M), ("F0", "EWR", "N1", T0)])
    departed = _departed([("A", T0 - 50 * M, 40.0), ("B", T0 - 60 * M, 0.0),
                          ("D", T0 + 20 * M, 30.0), ("E", T0 - 10 * M, 50.0)])
    row = build_features(flights, _history([], []), WEATHER, PLANES, None, schedule,
                         departed).iloc[0]
    assert row["origin_dep_delay_2h"] == pytest.approx(20.0)  # A and B
    # due in the window: A, B, C, D; late by T0: A (left late) and C (waited 30 min)
    assert row["origin_late_share_2h"] == pytest.approx(2 / 4)
    assert row["origin_scheduled_1h"] == 3  # C, D and itself: due within 30 minutes of T0
    assert row["carrier_late_share_3h"] == pytest.approx(3 / 5)  # A, C and E of A-E
    # all go to O'Hare: A, C and E of the five due in the 3 h before T0, from any airport
    assert row["dest_late_share_3h"] == pytest.approx(3 / 5)
    # over the 6 h of the day so far at EWR, an on-time flight due 5 h before joins them
    earlier = pd.concat([schedule, _schedule([("G", "EWR", "N7", T0 - 5 * H)])])
    day = build_features(flights, _history([], []), WEATHER, PLANES, None, earlier,
                         pd.concat([departed, _departed([("G", T0 - 5 * H, 0.0)])])).iloc[0]
    assert (day["origin_late_share_2h"], day["origin_late_share_6h"]) == (2 / 4, 2 / 5)
    elsewhere = build_features(flights, _history([], []), WEATHER, PLANES, None,
                               _schedule([("A", "EWR", "N2", T0 - 90 * M)], dest="BOS"),
                               departed).iloc[0]
    assert np.isnan(elsewhere["dest_late_share_3h"])


def test_rotation_follows_the_aircraft_and_what_its_previous_leg_had_by_the_as_of_time() -> None:
    flights = _flights(1)  # F0 flown by N1 at T0
    schedule = _schedule([("P", "EWR", "N1", T0 - 6 * H), ("Q", "LGA", "N1", T0 - 9 * H),
                          ("X", "EWR", "N9", T0 - 2 * H), ("F0", "EWR", "N1", T0)])
    slack = 6 * 60 - 2 * 719.0 / 7.5 - 2 * 60.0
    left_late = _departed([("P", T0 - 5 * H, 60.0)])
    row = build_features(flights, _history([], []), WEATHER, PLANES, None, schedule,
                         left_late).iloc[0]
    assert (row["rotation_legs"], row["rotation_gap_min"]) == (2, 360)
    assert row["rotation_prev_delay"] == 60.0
    assert row["rotation_propagated"] == pytest.approx(60.0 - slack)
    # 8 h ahead, P had not been due yet: no delay known then, whatever happened later
    early = build_features(flights, _history([], []), WEATHER, PLANES, 8 * H, schedule,
                           left_late).iloc[0]
    assert early["rotation_prev_delay"] == 0.0 and early["rotation_legs"] == 2
    # 5.5 h ahead, P was due 30 minutes before and had not left: 30 minutes late so far
    waiting = build_features(flights, _history([], []), WEATHER, PLANES, 5.5 * H, schedule,
                             left_late).iloc[0]
    assert waiting["rotation_prev_delay"] == 30.0
    alone = build_features(flights, _history([], []), WEATHER, PLANES, None,
                           schedule[schedule["tailnum"] != "N1"], left_late).iloc[0]
    assert alone["rotation_legs"] == 0 and np.isnan(alone["rotation_prev_delay"])


@pytest.mark.parametrize("hours", [2, 24])
def test_departures_after_a_horizons_as_of_time_leave_its_features_unchanged(hours: int) -> None:
    """Leakage test of the same-day signals: departures at or after ``departure - horizon``
    (the flight's own included) cannot matter; before it they do."""
    horizon = pd.Timedelta(hours=hours)
    as_of = T0 - horizon
    flights = _flights(1)
    schedule = _schedule([("P", "EWR", "N1", as_of - 3 * H), ("B", "EWR", "N3", as_of - H),
                          ("L", "EWR", "N4", as_of + 10 * M), ("F0", "EWR", "N1", T0)])
    known = [("P", as_of - 2 * H, 60.0), ("B", as_of - 30 * M, 30.0)]
    later = [("L", as_of + 40 * M, 30.0), ("F0", T0 + 5 * M, 5.0)]

    def feats(later_delay: float, b_delay: float = 30.0) -> pd.DataFrame:
        rows = [(k, t, b_delay if k == "B" else d) for k, t, d in known]
        rows += [(k, t + later_delay * M, d + later_delay) for k, t, d in later]
        return build_features(flights, _history([], []), WEATHER, PLANES, horizon, schedule,
                              _departed(rows))

    pd.testing.assert_frame_equal(feats(0.0), feats(300.0))
    assert feats(0.0).iloc[0]["origin_dep_delay_2h"] != feats(0.0, b_delay=90.0).iloc[0][
        "origin_dep_delay_2h"]


def test_a_dates_context_is_read_once_for_all_its_horizons() -> None:
    """A build asks for a date once per horizon: the raw events are gathered once per reader and
    date, and a new reader (a new build) reads them again."""
    from datetime import date, timedelta

    from streamfit.domains import load_domain

    day = date(2013, 3, 1)
    flight = {"flight_id": "F0", "carrier": "UA", "flight": 1, "tailnum": "N1", "origin": "EWR",
              "dest": "ORD", "scheduled_departure": "2013-03-01T12:00:00Z", "distance": 719.0}

    class Counting:
        def __init__(self) -> None:
            self.reads = 0

        def payloads(self, d: date, event_type: str) -> list[dict]:
            return [flight] if (d, event_type) == (day - timedelta(days=1),
                                                   "flight_scheduled") else []

        def frame(self, days: list[date], event_type: str) -> pd.DataFrame:
            self.reads += 1
            return pd.DataFrame([p for d in days for p in self.payloads(d, event_type)])

    spec = load_domain("flights").features
    raw = Counting()
    frames = [spec.build_day(raw, day, h) for h in spec.horizons.values()]
    once = raw.reads
    assert all(len(f) == 1 for f in frames) and once > 1
    spec.build_day(raw, day, next(iter(spec.horizons.values())))
    assert raw.reads == once + 1  # only the day's own schedules again
    other = Counting()
    spec.build_day(other, day, next(iter(spec.horizons.values())))
    assert other.reads == once - len(spec.horizons) + 1


def test_trailing_windows_equal_counting_every_arrival_by_hand() -> None:
    """The binary-search windows (``_Arrivals``) against a plain count over random arrivals:
    arrivals exactly at as-of and exactly at the window's start, groups that never arrived,
    a flight without its key, and a group with fewer than MIN_SUPPORT arrivals (the prior)."""
    from streamfit.domains.flights.pointintime import _Arrivals

    rng = np.random.default_rng(7)
    n_hist, n_flights, window = 400, 60, pd.Timedelta(hours=6)
    grid = [T0 + pd.Timedelta(minutes=int(m)) for m in rng.integers(0, 24 * 60, n_hist)]
    hist = pd.DataFrame({"carrier": rng.choice(["UA", "DL", "B6"], n_hist),
                         "flight": rng.choice([1.0, 2.0, 3.0, 4.0], n_hist),
                         "actual_arrival": grid, "late": rng.integers(0, 2, n_hist).astype(float),
                         "delay_c": rng.normal(10, 30, n_hist)})
    # as-of times on arrival times and on window starts, so both edges are exercised
    picks = rng.choice(grid, n_flights // 2).tolist()
    as_of = picks + [t + window for t in rng.choice(grid, n_flights - len(picks))]
    flights = pd.DataFrame({"carrier": rng.choice(["UA", "DL", "AA"], n_flights),
                            "flight": rng.choice([1.0, 2.0, 9.0, np.nan], n_flights),
                            "as_of": as_of})
    prior = rng.uniform(0, 1, n_flights)
    arrivals = _Arrivals(flights, hist)
    for keys in ([], ["carrier"], ["carrier", "flight"]):
        for value in ("late", "delay_c"):
            rate, n = arrivals.trailing(keys, window, prior, value)
            for i, q in flights.iterrows():
                hit = (hist["actual_arrival"] < q["as_of"]) & \
                    (hist["actual_arrival"] >= q["as_of"] - window)
                for k in keys:
                    hit &= hist[k] == q[k]  # NaN equals nothing
                assert n[i] == hit.sum(), (keys, value, i)
                want = hist.loc[hit, value].mean() if hit.sum() >= MIN_SUPPORT else prior[i]
                assert rate[i] == pytest.approx(want), (keys, value, i)
    assert (n >= MIN_SUPPORT).any() and ((n > 0) & (n < MIN_SUPPORT)).any()


def test_ground_time_is_the_block_time_less_the_air_time() -> None:
    """Departed 10 late, arrived 25 late on a 120-minute scheduled block, 95 minutes in the
    air: the block took 135 minutes, 40 of them on the ground. A flight not arrived has none."""
    from streamfit.domains.flights.features import ground_minutes
    from streamfit.domains.flights.pointintime import latest_departures

    ids = pd.Series(["A", "B", "C"])
    arrivals = pd.DataFrame({"air_time": [95.0, 100.0]}, index=pd.Index(["A", "C"]))
    departures = pd.DataFrame({"flight_id": ["A", "B", "A"], "dep_delay": [99.0, 5.0, 10.0]})
    got = ground_minutes(np.array([25.0, np.nan, 0.0]), ids, arrivals,
                         latest_departures(departures), np.array([120.0, 90.0, 150.0]))
    assert got[0] == 40.0  # the departure sent last counts
    assert np.isnan(got[1])  # not arrived
    assert np.isnan(got[2])  # no departure landed


def test_a_built_day_carries_the_ground_time_and_no_model_is_fed_it() -> None:
    from streamfit.domains import load_domain

    flights = load_domain("flights")
    assert "ground_min" in flights.label.measures and "ground_min" in flights.stored
    assert "ground_min" not in flights.features.names
    assert "ground_min" not in flights.features.model
