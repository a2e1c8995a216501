"""The malformed-message corpus (tests/data/malformed_messages.jsonl) plus generated cases."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data" / "malformed_messages.jsonl"


@dataclass(frozen=True)
class BadMessage:
    case: str
    value: bytes
    expect_reason: str


def malformed(max_bytes: int = 262144) -> list[BadMessage]:
    cases = [BadMessage(d["case"], base64.b64decode(d["value_b64"]), d["expect_reason"])
             for d in map(json.loads, DATA.read_text().splitlines())]
    # Generated rather than stored: a message one byte over the limit.
    cases.append(BadMessage("oversize", b"{" + b" " * max_bytes + b"}", "oversize"))
    # and the flights domain's semantic corpus: valid JSON, every field, still wrong
    cases += [BadMessage(w.case, w.value, w.expect_reason) for w in semantic("flights")]
    return cases


# --- the semantic corpus: valid JSON with every envelope field, yet wrong (issue 35) -----------

SCHEDULED = {
    "event_id": "sem-sched-1", "event_type": "flight_scheduled",
    "event_time": "2013-03-01T06:00:00.000Z", "entity_key": "B6725-JFK-20130302",
    "schema_version": 1,
    "payload": {"flight_id": "B6725-JFK-20130302", "carrier": "B6", "flight": 725,
                "tailnum": "N804JB", "origin": "JFK", "dest": "BQN",
                "scheduled_departure": "2013-03-02T06:00:00.000Z",
                "scheduled_arrival_local": "09:45", "distance": 1576.0}}
WEATHER = {
    "event_id": "sem-wx-1", "event_type": "weather_observed",
    "event_time": "2013-03-01T06:00:00.000Z", "entity_key": "JFK", "schema_version": 1,
    "payload": {"origin": "JFK", "observed_at": "2013-03-01T06:00:00.000Z", "temp": 35.1,
                "humid": 60.0, "wind_speed": 10.4, "pressure": 1012.0, "visib": 10.0}}
BOOKED = {
    "event_id": "sem-book-1", "event_type": "parcel_booked",
    "event_time": "2024-01-05T02:00:00.000Z", "entity_key": "P20240105-0042",
    "schema_version": 1,
    "payload": {"parcel_id": "P20240105-0042", "depot": "D03", "courier": "C07",
                "service": "express", "weight_kg": 4.2, "distance_km": 120.5,
                "booked_at": "2024-01-05T02:00:00.000Z", "pickup_at": "2024-01-05T09:00:00.000Z",
                "promised_by": "2024-01-06T09:00:00.000Z"}}


@dataclass(frozen=True)
class WrongEvent:
    case: str
    value: bytes
    expect_reason: str
    says: str  # a part of the reason's detail: what it names


def _with(base: dict, payload: dict | None = None, **envelope: object) -> bytes:
    doc = {**base, **envelope, "payload": {**base["payload"], **(payload or {})}}
    return json.dumps(doc).encode()


def _duplicated(base: dict, key: str, first: object) -> bytes:
    """``base`` with ``key`` written twice in its payload, ``first`` then the real value."""
    text = json.dumps(base)
    real = f'"{key}": {json.dumps(base["payload"][key])}'
    assert real in text
    return text.replace(real, f'"{key}": {json.dumps(first)}, {real}', 1).encode()


def semantic(domain: str) -> list[WrongEvent]:
    """Events that are valid JSON with every envelope field, and still must be refused."""
    bad = "invalid_payload"
    if domain == "flights":
        s, w = SCHEDULED, WEATHER
        return [
            WrongEvent("duplicate JSON key", _duplicated(s, "carrier", "ZZ"), "duplicate_key",
                       "'carrier' appears twice"),
            WrongEvent("NUL inside a code", _with(s, {"origin": "J\x00K"}), bad, "origin"),
            WrongEvent("NUL inside the entity key", _with(s, entity_key="B6725\x00JFK"),
                       "bad_value", "U+0000"),
            WrongEvent("entity_key is another flight", _with(s, entity_key="B6725-JFK-20130303"),
                       "key_mismatch", "flight_id 'B6725-JFK-20130302'"),
            WrongEvent("weather keyed by another airport", _with(w, entity_key="LGA"),
                       "key_mismatch", "origin 'JFK'"),
            WrongEvent("a boolean where an integer belongs", _with(s, {"flight": True}), bad,
                       "flight"),
            WrongEvent("a number sent as a string", _with(s, {"distance": "1576"}), bad,
                       "distance"),
            WrongEvent("a clock time of 25:99", _with(s, {"scheduled_arrival_local": "25:99"}),
                       bad, "scheduled_arrival_local"),
            WrongEvent("a departure a century before its schedule event",
                       _with(s, {"scheduled_departure": "1913-03-02T06:00:00Z"}), bad,
                       "before the event time"),
            WrongEvent("an observation two days after its event",
                       _with(w, {"observed_at": "2013-03-03T06:00:00Z"}), bad,
                       "after the event time"),
            WrongEvent("an id of spaces", _with(s, {"flight_id": "   "}, entity_key="   "),
                       "bad_value", "blank"),
            WrongEvent("a carrier that is not a code", _with(s, {"carrier": "b6!"}), bad,
                       "carrier"),
            WrongEvent("an airport that is a city name", _with(s, {"dest": "New York"}), bad,
                       "dest"),
            WrongEvent("a tail number with a control character",
                       _with(s, {"tailnum": "N80\x074JB"}), bad, "tailnum"),
            WrongEvent("a temperature sent as text", _with(w, {"temp": "cold"}), bad, "temp"),
        ]
    b = BOOKED
    return [
        WrongEvent("duplicate JSON key", _duplicated(b, "depot", "D99"), "duplicate_key",
                   "'depot' appears twice"),
        WrongEvent("entity_key is another parcel", _with(b, entity_key="P20240105-0043"),
                   "key_mismatch", "parcel_id 'P20240105-0042'"),
        WrongEvent("weight as a string", _with(b, {"weight_kg": "4.2"}), bad, "weight_kg"),
        WrongEvent("a boolean for the service", _with(b, {"service": True}), bad, "service"),
        WrongEvent("a pickup a century before the booking",
                   _with(b, {"pickup_at": "1924-01-05T09:00:00Z"}), bad, "pickup_at"),
        WrongEvent("a depot that is not a code", _with(b, {"depot": "D3"}), bad, "depot"),
        WrongEvent("NUL inside a courier code", _with(b, {"courier": "C\x007"}), bad, "courier"),
        WrongEvent("a parcel id of spaces", _with(b, {"parcel_id": "   "}, entity_key="   "),
                   "bad_value", "blank"),
    ]
