"""``streamfit models``, ``train`` and ``backtest``: the model registry and training."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from app.cli.common import (
    WaitOption,
    console,
    handle_errors,
    parse_day,
    plural,
    stage_lease,
    workspace,
)

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
    wait: WaitOption = 600,
) -> None:
    """Train a candidate; it becomes champion only if it beats the current one. Holds the
    training stage's lease, as a pipeline run does."""
    last = parse_day(end, "--end") if end else None
    from training.run import STAGE
    from training.train import train_and_maybe_promote

    with workspace() as ws, stage_lease(ws, STAGE, wait):
        result = train_and_maybe_promote(ws, last, force=force)
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
    until = parse_day(train_until, "--train-until")
    from training.backtest import run_backtest

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
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable: a list of "
                                          "versions (docs/cli.md has the shape).")] = False,
) -> None:
    """Every registered version with its metrics and aliases."""
    with workspace() as ws:
        if as_json:
            print(json.dumps(models_json(ws), indent=2))
        else:
            print_models(ws)


def models_json(ws: Workspace) -> list[dict[str, object]]:
    """``models list --json``: one object per version, newest first."""
    aliases = {v: a for a, v in ws.registry.aliases().items()}
    return [{"version": v.version, "alias": aliases.get(v.version), "algorithm": v.algorithm,
             "created_at": v.created_at.isoformat(), "train_window": v.train_window,
             "roc_auc": v.metrics.get("roc_auc"), "naive_roc_auc": v.metrics.get("naive_roc_auc")}
            for v in ws.registry.versions()]


def print_models(ws: Workspace) -> None:
    rows = models_json(ws)
    table = Table(title=f"model registry: {len(rows)} version(s)" + next(
        (f", champion v{r['version']}" for r in rows if r["alias"] == "champion"), ""))
    for col in ("version", "alias", "algorithm", "created", "window", "ROC AUC", "naive AUC"):
        table.add_column(col)
    for r in rows:
        window = r["train_window"]
        assert isinstance(window, dict)
        table.add_row(str(r["version"]), str(r["alias"] or ""), str(r["algorithm"]),
                      str(r["created_at"])[:16].replace("T", " "),
                      f"{window['start']}..{window['end']}", _metric(r["roc_auc"]),
                      _metric(r["naive_roc_auc"]))
    console.print(table)


def _metric(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


@models_app.command("show")
@handle_errors
def models_show(
    version: Annotated[int | None, typer.Argument(
        min=0, metavar="VERSION", help="The version (default: the champion).")] = None,
    runs: Annotated[int, typer.Option("--runs", min=0, max=100,
                                      help="Scoring runs of this version to show.")] = 5,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Machine-readable: what GET /models/{version} returns (docs/cli.md "
        "has the shape).")] = False,
) -> None:
    """One version (default: the champion): its window and holdout metrics, the promotion
    decisions about it, its latest scoring runs and the days they judged, its alerts, and how
    its matured predictions did. --json adds params, lineage and the whole reference."""
    from scoring.monitoring import MonitoringStore, version_health

    with workspace() as ws:
        monitor = MonitoringStore(ws.session, ws.keyspace, ws.domain.model_name)
        health = version_health(ws.registry, monitor, ws.settings, version, runs)
        if health is None:
            raise typer.BadParameter(
                "no champion yet: train one first (`streamfit train`)" if version is None
                else f"no model version {version}; see `streamfit models list`",
                param_hint="VERSION")
        decisions = [d for d in ws.registry.decisions(100)
                     if health.version.version in (d.candidate, d.champion)][:5]
        aliases = {v: a for a, v in ws.registry.aliases().items()}
        entities = plural(ws)
    if as_json:
        print(json.dumps(health.as_dict(), default=str))
        return
    v, realised, m = health.version, health.realised, health.version.metrics
    alias = aliases.get(v.version)
    window = v.train_window
    console.print(f"[bold]v{v.version}[/] ({v.algorithm}{', ' + alias if alias else ''}), "
                  f"created {v.created_at:%Y-%m-%d %H:%M}; trained on {window['start']}.."
                  f"{window['end']}" + (f", holdout from {window['holdout_start']}"
                                        if "holdout_start" in window else "")
                  + (f", {m['train_rows']:,.0f} training rows" if "train_rows" in m else ""))
    console.print("holdout: " + ", ".join(
        f"{label} {m[k]:.4f}" for k, label in (("roc_auc", "ROC AUC"),
                                                 ("naive_roc_auc", "naive ROC AUC"),
                                                 ("pr_auc", "PR AUC"), ("brier", "Brier"))
        if k in m))
    for d in decisions:
        against = f"v{d.champion}" if d.champion is not None else "no champion (the first)"
        console.print(f"{d.decided_at:%Y-%m-%d %H:%M} v{d.candidate} against {against}: "
                      f"{'promoted' if d.promoted else 'not promoted'} ({d.reason})")
    table = Table(title=f"the latest {len(health.runs)} scoring run(s) of v{v.version}")
    for col in ("scored at", "dates", "rows", "mean p", "days judged", "out of range"):
        table.add_column(col)
    for r in health.runs:
        mean = r.predictions.get("mean")
        out = sorted({f"{f.feature} ({f.stat})" for c in r.checks for f in c.findings})
        table.add_row(f"{r.scored_at:%Y-%m-%d %H:%M:%S}", ",".join(r.dates), f"{r.rows:,}",
                      f"{mean:.3f}" if mean is not None else "-",
                      ",".join(c.day for c in r.checks) or "-", ", ".join(out) or "-")
    console.print(table)
    for problem in health.alerts:
        console.print(f"[bold red]ALERT[/]: {problem}")
    if not health.alerts:
        console.print("no alert: the days judged stayed inside the training days' range and "
                      "realised quality is within its line")
    if realised:
        console.print(f"realised on {realised['dates']:.0f} matured dates, "
                      f"{realised['entities']:,.0f} {entities}: daily ROC AUC "
                      f"{realised['roc_auc_daily_mean']:.4f}, Brier {realised['brier']:.4f}, "
                      f"late share {realised['late_share']:.3f} against a mean prediction of "
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
