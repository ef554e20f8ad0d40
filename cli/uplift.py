"""Uplift commands: `uplift train`, `uplift report`."""

from __future__ import annotations

import json
from datetime import datetime

import click

from cli.common import Options, naive_utc, outcome_options, pass_options
from core.exitcodes import ExitCode
from core.names import TARGETS


@click.group("uplift")
def uplift() -> None:
    """Uplift models from logged campaigns: who does contact change?"""


@uplift.command("train")
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=None,
    help="one target (default: every listed target with a matured campaign)",
)
@outcome_options
@pass_options
def uplift_train(
    options: Options,
    target: str | None,
    outcome_events: tuple[str, ...],
    horizon_days: int | None,
    as_of: datetime | None,
) -> ExitCode:
    """Per target, from its matured campaigns: T- and X-learners evaluated on
    held-out customers (Qini, uplift at 10/20/30%) beside ranking by
    probability and random; the chosen one registered as <model>-uplift and
    made champion when it beats the current one. Exit 7: a target asked for
    (or every target) could not be trained."""
    from features.sources.load import connect, load_project
    from model.encoding import Encoding
    from serving.outreach.campaign_rows import campaign_rows
    from training.uplift import UpliftSkipped, render, train_uplift

    _, config, uri = options.context()
    ds = load_project(
        config, con=connect(config.engine.memory_limit, config.engine.threads)
    )
    as_of = naive_utc(as_of)
    targets = (target,) if target else config.targets.listed()
    trained, skipped = 0, 0
    for t in targets:
        rows = campaign_rows(
            config,
            ds,
            t,
            event_types=outcome_events,
            horizon_days=horizon_days,
            as_of=as_of,
        )
        for campaign_id, why in rows.skipped.items():
            click.echo(f"{t}: campaign {campaign_id} left out: {why}")
        if rows.frame.empty:
            click.echo(f"{t}: skipped: no matured campaign in the contact log")
            skipped += 1
            continue
        encoding = Encoding.fit(rows.frame, rows.features, rows.categorical)
        context = {"campaigns": ",".join(rows.used)}
        try:
            result = train_uplift(config, rows.frame, encoding, t, uri, context)
        except UpliftSkipped as exc:
            click.echo(f"{t}: skipped: {exc}")
            skipped += 1
            continue
        trained += 1
        click.echo(
            f"{t}: {len(rows.frame):,} rows from {', '.join(rows.used)}; "
            f"'rank by probability' is {result.evaluation.probability_source}"
        )
        click.echo(render(result.evaluation.summary(), result.learner))
        decision = "champion" if result.promoted else "challenger"
        click.echo(
            f"{result.model_name} v{result.version} ({decision}): {result.reason}"
        )
    if skipped and (target is not None or not trained):
        return ExitCode.TARGET_SKIPPED
    return ExitCode.OK


@uplift.command("report")
@click.option("--target", type=click.Choice(TARGETS), default=None)
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text")
@pass_options
def uplift_report(options: Options, target: str | None, fmt: str) -> ExitCode:
    """Each uplift champion's evaluation: Qini and uplift at 10/20/30% of the
    T- and X-learners, ranking by probability and random (mean +- sd)."""
    from model.uplift import registered_name
    from training.uplift import champion_report, render

    _, config, uri = options.context()
    reports = {}
    for t in (target,) if target else config.targets.listed():
        name = registered_name(config.model_name(t))
        reports[t] = champion_report(uri, name)
    if fmt == "json":
        click.echo(json.dumps(reports, indent=2))
        return ExitCode.OK
    for t, report in reports.items():
        if report is None:
            click.echo(f"{t}: no uplift champion (propensity uplift train)")
            continue
        click.echo(
            f"{t}: {report['model']} v{report['version']} ({report['learner']}), "
            f"{report['rows']} rows; {report['reason']}"
        )
        click.echo(render(report["summary"], report["learner"]))
    return ExitCode.OK


COMMANDS = (uplift,)
