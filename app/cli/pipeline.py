"""``streamfit pipeline``: each stage's backlog, and one run of every stage without Airflow."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli.common import console, current_settings, handle_errors

pipeline_app = typer.Typer(help="The pipeline's stages: backlog and runs.", no_args_is_help=True)


@pipeline_app.command("status")
@handle_errors
def pipeline_status_cmd(
    keyspace: Annotated[list[str] | None, typer.Option(
        "--keyspace", help="Only this keyspace (repeatable). Default: every keyspace served.")
                        ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    prometheus: Annotated[bool, typer.Option(
        "--prometheus", help="Prometheus text format (gauges streamfit_pipeline_backlog and "
        "streamfit_pipeline_lag_seconds).")] = False,
) -> None:
    """What each stage has pending per keyspace, its newest processed point and its lag."""
    from app.pipeline import caught_up, pipeline_status, prometheus_text
    from streamfit.catalog import valid_keyspace

    for name in keyspace or []:
        if not valid_keyspace(name):
            raise typer.BadParameter(f"{name!r} is not a keyspace name", param_hint="--keyspace")
    rows = pipeline_status(current_settings(), keyspace)
    if as_json:
        print(json.dumps({"caught_up": caught_up(rows), "stages": [r.as_dict() for r in rows]},
                         indent=2))
        return
    if prometheus:
        print(prometheus_text(rows), end="")
        return
    table = Table(title="pipeline backlog (0 everywhere: caught up)")
    for col in ("keyspace", "stage", "pending", "unit", "newest processed", "lag"):
        table.add_column(col, justify="right" if col in ("pending", "lag") else "left")
    for r in rows:
        table.add_row(r.keyspace, r.stage, f"{r.pending:,}", r.unit, r.newest or "-",
                      f"{r.lag_s:.0f}s")
    console.print(table)
    console.print("caught up" if caught_up(rows) else "work pending: the DAGs (or `streamfit "
                  "pipeline run`) will process it")


@pipeline_app.command("run")
@handle_errors
def pipeline_run() -> None:
    """Run every stage once for what is pending (features, training, scoring), without Airflow."""
    import logging

    from app.pipeline import run_all

    logging.basicConfig(level=current_settings().log_level, format="%(levelname)s %(name)s: %(message)s")
    for stage, summary in run_all(current_settings()).items():
        for ks, done in summary["by_keyspace"].items():
            console.print(f"{stage} {ks}: {json.dumps(done)}")
        for ks, why in summary["skipped"].items():
            console.print(f"[dim]{stage} {ks}: {why}[/]")
