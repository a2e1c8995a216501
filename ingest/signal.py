"""Tell Airflow that raw events landed: debounced asset events driven by the durable ledger.

Runs inside ``streamfit ingest run`` (a loop in the supervising process) and on demand as
``streamfit ingest signal``. The ledger and the consumer group's committed offsets are the source
of truth, so no signal is lost while Airflow is down: whatever landed and was committed since the
last successful signal is summarised into the next one.

Per partition the state table keeps ``signalled_upto`` (an offset). A signal covers the ledger
rows with ``signalled_upto <= first_offset < committed offset``: a row below the committed offset
can no longer change. After Airflow accepted the asset event, the state advances. A crash between
the two re-sends the same summary once (harmless: feature builds are idempotent).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session
from kafka import KafkaAdminClient

from streamfit import catalog
from streamfit import kafka as kafka_io
from streamfit.airflow_api import AirflowClient, airflow_client
from streamfit.progress import Progress, mark_announced
from streamfit.settings import Settings
from streamfit.store import IngestStore, LedgerEntry, as_utc, ledger_offsets

log = logging.getLogger("streamfit.ingest.signal")


@dataclass(frozen=True)
class Pending:
    entries: list[LedgerEntry]
    upto: dict[int, int]  # partition -> signalled_upto after this signal

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.entries)


def summarise(entries: list[LedgerEntry], group: str, keyspace: str) -> dict[str, Any]:
    """The ``extra`` of the asset event: what landed, where it came from, which days it touched."""
    offsets = ledger_offsets(entries)
    # Cassandra returns naive UTC datetimes: say UTC explicitly in the extra.
    times = [as_utc(t) for e in entries for t in (e.min_event_time, e.max_event_time)
             if t is not None]
    return {
        "rows": sum(e.rows for e in entries),
        "dead_lettered": sum(e.dead_lettered for e in entries),
        "batches": len(entries),
        "event_dates": sorted({d.isoformat() for e in entries for d in e.event_dates}),
        "offsets": offsets,
        "min_event_time": min(times).isoformat() if times else None,
        "max_event_time": max(times).isoformat() if times else None,
        "consumer_group": group,
        "keyspace": keyspace,
    }


class ArrivalSignaller:
    def __init__(self, settings: Settings, session: Session,
                 client: AirflowClient | None = None) -> None:
        self.settings = settings
        self.session = session
        self.store = IngestStore(session, settings.keyspace)
        ks = settings.keyspace
        self._state = session.prepare(
            f"SELECT partition, signalled_upto FROM {ks}.ingest_signal_state "
            "WHERE consumer_group = ? AND topic = ?")
        self._advance = session.prepare(
            f"INSERT INTO {ks}.ingest_signal_state (consumer_group, topic, partition, "
            "signalled_upto, updated_at) VALUES (?, ?, ?, ?, ?)")
        self._record = session.prepare(
            f"INSERT INTO {ks}.ingest_signals (signal_day, signal_id, asset, rows, extra, "
            "airflow_event_id) VALUES (?, ?, ?, ?, ?, ?)")
        self._client = client
        self._admin: KafkaAdminClient | None = None
        self._last_sent = float("-inf")
        self._announced = False

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self._client is not None:
            self._client.close()

    def _airflow(self) -> AirflowClient:
        if self._client is None:
            self._client = airflow_client(self.settings)
        return self._client

    def committed(self) -> dict[int, int]:
        if self._admin is None:
            self._admin = kafka_io.admin(self.settings, client_id="streamfit-signaller")
        # committed_offsets looks the coordinator up again when it answers NOT_COORDINATOR
        return kafka_io.committed_offsets(self._admin, self.settings.ingest_group,
                                          self.settings.events_topic)

    def pending(self) -> Pending:
        s = self.settings
        state = {r.partition: r.signalled_upto
                 for r in self.session.execute(self._state, (s.ingest_group, s.events_topic))}
        entries: list[LedgerEntry] = []
        upto: dict[int, int] = {}
        for partition, committed in self.committed().items():
            start = state.get(partition, 0)
            if committed <= start:
                continue
            found = self.store.ledger_from(s.ingest_group, s.events_topic, partition, start,
                                           committed)
            if found:
                entries.extend(found)
                upto[partition] = max(e.last_offset for e in found) + 1
        return Pending(entries, upto)

    def tick(self, force: bool = False) -> dict[str, Any] | None:
        """Send one signal if something landed and the debounce allows it; return its extra."""
        s = self.settings
        pending = self.pending()
        if not pending.entries:
            return None
        due = (force or pending.rows >= s.signal_max_rows
               or time.monotonic() - self._last_sent >= s.signal_interval_s)
        if not due:
            return None
        extra = summarise(pending.entries, s.ingest_group, s.keyspace)
        event_id = None
        if pending.rows:
            # Raises while Airflow is down: the state does not advance, the next tick retries.
            event = self._airflow().create_asset_event(catalog.RAW_EVENTS.uri, extra)
            event_id = event.get("id")
            self._last_sent = time.monotonic()
            if not self._announced:
                # From now on every pipeline run (the time fallback too) serves this keyspace,
                # so work is never lost with a trigger that Airflow attached to no run.
                mark_announced(Progress(self.session, s.keyspace), event_id)
                self._announced = True
        now = datetime.now(UTC)
        for partition, offset in pending.upto.items():
            self.session.execute(self._advance,
                                 (s.ingest_group, s.events_topic, partition, offset, now))
        self.session.execute(self._record, (now.date(), uuid.uuid1(), catalog.RAW_EVENTS.name,
                                            pending.rows, json.dumps(extra), event_id))
        if pending.rows:
            log.info("signalled %s: %d rows, dates %s", catalog.RAW_EVENTS.name, pending.rows,
                     extra["event_dates"])
        return extra


def signal_now(settings: Settings) -> dict[str, Any] | None:
    """Announce whatever landed since the last signal, now (``streamfit ingest signal``);
    returns the signal's ``extra``, or None when nothing new landed."""
    from streamfit.cassandra import connect

    with connect(settings) as session:
        signaller = ArrivalSignaller(settings, session)
        try:
            return signaller.tick(force=True)
        finally:
            signaller.close()
