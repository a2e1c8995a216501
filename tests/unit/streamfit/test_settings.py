from __future__ import annotations

import pytest

from app.stack.settings import load_stack_settings
from streamfit.settings import PROJECT_ROOT, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("STREAMFIT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    # no record of a running local stack (a cluster this machine may run)
    monkeypatch.setattr("streamfit.settings.LOCAL_STACK_FILE", "no-such-dir/local-stack.json")


def test_defaults_point_at_the_local_stack() -> None:
    s = load_settings()
    assert s.home == PROJECT_ROOT / ".streamfit"
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.contact_points == ["127.0.0.1"]
    assert s.airflow_api_url == "http://127.0.0.1:8080"
    assert s.replication_cql() == "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def test_env_overrides_and_derived_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_KAFKA_PORT", "19092")
    monkeypatch.setenv("STREAMFIT_CASSANDRA_HOSTS", "10.0.0.1, 10.0.0.2")
    monkeypatch.setenv("STREAMFIT_HOME", "~/sf-state")
    s = load_settings()
    assert s.kafka_port == 19092
    assert s.bootstrap_servers == "127.0.0.1:19092"
    assert s.contact_points == ["10.0.0.1", "10.0.0.2"]
    assert s.home.is_absolute() and s.home.name == "sf-state"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("STREAMFIT_KEYSPACE=from_dotenv\n")
    assert load_settings().keyspace == "from_dotenv"


def test_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_KAFKA_PORT", "70000")
    with pytest.raises(SettingsError, match="STREAMFIT_KAFKA_PORT.*not a TCP port"):
        load_settings()


def test_non_numeric_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_AIRFLOW_PORT", "eighty")
    with pytest.raises(SettingsError, match="STREAMFIT_AIRFLOW_PORT"):
        load_settings()


def test_unknown_setting_is_rejected_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_KAFKA_PROT", "9092")
    with pytest.raises(SettingsError, match="STREAMFIT_KAFKA_PROT.*did you mean STREAMFIT_KAFKA_PORT"):
        load_settings()


def test_unknown_key_in_dotenv_is_rejected(tmp_path) -> None:
    (tmp_path / ".env").write_text("STREAMFIT_NOPE=1\n")
    with pytest.raises(SettingsError, match="STREAMFIT_NOPE: not a streamfit setting"):
        load_settings()


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.kafka_port = 1  # type: ignore[misc]


def test_network_topology_needs_datacenters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_REPLICATION_STRATEGY", "NetworkTopologyStrategy")
    with pytest.raises(SettingsError, match="STREAMFIT_REPLICATION_DCS"):
        load_settings()
    monkeypatch.setenv("STREAMFIT_REPLICATION_DCS", '{"dc2": 3, "dc1": 2}')
    assert load_settings().replication_cql() == (
        "{'class': 'NetworkTopologyStrategy', 'dc1': 2, 'dc2': 3}")


def test_unknown_replication_class_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_REPLICATION_STRATEGY", "LocalStrategy")
    with pytest.raises(SettingsError, match="STREAMFIT_REPLICATION_STRATEGY"):
        load_settings()


@pytest.mark.parametrize("name", ["1abc", "has-dash", "x" * 49, "drop table"])
def test_bad_keyspace_names(name: str) -> None:
    with pytest.raises(SettingsError, match="keyspace"):
        load_settings(keyspace=name)


def test_the_stacks_ports_must_differ() -> None:
    with pytest.raises(SettingsError, match="must all differ"):
        load_stack_settings(kafka_port=9042)
    with pytest.raises(SettingsError, match="must all differ"):
        load_stack_settings(stack_spark_master_port=8080)


def test_the_stacks_settings_are_theirs_and_left_alone_by_production_processes(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest worker or an Airflow task reads only the core settings: the stack's
    STREAMFIT_STACK_* keys (in the environment or .env) are not its business, and not refused;
    the stack reads them, and refuses a misspelt one."""
    monkeypatch.setenv("STREAMFIT_STACK_KAFKA_HEAP", "256m")
    (tmp_path / ".env").write_text("STREAMFIT_STACK_CASSANDRA_HEAP=2G\n")
    core = load_settings()
    assert not hasattr(core, "stack_kafka_heap")
    stack = load_stack_settings()
    assert (stack.stack_kafka_heap, stack.stack_cassandra_heap) == ("256m", "2G")
    assert stack.keyspace == core.keyspace  # the stack's settings include the core's
    monkeypatch.setenv("STREAMFIT_STACK_KAFKA_HEEP", "1g")
    load_settings()
    with pytest.raises(SettingsError, match="STREAMFIT_STACK_KAFKA_HEEP.*did you mean "
                       "STREAMFIT_STACK_KAFKA_HEAP"):
        load_stack_settings()


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(SettingsError, match="STREAMFIT_STACK_AUTH: not a streamfit setting"):
        load_settings(stack_auth=True)


@pytest.mark.parametrize("timeout_ms", [5999, 300001])
def test_the_ingest_session_timeout_stays_inside_the_brokers_bounds(timeout_ms: int) -> None:
    with pytest.raises(SettingsError, match="STREAMFIT_INGEST_SESSION_TIMEOUT_MS"):
        load_settings(ingest_session_timeout_ms=timeout_ms)


def test_every_kafka_client_reconnects_within_the_setting() -> None:
    from streamfit.kafka import client_config

    config = client_config(load_settings(kafka_reconnect_backoff_max_ms=700), "c")
    assert config["reconnect_backoff_max_ms"] == 700


@pytest.mark.parametrize("heap", ["512", "1T", "big"])
def test_bad_heap_sizes(heap: str) -> None:
    with pytest.raises(SettingsError, match="STREAMFIT_STACK_KAFKA_HEAP.*heap"):
        load_stack_settings(stack_kafka_heap=heap)
    with pytest.raises(SettingsError, match="STREAMFIT_SPARK_DRIVER_MEMORY.*heap"):
        load_settings(spark_driver_memory=heap)


def test_secrets_are_masked_in_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_CASSANDRA_USERNAME", "app")
    monkeypatch.setenv("STREAMFIT_CASSANDRA_PASSWORD", "hunter2")
    s = load_settings()
    assert isinstance(s, Settings)
    assert "hunter2" not in s.model_dump_json()
    assert "hunter2" not in repr(s)
    assert s.cassandra_password is not None
    assert s.cassandra_password.get_secret_value() == "hunter2"


@pytest.mark.parametrize("service", ["cassandra", "kafka"])
def test_a_password_needs_its_user_and_the_other_way_round(
        monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    monkeypatch.setenv(f"STREAMFIT_{service.upper()}_PASSWORD", "s3cret-pass")
    with pytest.raises(SettingsError, match=f"STREAMFIT_{service.upper()}_USERNAME is not"):
        load_settings()
    monkeypatch.delenv(f"STREAMFIT_{service.upper()}_PASSWORD")
    monkeypatch.setenv(f"STREAMFIT_{service.upper()}_USERNAME", "app")
    with pytest.raises(SettingsError, match=f"STREAMFIT_{service.upper()}_PASSWORD is not"):
        load_settings()


def _auth_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    env = {"STACK_AUTH": "true", "CASSANDRA_USERNAME": "app", "CASSANDRA_PASSWORD": "long-enough-1",
           "KAFKA_USERNAME": "app", "KAFKA_PASSWORD": "long-enough-2", **values}
    for key, value in env.items():
        if value:
            monkeypatch.setenv(f"STREAMFIT_{key}", value)


def test_stack_auth_takes_the_four_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    _auth_env(monkeypatch)
    s = load_stack_settings()
    assert s.stack_auth and s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert "long-enough" not in repr(s)


def test_stack_auth_without_credentials_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    _auth_env(monkeypatch, KAFKA_USERNAME="", KAFKA_PASSWORD="")
    with pytest.raises(SettingsError, match="STREAMFIT_STACK_AUTH=true needs.*KAFKA_USERNAME"):
        load_stack_settings()
    load_settings()  # the clients: anonymous, which the stack's settings alone refuse


def test_stack_auth_refuses_short_passwords_and_the_broker_user(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _auth_env(monkeypatch, KAFKA_PASSWORD="short")
    with pytest.raises(SettingsError, match="KAFKA_PASSWORD is shorter than 8"):
        load_stack_settings()
    _auth_env(monkeypatch, KAFKA_USERNAME="streamfit-broker")
    with pytest.raises(SettingsError, match="the local broker's own user"):
        load_stack_settings()


def test_unknown_sasl_mechanism_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(SettingsError, match="STREAMFIT_KAFKA_SASL_MECHANISM"):
        load_settings()


def test_consistency_follows_the_replication_factor_unless_set() -> None:
    from streamfit.settings import Settings

    assert Settings().consistency("read") == "LOCAL_ONE"
    assert Settings(replication_factor=3).consistency("write") == "LOCAL_QUORUM"
    multi = Settings(replication_strategy="NetworkTopologyStrategy", replication_dcs={"dc1": 3})
    assert multi.consistency("read") == "LOCAL_QUORUM"
    assert Settings(replication_factor=3, cassandra_read_consistency="ONE"
                    ).consistency("read") == "ONE"


def test_a_bad_fallback_cron_is_refused_with_an_example(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamfit.settings import SettingsError, load_settings

    monkeypatch.setenv("STREAMFIT_PIPELINE_FALLBACK_CRON", "every 2 minutes")
    with pytest.raises(SettingsError, match=r"PIPELINE_FALLBACK_CRON.*five-field cron"):
        load_settings()
    monkeypatch.setenv("STREAMFIT_PIPELINE_FALLBACK_CRON", "*/5 * * * *")
    assert load_settings().pipeline_fallback_cron == "*/5 * * * *"


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "spark://127.0.0.1:17077",
                                    "spark://a:7077,b:7077"])
def test_spark_masters_the_engine_submits_to(master: str) -> None:
    assert Settings(spark_master=master).spark_master == master


@pytest.mark.parametrize("master", ["yarn", "spark://nohost", "local[two]", "http://x:7077"])
def test_other_spark_masters_are_refused_with_an_example(master: str) -> None:
    with pytest.raises(ValueError, match="spark://127.0.0.1:17077"):
        Settings(spark_master=master)


def test_an_engine_other_than_pandas_or_spark_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_ENGINE", "dask")
    with pytest.raises(SettingsError, match="STREAMFIT_ENGINE"):
        load_settings()


def test_as_env_rebuilds_the_same_settings_in_a_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """A submitted Spark job builds its settings from the environment it was given: the same
    values, secrets and nested ones included."""
    from pydantic import SecretStr

    given = Settings(engine="spark", spark_chunk_days=3, keyspace="ks_child",
                     cassandra_username="u", cassandra_password=SecretStr("p4ssw0rd!"),
                     replication_dcs={"dc1": 3}, replication_strategy="NetworkTopologyStrategy",
                     ingest_metrics_port=0)
    for key, value in given.as_env().items():
        monkeypatch.setenv(key, value)
    child = load_settings()
    assert child.model_dump() == given.model_dump()
    assert child.cassandra_password.get_secret_value() == "p4ssw0rd!"  # type: ignore[union-attr]
    assert "STREAMFIT_SPARK_JARS_DIR" not in given.as_env()  # unset stays unset


def test_a_stack_setting_under_its_old_name_points_at_the_stacks_namespace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_CASSANDRA_HEAP", "2G")  # STREAMFIT_STACK_CASSANDRA_HEAP now
    with pytest.raises(SettingsError, match=r"STREAMFIT_CASSANDRA_HEAP: not a streamfit setting"
                       r".*the local stack's settings are STREAMFIT_STACK_\*"):
        load_settings()


@pytest.mark.parametrize(("hosts", "endpoints"), [
    ("10.0.0.1", [("10.0.0.1", 9042)]),
    ("a:9043, b", [("a", 9043), ("b", 9042)]),
    ("[::1]:9999,::1", [("::1", 9999), ("::1", 9042)]),
])
def test_contact_points_take_host_and_port(hosts: str, endpoints: list[tuple[str, int]]) -> None:
    assert load_settings(cassandra_hosts=hosts).contact_endpoints == endpoints


@pytest.mark.parametrize("hosts", ["a:b", "a:0", "a:70000", ",", "[::1]x"])
def test_bad_contact_points_name_the_setting(hosts: str) -> None:
    with pytest.raises(SettingsError, match="STREAMFIT_CASSANDRA_HOSTS"):
        load_settings(cassandra_hosts=hosts)


def test_min_insync_replicas_follows_the_replication_factor() -> None:
    assert load_settings().min_insync_replicas == 1
    assert load_settings(kafka_replication_factor=3).min_insync_replicas == 2
    assert load_settings(kafka_replication_factor=5, kafka_min_insync_replicas=3
                         ).min_insync_replicas == 3
    with pytest.raises(SettingsError, match="MIN_INSYNC_REPLICAS=3 is above"):
        load_settings(kafka_replication_factor=2, kafka_min_insync_replicas=3)


def test_the_cluster_topology_replicates_three_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_STACK_TOPOLOGY", "cluster")
    s = load_stack_settings()
    assert s.contact_points == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert s.bootstrap_servers == "127.0.1.1:9092,127.0.1.2:9092,127.0.1.3:9092"
    assert s.replication_cql() == "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"
    assert (s.consistency("read"), s.consistency("write")) == ("LOCAL_QUORUM", "LOCAL_QUORUM")
    assert (s.kafka_replication_factor, s.min_insync_replicas) == (3, 2)
    assert (s.cassandra_heap, s.spark, s.spark_workers) == ("512M", True, 2)
    # what the environment says still wins
    monkeypatch.setenv("STREAMFIT_CASSANDRA_HOSTS", "127.0.1.1")
    assert load_stack_settings().contact_points == ["127.0.1.1"]
    with pytest.raises(SettingsError, match="STREAMFIT_STACK_CLUSTER_ADDRESS_BLOCK"):
        load_stack_settings(stack_cluster_address_block="127.0.0")


def test_processes_find_the_running_cluster_through_its_record(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`stack up` of the cluster records its client settings; a process that sets nothing
    (the CLI, an ingest worker) reaches the cluster, a setting given explicitly wins, and a
    process that asks for the single-node topology ignores the record."""
    import json

    monkeypatch.setattr("streamfit.settings.LOCAL_STACK_FILE", "run/local-stack.json")
    monkeypatch.setenv("STREAMFIT_HOME", str(tmp_path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "local-stack.json").write_text(json.dumps({
        "topology": "cluster", "settings": {
            "stack_topology": "cluster", "cassandra_hosts": "127.0.1.1,127.0.1.2",
            "kafka_replication_factor": 3}}))
    s = load_settings()
    assert (s.contact_points, s.kafka_replication_factor) == (["127.0.1.1", "127.0.1.2"], 3)
    assert load_stack_settings().stack_topology == "cluster"
    assert load_settings(kafka_replication_factor=1).kafka_replication_factor == 1
    monkeypatch.setenv("STREAMFIT_STACK_TOPOLOGY", "single")
    assert load_settings().contact_points == ["127.0.0.1"]
    assert load_stack_settings().stack_topology == "single"
    (tmp_path / "run" / "local-stack.json").write_text("{not json")
    monkeypatch.delenv("STREAMFIT_STACK_TOPOLOGY")
    with pytest.raises(SettingsError, match="local-stack.json is unreadable"):
        load_settings()


def test_a_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """STREAMFIT_<SECRET>_FILE, as container platforms mount secrets: the file's text, without
    its trailing line break; the .env file may name it too."""
    (tmp_path / "kafka-password").write_text("s3cret value\n")
    (tmp_path / "api-key").write_text("k" * 20)
    monkeypatch.setenv("STREAMFIT_KAFKA_USERNAME", "streamfit")
    monkeypatch.setenv("STREAMFIT_KAFKA_PASSWORD_FILE", str(tmp_path / "kafka-password"))
    (tmp_path / ".env").write_text(f"STREAMFIT_API_KEY_FILE={tmp_path / 'api-key'}\n")
    s = load_settings()
    assert s.kafka_password is not None and s.kafka_password.get_secret_value() == "s3cret value"
    assert s.api_key is not None and s.api_key.get_secret_value() == "k" * 20
    assert "s3cret" not in repr(s)
    # a child process given the value by its parent, with the same _FILE inherited, agrees
    monkeypatch.setenv("STREAMFIT_KAFKA_PASSWORD", "s3cret value")
    assert load_settings().kafka_password == s.kafka_password


@pytest.mark.parametrize(("content", "direct", "says"), [
    (None, None, "STREAMFIT_CASSANDRA_PASSWORD_FILE: cannot read"),
    ("\n", None, "is empty; write the secret in it"),
    ("filed-xq7", "direct-zr2",
     "STREAMFIT_CASSANDRA_PASSWORD and STREAMFIT_CASSANDRA_PASSWORD_FILE are both"),
])
def test_a_secret_file_that_cannot_serve_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path, content: str | None, direct: str | None,
        says: str) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("STREAMFIT_CASSANDRA_USERNAME", "streamfit")
    monkeypatch.setenv("STREAMFIT_CASSANDRA_PASSWORD_FILE", str(path))
    if direct:
        monkeypatch.setenv("STREAMFIT_CASSANDRA_PASSWORD", direct)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert says in str(err.value)
    if direct:  # the secrets themselves are never echoed
        assert content and content not in str(err.value) and direct not in str(err.value)


def test_file_keys_exist_only_for_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFIT_KEYSPACE_FILE", "/tmp/ks")
    with pytest.raises(SettingsError, match="STREAMFIT_KEYSPACE_FILE: not a streamfit setting"):
        load_settings()
