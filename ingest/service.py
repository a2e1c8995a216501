"""``streamfit ingest run``: N worker processes in one consumer group, plus the arrival signaller.

The supervising process creates the topics and the schema, starts the workers (each its own
kafka-python consumer; Kafka spreads the partitions among them), restarts a worker that dies,
and runs the data-arrival signaller. SIGTERM/SIGINT stop the workers gracefully (each finishes
its batch, commits and closes), then a last signal is sent for what they landed.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess

from ingest import metrics
from ingest.dlq import dlq_max_message_bytes
from ingest.stalls import StallWatch
from streamfit import kafka as kafka_io
from streamfit.cassandra import connect
from streamfit.schema import migrate
from streamfit.settings import Settings
from streamfit.store import IngestStore

log = logging.getLogger("streamfit.ingest")


def ensure_topics(settings: Settings) -> None:
    kafka_io.ensure_topic(settings, settings.events_topic, settings.events_partitions)
    # Dead letters are kept for weeks: they wait for a fix and `streamfit dlq replay`. The topic
    # takes any message ingest may copy (up to its size limit, plus the dead-letter headers).
    kafka_io.ensure_topic(settings, settings.dead_letter_topic, 1,
                          {"retention.ms": str(30 * 24 * 3600 * 1000),
                           "max.message.bytes": str(dlq_max_message_bytes(settings))})


class IngestService:
    def __init__(self, settings: Settings, workers: int,
                 on_event: Callable[[str], None] = log.info) -> None:
        self.settings = settings
        self.workers = workers
        self.on_event = on_event
        self.stopping = False
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.restarts = 0
        #: data-arrival signals that failed (Airflow or Kafka away); the ledger keeps their rows
        self.signal_failures = 0
        #: data-arrival signals Airflow accepted, and why the last failed one failed
        self.signals_sent = 0
        self.last_signal_error: str | None = None
        #: failures in a row, and when the next attempt is due after them (monotonic)
        self._failing, self._retry_at = 0, 0.0
        #: partitions reported stalled by the last check, with the reason
        self.stalled: dict[int, str] = {}

    def stop(self, *_args: object) -> None:
        self.stopping = True

    def _start(self, index: int) -> None:
        from ingest.worker import worker_main

        proc = self.ctx.Process(target=worker_main, args=(self.settings, index),
                                name=f"streamfit-ingest-w{index}", daemon=False)
        proc.start()
        self.procs[index] = proc
        self.on_event(f"worker {index} started (pid {proc.pid})")

    def run(self, install_signals: bool = True) -> None:
        from ingest.signal import ArrivalSignaller

        s = self.settings
        ensure_topics(s)
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        with connect(s, keyspace=None) as session:
            migrate(session, s)
            session.set_keyspace(s.keyspace)
            # the feature stage reads the ledgers of the sources registered here
            IngestStore(session, s.keyspace).register_source(s.ingest_group, s.events_topic)
            signaller = ArrivalSignaller(s, session)
            for i in range(self.workers):
                self._start(i)
            if s.ingest_metrics_port:
                metrics.serve(s.ingest_metrics_port + self.workers)
            watch, next_watch = StallWatch(s.pipeline_stall_after_s), 0.0
            try:
                while not self.stopping:
                    for i, proc in list(self.procs.items()):
                        if not proc.is_alive() and not self.stopping:
                            self.restarts += 1
                            self.on_event(f"worker {i} exited ({proc.exitcode}); restarting")
                            self._start(i)
                    self._signal(signaller)
                    if time.monotonic() >= next_watch:
                        next_watch = time.monotonic() + 10.0
                        self._watch(watch)
                    time.sleep(1.0)
            finally:
                self._stop_workers()
                self._signal(signaller, force=True)
                signaller.close()
        self.on_event("ingest stopped")

    def _watch(self, watch: StallWatch) -> None:
        from ingest.status import source_offsets

        s = self.settings
        try:
            admin = kafka_io.admin(s, client_id="streamfit-stall-watch")
            try:
                offsets = source_offsets(admin, s.ingest_group, s.events_topic)
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - Kafka down: the workers say so; check again
            log.debug("stall check skipped (%s)", exc)
            return
        self.stalled = watch.observe(offsets, time.monotonic())

    #: the longest wait between two attempts while signals fail (the first waits 1 s, then 2,
    #: 4, 8): Airflow down for an hour costs a few hundred attempts, not 3,600, and its return
    #: is noticed within this many seconds
    SIGNAL_BACKOFF_MAX_S = 10.0

    def _signal(self, signaller: object, force: bool = False) -> None:
        if not force and time.monotonic() < self._retry_at:
            return
        try:
            extra = signaller.tick(force=force)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - Airflow/Kafka down: the ledger keeps it; retry
            error = f"{type(exc).__name__}: {exc}"
            # said once per outage (and when the reason changes), not once a second
            if not self._failing or error != self.last_signal_error:
                log.warning("data-arrival signal not sent yet (%s); the ledger keeps what "
                            "landed, retrying every %.0f s at most", error,
                            self.SIGNAL_BACKOFF_MAX_S)
            self.signal_failures += 1
            self._failing += 1
            self._retry_at = time.monotonic() + min(self.SIGNAL_BACKOFF_MAX_S,
                                                    2.0 ** (self._failing - 1))
            self.last_signal_error = error
            return
        if self._failing:
            log.info("data-arrival signals reach Airflow again after %d failed attempts",
                     self._failing)
        self._failing, self._retry_at = 0, 0.0
        if extra and extra["rows"]:
            self.signals_sent += 1

    def _stop_workers(self, timeout: float = 60.0) -> None:
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid:
                proc.terminate()  # SIGTERM: finish the batch in flight, commit, close
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop in %.0fs; killing it", proc.name, timeout)
                proc.kill()
                proc.join(5)


class IngestDidNotStop(RuntimeError):
    """The background ingest service was still running after its stop timeout."""


@contextmanager
def running_in_background(settings: Settings, workers: int | None = None,
                          on_event: Callable[[str], None] = lambda _m: None,
                          stop_timeout_s: float = 120.0) -> Iterator[IngestService]:
    """The ingest service (real worker processes) supervised from a thread of this process, for
    as long as the block runs: the demo, the tests and the benchmarks land events this way."""
    service = IngestService(settings, workers or settings.ingest_workers, on_event=on_event)
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False},
                              name="streamfit-ingest", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(stop_timeout_s)
    if thread.is_alive():
        raise IngestDidNotStop(f"the ingest service did not stop within {stop_timeout_s:.0f}s")
