"""Which dates a scoring run scores, from its durable backlog (no services)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from scoring.run import ScoringBacklog, dates_to_score
from streamfit.progress import FeatureBuild, Position

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _build(seq: int, days: list[date], max_event: datetime | None) -> FeatureBuild:
    return FeatureBuild(seq, frozenset(days), 100, max_event, T0)


def _mark(position: int, when: datetime | None = None) -> Position:
    return Position("x", 0, position, when, T0)


def test_pending_builds_are_scored_with_the_newest_event_time_as_now() -> None:
    backlog = ScoringBacklog(_mark(3, datetime(2013, 3, 1, tzinfo=UTC)),
                             [_build(4, [date(2013, 3, 2)], datetime(2013, 3, 1, 20, tzinfo=UTC)),
                              _build(5, [date(2013, 3, 3)], datetime(2013, 3, 2, 9, tzinfo=UTC))],
                             _mark(1), 1)
    assert backlog.pending == 2 and not backlog.champion_changed
    assert backlog.as_of == datetime(2013, 3, 2, 9, tzinfo=UTC)
    built = [date(2013, 3, d) for d in range(1, 5)]
    assert dates_to_score(backlog, built) == [date(2013, 3, 2), date(2013, 3, 3)]


def test_a_champion_change_rescores_every_built_date_from_now_on() -> None:
    now = datetime(2013, 3, 2, 9, tzinfo=UTC)
    backlog = ScoringBacklog(_mark(5, now), [], _mark(1), 2)
    assert backlog.champion_changed and backlog.pending == 1 and backlog.as_of == now
    built = [date(2013, 3, d) for d in range(1, 5)]
    assert dates_to_score(backlog, built) == [date(2013, 3, 2), date(2013, 3, 3),
                                              date(2013, 3, 4)]


def test_the_first_champion_counts_as_a_change_and_no_champion_as_none() -> None:
    assert ScoringBacklog(None, [], None, 1).champion_changed
    idle = ScoringBacklog(None, [], None, None)
    assert not idle.champion_changed and idle.pending == 0 and idle.as_of is None
    # without any event time (builds from the CLI), a change rescores the newest built date
    assert dates_to_score(ScoringBacklog(None, [], None, 1),
                          [date(2013, 3, 1), date(2013, 3, 9)]) == [date(2013, 3, 9)]
