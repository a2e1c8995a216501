"""Durable stage progress against real Cassandra: leases, compare-and-set watermarks, the
feature-build log and which keyspaces a pipeline run serves."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest

from streamfit.cassandra import connect
from streamfit.progress import (
    LeaseHeld,
    Progress,
    ProgressConflict,
    mark_announced,
    pipeline_keyspaces,
    run_stage,
)
from streamfit.settings import Settings


def test_one_run_of_a_stage_at_a_time_and_a_killed_holder_frees_it(
        keyspace_settings: Settings) -> None:
    with connect(keyspace_settings) as session:
        progress = Progress(session, keyspace_settings.keyspace)
        with progress.lease("t-lease", ttl_s=3) as owner:
            assert progress.holder("t-lease") == owner
            with pytest.raises(LeaseHeld, match="another t-lease run"), \
                    progress.lease("t-lease", ttl_s=3):
                pass
            time.sleep(4)  # renewed meanwhile: still ours after its TTL
            assert progress.holder("t-lease") == owner
        assert progress.holder("t-lease") is None  # released at the end
        # a holder that dies without releasing: its lease expires after the TTL
        session.execute(f"INSERT INTO {keyspace_settings.keyspace}.stage_leases (stage, owner, "
                        "acquired_at) VALUES ('t-dead', 'gone', toTimestamp(now())) USING TTL 2")
        with pytest.raises(LeaseHeld), progress.lease("t-dead"):
            pass
        time.sleep(3)
        with progress.lease("t-dead") as owner:
            assert progress.holder("t-dead") == owner


def test_watermarks_move_by_compare_and_set(keyspace_settings: Settings) -> None:
    with connect(keyspace_settings) as session:
        progress = Progress(session, keyspace_settings.keyspace)
        progress.advance("t-cas", "s", 0, None, 10)
        first = progress.positions("t-cas")[("s", 0)]
        assert first.position == 10
        with pytest.raises(ProgressConflict):  # a second "first" advance loses
            progress.advance("t-cas", "s", 0, None, 20)
        when = datetime(2013, 1, 2, tzinfo=UTC)
        progress.advance("t-cas", "s", 0, first, 30, when)
        with pytest.raises(ProgressConflict, match="moved under this run"):
            progress.advance("t-cas", "s", 0, first, 40)  # from a stale position
        now = progress.positions("t-cas")[("s", 0)]
        assert (now.position, now.position_time) == (30, when)


def test_concurrent_builds_get_distinct_numbers(keyspace_settings: Settings) -> None:
    with connect(keyspace_settings) as session:
        progress = Progress(session, keyspace_settings.keyspace)
        start = progress.newest_build()
        base = start.seq if start else 0
        seqs: list[int] = []

        def build(i: int) -> None:
            seqs.append(progress.record_build({date(2013, 1, 1 + i)}, i, None))

        threads = [threading.Thread(target=build, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seqs) == list(range(base + 1, base + 7))
        after = progress.builds_after(base + 3)
        assert [b.seq for b in after] == [base + 4, base + 5, base + 6]


def test_runs_serve_the_default_and_every_announced_keyspace(stack: Settings) -> None:
    from tests.conftest import migrated_keyspace

    with migrated_keyspace(stack, "t_prog_quiet") as quiet, \
            migrated_keyspace(stack, "t_prog_loud") as loud:
        with connect(stack, keyspace=None) as session:
            served = pipeline_keyspaces(session, stack.keyspace)
            assert stack.keyspace in served and quiet.keyspace not in served
            mark_announced(Progress(session, loud.keyspace), 7)
            mark_announced(Progress(session, loud.keyspace), 8)  # once is enough; no error
            served = pipeline_keyspaces(session, stack.keyspace)
            assert loud.keyspace in served and quiet.keyspace not in served
            # a hint names a keyspace that does not exist: never created, never served
            assert "t_prog_nosuch" not in pipeline_keyspaces(session, stack.keyspace,
                                                             ["t_prog_nosuch"])
        seen: list[str] = []
        summary = run_stage(stack, "t-stage", lambda ws: seen.append(ws.keyspace)
                            or "nothing", hinted=[quiet.keyspace])
        # (other announced keyspaces of the stack may be served too)
        assert {stack.keyspace, loud.keyspace, quiet.keyspace} <= set(seen)
        assert set(summary["skipped"]) == set(seen) and summary["by_keyspace"] == {}
