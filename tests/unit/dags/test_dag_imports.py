"""The DAG folder imports without errors (no services needed: parsing must not touch them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamfit.settings import PROJECT_ROOT

DAGS = PROJECT_ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow_home")
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from airflow.dag_processing.dagbag import BundleDagBag

        # the dag-processor puts the bundle (dags/) on sys.path; BundleDagBag does the same
        yield BundleDagBag(dag_folder=DAGS, bundle_path=DAGS)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_expected_dags_are_defined(dagbag) -> None:
    assert {"check_stack", "build_features", "train_model",
            "score_batch", "transient_score"} <= set(
        dagbag.dag_ids)


def test_dag_ids_match_file_names(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert Path(dag.fileloc).stem == dag_id


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_dag_files_import_nothing_heavy_at_parse_time() -> None:
    """Which packages a DAG file may reach is the import contract's (pyproject.toml, run by
    ``make check``); this checks what the contract does not see, the third-party modules: a
    DAG file's top-level imports are Airflow, pendulum, the standard wiring and our packages."""
    dag_modules = {p.stem for p in DAGS.glob("*.py")}
    allowed = ("airflow", "pendulum", "__future__", "typing", "functools", "collections",
               "streamfit", "ingest", "features", "training", "scoring", *dag_modules)
    for path in DAGS.glob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] not in allowed}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_every_pipeline_task_alerts_with_what_to_check(dagbag, caplog) -> None:
    """The DAG file gives each task's failure alert its hint (the core knows no DAG ids)."""
    import logging

    for dag_id in ("build_features", "train_model", "score_batch", "transient_score"):
        for task in dagbag.dags[dag_id].tasks:
            [callback] = task.on_failure_callback
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="streamfit.alerts"):
                callback({"dag_id": dag_id, "exception": RuntimeError("boom")})
            [record] = caplog.records
            assert f"{dag_id}." in record.getMessage() and "boom" in record.getMessage()
            assert "see the task log" not in record.getMessage()  # a hint of its own
