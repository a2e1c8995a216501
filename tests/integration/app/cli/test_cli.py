"""The command line against the real services: one-line errors, --json shapes, and keyspaces
listed, retired and served again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from scoring.batch import score_dates
from streamfit.cassandra import connect
from streamfit.progress import Progress, keyspace_states, mark_announced, pipeline_keyspaces
from streamfit.settings import Settings
from tests.integration.training.test_registry_and_training import START, _write_features
from tests.support.workspace import ws
from training.train import train_and_maybe_promote

DAY = START + timedelta(days=29)


def _cli(s: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cli = str(Path(sys.executable).parent / "streamfit")
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "STREAMFIT_KEYSPACE": s.keyspace, **env})


@pytest.mark.parametrize(("env", "args", "setting"), [
    ({"STREAMFIT_KEYSPACE": "t_no_such_keyspace"}, ["models", "list"], "STREAMFIT_KEYSPACE"),
    ({"STREAMFIT_CASSANDRA_HOSTS": "127.0.0.9"}, ["models", "show"],
     "STREAMFIT_CASSANDRA_HOSTS"),
    ({"STREAMFIT_CASSANDRA_HOSTS": "no-such-host.invalid"}, ["predictions", "get", "UA1-EWR"],
     "STREAMFIT_CASSANDRA_HOSTS"),
    ({"STREAMFIT_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, ["ingest", "status"],
     "STREAMFIT_KAFKA_BOOTSTRAP_SERVERS"),
    ({"STREAMFIT_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, ["dlq", "list"],
     "STREAMFIT_KAFKA_BOOTSTRAP_SERVERS"),
])
def test_an_unreachable_service_or_missing_keyspace_is_one_line_naming_the_setting(
        keyspace_settings: Settings, env: dict[str, str], args: list[str], setting: str) -> None:
    proc = _cli(keyspace_settings, *args, **env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert setting in lines[0] and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def scored(keyspace_settings: Settings) -> Settings:
    s = keyspace_settings.model_copy(update={"train_days": 30, "holdout_days": 5})
    _write_features(s, 30)
    assert train_and_maybe_promote(ws(s)).promoted
    score_dates(ws(s), [DAY], evaluate=[DAY])
    return s


def test_read_commands_give_their_documented_json(scored: Settings) -> None:
    listed = json.loads(_cli(scored, "models", "list", "--json").stdout)
    assert [v["alias"] for v in listed if v["version"] == 1] == ["champion"]
    assert set(listed[0]) == {"version", "alias", "algorithm", "created_at", "train_window",
                              "roc_auc", "naive_roc_auc"}
    shown = json.loads(_cli(scored, "models", "show", "--json").stdout)
    assert shown["version"] == 1 and shown["alerts"] == []
    [run] = shown["runs"]
    assert run["dates"] == [DAY.isoformat()]
    assert [c["day"] for c in run["checks"]] == [DAY.isoformat()]
    key = json.loads(_cli(scored, "predictions", "list", "--date", DAY.isoformat(),
                          "--format", "json", "--limit", "1").stdout)[0]["flight_id"]
    got = _cli(scored, "predictions", "get", key, "--history", "--json")
    assert got.returncode == 0, got.stderr
    one = json.loads(got.stdout)
    assert one["latest"]["flight_id"] == key and one["latest"]["model_version"] == 1
    assert {(h["model_version"], h["horizon_min"]) for h in one["history"]} == {(1, 120),
                                                                             (1, 1440)}
    assert json.loads(_cli(scored, "predictions", "get", key, "--json").stdout)["history"] is None
    readable = _cli(scored, "models", "show")
    assert readable.returncode == 0 and "{" not in readable.stdout  # a summary, not JSON
    assert "v1 against v0: promoted" in readable.stdout  # the naive floor it beat
    settings = json.loads(_cli(scored, "settings", "--json").stdout)
    mine = next(r for r in settings if r["env"] == "STREAMFIT_KEYSPACE")
    assert mine["source"] == "environment" and mine["effective"] == scored.keyspace


def _states(s: Settings, default: str) -> dict[str, tuple[bool, str]]:
    with connect(s, keyspace=None) as session:
        return {k.name: (k.served, k.why) for k in keyspace_states(session, default)}


def test_a_keyspace_is_listed_retired_served_again_and_dropped(
        fresh_keyspace_settings: Settings, stack: Settings) -> None:
    s = fresh_keyspace_settings
    name = s.keyspace
    # seen from another keyspace's point of view: this one is not the default
    other = {"STREAMFIT_KEYSPACE": stack.keyspace}
    assert _states(s, stack.keyspace)[name] == (False, "never announced")
    with connect(s, keyspace=None) as session:
        mark_announced(Progress(session, name), 1)
        assert name in pipeline_keyspaces(session, stack.keyspace)
    listed = _cli(s, "pipeline", "keyspaces", "--json", **other)
    row = next(r for r in json.loads(listed.stdout) if r["keyspace"] == name)
    assert (row["served"], row["why"], row["backlog"]) == (True, "announced by ingest", 0)
    assert set(row["pending"]) == {"ingest", "features", "training", "scoring"}
    retired = _cli(s, "pipeline", "retire", name, **other)
    assert retired.returncode == 0 and "no pipeline run serves it" in retired.stdout
    with connect(s, keyspace=None) as session:
        # neither its announcement nor a trigger naming it brings it back
        assert name not in pipeline_keyspaces(session, stack.keyspace, hinted=[name])
        assert name not in pipeline_keyspaces(session, name)
    assert _states(s, stack.keyspace)[name] == (False, "retired")
    assert "already retired" in _cli(s, "pipeline", "retire", name, **other).stdout
    back = _cli(s, "pipeline", "serve", name, **other)
    assert back.returncode == 0 and "served again" in back.stdout
    with connect(s, keyspace=None) as session:
        assert name in pipeline_keyspaces(session, stack.keyspace)
    gone = _cli(s, "pipeline", "retire", name, "--drop", "--yes", **other)
    assert gone.returncode == 0 and "dropped" in gone.stdout
    assert name not in _states(s, stack.keyspace)
    missing = _cli(s, "pipeline", "retire", name, **other)
    assert missing.returncode == 1 and "not a streamfit keyspace" in missing.stderr


@pytest.mark.parametrize(("stage", "args"), [
    ("features", ["features", "build", "--date", "2013-02-05"]),
    ("training", ["train", "--force"]),
    ("scoring", ["score", "--date", "2013-02-05"]),
])
def test_a_stage_run_by_hand_is_refused_while_a_pipeline_run_holds_its_lease(
        fresh_keyspace_settings: Settings, stage: str, args: list[str]) -> None:
    s = fresh_keyspace_settings
    with connect(s) as session, Progress(session, s.keyspace).lease(stage) as holder:
        refused = _cli(s, *args, "--wait", "0")
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert refused.stderr.count("\n") == 1 and holder in refused.stderr, refused.stderr
    assert f"another {stage} run" in refused.stderr


def test_a_rebuild_by_hand_waits_for_the_pipeline_run_building_the_keyspace(
        fresh_keyspace_settings: Settings) -> None:
    """`features build` holds the feature stage's lease as a pipeline run does: a wait long
    enough sees the holder finish, then builds (and frees the lease)."""
    import threading
    import time

    from features.run import STAGE

    s = fresh_keyspace_settings
    with connect(s) as session:
        progress = Progress(session, s.keyspace)
        released = threading.Event()
        with progress.lease(STAGE):

            def release_soon() -> None:
                time.sleep(4)
                released.set()

            threading.Thread(target=release_soon, daemon=True).start()
            # the lease is released when this block ends, after release_soon's sleep
            waiter = subprocess.Popen(
                [str(Path(sys.executable).parent / "streamfit"), "features", "build", "--date",
                 "2013-02-05", "--wait", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env={**os.environ, "STREAMFIT_KEYSPACE": s.keyspace})
            released.wait(30)
            assert waiter.poll() is None, waiter.communicate()  # still waiting: not built
        out, err = waiter.communicate(timeout=180)
        assert waiter.returncode == 0, (out, err)
        assert "waiting up to 120 s" in out and "built 0 rows" in out, out
        assert progress.holder(STAGE) is None  # released when the build ended
