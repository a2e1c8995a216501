from __future__ import annotations

import numpy as np

from scoring.monitoring import PSI_SHIFTED, PSI_STABLE, prediction_summary, psi


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
