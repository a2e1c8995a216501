"""The ``streamfit`` command line: one entry point for people and for the Makefile.

One module per sub-app (``streamfit stack`` is ``app/cli/stack.py``, and so on); modules with
top-level commands (``train``, ``score``, ``demo``, ...) hand them over as ``commands``. Each
command is thin: it validates its arguments and calls a plain function of a stage or the core.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
import typer.main

from app.cli import (
    db,
    demo,
    dlq,
    features,
    ingest,
    models,
    pipeline,
    predictions,
    produce,
    schema,
    stack,
)
from app.cli import settings as settings_cmd

app = typer.Typer(help="streamfit: an event-driven ML pipeline on Kafka, Cassandra and Airflow.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(stack.stack_app, name="stack")
app.add_typer(db.db_app, name="db")
app.add_typer(produce.produce_app, name="produce")
app.add_typer(ingest.ingest_app, name="ingest")
app.add_typer(dlq.dlq_app, name="dlq")
app.add_typer(features.features_app, name="features")
app.add_typer(models.models_app, name="models")
app.add_typer(predictions.predictions_app, name="predictions")
app.add_typer(pipeline.pipeline_app, name="pipeline")
app.add_typer(schema.schema_app, name="schema")
for module in (db, models, predictions, demo, settings_cmd):
    app.add_typer(module.commands)

#: What an option's value is, shown in help instead of the Python type (``<str>``).
METAVARS = {
    "date": "YYYY-MM-DD", "end": "YYYY-MM-DD", "from": "YYYY-MM-DD", "to": "YYYY-MM-DD",
    "train-until": "YYYY-MM-DD", "as-of": "TIME", "where": "COLUMN=VALUE", "out": "PATH",
    "workers": "N", "weeks": "N", "runs": "N", "limit": "N", "scale": "K", "speed": "N",
    "more-days": "N", "lines": "N", "service": "SERVICE", "keyspace": "KEYSPACE",
    "dataset": "NAME", "domain": "NAME", "horizon": "HORIZON", "format": "FORMAT",
}


def polish(command: Any) -> Any:
    """Help that reads as help: flags without a type, values named for what they are, and each
    paragraph of a docstring as one paragraph (a docstring's line breaks are not the
    terminal's)."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    for param in command.params:
        if param.param_type_name == "argument":
            # its name is shown beside it already; the Python type says nothing more
            param.display_type_rich = lambda ctx: ""
        if param.metavar is not None:
            continue
        # typer carries its own copy of click: its classes are told apart by what they say
        if param.param_type_name == "option":
            if param.is_flag:
                param.metavar = ""
            else:
                long = max(param.opts, key=len).lstrip("-")
                param.metavar = METAVARS.get(long, long.upper().replace("-", "_"))
        elif param.param_type_name == "argument":
            param.metavar = (param.name or "value").upper()
    made = command.get_help_option  # --help is made when help is asked for

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        polish(sub)
    return command


def main() -> None:
    """The ``streamfit`` console script."""
    polish(typer.main.get_command(app))(prog_name="streamfit")


__all__ = ["app", "main", "polish"]
