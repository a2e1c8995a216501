"""Build and store features for entity dates: ``streamfit features build``.

Run by ``features.run`` for the ledger ranges pending since the stage's watermark (the
``build_features`` DAG, its time fallback and ``streamfit pipeline run``), or from the CLI for
explicit dates (``streamfit features build --date``). The domain's builder says which raw-event
partitions a date reads (for flights: its schedules, 29 days of arrivals and their schedules, two
days of weather), so memory is bounded by the window, not by the history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from cassandra.cluster import Session

from streamfit.domains import Domain, load_domain
from streamfit.featurestore import FeatureStore
from streamfit.settings import Settings

log = logging.getLogger("streamfit.features")


def dates_to_rebuild(domain: Domain, event_dates: Iterable[str | date]) -> list[date]:
    """The entity dates whose rows events of these event dates may change."""
    days = [d if isinstance(d, date) else date.fromisoformat(d) for d in event_dates]
    return domain.features.days_affected(days)


def build_days(session: Session, keyspace: str, domain: Domain, days: Iterable[date],
               sources: dict[str, Any] | None = None,
               max_event_time: datetime | None = None) -> dict[str, Any]:
    """Build the feature partitions of ``days`` and append the build to the feature-build log
    (which training and scoring consume). ``sources`` (Kafka offsets per topic/partition) is
    recorded per built date as lineage."""
    from streamfit.progress import Progress

    store = FeatureStore(session, keyspace, domain)
    results = []
    for day in sorted(set(days)):
        results.append(store.build_day(day, sources))
        log.info("features %s: %d %ss, %d labelled", day, results[-1].entities,
                 domain.entity.name, results[-1].labelled)
    built = [r for r in results if r.entities]
    summary: dict[str, Any] = {
        "dates": [r.day.isoformat() for r in built], "entities": sum(r.entities for r in built),
        "labelled": sum(r.labelled for r in built), "feature_version": domain.features.version,
        "max_event_time": max_event_time.isoformat() if max_event_time else None}
    if built:
        # after the partitions are durable: a build in the log is complete
        summary["build"] = Progress(session, keyspace).record_build(
            {r.day for r in built}, summary["entities"], max_event_time)
    return summary


def run_build(settings: Settings, event_dates: Iterable[str | date] = (),
              days: Iterable[date] = ()) -> dict[str, Any]:
    """Rebuild the feature partitions that these event dates (or explicit days) affect
    (``streamfit features build``); training and scoring pick the build up from the log."""
    from streamfit.cassandra import connect

    domain = load_domain(settings.domain)
    with connect(settings) as session:
        return build_days(session, settings.keyspace, domain,
                          set(dates_to_rebuild(domain, event_dates)) | set(days))
