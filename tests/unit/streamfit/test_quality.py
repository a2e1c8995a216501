from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def test_quality_alerts_flag_a_realised_gap_past_its_line() -> None:
    from streamfit.quality import MIN_MATURED, quality_alerts

    holdout = {"roc_auc": 0.71}
    fine = {"entities": 900.0, "roc_auc_daily_mean": 0.69}
    fallen = {"entities": 900.0, "roc_auc_daily_mean": 0.64}
    assert quality_alerts(holdout, fine, 0.05) == []
    [gap] = quality_alerts(holdout, fallen, 0.05)
    assert "0.640" in gap and "0.070 below" in gap and "0.710" in gap and "retrain" in gap
    # too few matured predictions to judge, and no realised figure at all: no gap alert
    assert quality_alerts(holdout, {**fallen, "entities": MIN_MATURED - 1}, 0.05) == []
    assert quality_alerts(holdout, None, 0.05) == []


def _days(rng: np.random.Generator, n_days: int = 30, rows: int = 400) -> pd.DataFrame:
    """Training-like days: a day-level feature (one value per day, like the weekday), a
    row-level one with a day effect (like the weather), and one with a few missing values."""
    from streamfit.quality import DAY

    frames = []
    for d in range(n_days):
        frames.append(pd.DataFrame({
            DAY: d, "weekday": float(d % 7),
            "temp": rng.normal(loc=40 + 10 * np.sin(d / 5), scale=5, size=rows).round(1),
            "gappy": np.where(rng.random(rows) < 0.03, np.nan, rng.normal(size=rows))}))
    return pd.concat(frames, ignore_index=True)


def test_an_ordinary_day_is_judged_against_days_not_against_the_pooled_rows() -> None:
    from streamfit.quality import DAY, day_findings, day_reference, drift, reference_profiles

    rng = np.random.default_rng(3)
    train = _days(rng)
    names = ["weekday", "temp", "gappy"]
    ref = day_reference(train, names)
    assert ref["weekday"]["mean"] == [0.0, 6.0] and ref["weekday"]["top_share"] == [1.0, 1.0]
    day = _days(np.random.default_rng(4), n_days=31).query(f"{DAY} == 30")
    # PSI calls this day shifted (one weekday, one day's weather); the day reference does not
    assert drift(reference_profiles(train, names), day)["weekday"] > 1.0
    assert day_findings(ref, day, "2013-04-01") == []


def test_each_kind_of_broken_input_is_found_and_named() -> None:
    from streamfit.quality import DAY, day_findings, day_reference

    rng = np.random.default_rng(5)
    train = _days(rng)
    ref = day_reference(train, ["weekday", "temp", "gappy"])
    day = _days(np.random.default_rng(6), n_days=31).query(f"{DAY} == 30")
    km = day.assign(temp=day["temp"] * 1.609344)
    [moved] = day_findings(ref, km, "d", widen=0.5)
    assert (moved.feature, moved.stat) == ("temp", "mean") and "moved" in moved.words()
    stuck = day.assign(temp=np.where(np.arange(len(day)) % 3 == 0, 41.0, day["temp"]))
    [one] = day_findings(ref, stuck, "d", widen=0.5)
    assert (one.feature, one.stat) == ("temp", "top_share") and one.value > 0.3
    gone = day.assign(gappy=np.where(np.arange(len(day)) % 6 == 0, np.nan, day["gappy"]))
    [missing] = day_findings(ref, gone, "d", widen=0.5)
    assert (missing.feature, missing.stat) == ("gappy", "missing")
    assert "missing on 18% of rows (the training days allow up to 9%)" in missing.words()
    # fewer missing values, or more varied ones, is no alert (shares are judged one-sided)
    whole = np.random.default_rng(9).normal(size=len(day))
    assert day_findings(ref, day.assign(gappy=whole), "d", widen=0.5) == []
    # a weekday past 0..6 by more than half that range is out; a larger margin lets a move pass
    assert [f.feature for f in day_findings(ref, day.assign(weekday=10.0), "d", widen=0.5)] == ["weekday"]
    nudged = day.assign(temp=day["temp"] + 30)
    assert day_findings(ref, nudged, "d", widen=0.25) != []
    assert day_findings(ref, nudged, "d", widen=5.0) == []


def _sites(rng: np.random.Generator, n_days: int = 30, rows: int = 300) -> pd.DataFrame:
    """Days of three sites' rows, each reading its own station hourly (24 values a day), with
    a day's share of dry hours reading 0 everywhere (like precipitation)."""
    frames = []
    for d in range(n_days):
        site = np.array(["A", "B", "C"])[np.arange(rows) % 3]
        hour = rng.integers(0, 24, size=rows)
        station = {s: rng.normal(loc=50, scale=8, size=24).round(1) for s in "ABC"}
        wx = np.array([station[s][h] for s, h in zip(site, hour, strict=True)])
        frames.append(pd.DataFrame({DAY_COLUMN: d, "site": site,
                                    "wx": np.where(rng.random(rows) < rng.uniform(0, 0.3), 0.0,
                                                   wx)}))
    return pd.concat(frames, ignore_index=True)


DAY_COLUMN = "entity_date"


def test_one_site_stuck_is_found_within_the_site() -> None:
    from streamfit.quality import day_findings, day_reference

    ref = day_reference(_sites(np.random.default_rng(11)), ["wx"], DAY_COLUMN, "site")
    assert set(ref["wx"]) >= {"top_share", "segment_top_share"}
    day = _sites(np.random.default_rng(12), n_days=1)
    assert day_findings(ref, day, "d", segment="site") == []
    # site B's station stuck at one reading: a third of the day's rows, inside the range the
    # dry days give the pooled rows, but every one of B's
    stuck = day.assign(wx=np.where(day["site"] == "B", 61.5, day["wx"]))
    assert not [f for f in day_findings(ref, stuck, "d") if f.stat == "top_share"]
    [found] = day_findings(ref, stuck, "d", segment="site")
    assert (found.feature, found.stat, found.where) == ("wx", "segment_top_share", "site B")
    assert "one value in 100% of the rows of site B that have one" in found.words()
    # a reference without the segment statistic (trained before it existed) judges as before
    old = {"wx": {k: v for k, v in ref["wx"].items() if k != "segment_top_share"}}
    assert day_findings(old, stuck, "d", segment="site") == []


def test_a_domain_segment_must_be_an_entity_column() -> None:
    import dataclasses

    from streamfit.domains import load_domain

    flights = load_domain("flights")
    assert flights.segment in flights.entity.columns
    with pytest.raises(ValueError, match="segment 'gate' is not one of the entity's columns"):
        dataclasses.replace(flights, segment="gate")


def test_calibration_alerts_only_past_a_bound_that_grows_with_fewer_outcomes() -> None:
    from streamfit.quality import MIN_MATURED, calibration_check, calibration_reference

    rng = np.random.default_rng(8)
    days = np.repeat(np.arange(7), 800)
    p = np.full(days.size, 0.2)
    y = (rng.random(days.size) < 0.2).astype(int)
    ref = calibration_reference(days, y, p)
    assert ref["days"] == 7 and ref["tau"] < 0.02  # binomial noise only: no spread beyond it
    ok = calibration_check(ref, y[:900], p[:900], "d")
    assert ok is not None and not ok.alert
    late = calibration_check(ref, (rng.random(900) < 0.35).astype(int), p[:900], "d")
    assert late is not None and late.alert and "above" in late.words()
    # the same gap on a small day is within its (wider) bound
    small = calibration_check(ref, (rng.random(MIN_MATURED) < 0.26).astype(int),
                              p[:MIN_MATURED], "d")
    assert small is not None and small.bound > ok.bound
    assert calibration_check(ref, y[:10], p[:10], "d") is None
    # a holdout whose days stray from their predictions widens the bound
    stray = np.where(days % 2 == 0, (rng.random(days.size) < 0.35), y).astype(int)
    assert calibration_reference(days, stray, p)["tau"] > 0.05


def test_a_group_missing_required_events_is_a_gap() -> None:
    from streamfit.quality import GAP_MIN, coverage_gaps

    done = {"carrier EV": {f"EV{i}" for i in range(300)},
            "carrier UA": {f"UA{i}" for i in range(300)},
            "carrier HA": {f"HA{i}" for i in range(4)}}
    seen = {f"UA{i}" for i in range(295)} | {"HA1"}  # every EV one lost; 5 UA; 3 of 4 HA
    [gap] = coverage_gaps("2013-03-11", "flight_departed", done, seen)
    assert (gap.group, gap.missing, gap.of) == ("carrier EV", 300, 300)
    assert "flight_departed events missing for carrier EV: 300 of its 300" in gap.words()
    # a few missing (under GAP_MIN, or under 5% of the group) is no gap
    assert GAP_MIN > 5 and coverage_gaps("d", "x", {"carrier UA": done["carrier UA"]},
                                         seen) == []


def _outcomes(rng: np.random.Generator, n_days: int = 30, rows: int = 400) -> pd.DataFrame:
    """Days of a measure like flights' ground time: ~20 minutes for most rows, and on a third
    of the days a storm that holds a fifth of them for an hour or more."""
    frames = []
    for d in range(n_days):
        held = rng.random(rows) < (0.2 if d % 3 == 0 else 0.02)
        ground = rng.gamma(9.0, 2.5, size=rows) + np.where(held, rng.uniform(60, 240, rows), 0)
        frames.append(pd.DataFrame({DAY_COLUMN: d, "ground": ground,
                                    "temp": rng.normal(50, 8, rows)}))
    return pd.concat(frames, ignore_index=True)


def test_a_label_measure_is_judged_on_its_lower_tenth_so_a_storm_passes_and_a_shift_does_not() -> None:
    from streamfit.quality import day_findings, day_reference, drift_alert

    ref = day_reference(_outcomes(np.random.default_rng(11)), ["temp"], measures=["ground"])
    assert set(ref["ground"]) == {"p10", "sd", "days"}  # not the features' statistics
    assert "p10" not in ref["temp"]
    later = _outcomes(np.random.default_rng(12), n_days=6)
    storm, calm = later[later[DAY_COLUMN] == 3], later[later[DAY_COLUMN] == 4]
    # a fifth of the rows held for hours moves the mean a lot and the lower tenth hardly
    assert storm["ground"].mean() > calm["ground"].mean() + 10
    assert day_findings(ref, storm, "storm") == [] and day_findings(ref, calm, "calm") == []
    # the same calm day with 20 minutes added to every row
    [moved] = day_findings(ref, calm.assign(ground=calm["ground"] + 20), "shifted")
    assert (moved.feature, moved.stat) == ("ground", "p10")
    words = drift_alert([moved])
    assert words is not None and words.startswith("shifted: how the outcome came about")
    assert "ground lower tenth" in words and "nearly every entity's outcome moved" in words
    [said] = day_findings(ref, calm.assign(ground=calm["ground"] + 20), "shifted",
                          about={"ground": "minutes on the ground"})
    assert said.words().startswith("ground (minutes on the ground) lower tenth")
    assert "feature(s)" not in words
    # outcomes not known yet, or too few of them: nothing to judge
    assert day_findings(ref, calm.assign(ground=np.nan), "unknown") == []
    few = calm.assign(ground=np.where(np.arange(len(calm)) < 49, calm["ground"] + 20, np.nan))
    assert day_findings(ref, few, "few") == []
    assert day_findings(ref, few.assign(ground=calm["ground"] + 20), "all") != []


def test_a_label_measure_may_not_share_a_features_name() -> None:
    import dataclasses

    from streamfit.domains import Label, load_domain

    flights = load_domain("flights")
    label = Label(flights.label.name, flights.label.outcome, measures={"distance": "clash"})
    with pytest.raises(ValueError, match="share a name with a feature"):
        dataclasses.replace(flights, label=label)
