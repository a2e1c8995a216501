from __future__ import annotations

import uuid

import pytest

from streamfit.cassandra import connect
from streamfit.schema import (
    BASELINE_VERSION,
    DROPPED_TABLES,
    MIGRATIONS,
    TABLES,
    Migration,
    MigrationError,
    current_version,
    migrate,
)
from streamfit.settings import Settings


@pytest.fixture
def fresh_keyspace(stack: Settings):
    settings = stack.model_copy(update={"keyspace": f"t_mig_{uuid.uuid4().hex[:10]}"})
    with connect(settings, keyspace=None) as session:
        yield settings, session
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}", timeout=60)


def test_migrate_is_idempotent_and_records_the_version(fresh_keyspace) -> None:
    settings, session = fresh_keyspace
    assert migrate(session, settings) == [m.version for m in MIGRATIONS]
    assert migrate(session, settings) == []
    assert current_version(session, settings.keyspace) == MIGRATIONS[-1].version
    ks = session.cluster.metadata.keyspaces[settings.keyspace]
    assert ks.replication_strategy.replication_factor_info.all_replicas == 1
    assert "stack_checks" in ks.tables


def _tables(session, keyspace: str) -> set[str]:
    return {r.table_name for r in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))}


def _columns(session, keyspace: str) -> set[tuple]:
    """Every column with its table, type, kind, position and clustering order."""
    return {(r.table_name, r.column_name, r.type, r.kind, r.position, r.clustering_order)
            for r in session.execute(
                "SELECT table_name, column_name, type, kind, position, clustering_order "
                "FROM system_schema.columns WHERE keyspace_name = %s", (keyspace,))}


def test_a_fresh_keyspace_holds_only_the_tables_the_code_declares(fresh_keyspace) -> None:
    settings, session = fresh_keyspace
    migrate(session, settings)
    assert _tables(session, settings.keyspace) == {*TABLES, "schema_migrations"}
    assert not set(DROPPED_TABLES) & TABLES


def test_the_baseline_is_the_schema_the_migrations_walk_to(stack: Settings) -> None:
    """A new keyspace (BASELINE) and one made before the baseline (MIGRATIONS 1..13, one by
    one) end with the same tables, columns, types, keys and table options."""
    made = [stack.model_copy(update={"keyspace": f"t_base_{kind}_{uuid.uuid4().hex[:8]}"})
            for kind in ("new", "old")]
    with connect(stack, keyspace=None) as session:
        try:
            migrate(session, made[0])
            migrate(session, made[1], baseline=False)
            assert (current_version(session, made[0].keyspace)
                    == current_version(session, made[1].keyspace) == MIGRATIONS[-1].version)
            assert _columns(session, made[0].keyspace) == _columns(session, made[1].keyspace)
            options = ("compaction", "default_time_to_live")
            new, old = ({r.table_name: tuple(getattr(r, o) for o in options)
                         for r in session.execute(
                             "SELECT * FROM system_schema.tables WHERE keyspace_name = %s",
                             (s.keyspace,))} for s in made)
            assert new == old
        finally:
            for s in made:
                session.execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=60)


def test_a_keyspace_from_before_the_baseline_migrates_forward_with_its_data(fresh_keyspace
                                                                           ) -> None:
    from datetime import UTC, date, datetime

    settings, session = fresh_keyspace
    ks = settings.keyspace
    before = tuple(m for m in MIGRATIONS if m.version < BASELINE_VERSION)
    migrate(session, settings, before, baseline=False)
    assert set(DROPPED_TABLES) <= _tables(session, ks)
    now = datetime(2013, 2, 1, tzinfo=UTC)
    for i in range(3):
        day = date(2013, 1, 1 + i)
        session.execute(f"INSERT INTO {ks}.feature_partitions (feature_set, sched_date, flights, "
                        "labelled, sources, built_at) VALUES ('flights', %s, %s, %s, '{}', %s)",
                        (day, 800 + i, 700 + i, now))
        session.execute(f"INSERT INTO {ks}.model_performance (model, model_version, sched_date, "
                        "flights, late, roc_auc) VALUES ('flight_delay', 1, %s, %s, %s, 0.7)",
                        (day, 500 + i, 100 + i))
        session.execute(f"INSERT INTO {ks}.feature_builds (feature_set, build_seq, dates, flights, "
                        "built_at) VALUES ('flights', %s, %s, %s, %s)", (i + 1, {day}, 900 + i, now))
    session.execute(f"INSERT INTO {ks}.flight_features (sched_date, flight_id) VALUES "
                    "('2013-01-01', 'x')")

    assert migrate(session, settings) == [v for v in (m.version for m in MIGRATIONS)
                                          if v >= BASELINE_VERSION]
    assert _tables(session, ks) == {*TABLES, "schema_migrations"}
    parts = {(r.day.date(), r.entities, r.labelled) for r in session.execute(
        f"SELECT day, entities, labelled FROM {ks}.feature_partitions WHERE feature_set = 'flights'")}
    assert parts == {(date(2013, 1, 1 + i), 800 + i, 700 + i) for i in range(3)}
    perf = {(r.day.date(), r.entities, r.late) for r in session.execute(
        f"SELECT day, entities, late FROM {ks}.model_performance WHERE model = 'flight_delay'")}
    assert perf == {(date(2013, 1, 1 + i), 500 + i, 100 + i) for i in range(3)}
    builds = {(r.build_seq, r.entities) for r in session.execute(
        f"SELECT build_seq, entities FROM {ks}.feature_builds WHERE feature_set = 'flights'")}
    assert builds == {(i + 1, 900 + i) for i in range(3)}
    assert not {"sched_date", "flights"} & {c[1] for c in _columns(session, ks)
                                             if c[0] in ("feature_partitions", "model_performance",
                                                         "feature_builds")}
    assert migrate(session, settings) == []  # and again: nothing left to do


def test_new_migrations_apply_on_top(fresh_keyspace) -> None:
    settings, session = fresh_keyspace
    migrate(session, settings)
    extra = Migration(999, "test table", ("CREATE TABLE IF NOT EXISTS {ks}.t999 (k int PRIMARY KEY)",))
    assert migrate(session, settings, (*MIGRATIONS, extra)) == [999]
    assert current_version(session, settings.keyspace) == 999


def test_an_edited_applied_migration_is_refused(fresh_keyspace) -> None:
    settings, session = fresh_keyspace
    migrate(session, settings)
    first = MIGRATIONS[0]
    edited = Migration(first.version, first.description, (*first.statements, "SELECT 1"))
    with pytest.raises(MigrationError, match="add a new migration"):
        migrate(session, settings, (edited, *MIGRATIONS[1:]))


def test_a_keyspace_keeps_its_domain_and_the_stages_follow_it(fresh_keyspace) -> None:
    from streamfit.schema import recorded_domain

    settings, session = fresh_keyspace
    parcels = settings.model_copy(update={"domain": "deliveries"})
    migrate(session, parcels)
    assert recorded_domain(session, settings.keyspace) == "deliveries"
    # a process configured for flights works on this keyspace as deliveries
    from streamfit.workspace import workspace

    ws = workspace(settings, session)
    assert ws.domain.name == "deliveries" and ws.settings.domain == "deliveries"
    with pytest.raises(MigrationError, match="holds the 'deliveries' domain, not 'flights'"):
        migrate(session, settings)
    assert recorded_domain(session, settings.keyspace) == "deliveries"


def test_a_keyspace_may_move_to_a_newer_spec_of_the_same_domain(fresh_keyspace) -> None:
    from streamfit.schema import recorded_domain

    settings, session = fresh_keyspace
    migrate(session, settings)
    assert recorded_domain(session, settings.keyspace) == "flights"
    newer = settings.model_copy(update={"domain": "tests.integration.ingest.extended_domain:DOMAIN"})
    migrate(session, newer)
    assert recorded_domain(session, settings.keyspace) == newer.domain


def test_write_and_read_a_row(keyspace_settings: Settings) -> None:
    from streamfit.selfcheck import cassandra_round_trip

    result = cassandra_round_trip(keyspace_settings)
    assert result.received == result.sent
    assert result.where == f"{keyspace_settings.keyspace}.stack_checks"


def test_selfcheck_on_an_unmigrated_keyspace_says_what_to_do(stack: Settings) -> None:
    from streamfit.selfcheck import SelfCheckFailed, cassandra_round_trip

    missing = stack.model_copy(update={"keyspace": f"t_none_{uuid.uuid4().hex[:8]}"})
    with pytest.raises(SelfCheckFailed, match="run `streamfit db migrate`"):
        cassandra_round_trip(missing)


def test_reads_and_writes_use_the_configured_consistency(keyspace_settings: Settings) -> None:
    from cassandra import ConsistencyLevel

    s = keyspace_settings.model_copy(update={"cassandra_read_consistency": "ONE",
                                             "cassandra_write_consistency": "ALL"})
    with connect(s) as session:
        default = session.cluster.profile_manager.default.consistency_level
        read = session.prepare(f"SELECT check_id FROM {s.keyspace}.stack_checks "
                               "WHERE check_id = ?")
        write = session.prepare(f"INSERT INTO {s.keyspace}.stack_checks (check_id, payload) "
                                "VALUES (?, ?)")
        assert default == ConsistencyLevel.ALL
        assert read.consistency_level == ConsistencyLevel.ONE
        assert write.consistency_level is None  # the profile's: ALL
        session.execute(write, ("cl", "x"))  # ALL of one replica: accepted by the real node
        assert session.execute(read, ("cl",)).one().check_id == "cl"
    with connect(keyspace_settings) as session:  # replication factor 1: LOCAL_ONE
        assert (session.cluster.profile_manager.default.consistency_level
                == ConsistencyLevel.LOCAL_ONE)
