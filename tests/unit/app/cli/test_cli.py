"""The command line without services: help, captions, settings sources, fast refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from click.testing import CliRunner

from app.cli import app, polish
from app.cli.pipeline import backlog_caption
from app.cli.settings import setting_rows
from app.pipeline import StageStatus
from streamfit.settings import load_settings


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = getattr(command, "commands", {})
    return [path] + [p for name, sub in subs.items() for p in _commands(sub, (*path, name))]


def test_help_names_values_not_python_types_and_keeps_sentences_whole() -> None:
    root = polish(typer.main.get_command(app))
    runner = CliRunner()
    paths = _commands(root)
    assert len(paths) > 30
    for path in paths:
        shown = runner.invoke(root, [*path, "--help"], prog_name="streamfit",
                              terminal_width=100)
        assert shown.exit_code == 0, (path, shown.output)
        for python_type in ("<bool>", "<str>", "<list[", "<int>", "<float>"):
            assert python_type not in shown.output, (path, shown.output)
    top = runner.invoke(root, ["--help"], prog_name="streamfit", terminal_width=100).output
    # a docstring's first sentence, once cut at its line break, is whole again
    assert "against what happened" in " ".join(top.replace("│", " ").split())
    dated = runner.invoke(root, ["predictions", "list", "--help"], terminal_width=100).output
    assert "YYYY-MM-DD" in dated and "COLUMN=VALUE" in dated


def _row(ks: str, stage: str, pending: int) -> StageStatus:
    return StageStatus(ks, stage, pending, "landed rows", None, 0.0)


def test_the_backlog_caption_says_what_the_rows_say() -> None:
    assert backlog_caption([]) == "pipeline backlog: no keyspace served"
    quiet = [_row("a", "features", 0), _row("a", "scoring", 0)]
    assert backlog_caption(quiet).endswith("caught up (0 pending in every stage)")
    busy = [_row("a", "features", 182_718), _row("b", "features", 0), _row("b", "scoring", 3)]
    caption = backlog_caption(busy)
    assert "2 keyspaces" in caption and "a features 182,718 landed rows" in caption
    assert "b scoring 3" in caption and "caught up" not in caption


def test_settings_show_each_value_used_and_where_it_came_from(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, log_level="DEBUG", events_topic="mine")
    rows = {r["name"]: r for r in setting_rows(
        s, environ={"STREAMFIT_LOG_LEVEL": "DEBUG"}, dotenv={"STREAMFIT_EVENTS_TOPIC": "mine"})}
    assert rows["log_level"]["source"] == "environment"
    assert rows["events_topic"]["source"] == ".env"
    assert rows["cassandra_port"]["source"] == "default"
    # unset, with a working value computed from others: shown as used, not as None
    assert rows["dlq_topic"]["value"] is None and rows["dlq_topic"]["effective"] == "mine.dlq"
    assert rows["dlq_topic"]["source"] == "derived"
    assert rows["cassandra_hosts"]["effective"] == "127.0.0.1"
    assert rows["kafka_bootstrap_servers"]["effective"] == f"127.0.0.1:{s.kafka_port}"
    secret = {r["name"]: r for r in setting_rows(
        load_settings(home=tmp_path, kafka_username="u", kafka_password="p"), {}, {})}
    assert secret["kafka_password"]["effective"] == "**********"


@pytest.mark.parametrize("args", [
    ["predictions", "get", ""], ["predictions", "get", "bad\x01key"],
    ["predictions", "list", "--date", "2013-13-01"], ["score", "--date", "nope"],
    ["features", "build", "--date", "x"], ["train", "--end", "x"],
    ["pipeline", "retire", "no such"], ["pipeline", "status", "--keyspace", "a-b"],
])
def test_a_bad_argument_is_refused_before_any_heavy_import(args: list[str]) -> None:
    """Validation runs first: no service is asked, and neither pandas nor scikit-learn is
    imported (they made a bad argument take 3-4 s)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "app.cli", *args],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "", "STREAMFIT_CASSANDRA_HOSTS": "127.0.0.9",
                               "HOME": str(Path.home())})
    assert proc.returncode == 2, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert not {"pandas", "sklearn", "cassandra.cluster"} & imported
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert any("Invalid value" in line for line in said), said
