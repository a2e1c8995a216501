from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamfit.registry import predict
from training.train import (
    baseline_model,
    calibration_error,
    fit_threads,
    gate,
    score,
    time_split,
)


def test_gate_promotes_only_a_real_improvement() -> None:
    assert gate("roc_auc", 0.70, None, 0.0)[0]
    assert gate("roc_auc", 0.71, 0.70, 0.005)[0]
    assert not gate("roc_auc", 0.70, 0.70, 0.0)[0]
    assert not gate("roc_auc", 0.704, 0.70, 0.005)[0]
    assert gate("log_loss", 0.40, 0.45, 0.0)[0]  # lower is better
    assert not gate("brier", 0.20, 0.19, 0.0)[0]


def test_gate_with_the_naive_baseline() -> None:
    promoted, reason = gate("roc_auc", 0.59, None, 0.0, baseline=0.61)
    assert not promoted and "naive baseline 0.6100" in reason  # the first model too
    assert gate("roc_auc", 0.65, None, 0.0, baseline=0.61)[0]
    assert not gate("roc_auc", 0.72, 0.70, 0.0, baseline=0.73)[0]
    assert gate("log_loss", 0.40, 0.45, 0.0, baseline=0.42)[0]  # lower is better
    assert not gate("log_loss", 0.43, 0.45, 0.0, baseline=0.42)[0]


def test_calibration_error_is_zero_for_calibrated_and_large_for_wrong() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert calibration_error(y, p) < 0.01
    assert calibration_error(y, 1 - p) > 0.3


def test_score_reports_every_metric() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    m = score(y, np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]))
    assert m["roc_auc"] == pytest.approx(1.0)
    assert set(m) == {"roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"}


def test_time_split_keeps_the_most_recent_days_for_holdout() -> None:
    days = pd.date_range("2013-03-01", periods=10, freq="D", tz="UTC")
    frame = pd.DataFrame({"event_time": np.repeat(days, 3) + pd.Timedelta(hours=9),
                          "label": 0})
    train, holdout = time_split(frame, 3)
    assert pd.to_datetime(train["event_time"]).max() < \
        pd.to_datetime(holdout["event_time"]).min()
    assert pd.to_datetime(holdout["event_time"]).dt.day.unique().tolist() == [8, 9, 10]


def test_time_split_orders_the_rows_the_same_however_they_were_read() -> None:
    """The same rows in any read order give the same training rows in the same order (the fit
    depends on it), ties in time broken by entity and horizon."""
    rng = np.random.default_rng(0)
    when = pd.Timestamp("2013-03-01T09:00Z") + pd.to_timedelta(rng.integers(0, 10, 300), "D")
    frame = pd.DataFrame({"event_time": when, "entity_id": [f"F{i % 40}" for i in range(300)],
                          "horizon_min": rng.choice([120, 1440], 300), "x": np.arange(300)})
    frame = frame.drop_duplicates(["event_time", "entity_id", "horizon_min"])
    one = time_split(frame, 3)
    other = time_split(frame.sample(frac=1.0, random_state=1), 3)
    for mine, theirs in zip(one, other, strict=True):
        assert mine["x"].tolist() == theirs["x"].tolist()
    assert one[0]["x"].tolist() != frame[frame["x"].isin(one[0]["x"])]["x"].tolist()


def test_the_baseline_model_ranks_as_the_naive_feature_and_is_calibrated() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    rate = rng.uniform(0, 0.6, size=4000)
    label = (rng.uniform(size=4000) < 0.5 * rate).astype(int)  # the rate overstates by 2x
    frame = pd.DataFrame({"late_rate_route_28d": rate, "label": label})
    model = baseline_model(frame, "late_rate_route_28d")
    p = predict(model, frame, ["late_rate_route_28d"])
    assert roc_auc_score(label, p) == pytest.approx(roc_auc_score(label, rate), abs=1e-12)
    assert calibration_error(label, p) < 0.03 < calibration_error(label, rate)


def test_a_column_missing_in_every_row_of_a_fold_still_fits() -> None:
    """HistGradientBoosting's binner refuses a column without one known value (a young
    stream's mean delays); ``choose`` fits every fold through ``fittable``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from training.train import fittable

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=200), np.full(200, np.nan)])
    y = (x[:, 0] > 0).astype(int)
    with pytest.raises(ValueError):
        HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    model = HistGradientBoostingClassifier(max_iter=5).fit(fittable(x), y)
    assert model.predict_proba(x)[:, 1][y == 1].mean() > 0.5
    assert np.isnan(x[:, 1]).all()  # the caller's rows are left as they were


def test_refit_fits_a_fresh_copy_on_every_frame_and_leaves_the_chosen_model_alone() -> None:
    from sklearn.linear_model import LogisticRegression

    from training.train import refit

    rng = np.random.default_rng(0)
    early = pd.DataFrame({"x": rng.normal(size=300)})
    early["label"] = (early["x"] > 0).astype(int)
    late = pd.DataFrame({"x": rng.normal(size=300)})
    late["label"] = (late["x"] > 1).astype(int)  # the boundary moved: the refit must see it
    chosen = LogisticRegression(C=0.5).fit(early[["x"]].to_numpy(), early["label"].to_numpy())
    before = chosen.coef_.copy()
    served = refit(chosen, [early, late], ["x"])
    assert served is not chosen and served.get_params()["C"] == 0.5
    assert np.array_equal(chosen.coef_, before)  # the holdout-judged fit is untouched
    both = pd.concat([early, late], ignore_index=True)
    alone = LogisticRegression(C=0.5).fit(both[["x"]].to_numpy(), both["label"].to_numpy())
    assert np.allclose(served.coef_, alone.coef_) and np.allclose(served.intercept_,
                                                                  alone.intercept_)
    assert not np.allclose(served.intercept_, chosen.intercept_)


def test_fits_use_the_threads_the_setting_gives_and_make_the_same_model() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_info

    def openmp() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"}

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    y = (x[:, 0] + rng.normal(size=2000) > 0).astype(int)
    outside = openmp()
    fits = []
    for threads in (1, 2, 0):
        with fit_threads(threads):
            if threads:
                assert openmp() == {threads}
            else:
                assert openmp() == outside
            fits.append(HistGradientBoostingClassifier(max_iter=20, random_state=0)
                        .fit(x, y).predict_proba(x)[:, 1])
    assert openmp() == outside  # restored
    assert np.array_equal(fits[0], fits[1]) and np.array_equal(fits[0], fits[2])
