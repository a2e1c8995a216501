from __future__ import annotations

import numpy as np

from streamfit.quality import PSI_SHIFTED, PSI_STABLE, prediction_summary, psi


def test_psi_is_near_zero_for_the_same_distribution() -> None:
    rng = np.random.default_rng(0)
    assert psi(rng.normal(size=50_000), rng.normal(size=50_000)) < PSI_STABLE / 10


def test_psi_flags_a_shift_and_missing_values() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=50_000)
    assert psi(ref, rng.normal(loc=1.0, size=50_000)) > PSI_SHIFTED
    half_missing = rng.normal(size=50_000)
    half_missing[::2] = np.nan
    assert psi(ref, half_missing) > PSI_SHIFTED


def test_prediction_summary() -> None:
    s = prediction_summary(np.array([0.1, 0.2, 0.6, 0.9]))
    assert s["count"] == 4 and s["share_over_0_5"] == 0.5
    assert s["p10"] <= s["p50"] <= s["p90"]
    assert prediction_summary(np.array([])) == {"count": 0.0}


def test_a_stored_profile_gives_the_same_psi_as_the_raw_reference() -> None:
    import json

    from streamfit.quality import profile, psi_against

    rng = np.random.default_rng(2)
    ref, cur = rng.gamma(2.0, size=20_000), rng.gamma(2.5, size=20_000)
    stored = json.loads(json.dumps(profile(ref)))  # what the registry keeps
    assert abs(psi_against(stored, cur) - psi(ref, cur)) < 1e-12
    assert psi_against(stored, cur) > PSI_STABLE
    assert abs(sum(stored["shares"]) - 1.0) < 1e-9


def test_drift_covers_every_reference_feature() -> None:
    import pandas as pd

    from streamfit.quality import drift, reference_profiles

    rng = np.random.default_rng(3)
    train = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    now = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(3.0, size=5000)})
    d = drift(reference_profiles(train, ["a", "b"]), now)
    assert set(d) == {"a", "b"} and d["a"] < PSI_STABLE < PSI_SHIFTED < d["b"]


def test_realised_performance_and_calibration_bins() -> None:
    from streamfit.quality import calibration_bins, realised, roc_points

    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    m = realised(y, p)
    assert m["roc_auc"] == 1.0 and m["entities"] == 6 and m["late"] == 3
    assert 0 < m["brier"] < 0.1
    assert np.isnan(realised(np.array([0, 0]), np.array([0.1, 0.2]))["roc_auc"])
    cal = calibration_bins(y, p)
    assert sum(cal["count"]) == 6 and cal["observed"][0] == 0.0 and cal["observed"][-1] == 1.0
    roc = roc_points(y, p)
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0


def test_quality_alerts_flag_a_realised_gap_and_drift_past_their_lines() -> None:
    from streamfit.quality import MIN_MATURED, quality_alerts

    holdout = {"roc_auc": 0.71}
    fine = {"entities": 900.0, "roc_auc_daily_mean": 0.69}
    fallen = {"entities": 900.0, "roc_auc_daily_mean": 0.64}
    assert quality_alerts(holdout, fine, {"a": 0.1}, 0.05, 0.25) == []
    [gap] = quality_alerts(holdout, fallen, {}, 0.05, 0.25)
    assert "0.640" in gap and "0.070 below" in gap and "0.710" in gap
    # too few matured predictions to judge, and no realised figure at all: no gap alert
    assert quality_alerts(holdout, {**fallen, "entities": MIN_MATURED - 1}, {}, 0.05, 0.25) == []
    assert quality_alerts(holdout, None, {}, 0.05, 0.25) == []
    [drifted] = quality_alerts(holdout, None, {"wx_pressure": 13.0, "a": 0.3, "b": 0.2},
                               0.05, 0.25)
    assert drifted.startswith("2 feature(s) drifted more than PSI 0.25")
    assert drifted.index("wx_pressure") < drifted.index("a ")
    assert "b " not in drifted


def test_drift_alerts_count_only_drift_above_the_day_to_day_level() -> None:
    import numpy as np
    import pandas as pd

    from streamfit.quality import daily_drift, drift, quality_alerts, reference_profiles

    rng = np.random.default_rng(3)
    days = pd.date_range("2013-01-01", periods=20, freq="D", tz="UTC")
    # a day-level feature (one value per day) and a row-level one
    frame = pd.DataFrame({"event_time": np.repeat(days, 100),
                          "daily": np.repeat(rng.normal(size=20), 100),
                          "rows": rng.normal(size=2000)})
    ref = reference_profiles(frame, ["daily", "rows"])
    level = daily_drift(ref, frame, "event_time")
    assert level["daily"] > 2 and level["rows"] < 0.25  # one day of a day-level feature is narrow
    one_day = frame[frame["event_time"] == days[0]]
    run = drift(ref, one_day)
    assert quality_alerts({}, None, run, 0.05, 0.25) != []  # without the level: a false alarm
    assert quality_alerts({}, None, run, 0.05, 0.25, level) == []
    shifted = drift(ref, one_day.assign(rows=one_day["rows"] + 3))
    [alert] = quality_alerts({}, None, shifted, 0.05, 0.25, level)
    assert "rows" in alert and "daily" not in alert
