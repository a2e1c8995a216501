"""Batch scoring against the real Cassandra, with a trained champion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from scoring.batch import NoChampion, score_dates, scoring_dates
from streamfit.cassandra import connect
from streamfit.settings import Settings
from tests.integration.training.test_registry_and_training import START, _write_features
from training.train import train_and_maybe_promote

DAY = START + timedelta(days=29)


@pytest.fixture
def champion(fresh_keyspace_settings: Settings) -> Settings:
    s = fresh_keyspace_settings.model_copy(update={"train_days": 30, "holdout_days": 5})
    _write_features(s, 30)
    assert train_and_maybe_promote(s).promoted
    return s


def _rows(s: Settings, table: str, where: str, *args: object) -> list:
    with connect(s) as session:
        return list(session.execute(f"SELECT * FROM {table} WHERE {where}", args))


def test_scoring_writes_all_three_tables_and_is_idempotent(champion: Settings) -> None:
    first = score_dates(champion, [DAY])
    assert first.model_version == 1 and first.scored == 150
    by_date = _rows(champion, "predictions_by_date", "sched_date = %s", DAY)
    assert len(by_date) == 150
    assert all(0.0 < r.probability < 1.0 and r.model_version == 1 for r in by_date)
    latest = _rows(champion, "predictions_latest", "flight_id = %s", by_date[0].flight_id)
    assert latest[0].probability == by_date[0].probability
    again = score_dates(champion, [DAY])  # a rerun overwrites the same rows
    assert again.scored == 150
    assert len(_rows(champion, "predictions_by_date", "sched_date = %s", DAY)) == 150
    history = _rows(champion, "predictions_history", "flight_id = %s", by_date[0].flight_id)
    assert [h.model_version for h in history] == [1]


def test_only_flights_not_yet_departed_are_scored(champion: Settings) -> None:
    as_of = datetime(DAY.year, DAY.month, DAY.day, 6, 0, tzinfo=UTC) + timedelta(minutes=99)
    result = score_dates(champion, [DAY], as_of)
    assert result.scored == 50  # departures at 06:00 + 0..149 minutes; after 07:39 remain


def test_no_champion_is_a_clear_error(fresh_keyspace_settings: Settings) -> None:
    with pytest.raises(NoChampion, match="streamfit train"):
        score_dates(fresh_keyspace_settings, [date(2013, 3, 1)])


def test_scoring_dates_follow_the_triggering_events() -> None:
    dates, as_of = scoring_dates([{"dates": ["2013-03-02", "2013-03-01"],
                                   "max_event_time": "2013-03-01T12:00:00+00:00"}])
    assert dates == [date(2013, 3, 1), date(2013, 3, 2)]
    assert as_of == datetime(2013, 3, 1, 12, tzinfo=UTC)
    # a time without a zone (Cassandra hands back naive UTC) is UTC, not a TypeError later
    _, naive = scoring_dates([{"dates": ["2013-03-01"], "max_event_time": "2013-03-01T12:00:00"}])
    assert naive == datetime(2013, 3, 1, 12, tzinfo=UTC)
    dates, _ = scoring_dates([], today=date(2013, 5, 1))
    assert dates == [date(2013, 5, 1), date(2013, 5, 2)]
