"""``streamfit models``, ``train`` and ``backtest``: the model registry and training."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from app.cli.common import console, handle_errors, parse_day, plural, workspace

if TYPE_CHECKING:
    from streamfit.workspace import Workspace

models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
#: top-level commands of this module
commands = typer.Typer()


@commands.command("train")
@handle_errors
def train(
    end: Annotated[str | None, typer.Option(help="Last scheduled date of the window.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Train even without new data.")] = False,
) -> None:
    """Train a candidate; it becomes champion only if it beats the current one."""
    from training.train import train_and_maybe_promote

    with workspace() as ws:
        result = train_and_maybe_promote(ws, parse_day(end, "--end") if end else None,
                                         force=force)
    console.print(f"{result.status}: {result.reason}")
    if result.version:
        console.print(f"version {result.version} "
                      f"{'promoted to champion' if result.promoted else 'kept as challenger'}; "
                      + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()
                                  if k in ("roc_auc", "naive_roc_auc", "pr_auc", "brier")))


@commands.command("backtest")
@handle_errors
def backtest(
    train_until: Annotated[str, typer.Option("--train-until", help="Last scheduled date the "
                                             "model may learn from (YYYY-MM-DD).")],
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Weeks after it to judge.")] = 1,
    horizon: Annotated[list[str] | None, typer.Option(
        "--horizon", help="A horizon of the domain to judge (repeatable; default: every "
        "one).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Train as the pipeline would up to a date, then judge the weeks after it against what
    happened, next to the naive baseline, per horizon. Registers nothing."""
    if fmt not in ("table", "json"):
        raise typer.BadParameter(f"{fmt!r} is not a format; choose table or json",
                                 param_hint="--format")
    from training.backtest import run_backtest

    until = parse_day(train_until, "--train-until")
    with workspace() as ws:
        results = run_backtest(ws, until, weeks, horizons=horizon)
    if fmt == "json":
        print(json.dumps({"horizons": [r.as_dict() for r in results]}, default=str))
        return
    for result in results:
        h = result.holdout
        console.print(f"[bold]{result.horizon}[/]: trained on the window up to "
                      f"{result.train_until} ({result.algorithm}); holdout ROC AUC "
                      f"{h['roc_auc']:.4f} vs naive {h['naive_roc_auc']:.4f}; would serve: "
                      f"{result.served_by}")
        table = Table(title=f"realised on the weeks after training, {result.horizon}")
        for col in ("week", "rows", "late", "ROC AUC", "naive ROC AUC", "holdout-judged fit",
                    "PR AUC", "naive PR AUC", "Brier", "naive Brier", "calibration err"):
            table.add_column(col)
        for w in result.weeks:
            table.add_row(f"{w.start}..{w.end}", str(w.rows), f"{w.late_share:.3f}",
                          f"{w.served['roc_auc']:.4f}", f"{w.naive['roc_auc']:.4f}",
                          f"{w.trained['roc_auc']:.4f}",
                          f"{w.served['pr_auc']:.4f}", f"{w.naive['pr_auc']:.4f}",
                          f"{w.served['brier']:.4f}", f"{w.naive['brier']:.4f}",
                          f"{w.served['calibration_error']:.4f}")
        console.print(table)


@models_app.command("list")
@handle_errors
def models_list() -> None:
    """Every registered version with its metrics and aliases."""
    with workspace() as ws:
        print_models(ws)


def print_models(ws: Workspace) -> None:
    registry = ws.registry
    aliases = {v: a for a, v in registry.aliases().items()}
    table = Table(title="model registry")
    for col in ("version", "alias", "algorithm", "created", "window", "ROC AUC", "naive AUC"):
        table.add_column(col)
    for v in registry.versions():
        table.add_row(str(v.version), aliases.get(v.version, ""), v.algorithm,
                      f"{v.created_at:%Y-%m-%d %H:%M}",
                      f"{v.train_window['start']}..{v.train_window['end']}",
                      f"{v.metrics.get('roc_auc', float('nan')):.4f}",
                      f"{v.metrics.get('naive_roc_auc', float('nan')):.4f}")
    console.print(table)


@models_app.command("show")
@handle_errors
def models_show(
    version: Annotated[int | None, typer.Argument(min=0)] = None,
    runs: Annotated[int, typer.Option("--runs", min=0, max=100,
                                      help="Scoring runs of this version to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """One version (default: the champion): params, metrics, window, lineage, decisions, drift
    of its latest scoring runs and the realised performance of its matured predictions."""
    from scoring.monitoring import MonitoringStore, shifted_features, version_health

    with workspace() as ws:
        monitor = MonitoringStore(ws.session, ws.keyspace, ws.domain.model_name)
        health = version_health(ws.registry, monitor, ws.settings, version, runs)
        if health is None:
            raise typer.BadParameter(f"no model version {version}; see `streamfit models list`")
        decisions = ws.registry.decisions(10)
        entities = plural(ws)
    if as_json:
        print(json.dumps(health.as_dict(), default=str))
        return
    v, realised = health.version, health.realised
    console.print_json(json.dumps({"version": v.version, "algorithm": v.algorithm,
                                   "params": v.params, "metrics": v.metrics,
                                   "train_window": v.train_window, "lineage": v.lineage,
                                   "sha256": v.sha256}, default=str))
    for d in decisions:
        console.print(f"{d.decided_at:%Y-%m-%d %H:%M} v{d.candidate} vs v{d.champion}: "
                      f"{'promoted' if d.promoted else 'not promoted'} ({d.reason})")
    table = Table(title=f"scoring runs of v{v.version} (drift against its training data)")
    for col in ("scored at", "dates", "rows", "mean p", "max PSI", "shifted features"):
        table.add_column(col)
    for r in health.runs:
        shifted = shifted_features(r)
        table.add_row(f"{r.scored_at:%Y-%m-%d %H:%M:%S}", ",".join(r.dates), str(r.rows),
                      f"{r.predictions.get('mean', float('nan')):.3f}", f"{r.max_psi:.3f}",
                      ", ".join(shifted[:4]) + (" ..." if len(shifted) > 4 else ""))
    console.print(table)
    for problem in health.alerts:
        console.print(f"[bold red]ALERT[/]: {problem}")
    if realised:
        console.print(f"holdout ROC AUC {v.metrics.get('roc_auc', float('nan')):.4f} "
                      f"(naive {v.metrics.get('naive_roc_auc', float('nan')):.4f}); "
                      f"realised on {realised['dates']:.0f} matured dates, "
                      f"{realised['entities']:.0f} {entities}: Brier {realised['brier']:.4f}, "
                      f"daily ROC AUC {realised['roc_auc_daily_mean']:.4f}, late share "
                      f"{realised['late_share']:.3f} vs mean prediction "
                      f"{realised['mean_probability']:.3f}")
    else:
        console.print("no matured predictions of this version yet")


@models_app.command("promote")
@handle_errors
def models_promote(version: Annotated[int, typer.Argument(min=0)]) -> None:
    """Make VERSION the champion by hand (recorded as a decision)."""
    with workspace() as ws:
        previous = ws.registry.promote(version)
    console.print(f"champion is now v{version} (was v{previous})")


@models_app.command("rollback")
@handle_errors
def models_rollback() -> None:
    """Make the previous champion the champion again."""
    with workspace() as ws:
        current, earlier = ws.registry.rollback()
    console.print(f"champion rolled back from v{current} to v{earlier}")
