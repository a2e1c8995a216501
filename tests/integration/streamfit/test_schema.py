from __future__ import annotations

import uuid

import pytest

from streamfit.cassandra import connect
from streamfit.schema import MIGRATIONS, Migration, MigrationError, current_version, migrate
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
    from streamfit.progress import settings_for
    from streamfit.schema import recorded_domain

    settings, session = fresh_keyspace
    parcels = settings.model_copy(update={"domain": "deliveries"})
    migrate(session, parcels)
    assert recorded_domain(session, settings.keyspace) == "deliveries"
    # a process configured for flights works on this keyspace as deliveries
    assert settings_for(settings, session, settings.keyspace).domain == "deliveries"
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
