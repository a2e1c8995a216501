"""What the demo prints for each Airflow run of its story."""

from __future__ import annotations

from app.demo import _brief
from streamfit.airflow_api import PipelineRun


def _scored(summary: dict[str, object]) -> PipelineRun:
    return PipelineRun("score_batch", "r1", "asset_triggered", "success", None, None, summary)


def test_a_scoring_run_names_its_dates_and_model() -> None:
    run = _scored({"model_version": 1, "dates": ["2013-01-22"], "scored": 1_802})
    assert _brief(run) == " - 1,802 flights of 2013-01-22 with v1"


def test_a_scoring_run_with_no_date_ahead_says_so_instead_of_an_empty_list() -> None:
    # seen on a rerun demo: " - 0 flights of  with v2"
    brief = _brief(_scored({"model_version": 2, "dates": [], "scored": 0}))
    assert "nothing ahead to score with v2" in brief and " of  " not in brief


def test_a_feature_run_says_what_its_task_scored_and_only_then() -> None:
    built = {"entities": 2_500, "dates": ["2013-01-22", "2013-01-23"]}
    run = PipelineRun("build_features", "r2", "asset_triggered", "success", None, None,
                      {**built, "scoring": {"model_version": 3, "scored": 1_250}})
    assert _brief(run) == " - 2,500 flights of 2 dates, 1,250 scored with v3 in the same task"
    for scoring in ("nothing pending", {"model_version": 3, "scored": 0}, None):
        quiet = PipelineRun("build_features", "r3", "asset_triggered", "success", None, None,
                            {**built, "scoring": scoring})
        assert _brief(quiet) == " - 2,500 flights of 2 dates"
