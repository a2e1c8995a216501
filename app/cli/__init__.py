"""The ``streamfit`` command line: one entry point for people and for the Makefile.

One module per sub-app (``streamfit stack`` is ``app/cli/stack.py``, and so on); modules with
top-level commands (``train``, ``score``, ``demo``, ...) hand them over as ``commands``. Each
command is thin: it validates its arguments and calls a plain function of a stage or the core.
"""

from __future__ import annotations

import typer

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

__all__ = ["app"]
