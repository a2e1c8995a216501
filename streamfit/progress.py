"""Durable progress of the pipeline stages: watermarks, leases and the feature-build log.

Every stage run uses this, whatever started it: an asset-triggered DAG run, the DAG's time
fallback, a run triggered by hand, or the CLI. What a run must do is read from here, never from
what its trigger carried. Airflow 3.3.2 can attach an asset event to no run at all (a burst of
events while a run is queued: ``_create_dag_runs_asset_triggered`` takes only the events up to
the queue row's first ``created_at`` and deletes the row), so trigger contents are hints.

The rules, per keyspace and stage:

- a **lease** (an LWT ``INSERT ... IF NOT EXISTS USING TTL``, renewed by a thread while the run
  works) lets one run of a stage work at a time; a killed run frees it within the TTL;
- a **watermark** (``stage_progress``) says what the stage consumed of the stage before it. It
  moves by compare-and-set (``IF position = ?``), and only after the run's writes are durable, so
  a crashed run redoes its range (every write is idempotent) and two runs never both advance
  from the same position;
- the **feature-build log** (``feature_builds``) numbers each feature build; training and scoring
  consume it by number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from cassandra.cluster import Session

from streamfit.cassandra import as_utc, cql_date

if TYPE_CHECKING:
    from streamfit.workspace import Workspace

log = logging.getLogger("streamfit.progress")

#: Seconds a lease lives without renewal. A run renews it every third of that.
LEASE_TTL_S = 60
#: The partition of the feature-build log (one keyspace serves one domain, so one log).
BUILD_LOG = "builds"

SELECT_PROGRESS = """
SELECT stream, part, position, position_time, updated_at FROM {ks}.stage_progress
WHERE stage = ?"""
INSERT_PROGRESS = """
INSERT INTO {ks}.stage_progress (stage, stream, part, position, position_time, updated_at)
VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"""
UPDATE_PROGRESS = """
UPDATE {ks}.stage_progress SET position = ?, position_time = ?, updated_at = ?
WHERE stage = ? AND stream = ? AND part = ? IF position = ?"""
ACQUIRE_LEASE = """
INSERT INTO {ks}.stage_leases (stage, owner, acquired_at) VALUES (?, ?, ?)
IF NOT EXISTS USING TTL ?"""
RENEW_LEASE = """
UPDATE {ks}.stage_leases USING TTL ? SET owner = ?, acquired_at = ? WHERE stage = ?
IF owner = ?"""
RELEASE_LEASE = "DELETE FROM {ks}.stage_leases WHERE stage = ? IF owner = ?"
SELECT_LEASE = "SELECT owner, acquired_at FROM {ks}.stage_leases WHERE stage = ?"
INSERT_BUILD = """
INSERT INTO {ks}.feature_builds (feature_set, build_seq, dates, entities, max_event_time,
                                 built_at)
VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"""
SELECT_BUILDS_AFTER = """
SELECT build_seq, dates, entities, max_event_time, built_at FROM {ks}.feature_builds
WHERE feature_set = ? AND build_seq > ?"""
SELECT_NEWEST_BUILD = """
SELECT build_seq, dates, entities, max_event_time, built_at FROM {ks}.feature_builds
WHERE feature_set = ? LIMIT 1"""


class LeaseHeld(RuntimeError):
    """Another run of this stage holds the lease; this run does nothing (the holder, or the
    next run, processes what is pending)."""


class ProgressConflict(RuntimeError):
    """A watermark moved under this run (its lease expired and another run advanced it): this
    run's writes stand (they are idempotent), but it does not move the watermark."""


@dataclass(frozen=True)
class Position:
    stream: str
    part: int
    position: int
    position_time: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class FeatureBuild:
    seq: int
    dates: frozenset[date]
    entities: int
    max_event_time: datetime | None
    built_at: datetime


Offsets = dict[str, dict[str, list[int]]]  # topic -> partition -> [first, last]


def merge_offsets(ranges: Iterable[Offsets]) -> Offsets:
    """Union of offset ranges per topic and partition (lineage of a set of batches)."""
    merged: Offsets = {}
    for offsets in ranges:
        for topic, parts in offsets.items():
            for partition, (lo, hi) in parts.items():
                cur = merged.setdefault(topic, {}).get(str(partition), [lo, hi])
                merged[topic][str(partition)] = [min(cur[0], lo), max(cur[1], hi)]
    return merged


def owner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class Progress:
    """Prepared statements of the progress tables for one session and keyspace."""

    def __init__(self, session: Session, keyspace: str) -> None:
        self.session = session
        self.keyspace = keyspace
        prep = {name: session.prepare(cql.format(ks=keyspace)) for name, cql in (
            ("select", SELECT_PROGRESS), ("insert", INSERT_PROGRESS),
            ("update", UPDATE_PROGRESS), ("acquire", ACQUIRE_LEASE), ("renew", RENEW_LEASE),
            ("release", RELEASE_LEASE), ("lease", SELECT_LEASE), ("build", INSERT_BUILD),
            ("builds", SELECT_BUILDS_AFTER), ("newest", SELECT_NEWEST_BUILD))}
        self._q = prep

    # --- watermarks ----------------------------------------------------------------------
    def positions(self, stage: str) -> dict[tuple[str, int], Position]:
        return {(r.stream, r.part): Position(r.stream, r.part, r.position,
                                             _utc(r.position_time), _utc(r.updated_at))
                for r in self.session.execute(self._q["select"], (stage,))}

    def advance(self, stage: str, stream: str, part: int, old: Position | None, position: int,
                position_time: datetime | None = None) -> None:
        """Move one watermark from ``old`` (None: never set) to ``position``, compare-and-set.
        Raises ProgressConflict if it is no longer at ``old``."""
        now = datetime.now(UTC)
        if old is None:
            result = self.session.execute(self._q["insert"], (stage, stream, part, position,
                                                              position_time, now))
        else:
            result = self.session.execute(self._q["update"], (
                position, position_time or old.position_time, now, stage, stream, part,
                old.position))
        if not result.was_applied:
            raise ProgressConflict(
                f"the {stage} watermark of {stream}/{part} moved under this run (expected "
                f"{old.position if old else 'unset'}): another run processed it; nothing lost")

    # --- leases --------------------------------------------------------------------------
    def holder(self, stage: str) -> str | None:
        row = self.session.execute(self._q["lease"], (stage,)).one()
        return row.owner if row else None

    @contextmanager
    def lease(self, stage: str, ttl_s: int = LEASE_TTL_S, wait_s: float = 0.0,
              on_wait: Callable[[str | None], None] = lambda _holder: None) -> Iterator[str]:
        """Hold the stage's lease for the block (renewed every ttl/3 by a thread). If another
        run holds it: with ``wait_s`` 0, raises LeaseHeld at once (a pipeline run: the holder
        processes what is pending); else calls ``on_wait(holder)`` once and tries again every
        second, raising LeaseHeld after ``wait_s`` seconds (a rebuild by hand, which must not
        write a date while a pipeline run writes it)."""
        owner = owner_id()
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            result = self.session.execute(self._q["acquire"], (stage, owner, datetime.now(UTC),
                                                               ttl_s))
            if result.was_applied:
                break
            row = result.one()
            held_by = getattr(row, "owner", None) if row is not None else None
            if time.monotonic() >= deadline:
                waited = f" (waited {wait_s:g} s)" if wait_s else ""
                raise LeaseHeld(f"another {stage} run ({held_by}) is working on keyspace "
                                f"{self.keyspace}{waited}; it (or the next run) processes what "
                                "is pending")
            if not told:
                on_wait(held_by)
                told = True
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl_s / 3):
                try:
                    if not self.session.execute(self._q["renew"], (
                            ttl_s, owner, datetime.now(UTC), stage, owner)).was_applied:
                        log.error("lost the %s lease of %s: the watermark's compare-and-set "
                                  "guards what this run advances", stage, self.keyspace)
                        return
                except Exception as exc:  # noqa: BLE001 - retried at the next beat
                    log.warning("renewing the %s lease failed (%s); retrying", stage, exc)

        beat = threading.Thread(target=renew, name=f"lease-{stage}", daemon=True)
        beat.start()
        try:
            yield owner
        finally:
            stop.set()
            beat.join(5)
            try:
                self.session.execute(self._q["release"], (stage, owner))
            except Exception as exc:  # noqa: BLE001 - the TTL frees it anyway
                log.warning("releasing the %s lease failed (%s); it expires in %ds", stage, exc,
                            ttl_s)

    # --- the feature-build log ----------------------------------------------------------
    def record_build(self, dates: set[date], entities: int,
                     max_event_time: datetime | None) -> int:
        """Append one build to the log (next number, claimed by LWT); returns its number."""
        for _attempt in range(20):
            newest = self.newest_build()
            seq = (newest.seq if newest else 0) + 1
            if self.session.execute(self._q["build"], (
                    BUILD_LOG, seq, dates, entities, max_event_time,
                    datetime.now(UTC))).was_applied:
                return seq
        raise ProgressConflict("could not claim a feature-build number after 20 attempts")

    def builds_after(self, seq: int) -> list[FeatureBuild]:
        """Builds numbered above ``seq``, oldest first."""
        rows = self.session.execute(self._q["builds"], (BUILD_LOG, seq))
        return sorted((_build(r) for r in rows), key=lambda b: b.seq)

    def newest_build(self) -> FeatureBuild | None:
        row = self.session.execute(self._q["newest"], (BUILD_LOG,)).one()
        return _build(row) if row else None


def _build(row: Any) -> FeatureBuild:
    return FeatureBuild(row.build_seq, frozenset(cql_date(d) for d in (row.dates or ())),
                        row.entities or 0, _utc(row.max_event_time), as_utc(row.built_at))


#: The stage row that marks a keyspace as served by Airflow: written by the ingest signaller once
#: Airflow accepted one of its asset events. The DAGs' runs (time fallback included) serve the
#: default keyspace and every keyspace so marked, whether or not a trigger named it.
ANNOUNCED = ("announce", "airflow", 0)

#: A stage's work in one keyspace: a summary, or why it did nothing.
Step = Callable[["Workspace"], "dict[str, Any] | str"]


def mark_announced(progress: Progress, event_id: int | None) -> None:
    stage, stream, part = ANNOUNCED
    if (stream, part) not in progress.positions(stage):
        # another signaller may mark it first: that is all this records
        with contextlib.suppress(ProgressConflict):
            progress.advance(stage, stream, part, None, int(event_id or 0))


#: The stage row that retires a keyspace (``streamfit pipeline retire``): no pipeline run serves
#: it any more, whatever announced or hinted it, until ``streamfit pipeline serve`` removes it.
RETIRED = ("retire", "pipeline", 0)


def _row(session: Session, keyspace: str, key: tuple[str, str, int]) -> Any:
    stage, stream, part = key
    return session.execute(f"SELECT position, updated_at FROM {keyspace}.stage_progress "
                           "WHERE stage = %s AND stream = %s AND part = %s",
                           (stage, stream, part)).one()


def _ours(session: Session) -> set[str]:
    from streamfit.catalog import valid_keyspace

    keyspaces = session.cluster.metadata.keyspaces
    return {name for name, meta in keyspaces.items()
            if "stage_progress" in meta.tables and valid_keyspace(name)}


@dataclass(frozen=True)
class KeyspaceState:
    """A streamfit keyspace as the pipeline sees it (``streamfit pipeline keyspaces``)."""

    name: str
    served: bool
    #: why: "default keyspace", "announced by ingest", "retired", "never announced"
    why: str
    #: when a feature, training or scoring run last moved its watermark (None: never)
    last_run: datetime | None


def keyspace_states(session: Session, default: str) -> list[KeyspaceState]:
    """Every streamfit keyspace, served or not, and why."""
    out = []
    for name in sorted(_ours(session)):
        if _row(session, name, RETIRED) is not None:
            served, why = False, "retired"
        elif name == default:
            served, why = True, "default keyspace"
        elif _row(session, name, ANNOUNCED) is not None:
            served, why = True, "announced by ingest"
        else:
            served, why = False, "never announced"
        runs = [as_utc(r.updated_at) for r in session.execute(
            f"SELECT stage, updated_at FROM {name}.stage_progress") if r.updated_at is not None
            and r.stage in ("features", "training", "scoring")]
        out.append(KeyspaceState(name, served, why, max(runs, default=None)))
    return out


def set_retired(session: Session, keyspace: str, retired: bool) -> bool:
    """Retire ``keyspace`` (or serve it again); False when it already was so."""
    stage, stream, part = RETIRED
    if (_row(session, keyspace, RETIRED) is not None) == retired:
        return False
    if retired:
        session.execute(f"INSERT INTO {keyspace}.stage_progress (stage, stream, part, position, "
                        "updated_at) VALUES (%s, %s, %s, 0, %s)",
                        (stage, stream, part, datetime.now(UTC)))
    else:
        session.execute(f"DELETE FROM {keyspace}.stage_progress WHERE stage = %s AND "
                        "stream = %s AND part = %s", (stage, stream, part))
    return True


def pipeline_keyspaces(session: Session, default: str, hinted: Iterable[str] = ()) -> list[str]:
    """The keyspaces a pipeline run serves: the default one, those a trigger hinted at, and every
    keyspace whose ingest has announced data to Airflow (so a lost trigger delays, never drops,
    its work), less those retired. Only existing streamfit keyspaces (with the progress tables)
    count."""
    ours = _ours(session)
    served = {default, *hinted} & ours
    for name in sorted(ours - served):
        if _row(session, name, ANNOUNCED) is not None:
            served.add(name)
    return sorted(k for k in served if _row(session, k, RETIRED) is None)


#: What a stage's step returns for a keyspace with no work: a time-fallback run usually finds it.
NOTHING_PENDING = "nothing pending"


def run_stage(settings: Any, stage: str, step: Step, hinted: Iterable[str] = (),
              only: Iterable[str] | None = None) -> dict[str, Any]:
    """Run ``step(workspace)`` under the stage's lease for every keyspace the pipeline serves
    (each workspace has the domain its keyspace records, so one Airflow serves keyspaces of
    different domains), or for those of them in ``only``. ``step`` returns a summary, or a
    string saying why it did nothing. Returns
    ``{"by_keyspace": {ks: summary}, "skipped": {ks: why}}``, the ``extra`` of the DAG's outlet
    event."""
    from streamfit.cassandra import connect
    from streamfit.workspace import workspace

    done: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    wanted = None if only is None else set(only)
    with connect(settings, keyspace=None) as session:
        for keyspace in pipeline_keyspaces(session, settings.keyspace, hinted):
            if wanted is not None and keyspace not in wanted:
                continue
            ws = workspace(settings, session, keyspace)
            try:
                with ws.progress.lease(stage):
                    result = step(ws)
            except LeaseHeld as exc:
                result = str(exc)
            if isinstance(result, str):
                skipped[keyspace] = result
                log.info("%s %s: %s", stage, keyspace, result)
            else:
                done[keyspace] = result
    return {"by_keyspace": done, "skipped": skipped}
