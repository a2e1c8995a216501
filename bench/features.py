"""One event date's feature build, from tiles against the recomputation from raw events.

    .venv/bin/python bench/features.py [--rounds 5] [--day 2013-03-11] [--json FILE]

Needs Kafka and Cassandra (`streamfit stack up -s cassandra -s kafka`). In a keyspace and topic
of its own (dropped afterwards), the 31 days up to ``--day`` (and the day after) are replayed and
landed by the ingest service, and the feature stage builds them once (which makes the tiles).
Then, per round and side by side, in a new reader each time (cold caches, as a pipeline task
starts):

- **tiles**: what the feature stage does when ``--day``'s events land: make again the tiles of
  the days they touch, then build every entity date they affect (``dates_to_rebuild``), each
  at every horizon, and write it;
- **recomputation**: the same builds and writes from a reader without tiles (a month of raw
  arrivals per date).

Both write the same rows (checked: every feature equal). Medians over the rounds, and where the
time goes (pyinstrument, the last round of each).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import cleanup, fresh, land_and_build, profile_text, save  # noqa: E402
from features.build import dates_to_rebuild, tile_days  # noqa: E402
from streamfit.domains import ENTITY_ID, HORIZON  # noqa: E402
from streamfit.featurestore import FeatureStore, build_frame  # noqa: E402
from streamfit.settings import get_settings  # noqa: E402
from streamfit.workspace import Workspace, open_workspace  # noqa: E402


def one_build(ws: Workspace, day: date, tiles: bool) -> tuple[float, dict[date, Any]]:
    """Seconds to build (and write) what ``day``'s events affect, in a new store."""
    store = FeatureStore(ws.session, ws.keyspace, ws.domain)
    if not tiles:
        store.raw.tile_store = None
    t0 = time.perf_counter()
    if tiles and store.tiles is not None:
        store.tiles.refresh(tile_days(ws, [day]))
    frames = {}
    for d in dates_to_rebuild(ws.domain, [day]):
        frame = build_frame(ws.domain, store.raw, d)
        if not frame.empty:
            store.write_day(d, frame)
        frames[d] = frame
    return time.perf_counter() - t0, frames


def same(a: dict[date, Any], b: dict[date, Any], names: list[str]) -> int:
    """Feature values that differ between two builds of the same dates."""
    bad = 0
    for d in a:
        if a[d].empty and b[d].empty:
            continue
        j = a[d].merge(b[d], on=[ENTITY_ID, HORIZON], suffixes=("", "_b"))
        assert len(j) == len(a[d]) == len(b[d])
        for n in names:
            x, y = j[n].to_numpy(dtype=float), j[f"{n}_b"].to_numpy(dtype=float)
            bad += int((~(np.isclose(x, y, rtol=1e-9, atol=1e-9) | (np.isnan(x) & np.isnan(y))))
                       .sum())
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--day", type=date.fromisoformat, default=date(2013, 3, 11))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base = get_settings()
    s = fresh(base, "features")
    figures: dict[str, Any] = {
        "machine": "2 shared cores, 24 GB; Kafka and Cassandra co-located",
        "when": datetime.now(UTC).isoformat(), "day": args.day.isoformat()}
    try:
        land_and_build(s, args.day - timedelta(days=31), args.day + timedelta(days=1))
        with open_workspace(s) as ws:
            names = list(ws.domain.features.names)
            rebuilt = dates_to_rebuild(ws.domain, [args.day])
            times: dict[str, list[float]] = {"tiles": [], "recomputation": []}
            last: dict[str, dict[date, Any]] = {}
            for r in range(args.rounds + 1):  # round 0 warms the process (imports, planes)
                for side in ("tiles", "recomputation"):
                    took, last[side] = one_build(ws, args.day, side == "tiles")
                    if r:
                        times[side].append(took)
                print(f"round {r}: tiles {times['tiles'][-1] if r else 0:.2f}s, recomputation "
                      f"{times['recomputation'][-1] if r else 0:.2f}s", flush=True)
            differing = same(last["tiles"], last["recomputation"], names)
            profiles = {}
            from pyinstrument import Profiler

            for side in ("tiles", "recomputation"):
                p = Profiler()
                p.start()
                one_build(ws, args.day, side == "tiles")
                p.stop()
                profiles[side] = profile_text(p)
        med = {k: statistics.median(v) for k, v in times.items()}
        figures.update({
            "dates_built": [d.isoformat() for d in rebuilt],
            "rounds": args.rounds, "seconds": times, "median_s": med,
            "tiles_vs_recomputation": med["tiles"] / med["recomputation"],
            "differing_values": differing, "profiles": profiles})
        print(f"\n| build of {args.day}'s event date | median |\n|---|---|")
        print(f"| tiles | {med['tiles']:.2f} s |\n| recomputation | {med['recomputation']:.2f} s |")
        print(f"| tiles / recomputation | {med['tiles'] / med['recomputation']:.2f} |")
        print(f"differing feature values: {differing}")
        for side, text in profiles.items():
            print(f"\n--- profile: {side}\n{text}")
        save(args.json, figures)
    finally:
        cleanup(s)


if __name__ == "__main__":
    main()
