"""What the ``summarize_arrivals`` DAG does with the data-arrival signals it was triggered by
(also callable directly, e.g. in tests)."""

from __future__ import annotations

from datetime import date
from typing import Any

from ingest.store import IngestStore
from streamfit.cassandra import connect
from streamfit.settings import Settings


def summarize_arrivals(settings: Settings, extras: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the signals' extras; count the rows now in Cassandra for each event date named."""
    dates = sorted({d for extra in extras for d in extra.get("event_dates", [])})
    signalled_rows = sum(int(extra.get("rows", 0)) for extra in extras)
    with connect(settings) as session:
        store = IngestStore(session, settings.keyspace)
        landed = {d: store.count_day(date.fromisoformat(d)) for d in dates}
    groups: dict[str, int] = {}
    for extra in extras:
        group = str(extra.get("consumer_group", "?"))
        groups[group] = groups.get(group, 0) + int(extra.get("rows", 0))
    group_dates: dict[str, list[str]] = {}
    for extra in extras:
        group = str(extra.get("consumer_group", "?"))
        group_dates[group] = sorted(set(group_dates.get(group, [])) | set(extra.get("event_dates", [])))
    return {"signals": len(extras), "signalled_rows": signalled_rows, "rows_by_date": landed,
            "rows_by_group": groups, "dates_by_group": group_dates}
