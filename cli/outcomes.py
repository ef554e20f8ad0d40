"""`propensity outcomes`: the nightly scores beside what then happened."""

from __future__ import annotations

import json
from datetime import datetime

import click

from cli.common import DAY, Options, error, pass_options
from core.exitcodes import ExitCode


@click.command("outcomes")
@click.option(
    "--as-of-from",
    "since",
    type=DAY,
    default=None,
    metavar="YYYY-MM-DD",
    help="only score dates on or after this one (default: every date)",
)
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text")
@pass_options
def outcomes(options: Options, since: datetime | None, fmt: str) -> ExitCode | int:
    """Evaluate every newly matured score date against the realised labels: per
    target AUC, log loss, ECE, top-decile lift beside the champion's backtest,
    one MLflow run each in <experiment>.outcomes (exit 8: an alert)."""
    from core.atomic import Busy
    from features.sources.load import connect, load_project
    from serving.batch.score import writing
    from serving.monitoring.outcome_runs import check, text

    _, config, uri = options.context()
    ds = load_project(
        config, con=connect(config.engine.memory_limit, config.engine.threads)
    )
    try:
        with writing(config.scoring.output):
            status = check(config, ds, uri, since=since)
    except Busy as exc:
        error(str(exc))
        return ExitCode.FAILED
    click.echo(
        json.dumps(status, indent=2) if fmt == "json" else text(status),
        nl=fmt == "json",
    )
    for alert in status["alerts"]:
        click.echo(f"outcome alert: {alert}", err=True)
    return int(status["exit_code"])


COMMANDS = (outcomes,)
