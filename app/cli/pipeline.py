"""``streamfit pipeline``: each stage's backlog, and one run of every stage without Airflow."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from app.cli.common import console, current_settings, handle_errors

if TYPE_CHECKING:
    from app.pipeline import StageStatus

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
    for name in keyspace or []:
        _keyspace_arg(name, "--keyspace")
    from app.pipeline import caught_up, pipeline_status, prometheus_text

    rows = pipeline_status(current_settings(), keyspace)
    if as_json:
        print(json.dumps({"caught_up": caught_up(rows), "stages": [r.as_dict() for r in rows]},
                         indent=2))
        return
    if prometheus:
        print(prometheus_text(rows), end="")
        return
    table = Table(title=backlog_caption(rows))
    for col in ("keyspace", "stage", "pending", "unit", "newest processed", "lag"):
        table.add_column(col, justify="right" if col in ("pending", "lag") else "left")
    for r in rows:
        table.add_row(r.keyspace, r.stage, f"{r.pending:,}", r.unit, r.newest or "-",
                      f"{r.lag_s:.0f}s")
    console.print(table)
    console.print("caught up" if caught_up(rows) else "work pending: the DAGs (or `streamfit "
                  "pipeline run`) will process it")


def backlog_caption(rows: list[StageStatus]) -> str:
    """The status table's title, from its rows."""
    keyspaces = len({r.keyspace for r in rows})
    where = f"{keyspaces} keyspace{'s' if keyspaces != 1 else ''}"
    pending = [r for r in rows if r.pending]
    if not rows:
        return "pipeline backlog: no keyspace served"
    if not pending:
        return f"pipeline backlog, {where}: caught up (0 pending in every stage)"
    return (f"pipeline backlog, {where}: " + ", ".join(
        f"{r.keyspace} {r.stage} {r.pending:,} {r.unit}" for r in pending) + " pending")


@pipeline_app.command("keyspaces")
@handle_errors
def pipeline_keyspaces_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable: a list of "
                                          "keyspaces (docs/cli.md has the shape).")] = False,
) -> None:
    """Every streamfit keyspace: whether the pipeline serves it and why, its backlog, and when a
    stage last ran for it."""
    from app.pipeline import keyspace_overview

    rows = keyspace_overview(current_settings())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    served = sum(1 for r in rows if r["served"])
    table = Table(title=f"{len(rows)} streamfit keyspace(s), {served} served by the pipeline")
    for col in ("keyspace", "served", "why", "backlog", "last run"):
        table.add_column(col, justify="right" if col == "backlog" else "left")
    for r in rows:
        table.add_row(r["keyspace"], "yes" if r["served"] else "no", r["why"],
                      f"{r['backlog']:,}", r["last_run"] or "never")
    console.print(table)


def _keyspace_arg(name: str, hint: str = "KEYSPACE") -> str:
    from streamfit.catalog import valid_keyspace

    if not valid_keyspace(name):
        raise typer.BadParameter(f"{name!r} is not a keyspace name (letters, digits and _, "
                                 "starting with a letter)", param_hint=hint)
    return name


@pipeline_app.command("retire")
@handle_errors
def pipeline_retire(
    keyspace: Annotated[str, typer.Argument(metavar="KEYSPACE", help="The keyspace to retire.")],
    drop: Annotated[bool, typer.Option("--drop", help="Also drop the keyspace and all its "
                                       "data (asks first unless --yes).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before dropping.")] = False,
) -> None:
    """Stop serving a keyspace: no pipeline run (DAG or `pipeline run`) works for it any more.
    `streamfit pipeline serve KEYSPACE` undoes it; --drop cannot be undone."""
    name = _keyspace_arg(keyspace)
    from app.pipeline import retire

    if drop and not yes and not typer.confirm(f"drop keyspace {name} and all its data?"):
        raise typer.Exit(1)
    console.print(retire(current_settings(), name, drop))


@pipeline_app.command("serve")
@handle_errors
def pipeline_serve(
    keyspace: Annotated[str, typer.Argument(metavar="KEYSPACE",
                                            help="The retired keyspace to serve again.")],
) -> None:
    """Serve a retired keyspace again."""
    name = _keyspace_arg(keyspace)
    from app.pipeline import serve_again

    console.print(serve_again(current_settings(), name))


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
