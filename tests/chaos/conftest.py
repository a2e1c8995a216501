"""Fault-injection scenarios against the real services (issue 6).

`make test` runs them at a reduced size; `make chaos` sets ``CHAOS_SIZE=full``. Each
scenario adds one row to the report (events in, landed, dead-lettered, lost, duplicated, recovery
time), printed at the end of the session and written to ``bench/results/chaos-<size>.json``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from ingest.service import ensure_topics
from streamfit.settings import Settings

SIZE = os.environ.get("CHAOS_SIZE", "reduced")
if SIZE not in ("reduced", "full"):
    raise pytest.UsageError("CHAOS_SIZE is `reduced` (default) or `full`")
FULL = SIZE == "full"
# full-size figures are kept with the other benchmark results; CI's reduced run stays out of git
RESULTS = (Path(__file__).resolve().parents[2] / "bench" / "results" if FULL
           else Path(__file__).resolve().parents[2] / ".streamfit")


@dataclass
class Row:
    scenario: str
    events_in: int
    landed: int
    dead_lettered: int
    lost: int
    duplicated: int
    recovery_s: float | None
    note: str = ""


REPORT: list[Row] = []


@pytest.fixture(autouse=True)
def _require_stack(request: pytest.FixtureRequest) -> None:
    """Every scenario runs against the real stack: the single-node one, but for the cluster
    scenarios (tests/chaos/cluster), which start the cluster topology themselves."""
    if request.node.get_closest_marker("cluster") is None:
        request.getfixturevalue("stack")


S = TypeVar("S", bound=Settings)


def own_stream(ks: S, kind: str, batch_size: int) -> S:
    """``ks`` with a topic and consumer group of the scenario's own (created here); its
    data-arrival signals go nowhere (scenarios that want Airflow put its URL back)."""
    tag = uuid.uuid4().hex[:10]
    s = ks.model_copy(update={
        "events_topic": f"t.{kind}.{tag}", "ingest_group": f"t-{kind}-{tag}",
        "ingest_metrics_port": 0, "signal_interval_s": 1.0, "ingest_batch_size": batch_size,
        "airflow_url": "http://127.0.0.1:9"})
    ensure_topics(s)
    return s


@pytest.fixture
def chaos_settings(fresh_keyspace_settings: Settings) -> Iterator[Settings]:
    """A keyspace of each scenario's own: once a scenario's signals reach Airflow, the DAGs'
    time fallback serves its keyspace, and must not act on the next scenario's data."""
    yield own_stream(fresh_keyspace_settings, "chaos", 2000)


def record(row: Row) -> None:
    REPORT.append(row)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    cols = ["scenario", "events in", "landed", "dead-lettered", "lost", "duplicated",
            "recovery s", "note"]
    terminalreporter.section(f"fault injection ({SIZE} size)")
    terminalreporter.write_line(" | ".join(cols))
    for r in REPORT:
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        terminalreporter.write_line(" | ".join(str(x) for x in (
            r.scenario, r.events_in, r.landed, r.dead_lettered, r.lost, r.duplicated, rec,
            r.note)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"chaos-{SIZE}.json").write_text(json.dumps([asdict(r) for r in REPORT],
                                                           indent=2))
