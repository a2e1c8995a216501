"""Drift and prediction-distribution summaries for a scoring run (pure functions).

Used by batch scoring to compare the features it scores against the training reference (PSI per
feature) and to summarise the probabilities it wrote. Storing these per run and showing them in
``streamfit models show`` is the next step (issue 4).
"""

from __future__ import annotations

import numpy as np

#: Usual reading of the population stability index.
PSI_STABLE, PSI_SHIFTED = 0.1, 0.25


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins of the
    reference; NaNs form their own bin, so a feature that starts going missing shows up)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    finite = ref[np.isfinite(ref)]
    if finite.size == 0 or cur.size == 0:
        return 0.0
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf

    def shares(values: np.ndarray) -> np.ndarray:
        counts = np.histogram(values[np.isfinite(values)], bins=edges)[0].astype(float)
        counts = np.append(counts, np.count_nonzero(~np.isfinite(values)))
        return np.clip(counts / max(values.size, 1), 1e-6, None)

    p, q = shares(ref), shares(cur)
    return float(np.sum((q - p) * np.log(q / p)))


def prediction_summary(probabilities: np.ndarray) -> dict[str, float]:
    p = np.asarray(probabilities, dtype=float)
    if p.size == 0:
        return {"count": 0.0}
    q = np.quantile(p, [0.1, 0.5, 0.9])
    return {"count": float(p.size), "mean": float(p.mean()), "p10": float(q[0]),
            "p50": float(q[1]), "p90": float(q[2]), "share_over_0_5": float((p > 0.5).mean())}
