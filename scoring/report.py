"""``streamfit report``: one self-contained HTML file about the models and the pipeline.

Run from the CLI (and at the end of ``make demo``). ``collect`` reads what the pipeline stored in
Cassandra (the registry, scoring runs and the days they judged, realised performance,
data-arrival signals and feature builds); ``render`` turns that into HTML with inline PNG charts
(matplotlib, Agg backend). Every figure comes from the same stored data and functions as
``streamfit models show`` and ``GET /models/{version}`` (``version_health``), or says in place
why it differs; every chart has labelled axes, a time range fitted to its data and the lines its
alerts use, and carries ``data-points`` (how many values it plots) for the browser test:

- the alerts, each linked to the chart that shows it;
- holdout metrics across versions (higher-is-better and lower-is-better apart), next to the
  naive baseline, and the promotion decisions;
- the champion's ROC curve and calibration on its holdout;
- the days its scoring runs judged: features against the band their training days allow, and
  each day's realised late share against its mean prediction and bound;
- realised performance of matured predictions;
- freshness: signals, feature builds, models and scoring runs by date and time, and the delay
  from data landing to its predictions.
"""

from __future__ import annotations

import base64
import html
import io
import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from scoring.monitoring import ScoringRun, performance_summary, version_health
from streamfit.quality import CAL_Z, DAY_STATS, WIDEN, allowed
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
    #: what is wrong with the champion (``version_health``, as the CLI and API say): empty if
    #: nothing
    alerts: list[str] = field(default_factory=list)
    #: ``STREAMFIT_ALERT_DRIFT_MARGIN``: the drift bands drawn are the ones alerts use
    margin: float = WIDEN


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
                      [t for t in timeline if t[1] is not None], alerts,
                      settings.alert_drift_margin)


def write_report(ws: Workspace, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(collect(ws)), encoding="utf-8")
    return path



# --- rendering (pure) ----------------------------------------------------------------------

def _png(fig: Any, ident: str, points: int, caption: str) -> str:
    """A chart as a figure: the PNG inline, how many values it plots, and a caption computed
    from what it shows."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return (f'<figure id="{ident}" data-points="{points}"><img class="chart" alt="{ident}" '
            f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _subplots(n: int, width: float = 11.0, height: float = 4.0, columns: int = 0
              ) -> tuple[Any, Any]:
    """``n`` axes in one row, or in rows of ``columns`` (``height`` per row); the unused
    cells of the last row are hidden."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, columns) if columns else n
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False)
    cells = [ax for row in axes for ax in row]
    for ax in cells[n:]:
        ax.set_visible(False)
    return fig, cells[:n]


def _fit_dates(ax: Any, days: list[Any]) -> None:
    """A date axis spanning the data (a day either side of a single point), labelled."""
    import matplotlib.dates as mdates

    lo, hi = min(days), max(days)
    pad = max((hi - lo) / 20, timedelta(days=1)) if hi > lo else timedelta(days=1)
    ax.set_xlim(lo - pad, hi + pad)
    # whole days only: a tick inside a day would repeat its date
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, (hi - lo).days // 6 + 1)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)


def _metrics_plot(versions: list[ModelVersion], champion: int | None) -> str:
    fig, (a, b) = _subplots(2)
    xs = [v.version for v in versions]
    # each version was judged on its own holdout: points, never lines joining them
    for ax, keys, ylabel in ((a, (("roc_auc", "ROC AUC", "o"), ("naive_roc_auc", "naive", "x")),
                              "ROC AUC on its holdout (higher is better)"),
                             (b, (("brier", "Brier", "o"), ("naive_brier", "naive", "x")),
                              "Brier on its holdout (lower is better)")):
        for key, label, marker in keys:
            ax.plot(xs, [v.metrics.get(key, math.nan) for v in versions], marker,
                    linestyle="none", label=label)
        if champion is not None:
            ax.axvline(champion, color="grey", linestyle=":", label=f"champion v{champion}")
        ax.set_xlabel("model version")
        ax.set_ylabel(ylabel)
        ax.set_xticks(xs)
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    best = max(versions, key=lambda v: v.metrics.get("roc_auc", -1.0))
    return _png(fig, "metrics", len(versions), f"{len(versions)} version(s); the highest holdout "
                f"ROC AUC is v{best.version}'s {best.metrics.get('roc_auc', math.nan):.3f}. Each "
                "version is judged on the holdout of its own window, so the points are not a "
                "series.")


def _champion_plots(v: ModelVersion) -> str:
    holdout = v.reference.get("holdout", {})
    roc, cal = holdout.get("roc"), holdout.get("calibration")
    if not roc or not cal:
        return "<p>The champion has no stored holdout curves (trained before monitoring).</p>"
    fig, (a, b) = _subplots(2, 9.0, 3.8)
    a.plot(roc["fpr"], roc["tpr"], label=f"v{v.version}")
    a.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    a.set_xlabel("false positive rate")
    a.set_ylabel("true positive rate")
    a.legend(fontsize=8, loc="lower right")
    b.plot(cal["predicted"], cal["observed"], "o-", label="model")
    b.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    b.set_xlabel("mean predicted probability")
    b.set_ylabel("observed event share")
    b.legend(fontsize=8, loc="upper left")
    return _png(fig, "holdout", len(roc["fpr"]) + len(cal["predicted"]),
                f"v{v.version} on its holdout: ROC AUC {v.metrics.get('roc_auc', math.nan):.3f} "
                f"(left); calibration over {len(cal['predicted'])} probability bins (right).")


def _judged(runs: list[ScoringRun], version: int) -> list[Any]:
    """The days the version's runs judged, oldest first, each once (its newest judgment)."""
    seen: dict[str, Any] = {}
    for r in runs:  # newest first
        if r.model_version == version:
            for c in r.checks:
                seen.setdefault(c.day, c)
    return [seen[d] for d in sorted(seen)]


#: At most this many features in the drift chart: every one that left its band, up to it
DRIFT_PANELS = 12
#: Panels per row of the drift chart; a quiet champion's chart is one row of the nearest misses.
DRIFT_COLUMNS = 4


def _drift_plots(runs: list[ScoringRun], champion: ModelVersion | None, margin: float) -> str:
    if champion is None or not runs:
        return "<p>No scoring run recorded yet.</p>"
    days = _judged(runs, champion.version)
    reference = champion.reference.get("days", {})
    if not days or not reference:
        return ("<p>No completed day judged yet: a day is judged once every entity of it has "
                "happened" + ("" if reference else " (this version predates day references: "
                              "retrain it)") + ".</p>")
    # the features that left their band, most often first; else the ones closest to it
    out: dict[tuple[str, str], int] = {}
    for c in days:
        for f in c.findings:
            out[(f.feature, f.stat)] = out.get((f.feature, f.stat), 0) + 1
    shown = sorted(out, key=lambda k: -out[k])[:DRIFT_PANELS]
    if not shown:
        def closeness(key: tuple[str, str]) -> float:
            name, stat = key
            worst = 0.0
            for c in days:
                band = allowed(reference[name], stat, c.rows, margin)
                value = c.stats.get(name, {}).get(stat)
                if band and value is not None and band[1] > band[0]:
                    worst = max(worst, abs(value - (band[0] + band[1]) / 2) / (band[1] - band[0]))
            return worst
        keys = [(n, st) for n in reference for st in DAY_STATS if st in reference[n]]
        shown = sorted(keys, key=closeness, reverse=True)[:DRIFT_COLUMNS]
    fig, axes = _subplots(len(shown), max(6.0, 3.0 * min(len(shown), DRIFT_COLUMNS) + 1), 3.6,
                          columns=DRIFT_COLUMNS)
    when = [pd.Timestamp(c.day) for c in days]
    points = 0
    for ax, (name, stat) in zip(axes, shown, strict=True):
        values = [c.stats.get(name, {}).get(stat, math.nan) for c in days]
        bands = [allowed(reference[name], stat, c.rows, margin) or (math.nan, math.nan)
                 for c in days]
        # one bar per day: a band shows on a single day too
        ax.bar(when, [b[1] - b[0] for b in bands], bottom=[b[0] for b in bands], width=0.6,
               color="green", alpha=0.15, label="allowed")
        ax.plot(when, values, "o", color="black", label="the day")
        flagged = [(w, v) for w, v, c in zip(when, values, days, strict=True)
                   if any(f.feature == name and f.stat == stat for f in c.findings)]
        if flagged:
            ax.plot(*zip(*flagged, strict=True), "o", color="red", label="alert")
        points += sum(1 for v in values if v == v)
        # a label measure is no model input: say so where it is drawn among the features
        measure = name in champion.reference.get("measures", {})
        ax.set_title(f"{name} (label measure)" if measure else name, fontsize=8)
        ax.set_ylabel({"mean": "daily mean", "missing": "share missing",
                       "top_share": "share on one value",
                       "segment_top_share": "share on one value, worst site",
                       "p10": "lower tenth of the day"}[stat])
        ax.set_xlabel("day judged")
        _fit_dates(ax, when)
        ax.legend(fontsize=6)
    alerted = sum(1 for c in days if c.findings)
    caption = (f"{len(days)} completed day(s) judged against v{champion.version}'s training "
               f"days; {alerted} left a band. Shown: "
               + (("every feature that did, " if len(out) <= len(shown) else
                   f"the {len(shown)} of the {len(out)} features that did that left most often "
                   "(the alerts list them all), ") if out else
                  "no feature left its band; these came closest, ")
               + "with the band each day's alert used (the training days' range "
               f"widened by {margin:g} of itself, STREAMFIT_ALERT_DRIFT_MARGIN).")
    measures = [n for n, _s in shown if n in champion.reference.get("measures", {})]
    if measures:
        caption += (f" {', '.join(sorted(set(measures)))}: a label measure (how the outcome "
                    "came about, known once it is), judged on each day's lower tenth; not a "
                    "model input.")
    return _png(fig, "drift", points, caption)


def _calibration_plot(runs: list[ScoringRun], champion: ModelVersion | None) -> str:
    days = [c for c in _judged(runs, champion.version) if c.calibration is not None] \
        if champion is not None else []
    if not days:
        return ("<p>No matured day judged yet: a day's calibration is judged once 200 of its "
                "predictions have their outcome.</p>")
    when = [pd.Timestamp(c.day) for c in days]
    cal = [c.calibration for c in days]
    fig, (ax,) = _subplots(1, 8.0, 3.4)
    ax.bar(when, [2 * k.bound for k in cal], bottom=[k.mean - k.bound for k in cal], width=0.6,
           color="green", alpha=0.15, label="allowed around the prediction")
    ax.plot(when, [k.mean for k in cal], "x", color="grey", label="mean prediction")
    ax.plot(when, [k.rate for k in cal], "o", color="black", label="realised rate")
    bad = [(w, k.rate) for w, k in zip(when, cal, strict=True) if k.alert]
    if bad:
        ax.plot(*zip(*bad, strict=True), "o", color="red", label="alert")
    ax.set_xlabel("day judged")
    ax.set_ylabel("event rate")
    _fit_dates(ax, when)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig, "calibration", 2 * len(cal),
                f"{len(cal)} matured day(s); {len(bad)} outside the bound ({CAL_Z:g} standard "
                "errors of a day of that size, plus the holdout's day-to-day spread).")


def _performance_plot(perf: pd.DataFrame) -> str:
    if perf.empty:
        return "<p>No matured predictions yet: they are evaluated once their arrivals land.</p>"
    fig, (a, b) = _subplots(2)
    days = [pd.Timestamp(d) for d in perf["day"]]
    for version, part in perf.sort_values("day").groupby("model_version"):
        when = [pd.Timestamp(d) for d in part["day"]]
        a.plot(when, part["roc_auc"], "o-", label=f"v{version}")
        b.plot(when, part["brier"], "o-", label=f"v{version}")
    a.set_ylabel("realised ROC AUC (higher is better)")
    b.set_ylabel("realised Brier (lower is better)")
    for ax in (a, b):
        ax.set_xlabel("entity date")
        _fit_dates(ax, days)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig, "realised", 2 * len(perf),
                f"{len(perf)} matured (version, date) pair(s) over {perf['day'].nunique()} "
                f"date(s), {int(perf['entities'].sum()):,} predictions with their outcome.")


STAGES = ["raw events signalled", "features built", "model trained", "predictions scored"]


def landing_delays(timeline: list[tuple[str, datetime, float]]) -> list[float]:
    """Seconds from each data-arrival signal to the first scoring run after it."""
    scored = sorted(t for s, t, _ in timeline if s == "predictions scored")
    out = []
    for stage, t, _ in timeline:
        if stage == "raw events signalled":
            after = next((x for x in scored if x >= t), None)
            if after is not None:
                out.append((after - t).total_seconds())
    return out


def _timeline_plot(timeline: list[tuple[str, datetime, float]]) -> str:
    if not timeline:
        return "<p>Nothing recorded yet.</p>"
    import matplotlib.dates as mdates

    fig, (ax, b) = _subplots(2, 12.0, 3.4)
    times = [t for _, t, _ in timeline]
    for i, stage in enumerate(STAGES):
        mine = sorted(t for s, t, _ in timeline if s == stage)
        # marks closer than the axis can tell apart are drawn a little higher, not on top
        ys = [i + (0.25 if j and (t - mine[j - 1]).total_seconds() < 60 else 0.0)
              for j, t in enumerate(mine)]
        ax.plot(mine, ys, "|", markersize=14, label=stage)
    ax.set_yticks(range(len(STAGES)), STAGES, fontsize=7)
    ax.set_xlabel("wall-clock time (UTC)")
    lo, hi = min(times), max(times)
    pad = max((hi - lo) / 20, timedelta(minutes=1))
    ax.set_xlim(lo - pad, hi + pad)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    delays = landing_delays(timeline)
    if delays:
        b.hist(delays, bins=min(20, max(3, len(delays))), color="steelblue")
        b.set_xlabel("seconds from data landing to its predictions")
        b.set_ylabel("signals")
    else:
        b.text(0.5, 0.5, "no signal was followed by a scoring run", ha="center")
        b.set_axis_off()
    median = f"; landing to prediction: median {statistics.median(delays):.0f} s over " \
             f"{len(delays)} signal(s)" if delays else ""
    return _png(fig, "freshness", len(timeline),
                f"{len(timeline)} event(s) from {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC"
                + median + ".")


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


def _alert_target(alert: str) -> str:
    if "realised event rate" in alert:
        return "calibration"
    if "left the range of the training days" in alert or "events missing for" in alert:
        return "drift"
    return "realised"


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
    decisions = [{**d, "champion": d.get("champion") if d.get("champion") is not None
                  else "none (the first)"} for d in data.decisions]
    champ = by_version.get(champion) if champion is not None else None
    alerts = ("<ul class='alerts'>" + "".join(
        f"<li class='alert'><strong>ALERT</strong>: {html.escape(a)} "
        f"<a href='#{_alert_target(a)}'>see the chart</a></li>" for a in data.alerts) + "</ul>"
        if data.alerts else "<p class='ok'>None: the champion's realised quality, and the "
        "completed days its runs judged, are within their lines.</p>")
    sections = [
        f"<h1>streamfit report: keyspace <code>{html.escape(data.keyspace)}</code></h1>",
        f"<p>Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Champion: "
        f"{'v' + str(champion) if champion is not None else 'none yet'}.</p>",
        f"<h2>Alerts ({len(data.alerts)})</h2>", alerts,
        "<h2>Model versions</h2>",
        "<p>roc_auc and brier are on each version's holdout at training; realised_* are over "
        "the predictions that matured since (each entity's freshest prediction; ROC AUC as the "
        "daily mean). A window starts at the first day with data in it.</p>",
        _table(rows, list(rows[0]) if rows else ["version"]),
        _metrics_plot(versions, champion) if versions else "<p>No model yet.</p>",
        "<h2>Promotion decisions</h2>",
        "<p>Why champion_score differs from the champion's roc_auc above: the gate judges both "
        "on the candidate's holdout (the same rows), each by the fit made without that holdout; "
        "the table above gives each version's score on its own holdout.</p>",
        _table(decisions, ["decided_at", "candidate", "champion", "metric",
                           "candidate_score", "champion_score", "promoted", "reason"]),
        "<h2>Champion on its holdout</h2>",
        _champion_plots(by_version[champion]) if champion in by_version else "<p>-</p>",
        "<h2>Completed days judged against the training days</h2>",
        _drift_plots(data.runs, champ, data.margin),
        "<h2>Calibration of matured days</h2>",
        _calibration_plot(data.runs, champ),
        "<h2>Realised performance of matured predictions</h2>",
        _performance_plot(data.performance),
        "<h2>Freshness</h2>",
        _timeline_plot(data.timeline),
    ]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:13px;color:#444}"
             "ul.alerts{padding:0}li.alert{list-style:none;background:#fdecea;"
             "border-left:4px solid #c62828;padding:6px 10px;margin:4px 0}"
             "p.ok{background:#e8f5e9;border-left:4px solid #2e7d32;padding:6px 10px}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>streamfit report</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
