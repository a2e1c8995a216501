"""The local stack's own settings: ``STREAMFIT_STACK_*``, read by ``streamfit stack`` and the
test session, never by production code (the import contract says so).

They extend the process's settings (``streamfit.settings.Settings``) with what only a stack that
runs the services itself needs: versions, heaps, ports the clients never dial, logins to create,
Spark's standalone cluster. The clients' side of each service (where it listens, its users) stays
in the core settings, so a process pointed at managed services never sees these.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from streamfit.settings import STACK_PREFIX, Port, Settings, build_settings, check_heap, check_port

#: Where ``stack up`` keeps the CA and the servers' certificates, under the home.
TLS_DIR = "tls"

#: The local Kafka broker's own SASL user (inter-broker logins and creating the client user).
KAFKA_BROKER_USER = "streamfit-broker"


class StackSettings(Settings):
    """Settings of ``streamfit stack``: the core settings and ``STREAMFIT_STACK_*``."""

    stack_topology: Literal["single", "cluster"] = Field(
        default="single", description="`single`: one node of each service, LocalExecutor (the "
        "default, what `make demo` runs). `cluster`: STREAMFIT_STACK_CLUSTER_SIZE Cassandra "
        "nodes and Kafka brokers on their own loopback addresses, Airflow's CeleryExecutor with "
        "Redis and two workers, Spark with two workers; keyspaces and topics replicated 3 ways "
        "(docs/cluster.md). Clients find whichever stack runs: `stack up` records it.")
    stack_cluster_size: int = Field(default=3, ge=3, le=9, description="Cassandra nodes and "
                                    "Kafka brokers of the cluster topology.")
    stack_cluster_address_block: str = Field(
        default="127.0.1", description="Cluster topology: node i listens on <block>.i (a "
        "loopback block apart from the single node's 127.0.0.1).")
    stack_redis_port: Port = Field(default=16379, description="Cluster topology: the Redis "
                                   "broker of Airflow's Celery workers.")
    stack_celery_workers: int = Field(default=2, ge=1, le=8, description="Cluster topology: "
                                      "Airflow Celery worker processes.")
    stack_celery_concurrency: int = Field(default=2, ge=1, le=32, description="Cluster "
                                          "topology: task slots of each Celery worker.")
    stack_kafka_version: str = Field(default="4.4.0",
                                     description="Kafka (kafka_2.13) version from Maven.")
    stack_kafka_controller_port: Port = Field(default=9093,
                                              description="Local KRaft controller port.")
    stack_kafka_heap: str | None = Field(default=None, description="Kafka JVM heap (-Xms/-Xmx) "
                                         "of each broker. Empty: 512m, or 384m per broker of "
                                         "the cluster topology.")
    stack_cassandra_version: str = Field(default="5.0.9",
                                         description="cassandra-all version from Maven.")
    stack_cassandra_storage_port: Port = Field(default=7000,
                                               description="Local Cassandra storage port.")
    stack_cassandra_heap: str | None = Field(
        default=None, description="Cassandra JVM heap (-Xms/-Xmx) of each node. Empty: 1G, or "
        "512M per node of the cluster topology.")
    stack_airflow_database_url: str | None = Field(
        default=None,
        description="Airflow metadata DB (SQLAlchemy URL). Empty: SQLite in the state directory. "
        "Postgres: postgresql+psycopg2://user:pass@host/db.",
    )
    stack_airflow_parallelism: int = Field(default=4, ge=1, description="Airflow task slots.")
    stack_airflow_preload: bool = Field(
        default=True, description="Start the scheduler and the Celery workers through "
        "`app.stack.preloaded`, which imports the pipeline tasks' modules first: every task "
        "process they fork inherits them instead of importing them again.")
    stack_auth: bool = Field(
        default=False,
        description="Run the local stack with logins: Cassandra's PasswordAuthenticator and Kafka "
        "SASL/SCRAM. `stack up` creates the users of STREAMFIT_CASSANDRA_USERNAME/PASSWORD and "
        "STREAMFIT_KAFKA_USERNAME/PASSWORD, which every client then logs in as; all four are "
        "required.",
    )
    stack_tls: bool = Field(
        default=False,
        description="Run the local stack over TLS: `stack up` makes a CA and a certificate per "
        "server under <home>/tls, Kafka serves SSL (SASL_SSL with logins) and Cassandra requires "
        "client encryption (and encrypts between its nodes in the cluster topology). Clients "
        "then verify the servers against that CA: `stack up` records the client settings.",
    )
    stack_startup_timeout_s: float = Field(
        default=180.0, gt=0, description="How long `stack up` waits for each service."
    )
    stack_spark: bool | None = Field(
        default=None, description="`streamfit stack up` also starts a Spark standalone master "
        "and its workers. Empty: no in the single topology, yes in the cluster topology.")
    stack_spark_workers: int | None = Field(
        default=None, ge=1, le=8, description="Spark standalone workers. Empty: 1, or 2 in the "
        "cluster topology (worker i's UI on STREAMFIT_STACK_SPARK_WORKER_UI_PORT + i - 1).")
    stack_spark_master_port: Port = Field(default=17077, description="Local Spark master port.")
    stack_spark_master_ui_port: Port = Field(
        default=18081, description="Local Spark master UI port (Spark's default, 8080, is "
        "Airflow's here).")
    stack_spark_worker_ui_port: Port = Field(default=18082,
                                             description="Local Spark worker UI port.")
    stack_spark_worker_cores: int = Field(default=2, ge=1, le=256,
                                          description="Cores the local Spark worker offers.")
    stack_spark_worker_memory: str = Field(default="1g",
                                           description="Memory the local Spark worker offers.")

    @model_validator(mode="before")
    @classmethod
    def _cluster_clients(cls, data: Any) -> Any:
        """The cluster topology's clients dial every node and replicate 3 ways, unless the
        environment says otherwise."""
        if not isinstance(data, dict) or data.get("stack_topology") != "cluster":
            return data
        size = int(data.get("stack_cluster_size", 3))
        block = data.get("stack_cluster_address_block", "127.0.1")
        addresses = [f"{block}.{i}" for i in range(1, size + 1)]
        kafka_port = data.get("kafka_port", 9092)
        defaults = {
            "cassandra_hosts": ",".join(addresses),
            "kafka_bootstrap_servers": ",".join(f"{a}:{kafka_port}" for a in addresses),
            "replication_strategy": "NetworkTopologyStrategy",
            "replication_dcs": {data.get("cassandra_local_dc", "datacenter1"): 3},
            "kafka_replication_factor": 3,
        }
        return {**defaults, **data}

    @model_validator(mode="before")
    @classmethod
    def _tls_clients(cls, data: Any) -> Any:
        """With STREAMFIT_STACK_TLS, the clients speak TLS and trust the stack's CA, unless the
        environment says otherwise."""
        if not isinstance(data, dict) or str(data.get("stack_tls", "")).lower() not in (
                "1", "true", "yes", "on"):
            return data
        from streamfit.settings import PROJECT_ROOT

        home = Path(data.get("home") or PROJECT_ROOT / ".streamfit").expanduser().resolve()
        ca = str(home / TLS_DIR / "ca.pem")
        defaults = {
            "kafka_ssl": True, "kafka_ssl_cafile": ca, "cassandra_ssl": True, "cassandra_ssl_cafile": ca,
            "airflow_ssl_cafile": ca,
        }
        return {**defaults, **data}

    @field_validator("stack_cluster_address_block")
    @classmethod
    def _block(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 3 or parts[0] != "127" or not all(p.isdigit() and int(p) < 256
                                                          for p in parts):
            raise ValueError(f"{value!r} is not a loopback block; write three numbers such as "
                             "127.0.1 (node i then listens on 127.0.1.i)")
        if value == "127.0.0":
            raise ValueError("127.0.0 holds the single node's 127.0.0.1; choose another block "
                             "such as 127.0.1")
        return value

    @field_validator("stack_kafka_controller_port", "stack_cassandra_storage_port",
                     "stack_spark_master_port", "stack_spark_master_ui_port",
                     "stack_spark_worker_ui_port", "stack_redis_port")
    @classmethod
    def _stack_ports(cls, value: int) -> int:
        return check_port(value)

    @field_validator("stack_kafka_heap", "stack_cassandra_heap", "stack_spark_worker_memory")
    @classmethod
    def _stack_heap(cls, value: str) -> str | None:
        return check_heap(value)

    @model_validator(mode="after")
    def _stack_consistent(self) -> StackSettings:
        if self.stack_auth and not (self.cassandra_username and self.kafka_username):
            raise ValueError(
                "STREAMFIT_STACK_AUTH=true needs the users the stack creates and every client "
                "logs in as: set STREAMFIT_CASSANDRA_USERNAME, STREAMFIT_CASSANDRA_PASSWORD, "
                "STREAMFIT_KAFKA_USERNAME and STREAMFIT_KAFKA_PASSWORD")
        if self.stack_auth:
            for name in ("cassandra_password", "kafka_password"):
                if len(getattr(self, name).get_secret_value()) < 8:
                    raise ValueError(f"STREAMFIT_{name.upper()} is shorter than 8 characters; "
                                     "the stack's users need a real password")
            if self.kafka_username == KAFKA_BROKER_USER:
                raise ValueError(f"STREAMFIT_KAFKA_USERNAME {KAFKA_BROKER_USER!r} is the local "
                                 "broker's own user; choose another name")
        ports = [self.kafka_port, self.stack_kafka_controller_port, self.cassandra_port,
                 self.stack_cassandra_storage_port, self.airflow_port,
                 self.stack_spark_master_port, self.stack_spark_master_ui_port,
                 *self.spark_worker_ui_ports, self.stack_redis_port]
        if len(set(ports)) != len(ports):
            raise ValueError(f"the local stack's ports must all differ, got {ports}")
        return self

    @property
    def cluster(self) -> bool:
        return self.stack_topology == "cluster"

    @property
    def node_addresses(self) -> list[str]:
        """Where each Cassandra node and Kafka broker listens."""
        if not self.cluster:
            return ["127.0.0.1"]
        return [f"{self.stack_cluster_address_block}.{i}"
                for i in range(1, self.stack_cluster_size + 1)]

    @property
    def cassandra_heap(self) -> str:
        return self.stack_cassandra_heap or ("512M" if self.cluster else "1G")

    @property
    def kafka_heap(self) -> str:
        return self.stack_kafka_heap or ("384m" if self.cluster else "512m")

    @property
    def spark(self) -> bool:
        """Whether `stack up` starts Spark."""
        return self.cluster if self.stack_spark is None else self.stack_spark

    @property
    def spark_workers(self) -> int:
        return self.stack_spark_workers or (2 if self.cluster else 1)

    @property
    def spark_worker_ui_ports(self) -> list[int]:
        return [self.stack_spark_worker_ui_port + i for i in range(self.spark_workers)]

    @property
    def spark_standalone_master(self) -> str:
        """The local Spark standalone master, as STREAMFIT_SPARK_MASTER takes it."""
        return f"spark://127.0.0.1:{self.stack_spark_master_port}"


def load_stack_settings(**overrides: object) -> StackSettings:
    """The stack's settings from the environment and ``.env`` (every STREAMFIT_* key checked)."""
    return build_settings(StackSettings, overrides, skip=None)


@functools.cache
def get_stack_settings() -> StackSettings:
    """The settings of a process that runs the stack (the CLI's ``stack`` commands, the tests)."""
    return load_stack_settings()


__all__ = ["KAFKA_BROKER_USER", "STACK_PREFIX", "StackSettings", "get_stack_settings",
           "load_stack_settings"]
