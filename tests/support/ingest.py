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


def signaller_view(s: Settings, service: IngestService | None = None) -> str:
    """What the signaller works from, for a failure message: committed offsets, its state, the
    signals it recorded, what a new signaller would send, and, given the running ``service``,
    its counters and where its supervising thread is now (a stall of several minutes, seen once
    on one node and once on the cluster, left no other trace)."""
    import sys
    import threading
    import traceback

    from ingest.signal import ArrivalSignaller

    with connect(s) as session:
        state = list(session.execute(
            f"SELECT partition, signalled_upto FROM {s.keyspace}.ingest_signal_state "
            "WHERE consumer_group = %s AND topic = %s", (s.ingest_group, s.events_topic)))
        signals = list(session.execute(f"SELECT rows, extra FROM {s.keyspace}.ingest_signals"))
        fresh = ArrivalSignaller(s, session)
        try:
            pending = fresh.pending()
        finally:
            fresh.close()
    view = (f"end offsets {end_offsets(s)}; committed {committed(s)}; signal state "
            f"{[(r.partition, r.signalled_upto) for r in state]}; recorded signals "
            f"{[(r.rows, r.extra) for r in signals]}; a new signaller would send "
            f"{pending.rows} rows up to {pending.upto}")
    if service is not None:
        view += (f"; the service sent {service.signals_sent} signals, {service.signal_failures} "
                 f"failed (the last: {service.last_signal_error})")
        frames = sys._current_frames()
        for thread in threading.enumerate():
            if thread.name == "streamfit-ingest" and thread.ident in frames:
                view += "\nits thread is at:\n" + "".join(
                    traceback.format_stack(frames[thread.ident])[-12:])
    return view
