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
    assert m["roc_auc"] == 1.0 and m["flights"] == 6 and m["late"] == 3
    assert 0 < m["brier"] < 0.1
    assert np.isnan(realised(np.array([0, 0]), np.array([0.1, 0.2]))["roc_auc"])
    cal = calibration_bins(y, p)
    assert sum(cal["count"]) == 6 and cal["observed"][0] == 0.0 and cal["observed"][-1] == 1.0
    roc = roc_points(y, p)
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
