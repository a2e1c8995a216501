"""The scoring stage's run: score the feature builds and champion changes since its watermarks.

Run by the ``score_batch`` DAG (asset-triggered, by its time fallback, or by hand) and by
``streamfit pipeline run``. Two watermarks, both in ``stage_progress``:

- ``feature_builds``: the last feature build scored. Every build after it is scored: its dates'
  flights that have not departed as of the newest event time the builds saw (a replay's "now"),
  and its matured dates are evaluated;
- ``champion``: the champion version scored last. When the champion differs, every built date
  from that "now" on is rescored with it.

With no champion yet, builds are consumed with nothing to score; the first champion then scores
the dates still ahead. Watermarks move after the predictions are written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cassandra.cluster import Session

from streamfit.progress import NOTHING_PENDING, FeatureBuild, Position, Progress, run_stage
from streamfit.settings import Settings
from streamfit.workspace import Workspace

log = logging.getLogger("streamfit.scoring")

STAGE = "scoring"
BUILDS = ("feature_builds", 0)
CHAMPION = ("champion", 0)


@dataclass(frozen=True)
class ScoringBacklog:
    builds_mark: Position | None
    builds: list[FeatureBuild]
    champion_mark: Position | None
    champion: int | None

    @property
    def champion_changed(self) -> bool:
        return self.champion is not None and (self.champion_mark is None
                                              or self.champion_mark.position != self.champion)

    @property
    def as_of(self) -> datetime | None:
        """The stream's "now": the newest event time any feature build saw."""
        times = [b.max_event_time for b in self.builds if b.max_event_time]
        if self.builds_mark and self.builds_mark.position_time:
            times.append(self.builds_mark.position_time)
        return max(times) if times else None

    @property
    def pending(self) -> int:
        return len(self.builds) + int(self.champion_changed)


def pending_scoring(session: Session, progress: Progress, model: str) -> ScoringBacklog:
    """What scoring has not consumed in ``progress.keyspace``; ``model``: the registry's model
    family (the domain's ``model_name``)."""
    from streamfit.registry import Registry

    marks = progress.positions(STAGE)
    builds_mark = marks.get(BUILDS)
    builds = progress.builds_after(builds_mark.position if builds_mark else 0)
    champion = Registry(session, progress.keyspace, model).aliases().get("champion")
    return ScoringBacklog(builds_mark, builds, marks.get(CHAMPION), champion)


def dates_to_score(backlog: ScoringBacklog, built: list[date]) -> list[date]:
    """The pending builds' dates, and on a champion change every built date from "now" on."""
    dates = {d for b in backlog.builds for d in b.dates}
    if backlog.champion_changed:
        as_of = backlog.as_of
        if as_of is not None:
            dates |= {d for d in built if d >= as_of.date()}
        elif built:
            dates.add(max(built))
    return sorted(dates)


def _score_keyspace(ws: Workspace) -> dict[str, Any] | str:
    progress = ws.progress
    backlog = pending_scoring(ws.session, progress, ws.domain.model_name)
    if not backlog.pending:
        return NOTHING_PENDING
    as_of = backlog.as_of
    newest = backlog.builds[-1] if backlog.builds else None

    def advance() -> None:
        if newest is not None:
            progress.advance(STAGE, *BUILDS, backlog.builds_mark, newest.seq, as_of)
        if backlog.champion_changed:
            progress.advance(STAGE, *CHAMPION, backlog.champion_mark,
                             backlog.champion)  # type: ignore[arg-type]

    if backlog.champion is None:
        advance()
        return f"no champion yet: {len(backlog.builds)} feature build(s) consumed unscored"
    from scoring.batch import score_dates

    built = list(ws.feature_store().partitions().get("day", []))
    dates = dates_to_score(backlog, built)
    result = score_dates(ws, dates, as_of, evaluate=dates)
    advance()
    return {"model_version": result.model_version, "dates": result.dates,
            "scored": result.scored, "unchanged": result.unchanged,
            "evaluated": sorted(result.evaluated),
            "builds": [b.seq for b in backlog.builds],
            "champion_changed": backlog.champion_changed}


def score_pending(settings: Settings, hinted: list[str] | None = None) -> dict[str, Any]:
    """The ``score_batch`` task and ``streamfit pipeline run``."""
    return run_stage(settings, STAGE, _score_keyspace, hinted or ())


def score_built(settings: Settings, built: dict[str, Any]) -> dict[str, Any]:
    """Run by the ``build_features`` task right after its build (``built``: that run's
    ``by_keyspace``; ``STREAMFIT_PIPELINE_SCORE_ON_BUILD``): the same scoring step as
    ``score_pending``, in the keyspaces just built only, so the current champion's predictions
    of new data wait for no second task start and no retrain. It consumes the same watermarks
    under the same lease: when ``score_batch`` holds it, that keyspace is skipped here and the
    next ``score_batch`` run (the features event, else its time fallback) scores it. Its result
    goes into each keyspace's build summary as ``scoring``: a summary, or why it scored
    nothing."""
    try:
        result = run_stage(settings, STAGE, _score_keyspace, only=built)
    except Exception as exc:  # noqa: BLE001
        # Broad on purpose: the build is durable and its features event must still go out (a
        # failed task would retry into "nothing pending" and emit none). The same work stays
        # pending for score_batch, which retries it and raises the scoring alert if it fails.
        log.exception("scoring after the build failed; score_batch will score it")
        why = f"scoring after the build failed ({type(exc).__name__}: {exc}); score_batch retries it"
        result = {"by_keyspace": {}, "skipped": dict.fromkeys(built, why)}
    for keyspace, summary in built.items():
        summary["scoring"] = result["by_keyspace"].get(keyspace,
                                                       result["skipped"].get(keyspace))
    return result
