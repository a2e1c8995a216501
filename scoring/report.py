"""``streamfit report``: one self-contained HTML file about the models and the pipeline.

Run from the CLI (and at the end of ``make demo``). ``collect`` reads what the pipeline stored in
Cassandra (the registry, scoring runs, realised performance, data-arrival signals and feature
builds); ``render`` turns that into HTML with inline PNG plots (matplotlib, Agg backend):

- metrics across model versions, next to the naive baseline;
- the champion's ROC curve and calibration on its holdout;
- drift (PSI per feature) of the latest scoring run, and the largest PSI of every run;
- realised performance of matured predictions;
- a freshness timeline: signals, feature builds, models and scoring runs over wall-clock time.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from scoring.monitoring import (
    PSI_SHIFTED,
    PSI_STABLE,
    ScoringRun,
    performance_summary,
    version_health,
)
from streamfit.registry import ModelVersion
from streamfit.workspace import Workspace


@dataclass
class ReportData:
    keyspace: str
    versions: list[ModelVersion]
    aliases: dict[str, int]
    decisions: list[dict[str, Any]]
    runs: list[ScoringRun]
    performance: pd.DataFrame
    #: (stage, wall-clock time, size) for the freshness timeline
    timeline: list[tuple[str, datetime, float]] = field(default_factory=list)
    #: what is wrong with the champion (``streamfit.quality.quality_alerts``): empty if nothing
    alerts: list[str] = field(default_factory=list)


def collect(ws: Workspace) -> ReportData:
    from scoring.monitoring import MonitoringStore

    settings, session = ws.settings, ws.session
    registry = ws.registry
    monitor = MonitoringStore(session, ws.keyspace, ws.domain.model_name)
    versions = registry.versions()
    runs = monitor.runs(200)
    timeline: list[tuple[str, datetime, float]] = []
    timeline += [("model trained", v.created_at, 1.0) for v in versions]
    timeline += [("predictions scored", r.scored_at, float(r.rows)) for r in runs]
    built = ws.feature_store().partitions()
    for row in built.itertuples(index=False) if len(built) else ():
        timeline.append(("features built", row.built_at, float(row.entities)))
    days = sorted({t.date() for _, t, _ in timeline if t is not None})
    if days:
        from cassandra.util import datetime_from_uuid1

        query = session.prepare(f"SELECT signal_id, rows FROM {settings.keyspace}."
                                "ingest_signals WHERE signal_day = ?")
        day = days[0] - timedelta(days=1)
        while day <= days[-1]:
            for row in session.execute(query, (day,)):
                timeline.append(("raw events signalled", datetime_from_uuid1(row.signal_id),
                                 float(row.rows or 0)))
            day += timedelta(days=1)
    aliases = registry.aliases()
    performance = monitor.performance()
    champion = next((v for v in versions if v.version == aliases.get("champion")), None)
    # the alerts `streamfit models show` and GET /models/{version} give (one source)
    health = None if champion is None else version_health(registry, monitor, settings)
    alerts = health.alerts if health else []
    return ReportData(settings.keyspace, versions, aliases,
                      [r._asdict() for r in registry.decisions(50)], runs, performance,
                      [t for t in timeline if t[1] is not None], alerts)


def write_report(ws: Workspace, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(collect(ws)), encoding="utf-8")
    return path


# --- rendering (pure) ----------------------------------------------------------------------

def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return ('<img alt="plot" src="data:image/png;base64,'
            f'{base64.b64encode(buf.getvalue()).decode()}">')


def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _metrics_plot(versions: list[ModelVersion], champion: int | None) -> str:
    fig, ax = _figure()
    xs = [v.version for v in versions]
    for key, label, style in (("roc_auc", "ROC AUC", "o-"), ("naive_roc_auc", "naive ROC AUC", "o--"),
                              ("pr_auc", "PR AUC", "s-"), ("brier", "Brier", "^-")):
        ax.plot(xs, [v.metrics.get(key, math.nan) for v in versions], style, label=label)
    if champion is not None:
        ax.axvline(champion, color="grey", linestyle=":", label=f"champion v{champion}")
    ax.set_xlabel("model version")
    ax.set_xticks(xs)
    ax.set_title("holdout metrics per version (naive = the route's trailing delay rate)")
    ax.legend(fontsize=8)
    return _png(fig)


def _champion_plots(v: ModelVersion) -> str:
    holdout = v.reference.get("holdout", {})
    roc, cal = holdout.get("roc"), holdout.get("calibration")
    if not roc or not cal:
        return "<p>The champion has no stored holdout curves (trained before monitoring).</p>"
    fig, (a, b) = _subplots(2, 9.0, 3.8)
    a.plot(roc["fpr"], roc["tpr"], label=f"v{v.version} (AUC {v.metrics.get('roc_auc', 0):.3f})")
    a.plot([0, 1], [0, 1], ":", color="grey")
    a.set_xlabel("false positive rate")
    a.set_ylabel("true positive rate")
    a.set_title("ROC on the holdout")
    a.legend(fontsize=8)
    b.plot(cal["predicted"], cal["observed"], "o-", label="model")
    b.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    b.set_xlabel("mean predicted probability")
    b.set_ylabel("observed late share")
    b.set_title("calibration on the holdout")
    b.legend(fontsize=8)
    return _png(fig)


def _drift_plots(runs: list[ScoringRun]) -> str:
    if not runs:
        return "<p>No scoring run recorded yet.</p>"
    latest = runs[0]
    top = sorted(latest.drift.items(), key=lambda kv: kv[1], reverse=True)[:15]
    fig, (a, b) = _subplots(2)
    a.barh([k for k, _ in top][::-1], [v for _, v in top][::-1])
    for x, c in ((PSI_STABLE, "orange"), (PSI_SHIFTED, "red")):
        a.axvline(x, color=c, linestyle="--")
    a.set_title(f"PSI per feature, run of {latest.scored_at:%Y-%m-%d %H:%M} (v{latest.model_version})")
    a.tick_params(axis="y", labelsize=7)
    ordered = runs[::-1]
    times = [r.scored_at for r in ordered]
    b.plot(times, [r.max_psi for r in ordered], "o-")
    if len(set(times)) == 1:  # one run: an hour either side, not an axis of years
        b.set_xlim(times[0] - timedelta(hours=1), times[0] + timedelta(hours=1))
    b.axhline(PSI_SHIFTED, color="red", linestyle="--")
    b.set_title("largest PSI per scoring run")
    b.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _png(fig)


def _subplots(n: int, width: float = 11.0, height: float = 4.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, n, figsize=(width, height))


def _performance_plot(perf: pd.DataFrame) -> str:
    if perf.empty:
        return "<p>No matured predictions yet: they are evaluated once their arrivals land.</p>"
    fig, (a, b) = _subplots(2)
    for version, part in perf.sort_values("day").groupby("model_version"):
        a.plot(part["day"], part["brier"], "o-", label=f"v{version}")
        b.plot(part["day"], part["late"] / part["entities"], "o-",
               label=f"v{version} observed")
        b.plot(part["day"], part["mean_probability"], "x--",
               label=f"v{version} predicted")
    a.set_title("realised Brier score per scheduled date")
    b.set_title("observed late share vs mean prediction")
    for ax in (a, b):
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _png(fig)


def _timeline_plot(timeline: list[tuple[str, datetime, float]]) -> str:
    if not timeline:
        return "<p>Nothing recorded yet.</p>"
    stages = ["raw events signalled", "features built", "model trained", "predictions scored"]
    fig, ax = _figure(10.0, 3.2)
    for i, stage in enumerate(stages):
        times = [t for s, t, _ in timeline if s == stage]
        ax.plot(times, [i] * len(times), "|", markersize=18, label=stage)
    ax.set_yticks(range(len(stages)), stages)
    ax.set_title("freshness timeline (wall-clock): each mark is one signal, build, model or run")
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    return _png(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return "" if value is None else str(value)


def render(data: ReportData) -> str:
    champion = data.aliases.get("champion")
    versions = sorted(data.versions, key=lambda v: v.version)
    by_version = {v.version: v for v in versions}
    realised = performance_summary(data.performance)
    rows = [{"version": v.version,
             "alias": ", ".join(a for a, n in data.aliases.items() if n == v.version),
             "algorithm": v.algorithm, "window": f"{v.train_window.get('start')}.."
             f"{v.train_window.get('end')}", "roc_auc": v.metrics.get("roc_auc"),
             "naive_roc_auc": v.metrics.get("naive_roc_auc"),
             "realised_roc_auc": realised.get(v.version, {}).get("roc_auc_daily_mean"),
             "brier": v.metrics.get("brier"),
             "naive_brier": v.metrics.get("naive_brier"),
             "realised_brier": realised.get(v.version, {}).get("brier"),
             "realised_entities": realised.get(v.version, {}).get("entities")} for v in versions]
    sections = [
        f"<h1>streamfit report: keyspace <code>{html.escape(data.keyspace)}</code></h1>",
        f"<p>Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Champion: "
        f"{'v' + str(champion) if champion is not None else 'none yet'}.</p>",
        "<h2>Alerts</h2>",
        ("<ul>" + "".join(f"<li class='alert'>ALERT: {html.escape(a)}</li>"
                          for a in data.alerts) + "</ul>") if data.alerts
        else "<p>None: the champion's realised quality and inputs are within the alert "
             "thresholds.</p>",
        "<h2>Model versions</h2>",
        "<p>roc_auc is on the holdout at training; realised_roc_auc is the daily mean over the "
        "predictions that matured since (each entity's freshest prediction).</p>",
        _table(rows, list(rows[0]) if rows else ["version"]),
        _metrics_plot(versions, champion) if versions else "<p>No model yet.</p>",
        "<h2>Promotion decisions</h2>",
        _table(data.decisions, ["decided_at", "candidate", "champion", "metric",
                                "candidate_score", "champion_score", "promoted", "reason"]),
        "<h2>Champion on its holdout</h2>",
        _champion_plots(by_version[champion]) if champion in by_version else "<p>-</p>",
        "<h2>Drift of scored features against the training reference</h2>",
        _drift_plots(data.runs),
        "<h2>Realised performance of matured predictions</h2>",
        _performance_plot(data.performance),
        "<h2>Freshness timeline</h2>",
        _timeline_plot(data.timeline),
    ]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "img{max-width:100%}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>streamfit report</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
