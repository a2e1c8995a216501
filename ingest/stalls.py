"""Stalled partitions: lag while the committed offset stops moving (a stuck worker, a partition
nobody consumes). Checked every 10 s by the ingest supervisor (``ingest.service``)."""

from __future__ import annotations

import logging

from ingest import metrics

log = logging.getLogger("streamfit.ingest")


class StallWatch:
    """Reports partitions whose committed offset stopped moving while they have lag (a stuck
    worker, a partition nobody consumes): a warning in the log once per stall, and the
    ``streamfit_ingest_partition_stalled`` gauge on the supervisor's metrics port."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.seen: dict[int, tuple[int, float]] = {}  # partition -> (committed, since)
        self.reported: set[int] = set()

    def observe(self, offsets: dict[int, tuple[int, int]], now: float) -> dict[int, str]:
        stalled = {}
        for p, (committed, end) in offsets.items():
            before = self.seen.get(p)
            if before is None or before[0] != committed or end <= committed:
                self.seen[p] = (committed, now)
                self.reported.discard(p)
                metrics.STALLED.labels(partition=str(p)).set(0)
                continue
            waited = now - before[1]
            if waited > self.after_s:
                stalled[p] = (f"lag {end - committed}, committed offset {committed} unchanged "
                              f"for {waited:.0f}s")
                metrics.STALLED.labels(partition=str(p)).set(1)
                if p not in self.reported:
                    self.reported.add(p)
                    log.warning("ingest partition %d stalled: %s", p, stalled[p])
        return stalled
