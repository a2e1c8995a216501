"""The report of a real pipeline's stored data, opened in headless Chromium: every chart is
there, drawn, and has data; the screenshot is kept beside the test's files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoring.batch import score_dates
from scoring.report import write_report
from streamfit.settings import Settings
from tests.integration.scoring.test_batch import _write_shifted_day
from tests.integration.training.test_registry_and_training import START, _write_features
from tests.support.browser import chromium, render_page
from tests.support.workspace import ws
from training.train import train_and_maybe_promote

CHARTS = ["metrics", "holdout", "drift", "calibration", "realised", "freshness"]


def test_every_chart_of_the_report_is_drawn_in_a_browser_with_data(
        fresh_keyspace_settings: Settings, tmp_path: Path) -> None:
    if chromium() is None:
        pytest.fail("no chromium on PATH: `make tools` installs Debian's")
    s = fresh_keyspace_settings.model_copy(update={"train_days": 30, "holdout_days": 5})
    _write_features(s, 30, per_day=250)  # 250 a day: enough outcomes to judge calibration
    assert train_and_maybe_promote(ws(s)).promoted
    last = START + timedelta(days=29)
    score_dates(ws(s), [last - timedelta(days=1), last], evaluate=[last - timedelta(days=1), last])
    shifted = last + timedelta(days=1)
    _write_shifted_day(s, shifted)
    result = score_dates(ws(s), [shifted], evaluate=[shifted])
    assert result.alerts  # the shifted day raised one, which the report must show
    page = write_report(ws(s), tmp_path / "report.html")
    shot = tmp_path / "report.png"
    drawn = render_page(page, shot)
    assert [d["id"] for d in drawn] == CHARTS
    for d in drawn:
        # decoded and laid out by the browser, data plotted, and more than a blank frame
        assert d["width"] > 300 and d["shown"] > 300, d
        assert d["points"] > 0 and d["ink"] > 0.01, d
    text = page.read_text()
    assert "<li class='alert'>" in text and "<a href='#drift'>" in text
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] >= 4000 and pixels.std() > 10  # a page, not a blank screen
