"""The numbered schema migrations a keyspace made before the baseline walks forward.

``streamfit.schema.migrate`` applies them; a new keyspace gets ``streamfit.schema.BASELINE``
(what they all leave, written out) instead. Append new migrations here; never edit an applied one
(its checksum is recorded, and a changed one is refused).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cassandra.cluster import Session


@dataclass(frozen=True)
class Step:
    """A migration step that CQL alone cannot say (carrying a column's values to a new column).
    It must be idempotent: a migration that failed part-way runs again from its first step."""

    name: str
    run: Callable[[Session, str], None]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str | Step, ...]

    @property
    def checksum(self) -> str:
        text = "\n".join(s if isinstance(s, str) else f"step:{s.name}" for s in self.statements)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def table_columns(session: Session, keyspace: str, table: str) -> set[str]:
    """The columns ``table`` has now (read from ``system_schema``, not the driver's cache)."""
    rows = session.execute("SELECT column_name FROM system_schema.columns "
                           "WHERE keyspace_name = %s AND table_name = %s", (keyspace, table))
    return {row.column_name for row in rows}


def rename_key_column(table: str, old: str, new: str) -> Step:
    """Rename a primary-key column (the only kind Cassandra renames in place)."""
    def run(session: Session, ks: str) -> None:
        if old in table_columns(session, ks, table):
            session.execute(f"ALTER TABLE {ks}.{table} RENAME {old} TO {new}", timeout=60)
    return Step(f"rename {table}.{old} to {new}", run)


def move_column(table: str, key: tuple[str, ...], old: str, new: str, cql_type: str) -> Step:
    """Carry a regular column's values to a new column of another name, then drop the old one
    (Cassandra renames only key columns). Reads the whole table: these are small log tables."""
    def run(session: Session, ks: str) -> None:
        if old not in table_columns(session, ks, table):
            return  # moved already
        session.execute(f"ALTER TABLE {ks}.{table} ADD IF NOT EXISTS {new} {cql_type}",
                        timeout=60)
        where = " AND ".join(f"{k} = ?" for k in key)
        update = session.prepare(f"UPDATE {ks}.{table} SET {new} = ? WHERE {where}")
        for row in session.execute(f"SELECT {', '.join(key)}, {old} FROM {ks}.{table}"):
            value = getattr(row, old)
            if value is not None:
                session.execute(update, (value, *(getattr(row, k) for k in key)))
        session.execute(f"ALTER TABLE {ks}.{table} DROP {old}", timeout=60)
    return Step(f"move {table}.{old} to {new}", run)


#: Tables of early migrations that no module reads or writes any more (dropped by migration 13).
DROPPED_TABLES = ("flight_features", "predictions_latest", "predictions_by_date",
                  "predictions_history", "transient_predictions", "entity_features",
                  "entity_predictions", "entity_predictions_by_day", "entity_prediction_history")

# Statements are templates on {ks}. Append new migrations; never edit an applied one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "stack self-check table", (
        """CREATE TABLE IF NOT EXISTS {ks}.stack_checks (
               check_id text PRIMARY KEY,
               written_at timestamp,
               payload text
           )""",
    )),
    Migration(2, "raw events, ingest ledger, data-arrival signal state", (
        # One day of events = RAW_BUCKETS partitions (streamfit.store), read by partition key.
        # Clustering by type then time lets a feature build read one type of one day in order.
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
        # One row per Kafka partition per landed batch; the key is the batch's first offset,
        # so a redelivered batch overwrites its own ledger row.
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
    )),
    Migration(3, "flight features", (
        # One partition per scheduled-departure date: an incremental rebuild rewrites exactly
        # the partitions of the dates it was told about.
        """CREATE TABLE IF NOT EXISTS {ks}.flight_features (
               sched_date date,
               flight_id text,
               scheduled_departure timestamp,
               carrier text,
               origin text,
               dest text,
               features map<text, double>,
               arr_delay double,
               label boolean,
               feature_version int,
               built_at timestamp,
               PRIMARY KEY ((sched_date), flight_id)
           )""",
    )),
    Migration(4, "feature partition log, model registry", (
        # What was built per scheduled date, and from which Kafka offsets: the lineage source.
        """CREATE TABLE IF NOT EXISTS {ks}.feature_partitions (
               feature_set text,
               sched_date date,
               flights int,
               labelled int,
               sources text,
               built_at timestamp,
               PRIMARY KEY ((feature_set), sched_date)
           )""",
        # One small partition per model family; a version row carries its artifact (skops bytes,
        # SHA-256), metrics and lineage, written in one INSERT ... IF NOT EXISTS.
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
    )),
    Migration(5, "predictions (public contract: change only through new migrations)", (
        # The latest prediction of a flight: one partition, one row.
        """CREATE TABLE IF NOT EXISTS {ks}.predictions_latest (
               flight_id text PRIMARY KEY,
               sched_date date,
               scheduled_departure timestamp,
               carrier text,
               origin text,
               dest text,
               probability double,
               model_version int,
               scored_at timestamp
           )""",
        # Every flight of a scheduled date with its latest prediction, for analytics.
        """CREATE TABLE IF NOT EXISTS {ks}.predictions_by_date (
               sched_date date,
               flight_id text,
               scheduled_departure timestamp,
               carrier text,
               origin text,
               dest text,
               probability double,
               model_version int,
               scored_at timestamp,
               PRIMARY KEY ((sched_date), flight_id)
           )""",
        # History: one row per flight and model version (a rerun overwrites its own row).
        """CREATE TABLE IF NOT EXISTS {ks}.predictions_history (
               flight_id text,
               model_version int,
               probability double,
               scored_at timestamp,
               PRIMARY KEY ((flight_id), model_version)
           ) WITH CLUSTERING ORDER BY (model_version DESC)""",
    )),
    Migration(6, "model monitoring: training reference, scoring runs, realised performance", (
        # The training reference (feature profiles, holdout curves) travels in the version row,
        # written in the same INSERT as the artifact.
        "ALTER TABLE {ks}.model_versions ADD IF NOT EXISTS reference text",
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
               sched_date date,
               flights int,
               late int,
               mean_probability double,
               roc_auc double,
               brier double,
               evaluated_at timestamp,
               PRIMARY KEY ((model), model_version, sched_date)
           ) WITH CLUSTERING ORDER BY (model_version DESC, sched_date DESC)""",
    )),
    Migration(7, "transient-model predictions (kept a week)", (
        # One partition per request; the static columns describe the throw-away model.
        """CREATE TABLE IF NOT EXISTS {ks}.transient_predictions (
               request_id text,
               flight_id text,
               sched_date date,
               probability double,
               scored_at timestamp,
               algorithm text STATIC,
               train_window text STATIC,
               metrics text STATIC,
               finished_at timestamp STATIC,
               PRIMARY KEY ((request_id), flight_id)
           ) WITH default_time_to_live = 604800""",
    )),
    Migration(8, "flight features as one frozen cell (no tombstone per rebuild)", (
        # Overwriting a non-frozen map writes a range tombstone first: a date rebuilt after
        # every signal piled up tombstones (warnings at ~1,000 per partition read). A frozen
        # map is one cell, replaced in place. The old column stays for rows built before.
        "ALTER TABLE {ks}.flight_features ADD IF NOT EXISTS feature_values "
        "frozen<map<text, double>>",
    )),
    Migration(9, "durable stage progress: watermarks, leases, feature-build log, ingest sources", (
        # The (consumer group, topic) pairs that land raw events in this keyspace: the feature
        # stage reads their ledgers. Registered by the ingest service when it starts.
        """CREATE TABLE IF NOT EXISTS {ks}.ingest_sources (
               source text,
               consumer_group text,
               topic text,
               registered_at timestamp,
               PRIMARY KEY ((source), consumer_group, topic)
           )""",
        # What each stage has consumed of the stage before it (streamfit.progress). A position
        # moves only after the writes it covers are durable, by compare-and-set.
        """CREATE TABLE IF NOT EXISTS {ks}.stage_progress (
               stage text,
               stream text,
               part int,
               position bigint,
               position_time timestamp,
               updated_at timestamp,
               PRIMARY KEY ((stage), stream, part)
           )""",
        # At most one run of a stage per keyspace at a time: an LWT lease with a short TTL,
        # renewed while the run works, so a killed run frees it within the TTL.
        """CREATE TABLE IF NOT EXISTS {ks}.stage_leases (
               stage text PRIMARY KEY,
               owner text,
               acquired_at timestamp
           )""",
        # One row per feature build (a numbered log): training and scoring consume it.
        """CREATE TABLE IF NOT EXISTS {ks}.feature_builds (
               feature_set text,
               build_seq bigint,
               dates set<date>,
               flights int,
               max_event_time timestamp,
               built_at timestamp,
               PRIMARY KEY ((feature_set), build_seq)
           ) WITH CLUSTERING ORDER BY (build_seq DESC)""",
    )),
    Migration(10, "entity tables generic over the domain; the keyspace records its domain", (
        # Features and predictions keyed by the domain's entity, whatever it is. The entity's
        # descriptive columns travel in one frozen map (the API names them after the domain).
        """CREATE TABLE IF NOT EXISTS {ks}.entity_features (
               day date,
               entity_id text,
               event_time timestamp,
               attributes frozen<map<text, text>>,
               feature_values frozen<map<text, double>>,
               outcome double,
               label boolean,
               feature_version int,
               built_at timestamp,
               PRIMARY KEY ((day), entity_id)
           )""",
        # The latest prediction of an entity: one partition, one row.
        """CREATE TABLE IF NOT EXISTS {ks}.entity_predictions (
               entity_id text PRIMARY KEY,
               day date,
               event_time timestamp,
               attributes frozen<map<text, text>>,
               probability double,
               model_version int,
               scored_at timestamp
           )""",
        # Every entity of a date with its latest prediction, paged by the API.
        """CREATE TABLE IF NOT EXISTS {ks}.entity_predictions_by_day (
               day date,
               entity_id text,
               event_time timestamp,
               attributes frozen<map<text, text>>,
               probability double,
               model_version int,
               scored_at timestamp,
               PRIMARY KEY ((day), entity_id)
           )""",
        # History: one row per entity and model version (a rerun overwrites its own row).
        """CREATE TABLE IF NOT EXISTS {ks}.entity_prediction_history (
               entity_id text,
               model_version int,
               probability double,
               scored_at timestamp,
               PRIMARY KEY ((entity_id), model_version)
           ) WITH CLUSTERING ORDER BY (model_version DESC)""",
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
        # A keyspace from before this migration rebuilds into the new tables from its ledger:
        # the downstream stages start again from the beginning (the ledger and raw events are
        # untouched; the old flight_* and predictions_* tables are left as they were).
        "DELETE FROM {ks}.stage_progress WHERE stage IN ('features', 'training', 'scoring')",
    )),
    Migration(11, "features and predictions per prediction horizon", (
        # One row per entity and horizon (minutes before its event time), in the entity date's
        # partition: a date's every horizon is one read.
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
        # The latest predictions of an entity, freshest horizon first: "latest" reads one row.
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
        # Every entity of a date, each horizon's latest prediction, freshest first; the API
        # pages one row per entity (GROUP BY day, entity_id keeps the freshest).
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
        """CREATE TABLE IF NOT EXISTS {ks}.prediction_history_by_horizon (
               entity_id text,
               model_version int,
               horizon_min int,
               probability double,
               scored_at timestamp,
               PRIMARY KEY ((entity_id), model_version, horizon_min)
           ) WITH CLUSTERING ORDER BY (model_version DESC, horizon_min ASC)""",
        # A keyspace from before this migration rebuilds its features (every horizon) from its
        # ledger, retrains and rescores; the horizonless tables are left as they were.
        "DELETE FROM {ks}.stage_progress WHERE stage IN ('features', 'training', 'scoring')",
    )),
    Migration(12, "a version's holdout-free artifact, beside the one it serves", (
        # The served artifact is refitted on the whole window, holdout included; the one fitted
        # without the holdout judges the version on later holdouts its refit has seen.
        "ALTER TABLE {ks}.model_versions ADD IF NOT EXISTS gate_artifact blob",
        "ALTER TABLE {ks}.model_versions ADD IF NOT EXISTS gate_sha256 text",
    )),
    Migration(13, "generic names in the tables every domain uses; tables nothing reads dropped", (
        # Dates and entity counts of any domain, not scheduled dates and flights.
        rename_key_column("feature_partitions", "sched_date", "day"),
        move_column("feature_partitions", ("feature_set", "day"), "flights", "entities", "int"),
        rename_key_column("model_performance", "sched_date", "day"),
        move_column("model_performance", ("model", "model_version", "day"), "flights",
                    "entities", "int"),
        move_column("feature_builds", ("feature_set", "build_seq"), "flights", "entities", "int"),
        # Superseded by the generic tables of migrations 10 and 11, which the stages rebuilt
        # from the ledger; no module reads or writes them (tests/unit/streamfit/test_schema.py).
        # With Cassandra's default auto_snapshot: true, every node keeps a snapshot of a dropped
        # table's files (the local stack, a test stack, turns it off).
        *(f"DROP TABLE IF EXISTS {{ks}}.{table}" for table in DROPPED_TABLES),
    )),
    Migration(14, "scoring runs record the days they judged and what they found", (
        # JSON: each completed day judged against the training days (drift findings) and its
        # realised event rate against the mean prediction (calibration).
        "ALTER TABLE {ks}.scoring_runs ADD IF NOT EXISTS checks text",
    )),
    Migration(15, "each completed day is judged once per model version and feature build", (
        # A day is rescored and re-evaluated in several runs after it completed (each event
        # date rebuilds its neighbours); judging it again on the same build repeated its alerts.
        """CREATE TABLE IF NOT EXISTS {ks}.judged_days (
               model text,
               model_version int,
               day date,
               built_at timestamp,
               judged_at timestamp,
               PRIMARY KEY ((model), model_version, day)
           )""",
    )),
    Migration(16, "trailing aggregates kept as hourly tiles, one cell per family and day", (
        # A feature build reads a month of tiles (one slice per family) instead of a month of
        # raw partitions; a day's cell is made again whole from its raw events, so rewriting it
        # is idempotent and a late event repairs exactly its day (streamfit.tiles).
        """CREATE TABLE IF NOT EXISTS {ks}.feature_tiles (
               family text,
               day date,
               tiles blob,
               tile_count int,
               built_at timestamp,
               PRIMARY KEY ((family), day)
           )""",
    )),
)
