"""Privacy commands: `forget`, `retention`, `pseudonym`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import Options, error, pass_options
from core.exitcodes import ExitCode


@click.command("forget")
@click.option(
    "--customer-id",
    "customer_ids",
    multiple=True,
    metavar="ID",
    help="an id (repeatable)",
)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="a file of ids, one per line (repeatable)",
)
@pass_options
def forget(
    options: Options, customer_ids: tuple[str, ...], files: tuple[Path, ...]
) -> ExitCode:
    """Remove customers from the online store, scores and training snapshots, and
    suppress them in every later run."""
    from serving.privacy.forget import forget as erase
    from serving.privacy.forget import read_ids_file

    _, config, _ = options.context()
    ids = list(customer_ids)
    for path in files:
        ids += read_ids_file(path)
    if not ids:
        error("give --customer-id ID or --file PATH")
        return ExitCode.USAGE
    erasure = erase(config, ids)
    for place, by_id in sorted(erasure.removed.items()):
        click.echo(f"{place}: {sum(by_id.values()):,} row(s) removed")
    click.echo(
        f"forgot {len(erasure.customers):,} customer(s): {erasure.rows():,} row(s) "
        f"removed; on the suppression list of {config.privacy.dir}"
    )
    return ExitCode.OK


@click.command("retention")
@pass_options
def retention(options: Options) -> ExitCode:
    """Delete score outputs and training snapshots older than
    privacy.retention_days."""
    from serving.privacy.retention import prune_contacts, prune_scores
    from training.dataset import prune_snapshots

    _, config, _ = options.context()
    days = config.privacy.retention_days
    if days is None:
        click.echo("privacy.retention_days is not set: nothing is deleted")
        return ExitCode.OK
    removed = prune_scores(config.scoring.output, days)
    if config.training.snapshot_dir is not None:
        removed += prune_snapshots(config.training.snapshot_dir, days)
    for path in removed:
        click.echo(f"deleted {path}")
    click.echo(f"{len(removed)} output(s) older than {days} days deleted")
    click.echo(f"{prune_contacts(config):,} contact log row(s) deleted")
    return ExitCode.OK


@click.command("pseudonym")
@click.argument("customer_ids", metavar="CUSTOMER_ID...", nargs=-1, required=True)
@pass_options
def pseudonym(options: Options, customer_ids: tuple[str, ...]) -> ExitCode:
    """Print the stored form (pseudonym) of customer ids, to join outputs."""
    from features.sources.privacy import pseudonymiser

    _, config, _ = options.context()
    pseudonyms = pseudonymiser(config.privacy)
    for customer_id in customer_ids:
        click.echo(f"{customer_id}\t{pseudonyms.one(customer_id)}")
    return ExitCode.OK


COMMANDS = (forget, retention, pseudonym)
