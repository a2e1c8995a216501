"""Training, the promotion gate and the registry against the real Cassandra."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from streamfit.cassandra import connect
from streamfit.domains import HORIZON, load_domain
from streamfit.featurestore import FeatureStore
from streamfit.registry import ModelIntegrityError, Registry, predict
from streamfit.settings import Settings
from tests.support.workspace import ws
from training.train import (
    load_window,
    refit,
    score,
    time_split,
    train_and_maybe_promote,
    window_dates,
)

START = date(2013, 3, 1)
FLIGHTS = load_domain("flights")


#: the planted inputs: the naive baseline's feature and one it does not see
SIGNAL = ("late_rate_route_28d", "wx_precip")


def ground_minutes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Minutes on the ground (the label's measure): 15 and a spread of taxi times."""
    return 15.0 + rng.gamma(4.0, 2.5, size=n)


def _write_features(settings: Settings, days: int, per_day: int = 150, seed: int = 0) -> None:
    """Synthetic labelled flight features where the route delay rate (the naive baseline) and
    the weather's precipitation both predict delays, so a model can beat the baseline; written
    through the feature store as a build would, one row per flight at each of the domain's
    horizons (the same values: the signal does not depend on it). Every other feature is
    missing, as on a young stream: uniform noise there made the planted margin shrink with each
    feature the domain gained (a backtest assertion failed once six were added)."""
    rng = np.random.default_rng(seed)
    names = list(FLIGHTS.features.names)
    with connect(settings) as session:
        store = FeatureStore(session, settings.keyspace, FLIGHTS)
        for d in range(days):
            day = START + timedelta(days=d)
            frame = pd.DataFrame(np.nan, index=range(per_day), columns=names)
            frame[list(SIGNAL)] = rng.uniform(size=(per_day, len(SIGNAL)))
            late = rng.uniform(size=per_day) < (0.05 + 0.35 * frame["late_rate_route_28d"]
                                                + 0.55 * frame["wx_precip"])
            frame = frame.assign(
                entity_id=[f"F{d}-{i}" for i in range(per_day)],
                event_time=[datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
                            + timedelta(minutes=i) for i in range(per_day)],
                carrier="UA", origin="EWR", dest="ORD",
                outcome=np.where(late, 30.0, 0.0), label=late.astype(object),
                ground_min=ground_minutes(rng, per_day))
            frame = pd.concat([frame.assign(**{HORIZON: m})
                               for m in FLIGHTS.features.horizon_minutes], ignore_index=True)
            store.write_day(day, frame, {"t": {"0": [d * 100, d * 100 + 99]}})


@pytest.fixture
def trained(fresh_keyspace_settings: Settings) -> Settings:
    s = fresh_keyspace_settings.model_copy(update={"train_days": 30, "holdout_days": 5,
                                             "min_new_rows": 100})
    _write_features(s, 30)
    return s


def test_first_model_becomes_champion_with_metrics_and_lineage(trained: Settings) -> None:
    result = train_and_maybe_promote(ws(trained))
    assert result.status == "registered" and result.promoted and result.version == 1
    assert result.metrics["roc_auc"] > 0.6  # it learned the planted signal
    assert result.metrics["roc_auc"] > result.metrics["naive_roc_auc"]  # both of it
    with connect(trained) as session:
        registry = Registry(session, trained.keyspace, "flight_delay")
        assert registry.aliases()["champion"] == 1
        versions = {v.version: v for v in registry.versions()}
        assert set(versions) == {0, 1}
        # the floor: the naive baseline is v0, ranks as the naive feature does, and was the
        # champion v1 had to beat
        baseline = versions[0]
        assert baseline.algorithm == "NaiveBaseline" and baseline.features == ["late_rate_route_28d"]
        assert baseline.metrics["roc_auc"] == pytest.approx(baseline.metrics["naive_roc_auc"],
                                                            abs=1e-9)
        assert baseline.train_window == versions[1].train_window
        first, promoted = sorted(registry.decisions(), key=lambda d: d.decided_at)
        assert (first.candidate, first.champion, first.promoted) == (0, None, True)
        assert (promoted.candidate, promoted.champion, promoted.promoted) == (1, 0, True)
        assert promoted.champion_score == pytest.approx(baseline.metrics["roc_auc"])
        v = versions[1]
        assert v.train_window["end"] == (START + timedelta(days=29)).isoformat()
        assert v.lineage["kafka_offsets"]["t"]["0"] == [0, 2999]
        assert v.features == FLIGHTS.features.inputs
        model = registry.load(1)
        assert model.predict_proba(np.zeros((1, len(FLIGHTS.features.inputs)))).shape == (1, 2)

        # too little new data: the retrain is skipped and says why
        skipped = train_and_maybe_promote(ws(trained))
        assert skipped.status == "skipped" and "new labelled flights" in skipped.reason

        # a deliberately worse model is registered as challenger, not promoted
        worse = train_and_maybe_promote(ws(trained), force=True, pool=lambda: [
            ("DummyClassifier", {"strategy": "prior"}, DummyClassifier(strategy="prior"))])
        assert worse.status == "registered" and not worse.promoted
        assert registry.aliases() == {"champion": 1, "challenger": 2}
        decision = registry.decisions(1)[0]
        assert decision.candidate == 2 and decision.champion == 1 and not decision.promoted
        assert decision.candidate_score < decision.champion_score


def _split(s: Settings, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows and the holdout of the window ending on the ``days``-th day."""
    with connect(s) as session:
        store = FeatureStore(session, s.keyspace, FLIGHTS)
        frame = load_window(store, window_dates(START + timedelta(days=days - 1), s.train_days))
    return time_split(frame, s.holdout_days)


def test_the_served_fit_saw_the_holdout_and_the_gate_judges_a_fit_that_did_not(
        trained: Settings) -> None:
    names = FLIGHTS.features.inputs
    result = train_and_maybe_promote(ws(trained))
    assert result.promoted and result.version == 1
    train, holdout = _split(trained, 30)
    y = holdout["label"].to_numpy(dtype=int)
    with connect(trained) as session:
        registry = Registry(session, trained.keyspace, "flight_delay")
        served, judged = registry.load(1), registry.load(1, holdout_free=True)
        lineage = {v.version: v.lineage for v in registry.versions()}
        assert lineage[1]["refit_with_holdout"] is True and "refit_with_holdout" not in lineage[0]
    # the holdout figure is the holdout-free fit's; the served one is the same model refitted
    # on the whole window
    assert score(y, predict(judged, holdout, names))["roc_auc"] == pytest.approx(
        result.metrics["roc_auc"], abs=1e-12)
    again = refit(judged, [train, holdout], names)
    assert np.allclose(predict(served, holdout, names), predict(again, holdout, names))
    assert not np.allclose(predict(served, holdout, names), predict(judged, holdout, names))

    # one more day: the new holdout (days 27-31) shares four days with v1's refit window, so
    # the gate judges v1 by its holdout-free fit
    _write_features(trained, 31)
    second = train_and_maybe_promote(ws(trained.model_copy(update={"min_new_rows": 0})))
    assert second.version == 2
    _train2, holdout2 = _split(trained, 31)
    y2 = holdout2["label"].to_numpy(dtype=int)
    with connect(trained) as session:
        decision = Registry(session, trained.keyspace, "flight_delay").decisions(1)[0]
    assert decision.candidate == 2 and decision.champion == 1
    fair = score(y2, predict(judged, holdout2, names))["roc_auc"]
    assert decision.champion_score == pytest.approx(fair, abs=1e-12)
    assert decision.champion_score != pytest.approx(
        score(y2, predict(served, holdout2, names))["roc_auc"], abs=1e-6)

    # later, none of the holdout (days 32-36) lies in the champion's window (v1's or v2's: they
    # end on days 30 and 31): still its holdout-free fit is judged, as the candidate's is
    _write_features(trained, 36)
    third = train_and_maybe_promote(ws(trained.model_copy(update={"min_new_rows": 0})))
    _train3, holdout3 = _split(trained, 36)
    y3 = holdout3["label"].to_numpy(dtype=int)
    with connect(trained) as session:
        registry = Registry(session, trained.keyspace, "flight_delay")
        decision = registry.decisions(1)[0]
        assert decision.candidate == third.version == 3 and decision.champion in (1, 2)
        current = registry.load(decision.champion, holdout_free=True)
        current_served = registry.load(decision.champion)
    assert decision.champion_score == pytest.approx(
        score(y3, predict(current, holdout3, names))["roc_auc"], abs=1e-12)
    assert decision.champion_score != pytest.approx(
        score(y3, predict(current_served, holdout3, names))["roc_auc"], abs=1e-6)


def _one_candidate() -> list[tuple[str, dict[str, Any], Any]]:
    """One candidate, so both trainings choose the same one whatever their CV folds say."""
    return [("LogisticRegression", {"C": 1.0},
             make_pipeline(SimpleImputer(strategy="median"), LogisticRegression(C=1.0)))]


def test_a_weekly_retrain_is_judged_against_the_champion_fitted_the_same_way(
        fresh_keyspace_settings: Settings) -> None:
    """``make demo``'s case: both windows begin before the data, and the retrain's holdout is
    the days since the champion's window ended. The champion's served refit and the candidate's
    holdout-free fit are then the same model on the same rows, so judging the champion by its
    refit would tie every retrain (it did, to the last digit); the gate judges its holdout-free
    fit, trained as the candidate's was."""
    s = fresh_keyspace_settings.model_copy(update={"train_days": 40, "holdout_days": 5,
                                                   "min_new_rows": 100})
    _write_features(s, 30)
    first = train_and_maybe_promote(ws(s), pool=_one_candidate)
    assert first.promoted and first.version == 1
    _write_features(s, 35)  # the same 30 days again, and 5 more
    second = train_and_maybe_promote(ws(s), pool=_one_candidate)
    assert second.version == 2
    names = FLIGHTS.features.inputs
    _train, holdout = _split(s, 35)
    y = holdout["label"].to_numpy(dtype=int)
    with connect(s) as session:
        registry = Registry(session, s.keyspace, "flight_delay")
        decision = registry.decisions(1)[0]
        served, judged = registry.load(1), registry.load(1, holdout_free=True)
    assert (decision.candidate, decision.champion) == (2, 1)
    # the tie the old gate saw: v1's refit scores exactly what v2's holdout-free fit scores
    assert score(y, predict(served, holdout, names))["roc_auc"] == decision.candidate_score
    # what the gate judges instead: v1 without its own holdout, trained 5 days short of v2's
    assert decision.champion_score == pytest.approx(
        score(y, predict(judged, holdout, names))["roc_auc"], abs=1e-12)
    assert decision.champion_score != decision.candidate_score


def test_without_the_refit_the_served_fit_is_the_judged_one(trained: Settings) -> None:
    s = trained.model_copy(update={"refit_with_holdout": False})
    result = train_and_maybe_promote(ws(s))
    _train, holdout = _split(s, 30)
    with connect(s) as session:
        registry = Registry(session, s.keyspace, "flight_delay")
        row = session.execute("SELECT gate_artifact FROM model_versions WHERE model = "
                              "'flight_delay' AND version = 1").one()
        served, judged = registry.load(1), registry.load(1, holdout_free=True)
    assert row.gate_artifact is None
    names = FLIGHTS.features.inputs
    p = predict(served, holdout, names)
    assert np.array_equal(p, predict(judged, holdout, names))
    assert score(holdout["label"].to_numpy(dtype=int), p)["roc_auc"] == pytest.approx(
        result.metrics["roc_auc"], abs=1e-12)


def test_a_corrupted_artifact_is_refused_on_load(trained: Settings) -> None:
    train_and_maybe_promote(ws(trained))
    with connect(trained) as session:
        row = session.execute("SELECT artifact FROM model_versions WHERE model = 'flight_delay' "
                              "AND version = 1").one()
        blob = bytearray(row.artifact)
        blob[len(blob) // 2] ^= 0xFF
        session.execute("UPDATE model_versions SET artifact = %s WHERE model = 'flight_delay' "
                        "AND version = 1", (bytes(blob),))
        with pytest.raises(ModelIntegrityError, match="does not match"):
            Registry(session, trained.keyspace, "flight_delay").load(1)


def _dummy() -> list[tuple[str, dict[str, str], DummyClassifier]]:
    return [("DummyClassifier", {"strategy": "prior"}, DummyClassifier(strategy="prior"))]


@pytest.mark.parametrize("beat_naive", [True, False])
def test_the_first_model_must_beat_the_naive_baseline_unless_told_not_to(
        trained: Settings, beat_naive: bool) -> None:
    s = trained.model_copy(update={"promotion_beat_naive": beat_naive})
    result = train_and_maybe_promote(ws(s), pool=_dummy)  # ROC AUC 0.5: below the planted baseline
    assert result.status == "registered" and result.version == 1
    assert result.promoted is not beat_naive
    with connect(s) as session:
        registry = Registry(session, s.keyspace, "flight_delay")
        versions = {v.version for v in registry.versions()}
        # the floor (default): the naive baseline v0 stays champion and serves; without it
        # (the user's explicit choice) the first model is promoted whatever its quality
        assert registry.aliases()["champion"] == (0 if beat_naive else 1)
        assert versions == ({0, 1} if beat_naive else {1})
        if beat_naive:
            assert "does not beat the naive baseline" in registry.decisions(1)[0].reason
            champion = registry.load_champion()
            assert champion is not None and champion[0] == 0


def test_a_retried_training_registers_no_second_version(trained: Settings) -> None:
    trained = trained.model_copy(update={"promotion_beat_naive": False})  # no v0 in the count
    first = train_and_maybe_promote(ws(trained), pool=_dummy)  # the model does not matter here
    assert first.promoted and first.version == 1
    # the same window, data and code again (a retried task; no new-rows gate in its way): no
    # twin version
    retry = trained.model_copy(update={"min_new_rows": 0})
    again = train_and_maybe_promote(ws(retry), pool=_dummy)
    assert again.status == "skipped" and "trained on this window and code" in again.reason
    with connect(trained) as session:
        registry = Registry(session, trained.keyspace, "flight_delay")
        assert [v.version for v in registry.versions()] == [1]
        assert registry.versions()[0].lineage["training_key"]
    # --force trains anew on purpose, and new data in the window is a different training
    assert train_and_maybe_promote(ws(retry), force=True, pool=_dummy).version == 2
    _write_features(trained, 31, seed=3)
    assert train_and_maybe_promote(ws(retry), pool=_dummy).version == 3


def test_two_racing_promotions_exactly_one_wins(trained: Settings) -> None:
    import threading

    from streamfit.registry import AliasConflict

    assert train_and_maybe_promote(ws(trained), pool=_dummy).version == 1  # three versions, cheaply
    _write_features(trained, 31, seed=5)
    assert train_and_maybe_promote(ws(trained), force=True, pool=_dummy).version == 2
    _write_features(trained, 32, seed=6)
    assert train_and_maybe_promote(ws(trained), force=True, pool=_dummy).version == 3
    with connect(trained) as session:
        registry = Registry(session, trained.keyspace, "flight_delay")
        for _round in range(5):
            champion = registry.aliases()["champion"]
            rivals = [v for v in (1, 2, 3) if v != champion][:2]
            barrier = threading.Barrier(2)
            outcome: dict[int, str] = {}

            def promote(version: int, seen: int = champion, barrier: threading.Barrier = barrier,
                        outcome: dict[int, str] = outcome) -> None:
                barrier.wait()
                try:
                    registry.set_alias("champion", version, expected=seen)
                    outcome[version] = "won"
                except AliasConflict as exc:
                    outcome[version] = str(exc)

            threads = [threading.Thread(target=promote, args=(v,)) for v in rivals]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [v for v, o in outcome.items() if o == "won"]
            assert len(winners) == 1, outcome
            [loser] = [v for v in rivals if v not in winners]
            assert "another promotion won" in outcome[loser]
            assert registry.aliases()["champion"] == winners[0]


def test_a_promotion_from_a_stale_champion_is_refused(trained: Settings) -> None:
    from streamfit.registry import AliasConflict

    assert train_and_maybe_promote(ws(trained)).version == 1
    with connect(trained) as session:
        registry = Registry(session, trained.keyspace, "flight_delay")
        with pytest.raises(AliasConflict, match="champion alias is v1 now, not v7"):
            registry.set_alias("champion", 1, expected=7)
        with pytest.raises(AliasConflict, match="not unset"):
            registry.set_alias("champion", 1, expected=None)
