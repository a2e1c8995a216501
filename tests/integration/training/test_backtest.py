"""The backtest against the real Cassandra: trained up to a date, judged on the weeks after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from streamfit.cassandra import connect
from streamfit.domains import load_domain
from streamfit.featurestore import FeatureStore
from streamfit.registry import Registry
from streamfit.settings import Settings
from tests.integration.training.test_registry_and_training import START, _write_features
from tests.support.workspace import ws
from training.backtest import BacktestError, run_backtest

UNTIL = START + timedelta(days=29)


@pytest.fixture(scope="module")
def built(keyspace_settings: Settings) -> Settings:
    """44 days of planted features: 30 to train on, two weeks after them to judge."""
    s = keyspace_settings.model_copy(update={"train_days": 30, "holdout_days": 5})
    _write_features(s, 44)
    return s


def test_the_weeks_after_training_are_judged_next_to_the_naive_baseline(built: Settings) -> None:
    near, ahead = run_backtest(ws(built), UNTIL, weeks=2)
    assert (near.horizon, ahead.horizon) == ("2 h before departure", "day ahead (24 h before)")
    result = near
    assert [(w.start, w.end) for w in result.weeks] == [
        (UNTIL + timedelta(days=1), UNTIL + timedelta(days=7)),
        (UNTIL + timedelta(days=8), UNTIL + timedelta(days=14))]
    assert all(w.rows == 7 * 150 for w in result.weeks)
    # the naive figures are the naive feature's own on exactly those rows
    with connect(built) as session:
        store = FeatureStore(session, built.keyspace, load_domain("flights"))
        week = [store.read_day(UNTIL + timedelta(days=i)) for i in range(1, 8)]
    week = [f[f["horizon_min"] == 120] for f in week]  # the horizon judged
    y = np.concatenate([f["label"].to_numpy(dtype=int) for f in week])
    naive = np.concatenate([f["late_rate_route_28d"].to_numpy(dtype=float) for f in week])
    assert result.weeks[0].naive["roc_auc"] == pytest.approx(roc_auc_score(y, naive), abs=1e-12)
    assert result.weeks[0].late_share == pytest.approx(y.mean())
    # the planted signal has two parts, the naive baseline sees one: the trained model serves
    # and beats it on the holdout and on the weeks after
    assert result.served_by == "trained, refitted with the holdout"
    assert result.holdout["roc_auc"] > result.holdout["naive_roc_auc"]
    assert all(w.served["roc_auc"] > w.naive["roc_auc"] + 0.05 and
               w.trained["roc_auc"] > w.naive["roc_auc"] + 0.05 for w in result.weeks)
    # the served fit is the refit (it differs from the holdout-judged one), unless told not to
    assert all(w.served != w.trained for w in result.weeks)
    [unrefitted] = run_backtest(ws(built.model_copy(update={"refit_with_holdout": False})), UNTIL,
                                weeks=1, horizons=["2 h before departure"])
    assert unrefitted.served_by == "trained"
    assert unrefitted.weeks[0].served == unrefitted.weeks[0].trained == result.weeks[0].trained
    # one model for both horizons, judged on each horizon's own rows
    assert near.algorithm == ahead.algorithm and len(ahead.weeks) == 2
    assert all(w.rows == 7 * 150 for w in ahead.weeks)
    # a backtest registers nothing
    with connect(built) as session:
        assert Registry(session, built.keyspace, "flight_delay").versions() == []


def test_the_cli_prints_json_and_explains_what_is_missing(built: Settings) -> None:
    env = {**os.environ, "STREAMFIT_KEYSPACE": built.keyspace, "STREAMFIT_TRAIN_DAYS": "30",
           "STREAMFIT_HOLDOUT_DAYS": "5"}
    cli = str(Path(sys.executable).parent / "streamfit")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, "backtest", *args], env=env, capture_output=True, text=True,
                              timeout=300, check=False)

    done = run("--train-until", UNTIL.isoformat(), "--weeks", "1", "--horizon",
               "day ahead (24 h before)", "--format", "json")
    assert done.returncode == 0, done.stderr
    [body] = json.loads(done.stdout)["horizons"]
    assert body["train_until"] == UNTIL.isoformat() and len(body["weeks"]) == 1
    assert body["horizon"] == "day ahead (24 h before)"
    assert set(body["weeks"][0]["served"]) >= {"roc_auc", "pr_auc", "brier", "calibration_error"}
    for args, message in ((("--train-until", "2013-02-30"), "not a date"),
                          (("--train-until", UNTIL.isoformat(), "--horizon", "soon"),
                           "not a horizon"),
                          (("--train-until", UNTIL.isoformat(), "--weeks", "0"), "--weeks"),
                          (("--train-until", "2012-01-01"), "no labelled features")):
        bad = run(*args)
        assert bad.returncode in (1, 2) and message in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(BacktestError, match="week"):
        run_backtest(ws(built), START + timedelta(days=43), weeks=1)  # nothing after the last day
