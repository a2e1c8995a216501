"""The real ingest service run by a test, and what it landed and committed."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import date

from ingest.service import IngestService, running_in_background
from ingest.status import committed, end_offsets
from streamfit.cassandra import connect
from streamfit.settings import Settings
from streamfit.store import IngestStore
from tests.support.waiting import wait_for


def running_ingest(settings: Settings, workers: int = 2) -> AbstractContextManager[IngestService]:
    """The real ingest service (worker processes) in a background thread of the test."""
    return running_in_background(settings, workers)


def wait_caught_up(settings: Settings, timeout: float = 180) -> None:
    ends = end_offsets(settings)
    wait_for(lambda: all(committed(settings).get(p, 0) >= e for p, e in ends.items()),
             timeout, f"group {settings.ingest_group} to commit up to {ends}")


def landed_ids(settings: Settings, days: set[date]) -> list[str]:
    with connect(settings) as session:
        store = IngestStore(session, settings.keyspace)
        return [eid for d in sorted(days) for _t, eid in store.event_ids_of_day(d)]
