"""``streamfit pipeline status|run``: the backlog of every stage, and a run of every stage.

The backlog is read from durable state only (Kafka's committed offsets, the ingest ledger, the
stage watermarks and the feature-build log), the same state the stage runs consume. Stages are
read upstream first: work only moves downstream, so a piece of work in flight between two reads
is seen in the later stage, never missed. Backlog 0 in every stage means caught up.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from streamfit.settings import Settings
from streamfit.workspace import Workspace

STAGES = ("ingest", "features", "training", "scoring")


@dataclass(frozen=True)
class StageStatus:
    keyspace: str
    stage: str
    #: work waiting, in ``unit``s
    pending: int
    unit: str
    #: the newest point processed (event time for ingest/features/scoring, build time for
    #: training), ISO-8601, or None before the first
    newest: str | None
    #: how long the oldest pending work has waited (0 when nothing is pending)
    lag_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then else 0.0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def keyspace_status(ws: Workspace, now: datetime | None = None, admin: Any = None
                    ) -> list[StageStatus]:
    """Every stage's backlog in one keyspace (``admin``: a Kafka admin client to reuse; else one
    is made and closed here)."""
    from features.run import STAGE as FEATURES
    from features.run import pending_ledger
    from ingest.status import source_offsets
    from scoring.run import pending_scoring
    from streamfit import kafka as kafka_io
    from streamfit.store import IngestStore
    from training.run import pending_builds

    now = now or datetime.now(UTC)
    s, session, keyspace, progress = ws.settings, ws.session, ws.keyspace, ws.progress
    store = IngestStore(session, keyspace)
    # 1. ingest: produced but not landed and committed
    waiting, oldest_landed = 0, None
    client = admin or kafka_io.admin(s, client_id="streamfit-pipeline-status")
    try:
        for group, topic in store.sources():
            for partition, (committed, end) in source_offsets(client, group, topic).items():
                if end > committed:
                    waiting += end - committed
                    landed = store.last_landed(group, topic, partition, committed)
                    oldest_landed = min(filter(None, (oldest_landed, landed)), default=None)
    finally:
        if admin is None:
            client.close()
    feature_marks = progress.positions(FEATURES)
    newest_event = max((m.position_time for m in feature_marks.values() if m.position_time),
                       default=None)
    rows = [StageStatus(keyspace, "ingest", waiting, "messages", None,
                        _age(now, oldest_landed) if waiting else 0.0)]
    # 2. features: landed rows not featurized
    ledger = pending_ledger(s, session, progress, store)
    rows.append(StageStatus(keyspace, "features", ledger.rows, "landed rows",
                            _iso(newest_event), _age(now, ledger.oldest_landed)))
    # 3. training: feature builds not yet considered
    mark, builds = pending_builds(progress)
    rows.append(StageStatus(keyspace, "training", len(builds), "feature builds",
                            _iso(mark.position_time if mark else None),
                            _age(now, builds[0].built_at if builds else None)))
    # 4. scoring: feature builds not scored, and a champion change not rescored
    scoring = pending_scoring(session, progress, ws.domain.model_name)
    since = scoring.builds[0].built_at if scoring.builds else None
    if scoring.champion_changed and since is None:
        since = scoring.champion_mark.updated_at if scoring.champion_mark else now
    rows.append(StageStatus(keyspace, "scoring", scoring.pending,
                            "feature builds + champion change",
                            _iso(scoring.builds_mark.position_time
                                 if scoring.builds_mark else None),
                            _age(now, since) if scoring.pending else 0.0))
    return rows


def pipeline_status(settings: Settings, keyspaces: list[str] | None = None
                    ) -> list[StageStatus]:
    """Every stage of every keyspace the pipeline serves (or of ``keyspaces``)."""
    from streamfit import kafka as kafka_io
    from streamfit.cassandra import connect
    from streamfit.progress import pipeline_keyspaces
    from streamfit.workspace import workspace

    with connect(settings, keyspace=None) as session:
        names = keyspaces or pipeline_keyspaces(session, settings.keyspace)
        admin = kafka_io.admin(settings, client_id="streamfit-pipeline-status")
        try:
            return [row for ks in names
                    for row in keyspace_status(workspace(settings, session, ks), admin=admin)]
        finally:
            admin.close()


def keyspace_overview(settings: Settings) -> list[dict[str, Any]]:
    """``streamfit pipeline keyspaces``: every streamfit keyspace, whether it is served and why,
    its backlog (the sum over its stages) and when a stage last ran for it."""
    from streamfit import kafka as kafka_io
    from streamfit.cassandra import connect
    from streamfit.progress import keyspace_states
    from streamfit.workspace import workspace

    with connect(settings, keyspace=None) as session, contextlib.closing(
            kafka_io.admin(settings, client_id="streamfit-keyspaces")) as admin:
        out = []
        for state in keyspace_states(session, settings.keyspace):
            rows = keyspace_status(workspace(settings, session, state.name), admin=admin)
            out.append({"keyspace": state.name, "served": state.served, "why": state.why,
                        "backlog": sum(r.pending for r in rows),
                        "pending": {r.stage: r.pending for r in rows},
                        "last_run": _iso(state.last_run)})
        return out


def retire(settings: Settings, keyspace: str, drop: bool = False) -> str:
    """Retire ``keyspace`` (and drop it with ``drop``); what happened, in words."""
    from streamfit.cassandra import KeyspaceMissing, connect
    from streamfit.progress import keyspace_states, set_retired

    with connect(settings, keyspace=None) as session:
        if keyspace not in {k.name for k in keyspace_states(session, settings.keyspace)}:
            raise KeyspaceMissing(f"{keyspace!r} is not a streamfit keyspace; see `streamfit "
                                  "pipeline keyspaces`")
        changed = set_retired(session, keyspace, True)
        said = (f"{keyspace} retired: no pipeline run serves it any more" if changed
                else f"{keyspace} was already retired")
        if drop:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
            said += "; keyspace dropped"
    return said


def serve_again(settings: Settings, keyspace: str) -> str:
    from streamfit.cassandra import KeyspaceMissing, connect
    from streamfit.progress import keyspace_states, set_retired

    with connect(settings, keyspace=None) as session:
        if keyspace not in {k.name for k in keyspace_states(session, settings.keyspace)}:
            raise KeyspaceMissing(f"{keyspace!r} is not a streamfit keyspace; see `streamfit "
                                  "pipeline keyspaces`")
        if not set_retired(session, keyspace, False):
            return f"{keyspace} was not retired"
        served = keyspace in pipeline_keyspaces_of(session, settings)
    return (f"{keyspace} served again" if served else
            f"{keyspace} is no longer retired; it is served once its ingest announces data "
            "(or when it is STREAMFIT_KEYSPACE)")


def pipeline_keyspaces_of(session: Any, settings: Settings) -> list[str]:
    from streamfit.progress import pipeline_keyspaces

    return pipeline_keyspaces(session, settings.keyspace)


def caught_up(rows: list[StageStatus]) -> bool:
    return all(r.pending == 0 for r in rows)


def prometheus_text(rows: list[StageStatus]) -> str:
    """The backlog as Prometheus gauges (text format, e.g. for node_exporter's textfile
    collector): ``streamfit_pipeline_backlog`` and ``streamfit_pipeline_lag_seconds``."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    backlog = Gauge("streamfit_pipeline_backlog", "Work waiting per stage (0: caught up)",
                    ["keyspace", "stage"], registry=registry)
    lag = Gauge("streamfit_pipeline_lag_seconds", "Age of the oldest pending work per stage",
                ["keyspace", "stage"], registry=registry)
    for r in rows:
        backlog.labels(r.keyspace, r.stage).set(r.pending)
        lag.labels(r.keyspace, r.stage).set(r.lag_s)
    return generate_latest(registry).decode()


def run_all(settings: Settings) -> dict[str, Any]:
    """Every stage once, in order (``streamfit pipeline run``): what the DAGs do, without
    Airflow."""
    from features.run import build_pending
    from scoring.run import score_pending
    from training.run import train_pending

    return {"features": build_pending(settings), "training": train_pending(settings),
            "scoring": score_pending(settings)}
