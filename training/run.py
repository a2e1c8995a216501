"""The training stage's run: consider every feature build since its watermark, then advance it.

Run by the ``train_model`` DAG (asset-triggered, by its time fallback, or by hand) and by
``streamfit pipeline run``. Pending work is the feature-build log (``feature_builds``) past the
stage's watermark, never what the trigger carried. One retrain covers all pending builds:
``train_and_maybe_promote`` reads the feature partitions themselves (and skips, saying why, when
too few new labelled flights arrived). The watermark moves after the decision is recorded.
"""

from __future__ import annotations

from typing import Any

from streamfit.progress import NOTHING_PENDING, FeatureBuild, Position, Progress, run_stage
from streamfit.settings import Settings
from streamfit.workspace import Workspace

STAGE = "training"
STREAM = ("feature_builds", 0)


def pending_builds(progress: Progress) -> tuple[Position | None, list[FeatureBuild]]:
    """The training watermark and the feature builds after it."""
    old = progress.positions(STAGE).get(STREAM)
    return old, progress.builds_after(old.position if old else 0)


def _train_keyspace(ws: Workspace) -> dict[str, Any] | str:
    progress = ws.progress
    old, builds = pending_builds(progress)
    if not builds:
        return NOTHING_PENDING
    from training.train import train_and_maybe_promote

    result = train_and_maybe_promote(ws)
    progress.advance(STAGE, *STREAM, old, builds[-1].seq, builds[-1].built_at)
    if not result.promoted:
        return f"{result.status}: {result.reason}"
    return {"version": result.version, "champion": result.champion,
            "roc_auc": result.metrics.get("roc_auc"),
            "naive_roc_auc": result.metrics.get("naive_roc_auc"),
            "builds": [b.seq for b in builds],
            "dates": sorted({d.isoformat() for b in builds for d in b.dates})}


def train_pending(settings: Settings, hinted: list[str] | None = None) -> dict[str, Any]:
    """The ``train_model`` task and ``streamfit pipeline run``."""
    return run_stage(settings, STAGE, _train_keyspace, hinted or ())
