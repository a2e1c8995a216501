"""The HTML report renders every section from stored data (no services: built from values)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from scoring.monitoring import ScoringRun
from scoring.report import ReportData, render
from streamfit.quality import calibration_bins, reference_profiles, roc_points
from streamfit.registry import ModelVersion


def _version(n: int, auc: float) -> ModelVersion:
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1)
    train = pd.DataFrame({"late_rate_route_28d": rng.uniform(size=500)})
    return ModelVersion(
        n, datetime(2026, 1, n, tzinfo=UTC), "HistGradientBoostingClassifier", {},
        {"roc_auc": auc, "naive_roc_auc": 0.6, "pr_auc": 0.4, "brier": 0.15},
        ["late_rate_route_28d"], {"start": "2013-01-01", "end": f"2013-01-{14 + n}"}, {}, "ab",
        {"features": reference_profiles(train, ["late_rate_route_28d"]),
         "holdout": {"roc": roc_points(y, p), "calibration": calibration_bins(y, p)}})


def test_the_report_has_every_section_and_a_plot_for_each() -> None:
    t0 = datetime(2026, 1, 3, tzinfo=UTC)
    data = ReportData(
        keyspace="ks1", versions=[_version(1, 0.70), _version(2, 0.72)],
        aliases={"champion": 2, "challenger": 1},
        decisions=[{"decided_at": t0, "candidate": 2, "champion": 1, "metric": "roc_auc",
                    "candidate_score": 0.72, "champion_score": 0.70, "promoted": True,
                    "reason": "beats <champion>"}],
        runs=[ScoringRun(t0 + timedelta(minutes=i), 2, ["2013-01-16"], 900,
                         {"count": 900.0, "mean": 0.2}, {"late_rate_route_28d": 0.05 * i},
                         0.05 * i) for i in range(3)],
        performance=pd.DataFrame({"model_version": [1, 2], "day": [date(2013, 1, 15),
                                                                           date(2013, 1, 16)],
                                  "entities": [800, 850], "late": [160, 200],
                                  "mean_probability": [0.21, 0.22], "roc_auc": [0.7, 0.71],
                                  "brier": [0.15, 0.16]}),
        timeline=[("features built", t0, 900.0), ("model trained", t0, 1.0),
                  ("predictions scored", t0, 900.0), ("raw events signalled", t0, 5000.0)])
    page = render(data)
    for heading in ("Model versions", "Promotion decisions", "Champion on its holdout",
                    "Drift of scored features", "Realised performance", "Freshness timeline"):
        assert heading in page
    assert page.count("data:image/png;base64,") == 5  # metrics, ROC+calibration, drift, perf, time
    assert "beats &lt;champion&gt;" in page  # values are escaped
    assert "Champion: v2" in page


def test_an_empty_pipeline_still_renders() -> None:
    page = render(ReportData("ks", [], {}, [], [], pd.DataFrame(), []))
    assert "No model yet" in page and "No scoring run recorded yet" in page
    assert "data:image/png" not in page
