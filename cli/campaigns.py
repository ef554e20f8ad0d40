"""Campaign commands: `campaigns list`, `campaigns report ID`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from cli.common import MOMENT, POSITIVE_INT, Options, pass_options
from core.exitcodes import ExitCode

FORMATS = ("text", "json", "html")


@click.group("campaigns")
def campaigns() -> None:
    """Confirmed campaigns and their readouts (treatment against control)."""


@campaigns.command("list")
@pass_options
def campaigns_list(options: Options) -> ExitCode:
    """Every confirmed campaign of the contact log, oldest first, and whether
    its outcome window has passed (at data.as_of, else now)."""
    from serving.outreach.contact_log import open_contact_log
    from serving.outreach.readout import (
        default_as_of,
        outcome_definition,
        parse_stamp,
    )

    _, config, _ = options.context()
    found = open_contact_log(config.outreach.contact_log).campaigns()
    if not found:
        click.echo(f"no confirmed campaign in {config.outreach.contact_log}")
        return ExitCode.OK
    now = default_as_of(config)
    click.echo(
        f"{'campaign':28} {'target':16} {'confirmed_at':26} {'treatment':>9} "
        f"{'control':>8} {'share':>6}  outcome"
    )
    for c in found:
        start = parse_stamp(c.confirmed_at)
        days = outcome_definition(config, c.target).days_to_mature
        left = (start + timedelta(days=days) - now).total_seconds() / 86_400
        state = "mature" if left <= 0 else f"{int(-(-left // 1))} day(s) to go"
        share = "?" if c.control_share is None else f"{c.control_share:g}"
        click.echo(
            f"{c.campaign_id:28} {c.target:16} {c.confirmed_at[:26]:26} "
            f"{c.treatment:>9,} {c.control:>8,} {share:>6}  {state}"
        )
    return ExitCode.OK


@campaigns.command("report")
@click.argument("campaign_id")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="write the readout to this file (atomically) instead of stdout",
)
@click.option(
    "--outcome-event",
    "outcome_events",
    multiple=True,
    metavar="TYPE",
    help="count an event of this type in the window as the outcome, instead of "
    "the target's label (repeatable; e.g. visit)",
)
@click.option(
    "--horizon-days",
    type=POSITIVE_INT,
    default=None,
    help="the outcome window (default: the target's horizon_days)",
)
@click.option(
    "--as-of",
    type=MOMENT,
    default=None,
    metavar="DATE",
    help="judge maturity at this moment (default: data.as_of, else now)",
)
@click.option(
    "--truth",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="a Parquet file of each customer's true effect (the demo's "
    "campaign_truth.parquet): show it beside the measured lift",
)
@click.option(
    "--mlflow/--no-mlflow",
    "track",
    default=True,
    help="log the readout as a run in <mlflow.experiment>.campaigns",
)
@pass_options
def campaigns_report(
    options: Options,
    campaign_id: str,
    fmt: str,
    out: Path | None,
    outcome_events: tuple[str, ...],
    horizon_days: int | None,
    as_of: datetime | None,
    truth: Path | None,
    track: bool,
) -> ExitCode:
    """The readout of campaign CAMPAIGN_ID: outcome rate and revenue per group,
    lifts with 95% intervals and p-values, incremental outcomes and revenue,
    cost and ROI, deciles of the score at selection, the sample-ratio check."""
    from core.atomic import atomic_write
    from features.sources.load import connect, load_project
    from serving.outreach import readout_report
    from serving.outreach.readout import readout, with_truth

    _, config, uri = options.context()
    ds = load_project(
        config, con=connect(config.engine.memory_limit, config.engine.threads)
    )
    if as_of is not None and as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    report = readout(
        config,
        ds,
        campaign_id,
        event_types=outcome_events,
        horizon_days=horizon_days,
        as_of=as_of,
    )
    if truth is not None:
        import pyarrow.parquet as pq

        report = with_truth(report, pq.read_table(truth))
    rendered = readout_report.RENDER[fmt](report)
    if out is None:
        click.echo(rendered, nl=False)
    else:
        atomic_write(out, lambda tmp: tmp.write_text(rendered))
        click.echo(f"wrote the readout of {campaign_id} to {out}", err=True)
    if not report["mature"]:
        click.echo(f"warning: {readout_report.status(report)}", err=True)
    if report["sample_ratio"]["mismatch"]:
        click.echo("warning: sample-ratio mismatch (see the readout)", err=True)
    if track:
        run_id = readout_report.record(config, uri, report)
        click.echo(
            f"MLflow run {run_id} in {readout_report.campaigns_experiment(config)}",
            err=True,
        )
    return ExitCode.OK


COMMANDS = (campaigns,)
