"""What the cluster topology writes for its nodes (no process started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.stack.services import AirflowService, CassandraService, KafkaService, SparkService
from app.stack.settings import StackSettings, load_stack_settings


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackSettings:
    import os

    for key in list(os.environ):
        if key.startswith("STREAMFIT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return load_stack_settings(stack_topology="cluster", home=tmp_path)


def _props(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


def test_each_broker_has_its_own_address_id_and_the_same_quorum(cluster: StackSettings) -> None:
    kafka = KafkaService(cluster)
    assert kafka.components == ("kafka-1", "kafka-2", "kafka-3")
    props = [_props(kafka._write_properties(n, n.home / "data")) for n in kafka.nodes]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert [p["listeners"] for p in props] == [
        f"PLAINTEXT://127.0.1.{i}:9092,CONTROLLER://127.0.1.{i}:9093" for i in (1, 2, 3)]
    quorum = "127.0.1.1:9093,127.0.1.2:9093,127.0.1.3:9093"
    assert {p["controller.quorum.bootstrap.servers"] for p in props} == {quorum}
    for p in props:
        assert (p["default.replication.factor"], p["offsets.topic.replication.factor"],
                p["min.insync.replicas"], p["transaction.state.log.min.isr"]) == ("3", "3", "2", "2")
    assert len({n.home for n in kafka.nodes}) == 3
    assert ("127.0.1.2", 9092) in kafka.endpoints()


def test_the_single_node_is_written_as_before(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    single = load_stack_settings(stack_topology="single", home=tmp_path)
    kafka = KafkaService(single)
    [node] = kafka.nodes
    p = _props(kafka._write_properties(node, node.home / "data"))
    assert (p["node.id"], p["min.insync.replicas"], p["offsets.topic.replication.factor"]) == (
        "1", "1", "1")
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert node.home == tmp_path / "kafka"
    cassandra = CassandraService(single)
    yaml = cassandra._write_yaml(cassandra.nodes[0], tmp_path / "d").read_text()
    assert "initial_token: 0\n" in yaml and "auto_bootstrap" not in yaml
    assert 'seeds: "127.0.0.1:7000"' in yaml
    assert "commitlog_sync: periodic\ncommitlog_sync_period: 10000ms\n" in yaml
    assert AirflowService(single).env()["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_cassandra_nodes_are_seeds_with_balanced_tokens(cluster: StackSettings) -> None:
    import yaml as pyyaml

    cassandra = CassandraService(cluster)
    configs = [pyyaml.safe_load(cassandra._write_yaml(n, n.home / "data").read_text())
               for n in cassandra.nodes]
    tokens = [int(c["initial_token"]) for c in configs]
    assert tokens == [-2**63 + i * (2**64 // 3) for i in range(3)]
    assert [c["listen_address"] for c in configs] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    seeds = {c["seed_provider"][0]["parameters"][0]["seeds"] for c in configs}
    assert seeds == {"127.0.1.1:7000,127.0.1.2:7000,127.0.1.3:7000"}
    assert all(c["auto_bootstrap"] is False for c in configs)
    # an acknowledged write is on disk: a killed node needs hints only for what it never answered
    assert all(c["commitlog_sync"] == "batch" and "commitlog_sync_period" not in c
               for c in configs)


def test_airflow_runs_celery_and_tells_tasks_where_the_data_lives(cluster: StackSettings) -> None:
    airflow = AirflowService(cluster)
    assert airflow.components[0] == "redis"
    assert airflow.components[-2:] == ("airflow-celery-1", "airflow-celery-2")
    env = airflow.env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:16379/0"
    assert env["STREAMFIT_CASSANDRA_HOSTS"] == "127.0.1.1,127.0.1.2,127.0.1.3"
    assert env["STREAMFIT_KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["STREAMFIT_REPLICATION_STRATEGY"] == "NetworkTopologyStrategy"
    spark = SparkService(cluster)
    assert spark.components == ("spark-master", "spark-worker-1", "spark-worker-2")
    assert spark.component_ports("spark-worker-2") == ["18083"]


def test_tls_makes_a_ca_and_pem_stores_and_points_the_clients_at_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import yaml as pyyaml

    for key in list(os.environ):
        if key.startswith("STREAMFIT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    s = load_stack_settings(stack_topology="cluster", home=tmp_path, stack_tls=True)
    ca = tmp_path / "tls" / "ca.pem"
    assert (s.kafka_protocol, s.kafka_ssl_cafile, s.cassandra_ssl, s.cassandra_ssl_cafile) == (
        "SSL", ca, True, ca)
    kafka = KafkaService(s)
    props = _props(kafka._write_properties(kafka.nodes[1], tmp_path / "k"))
    assert props["listeners"].startswith("SSL://127.0.1.2:9092")
    assert props["listener.security.protocol.map"] == "SSL:SSL,CONTROLLER:SSL"
    assert (props["ssl.keystore.type"], props["ssl.truststore.location"]) == ("PEM", str(ca))
    keystore = Path(props["ssl.keystore.location"])
    assert keystore.stat().st_mode & 0o777 == 0o600
    assert keystore.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    cassandra = CassandraService(s)
    conf = pyyaml.safe_load(cassandra._write_yaml(cassandra.nodes[0], tmp_path / "d").read_text())
    assert conf["client_encryption_options"]["enabled"] is True
    assert conf["client_encryption_options"]["optional"] is False
    assert conf["server_encryption_options"]["internode_encryption"] == "all"
    # logins on too: SASL over TLS
    secure = load_stack_settings(stack_tls=True, stack_auth=True, home=tmp_path,
                                 cassandra_username="app", cassandra_password="password1",
                                 kafka_username="app", kafka_password="password1")
    assert secure.kafka_protocol == "SASL_SSL"
    props = _props(KafkaService(secure)._write_properties(KafkaService(secure).nodes[0],
                                                          tmp_path / "k1"))
    assert "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config" in props
