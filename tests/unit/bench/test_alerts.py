"""The alert benchmark's fault injection: pure functions of event lists."""

from __future__ import annotations

from datetime import date

from bench.alerts import late_shift


def _flight(fid: str, departs: str) -> list[dict]:
    return [
        {"event_type": "flight_scheduled", "entity_key": fid, "event_time": "2013-05-12T00:00:00.000Z",
         "payload": {"flight_id": fid, "scheduled_departure": departs}},
        {"event_type": "flight_arrived", "entity_key": fid, "event_time": "2013-05-13T06:00:00.000Z",
         "payload": {"flight_id": fid, "actual_arrival": "2013-05-13T06:00:00.000Z",
                     "arr_delay": 5.0, "air_time": 100.0}},
    ]


def test_a_fault_reaches_the_flights_of_the_days_judged_by_their_utc_departure() -> None:
    """A scoring run judges a flight on its UTC departure date. A flight of the evening of May
    12 in New York (its id says the 12th) departs on May 13 in UTC: it is one of the week's."""
    evening = _flight("AA1-JFK-20130512", "2013-05-13T01:30:00.000Z")
    before = _flight("AA2-JFK-20130512", "2013-05-12T22:00:00.000Z")
    out = late_shift([*evening, *before], [date(2013, 5, 13 + i) for i in range(7)])
    arrived = {e["entity_key"]: e["payload"] for e in out if e["event_type"] == "flight_arrived"}
    assert arrived["AA1-JFK-20130512"]["arr_delay"] == 25.0
    assert arrived["AA1-JFK-20130512"]["actual_arrival"] == "2013-05-13T06:20:00.000Z"
    assert arrived["AA2-JFK-20130512"]["arr_delay"] == 5.0  # departed the day before: untouched
    # at the gate: the air time stays; in the air: it grows by as much
    assert arrived["AA1-JFK-20130512"]["air_time"] == 100.0
    held = late_shift(evening, [date(2013, 5, 13)], airborne=True)
    assert [e["payload"]["air_time"] for e in held if e["event_type"] == "flight_arrived"] == [120.0]
