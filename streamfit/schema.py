"""Versioned Cassandra schema migrations: ``streamfit db migrate``.

Run by ``make demo``, by the test session and by the ingest service at start-up. Each migration
has a version and idempotent steps (``IF NOT EXISTS``, or a check of ``system_schema`` first);
applied versions are recorded in ``<keyspace>.schema_migrations`` with a checksum, so an edited,
already-applied migration is refused instead of silently diverging. Tables other processes read
(predictions) change only through a new migration (``streamfit/migrations.py``).

A new keyspace gets ``BASELINE`` (here: the live schema, every table the code uses, in one
pass). A keyspace made before it walks ``MIGRATIONS`` forward; a test checks that both paths end
in the same columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from cassandra import InvalidRequest
from cassandra.cluster import Session

from streamfit.migrations import DROPPED_TABLES, MIGRATIONS, Migration, Step
from streamfit.settings import Settings

__all__ = ["BASELINE", "BASELINE_VERSION", "DROPPED_TABLES", "MIGRATIONS", "TABLES", "Migration",
           "MigrationError", "current_version", "migrate", "recorded_domain"]


class MigrationError(RuntimeError):
    """The recorded schema disagrees with the code; the message says how to proceed."""


#: The version a new keyspace starts at, made by BASELINE in one pass.
BASELINE_VERSION = 13

#: The live schema at BASELINE_VERSION: what MIGRATIONS 1 to 13 leave, written out. Append new
#: migrations to MIGRATIONS only; a new keyspace gets BASELINE and then those.
BASELINE: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS {ks}.stack_checks (
           check_id text PRIMARY KEY,
           written_at timestamp,
           payload text
       )""",
    # --- ingest: one day of events = RAW_BUCKETS partitions (streamfit.store), read by partition
    # key; clustering by type then time lets a feature build read one type of one day in order.
    """CREATE TABLE IF NOT EXISTS {ks}.raw_events (
           event_date date,
           bucket smallint,
           event_type text,
           event_time timestamp,
           event_id text,
           entity_key text,
           schema_version int,
           payload text,
           source_topic text,
           source_partition int,
           source_offset bigint,
           ingested_at timestamp,
           PRIMARY KEY ((event_date, bucket), event_type, event_time, event_id)
       ) WITH compaction = {{'class': 'UnifiedCompactionStrategy'}}""",
    # One row per Kafka partition per landed batch; the key is the batch's first offset, so a
    # redelivered batch overwrites its own ledger row.
    """CREATE TABLE IF NOT EXISTS {ks}.ingest_ledger (
           consumer_group text,
           topic text,
           partition int,
           offset_bucket bigint,
           first_offset bigint,
           last_offset bigint,
           rows int,
           dead_lettered int,
           min_event_time timestamp,
           max_event_time timestamp,
           event_dates set<date>,
           landed_at timestamp,
           worker text,
           PRIMARY KEY ((consumer_group, topic, partition, offset_bucket), first_offset)
       )""",
    """CREATE TABLE IF NOT EXISTS {ks}.ingest_signal_state (
           consumer_group text,
           topic text,
           partition int,
           signalled_upto bigint,
           updated_at timestamp,
           PRIMARY KEY ((consumer_group, topic), partition)
       )""",
    """CREATE TABLE IF NOT EXISTS {ks}.ingest_signals (
           signal_day date,
           signal_id timeuuid,
           asset text,
           rows bigint,
           extra text,
           airflow_event_id bigint,
           PRIMARY KEY ((signal_day), signal_id)
       ) WITH CLUSTERING ORDER BY (signal_id DESC)""",
    # The (consumer group, topic) pairs that land raw events here: the feature stage reads their
    # ledgers. Registered by the ingest service when it starts.
    """CREATE TABLE IF NOT EXISTS {ks}.ingest_sources (
           source text,
           consumer_group text,
           topic text,
           registered_at timestamp,
           PRIMARY KEY ((source), consumer_group, topic)
       )""",
    # --- stage progress (streamfit.progress): a position moves only after the writes it covers
    # are durable, by compare-and-set; a lease is an LWT with a short TTL.
    """CREATE TABLE IF NOT EXISTS {ks}.stage_progress (
           stage text,
           stream text,
           part int,
           position bigint,
           position_time timestamp,
           updated_at timestamp,
           PRIMARY KEY ((stage), stream, part)
       )""",
    """CREATE TABLE IF NOT EXISTS {ks}.stage_leases (
           stage text PRIMARY KEY,
           owner text,
           acquired_at timestamp
       )""",
    # --- features: one row per entity and horizon (minutes before its event time), in the
    # entity date's partition: a date's every horizon is one read.
    """CREATE TABLE IF NOT EXISTS {ks}.features_by_horizon (
           day date,
           entity_id text,
           horizon_min int,
           event_time timestamp,
           attributes frozen<map<text, text>>,
           feature_values frozen<map<text, double>>,
           outcome double,
           label boolean,
           feature_version int,
           built_at timestamp,
           PRIMARY KEY ((day), entity_id, horizon_min)
       )""",
    # What was built per entity date, and from which Kafka offsets: the lineage source.
    """CREATE TABLE IF NOT EXISTS {ks}.feature_partitions (
           feature_set text,
           day date,
           labelled int,
           sources text,
           built_at timestamp,
           entities int,
           PRIMARY KEY ((feature_set), day)
       )""",
    # One row per feature build (a numbered log): training and scoring consume it.
    """CREATE TABLE IF NOT EXISTS {ks}.feature_builds (
           feature_set text,
           build_seq bigint,
           dates set<date>,
           max_event_time timestamp,
           built_at timestamp,
           entities int,
           PRIMARY KEY ((feature_set), build_seq)
       ) WITH CLUSTERING ORDER BY (build_seq DESC)""",
    # --- model registry: one small partition per model family; a version row carries its
    # artifacts (skops bytes, SHA-256), metrics, lineage and training reference in one INSERT.
    """CREATE TABLE IF NOT EXISTS {ks}.model_versions (
           model text,
           version int,
           created_at timestamp,
           algorithm text,
           params text,
           metrics text,
           features text,
           train_window text,
           lineage text,
           artifact blob,
           sha256 text,
           reference text,
           gate_artifact blob,
           gate_sha256 text,
           PRIMARY KEY ((model), version)
       ) WITH CLUSTERING ORDER BY (version DESC)""",
    """CREATE TABLE IF NOT EXISTS {ks}.model_aliases (
           model text,
           alias text,
           version int,
           updated_at timestamp,
           PRIMARY KEY ((model), alias)
       )""",
    """CREATE TABLE IF NOT EXISTS {ks}.model_promotions (
           model text,
           decided_at timestamp,
           candidate int,
           champion int,
           metric text,
           candidate_score double,
           champion_score double,
           tolerance double,
           promoted boolean,
           reason text,
           PRIMARY KEY ((model), decided_at)
       ) WITH CLUSTERING ORDER BY (decided_at DESC)""",
    # --- monitoring: scoring runs, realised performance per version and entity date
    """CREATE TABLE IF NOT EXISTS {ks}.scoring_runs (
           model text,
           scored_at timestamp,
           model_version int,
           dates list<text>,
           rows int,
           predictions text,
           drift text,
           max_psi double,
           PRIMARY KEY ((model), scored_at)
       ) WITH CLUSTERING ORDER BY (scored_at DESC)""",
    """CREATE TABLE IF NOT EXISTS {ks}.model_performance (
           model text,
           model_version int,
           day date,
           late int,
           mean_probability double,
           roc_auc double,
           brier double,
           evaluated_at timestamp,
           entities int,
           PRIMARY KEY ((model), model_version, day)
       ) WITH CLUSTERING ORDER BY (model_version DESC, day DESC)""",
    # --- predictions (public contract: change only through new migrations). The latest
    # predictions of an entity, freshest horizon first: "latest" reads one row.
    """CREATE TABLE IF NOT EXISTS {ks}.predictions_by_horizon (
           entity_id text,
           horizon_min int,
           day date,
           event_time timestamp,
           attributes frozen<map<text, text>>,
           probability double,
           model_version int,
           scored_at timestamp,
           PRIMARY KEY ((entity_id), horizon_min)
       ) WITH CLUSTERING ORDER BY (horizon_min ASC)""",
    # Every entity of a date, each horizon's latest prediction; the API pages one row per entity.
    """CREATE TABLE IF NOT EXISTS {ks}.day_predictions_by_horizon (
           day date,
           entity_id text,
           horizon_min int,
           event_time timestamp,
           attributes frozen<map<text, text>>,
           probability double,
           model_version int,
           scored_at timestamp,
           PRIMARY KEY ((day), entity_id, horizon_min)
       ) WITH CLUSTERING ORDER BY (entity_id ASC, horizon_min ASC)""",
    # History: one row per entity, model version and horizon (a rerun overwrites its own row).
    """CREATE TABLE IF NOT EXISTS {ks}.prediction_history_by_horizon (
           entity_id text,
           model_version int,
           horizon_min int,
           probability double,
           scored_at timestamp,
           PRIMARY KEY ((entity_id), model_version, horizon_min)
       ) WITH CLUSTERING ORDER BY (model_version DESC, horizon_min ASC)""",
    # Transient-model predictions (kept a week): one partition per request; the static columns
    # describe the throw-away model.
    """CREATE TABLE IF NOT EXISTS {ks}.entity_transient_predictions (
           request_id text,
           entity_id text,
           day date,
           probability double,
           scored_at timestamp,
           algorithm text STATIC,
           train_window text STATIC,
           metrics text STATIC,
           finished_at timestamp STATIC,
           PRIMARY KEY ((request_id), entity_id)
       ) WITH default_time_to_live = 604800""",
    # Small facts about the keyspace itself: the domain it was created for.
    """CREATE TABLE IF NOT EXISTS {ks}.pipeline_config (
           name text PRIMARY KEY,
           value text,
           set_at timestamp
       )""",
)

#: Every table a migrated keyspace holds (besides ``schema_migrations``).
TABLES: frozenset[str] = frozenset(
    found.group(1)
    for statement in (*BASELINE, *(s for m in MIGRATIONS if m.version > BASELINE_VERSION
                                   for s in m.statements if isinstance(s, str)))
    if (found := re.search(r"CREATE TABLE IF NOT EXISTS \{ks\}\.(\w+)", statement)))


#: How long the nodes may take to agree on a new keyspace's schema.
SCHEMA_AGREEMENT_S = 60


@contextmanager
def _one_coordinator(session: Session) -> Iterator[Callable[[str], None]]:
    """Run DDL through one node without waiting for schema agreement after each statement, then
    wait for it once. On three nodes each wait cost 1.5-2.5 s (every node flushes its schema
    tables): a new keyspace took 43 s, this way 13 s. One coordinator applies the statements in
    order, so none depends on a change another node has not seen yet."""
    cluster = session.cluster
    up = [host for host in session.get_pool_state() if host.is_up]
    host = up[0] if up else None  # None: the load-balancing policy picks (no pool open yet)
    saved = cluster.max_schema_agreement_wait
    cluster.max_schema_agreement_wait = 0
    try:
        yield lambda cql: session.execute(cql, timeout=60, host=host)
    finally:
        cluster.max_schema_agreement_wait = saved
    if not cluster.control_connection.wait_for_schema_agreement(wait_time=SCHEMA_AGREEMENT_S):
        raise MigrationError(
            f"the Cassandra nodes did not agree on the new schema within {SCHEMA_AGREEMENT_S} s: "
            "check that every node is up (`nodetool describecluster`), then run "
            "`streamfit db migrate` again (it is idempotent)")


def _ensure_keyspace(session: Session, settings: Settings,
                     execute: Callable[[str], object] | None = None) -> None:
    ks = settings.keyspace
    run = execute or session.execute
    run(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {settings.replication_cql()}")
    run(
        f"""CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
                version int PRIMARY KEY,
                description text,
                checksum text,
                applied_at timestamp
            )"""
    )


def _keyspace_exists(session: Session, ks: str) -> bool:
    return session.execute("SELECT keyspace_name FROM system_schema.keyspaces "
                           "WHERE keyspace_name = %s", (ks,)).one() is not None


def applied_versions(session: Session, keyspace: str) -> dict[int, str]:
    rows = session.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")
    return {row.version: row.checksum for row in rows}


def migrate(session: Session, settings: Settings,
            migrations: tuple[Migration, ...] = MIGRATIONS, baseline: bool = True) -> list[int]:
    """Apply every migration not yet recorded, in order. Returns the versions applied now. A
    keyspace with none recorded gets BASELINE instead of migrations 1 to BASELINE_VERSION
    (``baseline=False`` walks them, as a keyspace made before the baseline did)."""
    ks = settings.keyspace
    use_baseline = baseline and any(m.version == BASELINE_VERSION for m in migrations)
    if use_baseline and not _keyspace_exists(session, ks):
        # a new keyspace: its whole schema in one pass, agreed once
        with _one_coordinator(session) as execute:
            _ensure_keyspace(session, settings, execute)
            for cql in BASELINE:
                execute(cql.format(ks=ks))
        done = _record_baseline(session, ks, migrations)
        applied = sorted(done)
    else:
        _ensure_keyspace(session, settings)
        done = applied_versions(session, ks)
        applied = []
        if not done and use_baseline:
            done = _apply_baseline(session, ks, migrations)
            applied = sorted(done)
    for migration in migrations:
        recorded = done.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.version} ({migration.description}) was changed after it "
                f"was applied to keyspace {ks}: add a new migration instead of editing it"
            )
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in migration.statements:
            if isinstance(statement, Step):
                statement.run(session, ks)
            else:
                # Schema changes must reach agreement before the next statement uses them.
                session.execute(statement.format(ks=ks), timeout=60)
        _record(session, ks, migration)
        applied.append(migration.version)
    bind_domain(session, ks, settings.domain)
    return applied


def _record(session: Session, ks: str, migration: Migration, note: str = "") -> None:
    session.execute(
        f"INSERT INTO {ks}.schema_migrations (version, description, checksum, applied_at) "
        "VALUES (%s, %s, %s, %s)",
        (migration.version, migration.description + note, migration.checksum, datetime.now(UTC)))


def _apply_baseline(session: Session, ks: str, migrations: tuple[Migration, ...]
                    ) -> dict[int, str]:
    """Create BASELINE in an empty keyspace and record the migrations it stands for (with their
    checksums, so an edited one is still refused). Returns them as ``applied_versions`` would."""
    for statement in BASELINE:
        session.execute(statement.format(ks=ks), timeout=60)
    return _record_baseline(session, ks, migrations)


def _record_baseline(session: Session, ks: str, migrations: tuple[Migration, ...]
                     ) -> dict[int, str]:
    covered = [m for m in migrations if m.version <= BASELINE_VERSION]
    for migration in covered:
        _record(session, ks, migration, f" (in the baseline of version {BASELINE_VERSION})")
    return {m.version: m.checksum for m in covered}


def bind_domain(session: Session, keyspace: str, domain: str) -> None:
    """Record the domain a keyspace serves (``STREAMFIT_DOMAIN`` of the first migrate). A later
    migrate may point it at another spec of the same domain (a new schema version of its events,
    say), never at a domain of another name."""
    from streamfit.domains import load_domain

    now = datetime.now(UTC)
    row = session.execute(
        f"INSERT INTO {keyspace}.pipeline_config (name, value, set_at) VALUES ('domain', %s, %s) "
        "IF NOT EXISTS", (domain, now)).one()
    recorded = row.value if row is not None and not row.applied else domain
    if recorded == domain:
        return
    before, after = load_domain(recorded).name, load_domain(domain).name
    if before != after:
        raise MigrationError(
            f"keyspace {keyspace} holds the {before!r} domain, not {after!r} "
            f"(STREAMFIT_DOMAIN={domain}): set STREAMFIT_KEYSPACE to another keyspace for it")
    session.execute(f"UPDATE {keyspace}.pipeline_config SET value = %s, set_at = %s "
                    "WHERE name = 'domain'", (domain, now))


def recorded_domain(session: Session, keyspace: str) -> str | None:
    """The domain a keyspace was created for (None before migration 10 ran there)."""
    try:
        row = session.execute(
            f"SELECT value FROM {keyspace}.pipeline_config WHERE name = 'domain'").one()
    except InvalidRequest:  # no such table yet
        return None
    return row.value if row is not None else None


def current_version(session: Session, keyspace: str) -> int:
    versions = applied_versions(session, keyspace)
    return max(versions) if versions else 0
