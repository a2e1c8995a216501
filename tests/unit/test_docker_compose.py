"""docker-compose.yaml is validated by a real Compose implementation (no engine needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamfit.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"


def _config(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: `make test` installs it (apt-get install "
                    "docker-compose)")
    return subprocess.run([exe, "-f", str(path), "config"], capture_output=True, text=True,
                          cwd=path.parent, check=False)


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
