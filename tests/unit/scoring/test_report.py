"""The HTML report renders every section from stored data (no services: built from values)."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from scoring.monitoring import DayCheck, ScoringRun
from scoring.report import ReportData, landing_delays, render
from streamfit.quality import (
    Calibration,
    Finding,
    calibration_bins,
    day_reference,
    day_statistics,
    reference_profiles,
    roc_points,
)
from streamfit.registry import ModelVersion

CHARTS = ("metrics", "holdout", "drift", "calibration", "realised", "freshness")


def _version(n: int, auc: float) -> ModelVersion:
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1)
    train = pd.DataFrame({"late_rate_route_28d": rng.uniform(size=500),
                          "entity_date": np.repeat(np.arange(10), 50)})
    return ModelVersion(
        n, datetime(2026, 1, n, tzinfo=UTC), "HistGradientBoostingClassifier", {},
        {"roc_auc": auc, "naive_roc_auc": 0.6, "pr_auc": 0.4, "brier": 0.15},
        ["late_rate_route_28d"], {"start": "2013-01-01", "end": f"2013-01-{14 + n}"}, {}, "ab",
        {"features": reference_profiles(train, ["late_rate_route_28d"]),
         "days": day_reference(train, ["late_rate_route_28d"]),
         "holdout": {"roc": roc_points(y, p), "calibration": calibration_bins(y, p)}})


def _check(day: str, shift: float, rate: float) -> DayCheck:
    values = np.random.default_rng(len(day)).uniform(size=50) + shift
    findings = ([Finding(day, "late_rate_route_28d", "mean", float(values.mean()), 0.3, 0.7)]
                if shift else [])
    return DayCheck(day, 50, findings, Calibration(day, 900, rate, 0.21, 0.05),
                    {"late_rate_route_28d": day_statistics(values)})


def _data(alerts: list[str]) -> ReportData:
    t0 = datetime(2026, 1, 3, tzinfo=UTC)
    return ReportData(
        keyspace="ks1", versions=[_version(1, 0.70), _version(2, 0.72)],
        aliases={"champion": 2, "challenger": 1},
        decisions=[{"decided_at": t0, "candidate": 2, "champion": 1, "metric": "roc_auc",
                    "candidate_score": 0.72, "champion_score": 0.70, "promoted": True,
                    "reason": "beats <champion>"},
                   {"decided_at": t0, "candidate": 1, "champion": None, "metric": "roc_auc",
                    "candidate_score": 0.70, "champion_score": None, "promoted": True,
                    "reason": "first"}],
        runs=[ScoringRun(t0 + timedelta(minutes=i), 2, [f"2013-01-1{6 + i}"], 900,
                         {"count": 900.0, "mean": 0.2}, {}, 0.0,
                         [_check(f"2013-01-1{6 + i}", 2.0 if i == 2 else 0.0,
                                 0.4 if i == 2 else 0.22)]) for i in range(3)][::-1],
        performance=pd.DataFrame({"model_version": [1, 2], "day": [date(2013, 1, 15),
                                                                   date(2013, 1, 16)],
                                  "entities": [800, 850], "late": [160, 200],
                                  "mean_probability": [0.21, 0.22], "roc_auc": [0.7, 0.71],
                                  "brier": [0.15, 0.16]}),
        timeline=[("raw events signalled", t0, 5000.0),
                  ("features built", t0 + timedelta(seconds=5), 900.0),
                  ("model trained", t0 + timedelta(seconds=20), 1.0),
                  ("predictions scored", t0 + timedelta(seconds=30), 900.0)],
        alerts=alerts)


def test_every_chart_is_there_with_points_and_a_caption_from_its_data() -> None:
    page = html.unescape(render(_data([
        "2013-01-18: 1 feature(s) left the range of the training days: x",
        "2013-01-18: the realised event rate 0.400 ... above"])))
    for chart in CHARTS:
        found = re.search(rf'<figure id="{chart}" data-points="(\d+)">', page)
        assert found and int(found.group(1)) > 0, chart
    assert page.count("data:image/png;base64,") == len(CHARTS)
    assert "3 completed day(s) judged against v2's training days; 1 left a band" in page
    assert "3 matured day(s); 1 outside the bound" in page
    assert "landing to prediction: median 30 s over 1 signal(s)" in page
    # each alert is styled and linked to the chart that shows it
    assert page.count("<li class='alert'>") == 2
    assert "<a href='#drift'>" in page and "<a href='#calibration'>" in page
    assert "Alerts (2)" in page
    assert "beats <champion>" in page
    assert "none (the first)" in page and "Champion: v2" in page
    assert "champion_score differs" in page  # the gap with the registry, said in place


def test_a_quiet_champion_shows_the_features_closest_to_their_band() -> None:
    data = _data([])
    data.runs = [r for r in data.runs if not any(c.findings for c in r.checks)]
    page = html.unescape(render(data))
    assert "Alerts (0)" in page and "class='ok'" in page
    assert "2 completed day(s) judged against v2's training days; 0 left a band" in page
    assert "no feature left its band; these came closest" in page


def test_landing_delay_is_from_each_signal_to_the_next_scoring_run() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    line = [("raw events signalled", t, 1.0), ("predictions scored", t + timedelta(seconds=9), 1.0),
            ("raw events signalled", t + timedelta(seconds=10), 1.0),
            ("predictions scored", t + timedelta(seconds=40), 1.0),
            ("raw events signalled", t + timedelta(seconds=50), 1.0)]  # none after it yet
    assert landing_delays(line) == [9.0, 30.0]


def test_values_are_escaped() -> None:
    assert "beats &lt;champion&gt;" in render(_data([]))


def test_an_empty_pipeline_still_renders() -> None:
    page = render(ReportData("ks", [], {}, [], [], pd.DataFrame(), []))
    assert "No model yet" in page and "No scoring run recorded yet" in page
    assert "data:image/png" not in page


def test_the_drift_chart_shows_every_feature_that_left_its_band_or_says_which() -> None:
    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(14)]
    train = pd.DataFrame({n: rng.uniform(size=500) for n in names}
                         | {"entity_date": np.repeat(np.arange(10), 50)})
    for out, said in ((3, "every feature that did"),
                      (14, "the 12 of the 14 features that did that left most often")):
        data = _data([])
        v = data.versions[1]
        data.versions[1] = ModelVersion(
            v.version, v.created_at, v.algorithm, v.params, v.metrics, names, v.train_window,
            v.lineage, v.sha256, {**v.reference, "days": day_reference(train, names)})
        values = {n: rng.uniform(size=50) + (3.0 if i < out else 0.0)
                  for i, n in enumerate(names)}
        day = "2013-01-20"
        findings = [Finding(day, n, "mean", float(values[n].mean()), 0.3, 0.7)
                    for n in names[:out]]
        check = DayCheck(day, 50, findings, None,
                         {n: day_statistics(x) for n, x in values.items()})
        data.runs = [ScoringRun(datetime(2026, 1, 9, tzinfo=UTC), 2, [day], 50, {}, {}, 0.0,
                                [check])]
        page = html.unescape(render(data))
        assert f"1 completed day(s) judged against v2's training days; 1 left a band. Shown: {said}" \
            in page, out
        panels = re.search(r'<figure id="drift" data-points="(\d+)">', page)
        assert panels and int(panels.group(1)) == min(out, 12)  # one point per panel


def test_a_label_measure_in_the_drift_chart_is_said_to_be_one() -> None:
    from streamfit.quality import day_reference, day_statistics

    rng = np.random.default_rng(5)
    train = pd.DataFrame({"f0": rng.uniform(size=500), "ground_min": 15 + rng.gamma(4, 2.5, 500),
                          "entity_date": np.repeat(np.arange(10), 50)})
    data = _data([])
    v = data.versions[1]
    data.versions[1] = ModelVersion(
        v.version, v.created_at, v.algorithm, v.params, v.metrics, ["f0"], v.train_window,
        v.lineage, v.sha256,
        {**v.reference, "days": day_reference(train, ["f0"], measures=["ground_min"]),
         "measures": {"ground_min": "minutes on the ground"}})
    day = "2013-01-20"
    ground = 35 + rng.gamma(4, 2.5, 50)
    check = DayCheck(day, 50, [Finding(day, "ground_min", "p10", float(np.quantile(ground, 0.1)),
                                       16.0, 19.0, about="minutes on the ground")], None,
                     {"f0": day_statistics(rng.uniform(size=50)),
                      "ground_min": day_statistics(ground, measure=True)})
    data.runs = [ScoringRun(datetime(2026, 1, 9, tzinfo=UTC), 2, [day], 50, {}, {}, 0.0, [check])]
    page = html.unescape(render(data))
    assert "ground_min: a label measure (how the outcome came about" in page
    # a chart without one says nothing of it
    data.runs = [ScoringRun(datetime(2026, 1, 9, tzinfo=UTC), 2, [day], 50, {}, {}, 0.0,
                            [DayCheck(day, 50, [Finding(day, "f0", "mean", 3.0, 0.3, 0.7)], None,
                                      {"f0": day_statistics(rng.uniform(size=50) + 3)})])]
    assert "a label measure" not in html.unescape(render(data))
