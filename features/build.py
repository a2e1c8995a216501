"""Build and store features for entity dates: ``streamfit features build``.

Run by ``features.run`` for the ledger ranges pending since the stage's watermark (the
``build_features`` DAG, its time fallback and ``streamfit pipeline run``), or from the CLI for
explicit dates (``streamfit features build --date``). The domain's builder says which raw-event
partitions a date reads (for flights: its schedules, 29 days of arrivals and their schedules, two
days of weather), so memory is bounded by the window, not by the history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from streamfit.domains import Domain
from streamfit.workspace import Workspace

if TYPE_CHECKING:
    # pandas comes with it: a task that submits a Spark job never loads it
    from streamfit.featurestore import BuildResult, FeatureStore

log = logging.getLogger("streamfit.features")


def _dates(event_dates: Iterable[str | date]) -> list[date]:
    return [d if isinstance(d, date) else date.fromisoformat(d) for d in event_dates]


def dates_to_rebuild(domain: Domain, event_dates: Iterable[str | date]) -> list[date]:
    """The entity dates whose rows events of these event dates may change."""
    return domain.features.days_affected(_dates(event_dates))


def tile_days(ws: Workspace, event_dates: Iterable[str | date]) -> list[date]:
    """The days whose tiles these event dates' events change (``TileSpec.days_affected``;
    none when the domain keeps no tiles)."""
    spec = ws.domain.features.tiles
    days = _dates(event_dates)
    return spec.days_affected(days) if spec is not None and days else []


def _refresh_tiles(store: FeatureStore, days: Iterable[date]) -> None:
    """Make the tiles of ``days`` again, before the builds that read them."""
    days = list(days)
    if store.tiles is not None and days:
        store.tiles.refresh(days)


#: Builds and writes the partitions of some dates (and their summaries), returning each date's
#: result: the Spark engine's builder (``features.spark_build``) replaces the pandas loop.
Builder = Callable[[list[date], dict[str, Any] | None], Iterable["BuildResult"]]


def build_days(ws: Workspace, days: Iterable[date], sources: dict[str, Any] | None = None,
               max_event_time: datetime | None = None,
               builder: Builder | None = None, memory_mb: int = 0,
               tiles: Iterable[date] = ()) -> dict[str, Any]:
    """Build the feature partitions of ``days`` and append the build to the feature-build log
    (which training and scoring consume). ``sources`` (Kafka offsets per topic/partition) is
    recorded per built date as lineage. ``builder``: None builds each date here in pandas,
    stopping once this process has passed ``memory_mb`` MiB (``streamfit.memory.budget``; 0:
    no limit). ``tiles``: the days whose tiles are made again first (``tile_days``), with the
    same raw reader as the pandas builds that read them (a ``builder`` reads no tiles:
    ``build_with_engine`` makes them before it submits)."""
    wanted = sorted(set(days))
    if builder is None:
        from streamfit.memory import budget

        store = ws.feature_store()
        _refresh_tiles(store, tiles)

        results = []
        with budget(memory_mb, "the feature build") as work:
            for day in wanted:
                work.step(f"the feature build of {day}")
                results.append(store.build_day(day, sources))
    else:
        results = list(builder(wanted, sources))
    for r in results:
        log.info("features %s: %d %ss, %d labelled", r.day, r.entities, ws.domain.entity.name,
                 r.labelled)
    built = [r for r in results if r.entities]
    summary: dict[str, Any] = {
        "dates": [r.day.isoformat() for r in built], "entities": sum(r.entities for r in built),
        "labelled": sum(r.labelled for r in built), "feature_version": ws.domain.features.version,
        "max_event_time": max_event_time.isoformat() if max_event_time else None}
    if built:
        # after the partitions are durable: a build in the log is complete
        summary["build"] = ws.progress.record_build(
            {r.day for r in built}, summary["entities"], max_event_time)
    return summary


def build_with_engine(ws: Workspace, days: Iterable[date], sources: dict[str, Any] | None = None,
                      max_event_time: datetime | None = None,
                      tiles: Iterable[date] = ()) -> dict[str, Any]:
    """``build_days`` on the configured engine: here in pandas, or (``STREAMFIT_ENGINE=spark``)
    as a Spark job this process submits and waits for, never loading the data itself (the
    tiles of ``tiles`` are still made here: the API's on-demand features read them)."""
    wanted = sorted(set(days))
    settings = ws.settings
    if settings.engine == "spark":
        if ws.domain.features.tiles is not None:
            _refresh_tiles(ws.feature_store(), tiles)
        from streamfit.spark import SparkUnavailable, submit

        if ws.domain.features.reads is None:
            raise SparkUnavailable(
                f"the {ws.domain.name} domain does not declare the raw partitions a date reads "
                "(FeatureSpec.reads), which the Spark engine needs: set STREAMFIT_ENGINE=pandas "
                "or declare them")

        return submit(settings, "features.spark_build:job", {
            "keyspace": ws.keyspace, "days": [d.isoformat() for d in wanted], "sources": sources,
            "max_event_time": max_event_time.isoformat() if max_event_time else None})
    return build_days(ws, wanted, sources, max_event_time, memory_mb=settings.pandas_memory_mb,
                      tiles=tiles)


def run_build(ws: Workspace, event_dates: Iterable[str | date] = (),
              days: Iterable[date] = ()) -> dict[str, Any]:
    """Rebuild the feature partitions that these event dates (or explicit days) affect
    (``streamfit features build``); training and scoring pick the build up from the log."""
    event_dates = list(event_dates)
    return build_with_engine(ws, set(dates_to_rebuild(ws.domain, event_dates)) | set(days),
                             tiles=tile_days(ws, event_dates))
