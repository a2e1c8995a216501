"""The Spark engine's core (``STREAMFIT_ENGINE=spark``): submitting a job, and what a job runs on.

Triggered by the feature and scoring stages when the engine is Spark. The caller (a DAG task, the
CLI) runs ``submit``: it starts ``spark-submit`` with this module as the application and waits,
so the caller's own process never loads Spark, pandas or a model. In the job, ``main`` builds the
process's one Settings object from the environment the caller handed down, opens the
SparkSession with the Spark Cassandra Connector, and runs the named job function
(``package.module:function``, called as ``function(spark, settings, args) -> dict``).

A job reads Cassandra by partition key only (``read_partitions``: the connector's direct join of
a small frame of keys, never a table scan) and writes through the connector (``write_table``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # spark-submit runs this file as a script, which puts its directory first on sys.path: there
    # streamfit/cassandra.py and streamfit/kafka.py would shadow the drivers of those names.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import importlib
import importlib.util
import json
import logging
import os
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any

from streamfit.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("streamfit.spark")

CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"


class SparkUnavailable(RuntimeError):
    """The Spark engine cannot run here: pyspark or the connector's jars are missing."""


class SparkJobFailed(RuntimeError):
    """A submitted Spark job exited with an error (its log precedes this error)."""


def spark_home() -> Path:
    """pyspark's own Spark distribution (bin/spark-submit, the jars), found without importing
    pyspark: the submitting process stays small."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkUnavailable("pyspark is not installed: STREAMFIT_ENGINE=spark needs the "
                               "'spark' extra (pip install 'streamfit[spark]'; `make install` "
                               "installs it)")
    return Path(spec.origin).parent


def connector_jars(settings: Settings) -> list[Path]:
    jars = sorted(settings.spark_jars.glob("*.jar"))
    if not jars:
        raise SparkUnavailable(
            f"no Spark Cassandra Connector jars in {settings.spark_jars}: run `streamfit stack "
            "jars` (or `streamfit stack up`) to fetch them from Maven Central, or point "
            "STREAMFIT_SPARK_JARS_DIR at a directory holding them")
    return jars


#: The Java trust stores made from PEM CA files hold public certificates only; their password
#: guards nothing secret (Java insists on one).
TRUSTSTORE_PASSWORD = "streamfit-public"


def java_truststore(cafile: Path, cache: Path) -> Path:
    """A PKCS#12 trust store holding the certificates of PEM file ``cafile``: what the Spark
    Cassandra Connector reads (it takes no PEM). Made with the JDK's keytool, once per content."""
    import hashlib
    import shutil
    import subprocess

    pem = cafile.read_bytes()
    path = cache / "tls" / f"truststore-{hashlib.sha256(pem).hexdigest()[:16]}.p12"
    if path.is_file():
        return path
    keytool = shutil.which("keytool") or str(Path(os.environ.get("JAVA_HOME", "/usr")) / "bin"
                                             / "keytool")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.unlink(missing_ok=True)
    blocks = [b + b"-----END CERTIFICATE-----\n"
              for b in pem.split(b"-----END CERTIFICATE-----") if b"BEGIN CERTIFICATE" in b]
    for i, block in enumerate(blocks):
        single = path.with_suffix(f".{i}.pem")
        single.write_bytes(block.strip() + b"\n")
        done = subprocess.run([keytool, "-importcert", "-noprompt", "-alias", f"ca-{i}",
                               "-file", str(single), "-keystore", str(partial), "-storetype",
                               "PKCS12", "-storepass", TRUSTSTORE_PASSWORD],
                              capture_output=True, text=True, check=False)
        single.unlink()
        if done.returncode != 0:
            raise SparkUnavailable(f"could not make a Java trust store from "
                                   f"STREAMFIT_CASSANDRA_SSL_CAFILE={cafile}: {done.stdout}"
                                   f"{done.stderr}")
    partial.rename(path)
    return path


def spark_conf(settings: Settings) -> dict[str, str]:
    """The Spark and connector configuration every job of these settings runs with."""
    conf = {
        "spark.sql.extensions": "com.datastax.spark.connector.CassandraSparkExtensions",
        "spark.cassandra.connection.host": ",".join(settings.contact_points),
        "spark.cassandra.connection.port": str(settings.cassandra_port),
        "spark.cassandra.connection.localDC": settings.cassandra_local_dc,
        "spark.cassandra.input.consistency.level": settings.consistency("read"),
        "spark.cassandra.output.consistency.level": settings.consistency("write"),
        "spark.sql.session.timeZone": "UTC",
        # the jobs are small and many-keyed; Spark's default of 200 shuffle partitions is overhead
        "spark.sql.shuffle.partitions": "8",
        "spark.ui.enabled": "false",
        "spark.log.level": "WARN",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.executor.memory": settings.spark_executor_memory,
        # pandas in the Python workers: one BLAS/OpenMP thread each, Spark runs them in parallel
        "spark.executorEnv.OMP_NUM_THREADS": "1",
    }
    if settings.spark_python_memory:
        conf["spark.executor.pyspark.memory"] = settings.spark_python_memory
    if settings.cassandra_ssl:
        conf["spark.cassandra.connection.ssl.enabled"] = "true"
        if settings.cassandra_ssl_cafile:
            conf.update({
                "spark.cassandra.connection.ssl.trustStore.path":
                    str(java_truststore(settings.cassandra_ssl_cafile, settings.home / "cache")),
                "spark.cassandra.connection.ssl.trustStore.type": "PKCS12",
                "spark.cassandra.connection.ssl.trustStore.password": TRUSTSTORE_PASSWORD})
    if settings.cassandra_username and settings.cassandra_password:
        conf["spark.cassandra.auth.username"] = settings.cassandra_username
        conf["spark.cassandra.auth.password"] = settings.cassandra_password.get_secret_value()
    return conf


def submit_command(settings: Settings, job: str, args_file: Path, result_file: Path,
                   secrets_file: Path) -> list[str]:
    """The ``spark-submit`` command of ``job``. Secrets stay out of it (``ps`` shows argv): the
    connector's password is written to ``secrets_file``, a properties file only we can read."""
    home = spark_home()
    conf = spark_conf(settings)
    secret = {k: conf.pop(k) for k in list(conf) if k == "spark.cassandra.auth.password"}
    secrets_file.touch(mode=0o600)
    secrets_file.chmod(0o600)
    secrets_file.write_text("".join(f"{k} {v}\n" for k, v in secret.items()))
    cmd = [str(home / "bin" / "spark-submit"), "--master", settings.spark_master,
           "--name", f"streamfit {job}", "--driver-memory", settings.spark_driver_memory,
           "--jars", ",".join(str(j) for j in connector_jars(settings)),
           "--properties-file", str(secrets_file)]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, str(Path(__file__).resolve()), job, str(args_file), str(result_file)]


def submit(settings: Settings, job: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` (``package.module:function``) with ``args`` through ``spark-submit`` on
    ``STREAMFIT_SPARK_MASTER`` and return what it returned. Blocks until the job ends; its log
    goes to this process's stderr (an Airflow task's log)."""
    with tempfile.TemporaryDirectory(prefix="streamfit-spark-") as tmp:
        args_file, result_file = Path(tmp) / "args.json", Path(tmp) / "result.json"
        args_file.write_text(json.dumps(args, default=str))
        cmd = submit_command(settings, job, args_file, result_file, Path(tmp) / "secret.conf")
        # the job builds its one Settings object from these (secrets too: the environment is
        # not shown by ps)
        env = {**os.environ, **settings.as_env(), "SPARK_HOME": str(spark_home()),
               "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
        started = time.monotonic()
        proc = subprocess.run(cmd, env=env, check=False, stdin=subprocess.DEVNULL)  # noqa: S603
        if proc.returncode != 0 or not result_file.exists():
            raise SparkJobFailed(f"Spark job {job} on {settings.spark_master} exited with "
                                 f"{proc.returncode}; its log is above")
        result: dict[str, Any] = json.loads(result_file.read_text())
    log.info("Spark job %s took %.1f s on %s", job, time.monotonic() - started,
             settings.spark_master)
    return result


def session(settings: Settings, app: str = "streamfit") -> SparkSession:
    """A SparkSession for a job: inside spark-submit it is the one ``submit`` configured;
    elsewhere (a notebook, a test) one is made here with the same configuration."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app)
    # the Python workers of a session made here run this interpreter (spark-submit's runs
    # the one spark.pyspark.python names)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if not os.environ.get("SPARK_ENV_LOADED") and "spark.master" not in os.environ.get(
            "PYSPARK_SUBMIT_ARGS", ""):
        builder = builder.master(settings.spark_master).config(
            "spark.jars", ",".join(str(j) for j in connector_jars(settings))).config(
            "spark.driver.memory", settings.spark_driver_memory)
        for key, value in spark_conf(settings).items():
            builder = builder.config(key, value)
    return builder.getOrCreate()


def read_partitions(spark: SparkSession, keyspace: str, table: str, keys: DataFrame
                    ) -> DataFrame:
    """The rows of ``table`` in the partitions ``keys`` names (its columns: the partition key,
    optionally a clustering prefix, and anything else to carry along), fetched by key through
    the connector's direct join: one query per key, never a scan of the table."""
    rows = (spark.read.format(CASSANDRA_FORMAT)
            .options(keyspace=keyspace, table=table, directJoinSetting="on").load())
    on = [c for c in keys.columns if c in rows.columns]
    return keys.join(rows, on=on, how="inner")


def write_table(frame: DataFrame, keyspace: str, table: str) -> None:
    """Append (upsert) ``frame``'s rows to ``table``: its keys are deterministic, so a rerun
    overwrites the same rows."""
    (frame.write.format(CASSANDRA_FORMAT).options(keyspace=keyspace, table=table)
     .mode("append").save())


def main(argv: list[str]) -> None:
    """spark-submit's entry point: ``<job> <args.json> <result.json>``."""
    from streamfit.settings import get_settings

    job, args_file, result_file = argv
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module_name, _, function = job.partition(":")
    run = getattr(importlib.import_module(module_name), function)
    started = time.perf_counter()
    spark = session(settings, f"streamfit {job}")
    session_s = time.perf_counter() - started
    try:
        result = run(spark, settings, json.loads(Path(args_file).read_text()))
    finally:
        spark.stop()
    result.setdefault("spark_timings", {})["session_s"] = session_s
    Path(result_file).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
