"""Operating the ingest service: metrics, status, the CLI, and DLQ replay after a fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
from kafka import KafkaProducer

from ingest.dlq import OVERSIZE_KEPT_BYTES, list_dead_letters, replay_dead_letters
from ingest.envelope import encode
from ingest.producer import send_events
from ingest.status import group_status
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings
from tests.net import free_port
from tests.support.ingest import landed_ids, running_ingest, wait_caught_up

DOMAIN = load_domain("flights")
CLI = [sys.executable, "-m", "app.cli"]


def _env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFIT_")}
    env.update({"STREAMFIT_KEYSPACE": s.keyspace, "STREAMFIT_EVENTS_TOPIC": s.events_topic,
                "STREAMFIT_INGEST_GROUP": s.ingest_group, "STREAMFIT_INGEST_METRICS_PORT": "0"})
    return env


def _metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_metrics_endpoint_counts_what_landed(ingest_settings: Settings) -> None:
    port = free_port()
    s = ingest_settings.model_copy(update={"ingest_metrics_port": port})
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 7, 1), date(2013, 7, 1))))
    send_events(s, events)
    with running_ingest(s, workers=1):
        wait_caught_up(s)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        status = group_status(s, sample_s=0)
    assert _metric(text, "streamfit_ingest_consumed_total") == len(events)
    assert _metric(text, "streamfit_ingest_landed_total") == len(events)
    assert _metric(text, "streamfit_ingest_dead_lettered_total") == 0
    assert _metric(text, "streamfit_ingest_write_seconds_count") >= 1
    assert "streamfit_ingest_lag{" in text
    assert status["lag"] == 0
    assert sum(r["committed"] for r in status["partitions"]) == len(events)


def test_the_worker_joins_the_group_with_the_configured_session_timeout(
        ingest_settings: Settings) -> None:
    """The worker's consumer joins the real group with STREAMFIT_INGEST_SESSION_TIMEOUT_MS
    (the broker refuses a join outside its bounds), heartbeating well inside it."""
    from ingest.worker import IngestWorker

    s = ingest_settings.model_copy(update={"ingest_session_timeout_ms": 7000})
    consumer = IngestWorker(s, 0)._consumer()
    try:
        consumer.subscribe([s.events_topic])
        consumer.poll(timeout_ms=5000)  # joins the group: the broker took the timeout
        assert consumer.assignment()
        assert consumer.config["session_timeout_ms"] == 7000
        assert consumer.config["heartbeat_interval_ms"] <= 7000 // 3
    finally:
        consumer.close(autocommit=False)


def test_cli_produce_status_and_bad_arguments(ingest_settings: Settings, tmp_path: Path) -> None:
    s = ingest_settings
    env = _env(s)
    out = subprocess.run([*CLI, "produce", "replay", "--from", "2013-08-01", "--to",
                          "2013-08-01", "--max-speed"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    n = len(list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 8, 1), date(2013, 8, 1)))))
    assert f"sent {n:,} events" in out.stdout

    bad = subprocess.run([*CLI, "produce", "replay", "--from", "2013-08-02", "--to", "2013-08-01"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "before --from" in bad.stderr
    bad = subprocess.run([*CLI, "produce", "replay", "--from", "yesterday"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr

    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 8, 2), date(2013, 8, 2))))
    lines = [encode(e).decode() for e in events[:5]] + ["not json", '{"event_id": 1}']
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = subprocess.run([*CLI, "produce", "file", str(path)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2  # some lines were invalid
    assert "sent 5 events" in out.stdout
    assert "line 6: not_json" in out.stderr and "line 7: missing_field" in out.stderr

    status = subprocess.run([*CLI, "ingest", "status", "--json", "--sample-s", "0"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["lag"] == n + 5  # nothing consumed yet


def test_dead_letters_are_resubmitted_once_the_schema_is_fixed(ingest_settings: Settings) -> None:
    s = ingest_settings
    event = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 9, 1), date(2013, 9, 1))))
    departed = next(e for e in event if e["event_type"] == "flight_departed")
    v2 = {**departed, "schema_version": 2, "payload": {**departed["payload"], "gate": "B12"}}
    send_events(s, [v2])
    with running_ingest(s, workers=1):
        wait_caught_up(s)
    [letter] = list_dead_letters(s, limit=None)
    assert letter.reason == "unknown_schema_version"

    fixed = s.model_copy(update={"domain": "tests.integration.ingest.extended_domain:DOMAIN"})
    result = replay_dead_letters(fixed)
    assert (result.read, result.resubmitted, result.still_invalid) == (1, 1, 0)
    assert replay_dead_letters(fixed).read == 0  # the replay position moved on
    with running_ingest(fixed, workers=1):
        wait_caught_up(fixed)
    assert v2["event_id"] in landed_ids(fixed, {date.fromisoformat(v2["event_time"][:10])})


def test_an_oversize_message_near_the_broker_limit_is_dead_lettered_and_replayable(
        ingest_settings: Settings) -> None:
    """A message the broker took but ingest refuses for size (up to the broker's ~1 MiB, well
    over the 256 KiB default limit) must not stall the partition, even though a full copy plus
    the DLQ headers would not fit the dead-letter topic."""
    s = ingest_settings
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 9, 2), date(2013, 9, 2))))
    before, big_one, after = events[0], events[1], events[2]
    # Valid JSON padded with whitespace: only its size is wrong.
    big = encode(big_one) + b" " * (1_048_400 - len(encode(big_one)))
    key = b"one-partition"
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, max_request_size=1_100_000)
    producer.send(s.events_topic, key=key, value=encode(before))
    meta = producer.send(s.events_topic, key=key, value=big).get(30)
    producer.send(s.events_topic, key=key, value=encode(after))
    producer.flush()
    producer.close()
    with running_ingest(s, workers=1):
        wait_caught_up(s, timeout=90)
    day = {date.fromisoformat(e["event_time"][:10]) for e in (before, big_one, after)}
    assert sorted(landed_ids(s, day)) == sorted([before["event_id"], after["event_id"]])
    [letter] = list_dead_letters(s, limit=None)
    assert letter.reason == "oversize"
    assert letter.source == f"{s.events_topic}[{meta.partition}]@{meta.offset}"
    assert letter.headers["dlq.original_bytes"] == str(len(big))
    assert letter.value == big[:OVERSIZE_KEPT_BYTES]  # what it was, not the whole of it

    # Still over the limit: the replay fetches the original from its source and keeps it pending.
    result = replay_dead_letters(s)
    assert (result.read, result.resubmitted, result.still_invalid) == (1, 0, 1)
    assert result.reasons == {"oversize": 1}
    # With the limit raised, the original bytes (not the kept prefix) go back and land.
    raised = s.model_copy(update={"ingest_max_message_bytes": 1_100_000})
    result = replay_dead_letters(raised)
    assert (result.read, result.resubmitted, result.still_invalid) == (1, 1, 0)
    with running_ingest(raised, workers=1):
        wait_caught_up(raised, timeout=90)
    assert sorted(landed_ids(s, day)) == sorted(e["event_id"] for e in (before, big_one, after))


def test_a_partition_that_stops_committing_is_reported_stalled(ingest_settings: Settings) -> None:
    """Events wait on partitions nobody lands (the ingest is stopped): `ingest status` and the
    supervisor's watch say which partitions stalled."""
    s = ingest_settings.model_copy(update={"pipeline_stall_after_s": 1.0})
    events = list(DOMAIN.replay("nycflights13", ReplayOptions(date(2013, 7, 2), date(2013, 7, 2))))
    send_events(s, events[:500])
    with running_ingest(s, workers=1):
        wait_caught_up(s)
    assert group_status(s, sample_s=0)["stalled"] == 0  # caught up: never stalled
    send_events(s, events[500:1500])
    time.sleep(2)
    status = group_status(s, sample_s=0)
    lagging = {r["partition"] for r in status["partitions"] if r["lag"]}
    assert lagging and status["stalled"] == len(lagging)
    assert all(r["stalled"].startswith(f"lag {r['lag']}") for r in status["partitions"]
               if r["lag"])
    # the supervisor's watch, fed the group's real offsets twice, two "seconds" apart
    from ingest.stalls import StallWatch
    from ingest.status import source_offsets
    from streamfit import kafka as kafka_io

    watch = StallWatch(after_s=1.0)
    admin = kafka_io.admin(s)
    try:
        watch.observe(source_offsets(admin, s.ingest_group, s.events_topic), 0.0)
        stalled = watch.observe(source_offsets(admin, s.ingest_group, s.events_topic), 2.0)
    finally:
        admin.close()
    assert set(stalled) == lagging
