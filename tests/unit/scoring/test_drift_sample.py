"""The pandas scorer's drift sample: bounded, uniform over every date scored, all rows when few."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.batch import keep_sample


def test_few_rows_are_all_kept_in_order() -> None:
    rng = np.random.default_rng(1)
    sample = pd.DataFrame()
    for start in (0, 3):
        sample = keep_sample(sample, pd.DataFrame({"row": range(start, start + 3)}), rng, size=10)
    assert sample["row"].tolist() == [0, 1, 2, 3, 4, 5]


def test_many_rows_keep_a_bounded_uniform_sample_of_all_of_them() -> None:
    means, firsts = [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        sample = pd.DataFrame()
        for start in range(0, 1000, 100):  # ten dates of 100 rows
            sample = keep_sample(sample, pd.DataFrame({"row": range(start, start + 100)}), rng,
                                 size=50)
            assert len(sample) <= 50
        assert len(sample) == 50 and sample["row"].is_unique
        means.append(sample["row"].mean())
        firsts.append((sample["row"] < 100).mean())
    # every date is as likely to be sampled as any other: the first date is 10 % of the rows
    assert abs(np.mean(means) - 499.5) < 15
    assert abs(np.mean(firsts) - 0.10) < 0.02
