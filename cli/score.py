"""Scoring commands: `score` (the nightly run) and `score status`."""

from __future__ import annotations

import json
from datetime import datetime

import click

from cli.common import DAY, Options, error, pass_options
from core.config import ConfigError
from core.exitcodes import ExitCode
from features.sources.contract import ContractError


@click.group("score", invoke_without_command=True)
@click.option(
    "--as-of",
    type=DAY,
    default=None,
    metavar="YYYY-MM-DD",
    help="cutoff date; events before it count (default: the day after the last event)",
)
@click.option(
    "--full",
    is_flag=True,
    help="rebuild the incremental feature state from every event",
)
@click.pass_context
def score(
    ctx: click.Context, as_of: datetime | None, full: bool
) -> ExitCode | int | None:
    """Score the listed targets, each on its population, as of a date (the
    nightly run: scores, drift report, sink, outcomes of matured dates, MLflow
    run; exit 3 drift alert, 4 sink failed, 8 outcome alert, 9 too few scored,
    10 online store not updated, 11 MLflow run not recorded). Features come from
    the feature state beside the scores, advanced with the events after its
    date; --full, or a changed definition, config or suppression list, rebuilds
    it."""
    if ctx.invoked_subcommand is not None:
        return None
    from core.atomic import Busy
    from features.definition import FeatureSpec, catalogue
    from model.registry import configure
    from serving.batch.nightly import (
        TrackingUnavailable,
        record_failure,
        run_nightly,
    )
    from serving.batch.score import default_as_of
    from serving.scoring import Champions

    options = ctx.ensure_object(Options)
    _, config, uri = options.context()
    try:
        from serving.ingest.log import seal_for_nightly

        seal_for_nightly(config)  # the ingested events it reads (docs/ingest.md)
        ds = options.load_data(config)
        configure(uri)
        champions = Champions.load(config, uri)
        built = catalogue(FeatureSpec.from_config(config), ds.customers)
        champions.require_built(built.names, built.version())
    except Exception as exc:  # the status says why nothing ran, then as usual
        usage = isinstance(exc, ContractError | ConfigError)
        code = ExitCode.USAGE if usage else ExitCode.FAILED
        record_failure(config.scoring.output, str(exc), code, tracking_uri=uri)
        raise
    as_of = as_of or default_as_of(ds)
    try:
        r = run_nightly(config, ds, champions, as_of, uri, full=full)
    except Busy as exc:
        error(str(exc))
        return ExitCode.FAILED
    except TrackingUnavailable as exc:
        record_failure(config.scoring.output, str(exc), ExitCode.FAILED)
        error(str(exc))
        return ExitCode.FAILED
    s = r.score
    click.echo(f"scored {s.rows:,} customers as of {as_of:%Y-%m-%d} -> {s.path}")
    f = s.features
    if f:
        why = f" ({f['reason']})" if f.get("reason") else ""
        click.echo(
            f"features: {f['mode']}{why}, {f['events_read']:,} events read, "
            f"{f['seconds']:.1f} s"
        )
    click.echo(
        "skipped: "
        + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in s.skipped.items())
    )
    click.echo(f"MLflow run {r.run_id}; drift report {r.drift_dir}: {r.drift['level']}")
    if r.sink_rows is not None:
        click.echo(f"Postgres: {r.sink_rows:,} rows upserted")
    if r.sink_error:
        error(f"Postgres sink failed: {r.sink_error}")
    if s.store_error:
        error(f"{s.store_error}; the previous online store serves")
    if r.too_few is not None:
        error(r.too_few["message"])
    if r.tracking_error:
        error(f"MLflow run {r.run_id} not recorded: {r.tracking_error}")
    if r.drift["alerts"]:
        click.echo(
            "drift alert (PSI >= "
            f"{config.scoring.drift.alert}): {', '.join(r.drift['alerts'])}",
            err=True,
        )
    if r.outcomes is not None:
        o = r.outcomes
        if o.get("error"):
            error(f"outcome monitoring failed: {o['error']}")
        else:
            click.echo(
                f"outcomes: {len(o['evaluated'])} newly matured (date, target) "
                f"evaluated, {len(o['waiting'])} waiting: {o['level']}"
            )
        for alert in o["alerts"]:
            click.echo(f"outcome alert: {alert}", err=True)
    return r.exit_code


@score.command("status")
@pass_options
def status(options: Options) -> ExitCode | int:
    """The last run's status (exit code: the run's, 5 running, 6 none)."""
    from serving.batch.nightly import read_status

    _, config, _ = options.context()
    last = read_status(config.scoring.output)
    if last is None:
        click.echo(f"no scoring run recorded under {config.scoring.output}")
        return ExitCode.NO_RUN
    click.echo(json.dumps(last, indent=2))
    if last["state"] == "running":
        return ExitCode.RUNNING
    if last["state"] == "finished":
        return int(last["exit_code"])  # the run's own code, as recorded
    return ExitCode.FAILED


COMMANDS = (score,)
