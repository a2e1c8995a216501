"""docker-compose.yaml is validated by a real Compose implementation (no engine needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamfit.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"


CLUSTER_ENV = PROJECT_ROOT / "docker-compose.cluster.env"


def _config(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: `make test` installs it (apt-get install "
                    "docker-compose)")
    return subprocess.run([exe, *options, "-f", str(path), "config"], capture_output=True,
                          text=True, cwd=path.parent, check=False)


def _locked(package: str) -> str:
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not in requirements.lock")


def test_the_spark_images_run_the_locked_pyspark() -> None:
    """The driver (pyspark from the lock) and the standalone master and workers of the image
    must be the same Spark release: jobs are refused across versions."""
    doc = yaml.safe_load(COMPOSE.read_text())
    images = {name: svc["image"] for name, svc in doc["services"].items()
              if name.startswith("spark")}
    assert len(images) == 3, images
    for name, image in images.items():
        assert image.split(":", 1)[1].split("-", 1)[0] == _locked("pyspark"), (name, image)


def test_the_cluster_profile_replicates_three_ways() -> None:
    result = _config(COMPOSE, "--env-file", str(CLUSTER_ENV))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("kafka-2", "kafka-3", "cassandra-2", "cassandra-3", "redis",
                 "airflow-worker-1", "airflow-worker-2", "spark-worker-2"):
        assert name in services, name
        assert "healthcheck" in services[name], name
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["STREAMFIT_KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["STREAMFIT_KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert env["STREAMFIT_REPLICATION_DCS"] == '{"datacenter1": 3}'
    assert env["STREAMFIT_CASSANDRA_HOSTS"] == "cassandra,cassandra-2,cassandra-3"
    assert services["airflow-worker-1"]["environment"] == env
    kafka = services["kafka"]["environment"]
    assert (kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], kafka["KAFKA_MIN_INSYNC_REPLICAS"]
            ) == ("3", "2")
    # without the profile none of them runs (Compose 1.29's `config` lists every service, with
    # its profiles), and everything is replicated once
    single = yaml.safe_load(_config(COMPOSE).stdout)["services"]
    in_profile = {name for name, svc in single.items() if svc.get("profiles") == ["cluster"]}
    assert in_profile == {"kafka-2", "kafka-3", "cassandra-2", "cassandra-3", "redis",
                          "airflow-worker-1", "airflow-worker-2", "spark-worker-2"}
    assert all(not svc.get("profiles") for name, svc in single.items() if name not in in_profile)
    assert single["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_compose_file_is_valid() -> None:
    result = _config(COMPOSE)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    services = resolved["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["cassandra"]["image"] == "cassandra:5.0"
    assert services["airflow-scheduler"]["image"].startswith("apache/airflow:3.3")
    assert "postgres" in services
    # the Spark engine's standalone master and worker, on Spark 3.5 (the connector's)
    for name in ("spark-master", "spark-worker"):
        assert services[name]["image"].startswith("apache/spark:3.5."), name
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]
    assert services["airflow-scheduler"]["environment"]["STREAMFIT_SPARK_MASTER"] == \
        "spark://spark-master:7077"
    for name in ("kafka", "cassandra", "postgres", "airflow-apiserver", "airflow-scheduler",
                 "spark-master", "spark-worker"):
        assert "healthcheck" in services[name], name


def test_the_validator_really_rejects_bad_files(tmp_path: Path) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    doc["services"]["kafka"]["healthcheck"]["not_a_key"] = 1
    bad = tmp_path / "docker-compose.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = _config(bad)
    assert result.returncode != 0
    assert "not_a_key" in result.stderr
