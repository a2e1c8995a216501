"""The Spark engine's submission, without running it: what spark-submit is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from streamfit.settings import Settings
from streamfit.spark import SparkUnavailable, connector_jars, spark_conf, submit_command


@pytest.fixture
def jars(tmp_path: Path) -> Path:
    for name in ("spark-cassandra-connector_2.12-3.5.1.jar", "java-driver-core-4.18.1.jar"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_the_command_carries_the_master_jars_and_connector_settings(jars: Path,
                                                                    tmp_path: Path) -> None:
    s = Settings(engine="spark", spark_master="spark://127.0.0.1:17077", spark_jars_dir=jars,
                 cassandra_hosts="10.0.0.1,10.0.0.2", cassandra_username="app",
                 cassandra_password=SecretStr("s3cret-pass"))
    secrets = tmp_path / "secret.conf"
    cmd = submit_command(s, "features.spark_build:job", tmp_path / "a", tmp_path / "r", secrets)
    assert cmd[0].endswith("bin/spark-submit")
    assert cmd[cmd.index("--master") + 1] == "spark://127.0.0.1:17077"
    assert sorted(cmd[cmd.index("--jars") + 1].split(",")) == sorted(
        str(j) for j in jars.glob("*.jar"))
    confs = dict(c.split("=", 1) for c in cmd[1:] if "=" in c and c.startswith("spark."))
    assert confs["spark.cassandra.connection.host"] == "10.0.0.1,10.0.0.2"
    assert confs["spark.cassandra.auth.username"] == "app"
    assert confs["spark.sql.extensions"] == \
        "com.datastax.spark.connector.CassandraSparkExtensions"
    # the password never reaches argv (ps shows it); it is in a file only we can read
    assert not any("s3cret-pass" in part for part in cmd)
    assert secrets.read_text() == "spark.cassandra.auth.password s3cret-pass\n"
    assert secrets.stat().st_mode & 0o077 == 0
    assert cmd[-3:] == ["features.spark_build:job", str(tmp_path / "a"), str(tmp_path / "r")]


def test_consistency_follows_the_settings() -> None:
    conf = spark_conf(Settings(cassandra_read_consistency="QUORUM",
                               cassandra_write_consistency="ALL"))
    assert conf["spark.cassandra.input.consistency.level"] == "QUORUM"
    assert conf["spark.cassandra.output.consistency.level"] == "ALL"


def test_missing_jars_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(SparkUnavailable, match="streamfit stack jars"):
        connector_jars(Settings(spark_jars_dir=tmp_path))


def test_python_workers_are_limited_only_when_asked() -> None:
    assert "spark.executor.pyspark.memory" not in spark_conf(Settings())
    conf = spark_conf(Settings(spark_python_memory="2g"))
    assert conf["spark.executor.pyspark.memory"] == "2g"
    with pytest.raises(ValueError, match="not a JVM heap size"):
        Settings(spark_python_memory="lots")


def test_a_pem_ca_becomes_the_java_trust_store_the_connector_reads(tmp_path: Path) -> None:
    """The connector takes no PEM: each CA of the file becomes a trusted entry of a PKCS#12
    store (made once per content), and the jobs' configuration points at it."""
    import subprocess

    from app.stack.tls import make_ca
    from streamfit.settings import Settings
    from streamfit.spark import TRUSTSTORE_PASSWORD, java_truststore, spark_conf

    both = tmp_path / "cas.pem"
    both.write_bytes(make_ca(tmp_path / "a").cert.read_bytes()
                     + make_ca(tmp_path / "b", "another CA").cert.read_bytes())
    store = java_truststore(both, tmp_path / "cache")
    assert java_truststore(both, tmp_path / "cache") == store
    listed = subprocess.run(["keytool", "-list", "-keystore", str(store), "-storetype", "PKCS12",
                             "-storepass", TRUSTSTORE_PASSWORD], capture_output=True, text=True,
                            check=True).stdout
    assert listed.count("trustedCertEntry") == 2
    conf = spark_conf(Settings(cassandra_ssl=True, cassandra_ssl_cafile=both,  # type: ignore[call-arg]
                               home=tmp_path))
    assert conf["spark.cassandra.connection.ssl.enabled"] == "true"
    assert conf["spark.cassandra.connection.ssl.trustStore.path"] == str(store)
    assert "spark.cassandra.connection.ssl.enabled" not in spark_conf(Settings(home=tmp_path))  # type: ignore[call-arg]
