"""The local stack's own settings: ``STREAMFIT_STACK_*``, read by ``streamfit stack`` and the
test session, never by production code (the import contract says so).

They extend the process's settings (``streamfit.settings.Settings``) with what only a stack that
runs the services itself needs: versions, heaps, ports the clients never dial, logins to create,
Spark's standalone cluster. The clients' side of each service (where it listens, its users) stays
in the core settings, so a process pointed at managed services never sees these.
"""

from __future__ import annotations

import functools

from pydantic import Field, field_validator, model_validator

from streamfit.settings import STACK_PREFIX, Port, Settings, build_settings, check_heap, check_port

#: The local Kafka broker's own SASL user (inter-broker logins and creating the client user).
KAFKA_BROKER_USER = "streamfit-broker"


class StackSettings(Settings):
    """Settings of ``streamfit stack``: the core settings and ``STREAMFIT_STACK_*``."""

    stack_kafka_version: str = Field(default="4.4.0",
                                     description="Kafka (kafka_2.13) version from Maven.")
    stack_kafka_controller_port: Port = Field(default=9093,
                                              description="Local KRaft controller port.")
    stack_kafka_heap: str = Field(default="512m", description="Kafka JVM heap (-Xms/-Xmx).")
    stack_cassandra_version: str = Field(default="5.0.9",
                                         description="cassandra-all version from Maven.")
    stack_cassandra_storage_port: Port = Field(default=7000,
                                               description="Local Cassandra storage port.")
    stack_cassandra_heap: str = Field(default="1G", description="Cassandra JVM heap (-Xms/-Xmx).")
    stack_airflow_database_url: str | None = Field(
        default=None,
        description="Airflow metadata DB (SQLAlchemy URL). Empty: SQLite in the state directory. "
        "Postgres: postgresql+psycopg2://user:pass@host/db.",
    )
    stack_airflow_parallelism: int = Field(default=4, ge=1, description="Airflow task slots.")
    stack_auth: bool = Field(
        default=False,
        description="Run the local stack with logins: Cassandra's PasswordAuthenticator and Kafka "
        "SASL/SCRAM. `stack up` creates the users of STREAMFIT_CASSANDRA_USERNAME/PASSWORD and "
        "STREAMFIT_KAFKA_USERNAME/PASSWORD, which every client then logs in as; all four are "
        "required.",
    )
    stack_startup_timeout_s: float = Field(
        default=180.0, gt=0, description="How long `stack up` waits for each service."
    )
    stack_spark: bool = Field(
        default=False, description="`streamfit stack up` also starts a Spark standalone master "
        "and one worker.")
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

    @field_validator("stack_kafka_controller_port", "stack_cassandra_storage_port",
                     "stack_spark_master_port", "stack_spark_master_ui_port",
                     "stack_spark_worker_ui_port")
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
                 self.stack_spark_worker_ui_port]
        if len(set(ports)) != len(ports):
            raise ValueError(f"the local stack's ports must all differ, got {ports}")
        return self

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
