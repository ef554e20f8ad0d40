"""Data commands: `demo-data`, `import`, `features list`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from cli.common import DAY, POSITIVE_FLOAT, POSITIVE_INT, Options, pass_options
from core.exitcodes import ExitCode

DATASETS = ("cdnow", "online-retail", "hillstrom")
# the project `import hillstrom` writes beside the data: campaign readouts of the
# experiment work with `propensity --config DIR/propensity.yaml campaigns ...`
HILLSTROM_CONFIG = """\
# Written by `propensity import hillstrom`: the Hillstrom e-mail experiment as a
# project. Outcome events are at the send date + 1 day ({outcome}); the two
# campaigns were confirmed at the send date ({send}), with the No E-Mail
# customers as their shared control (a control share of 0.5 within each).
# Readouts: `propensity --config THIS campaigns report hillstrom-mens`
# (conversion: a purchase; revenue: the spend) and `... --outcome-event visit`.
data:
  events: events.parquet
  customers: customers.parquet
roles:
  purchase: [purchase]
targets:
  purchase: {{horizon_days: {days}}}
training:
  cutoffs: {{dates: ["{day}"]}}
outreach:
  control_share: 0.5
  contact_log: contacts.sqlite
privacy:
  pseudonymise: false
mlflow:
  experiment: hillstrom
"""


@click.command("demo-data")
@click.option("--customers", type=POSITIVE_INT, default=20_000, help="how many")
@click.option("--seed", type=int, default=0)
@click.option("--out", default="data/demo", help="folder of the Parquet files")
@click.option(
    "--start",
    type=DAY,
    default="2024-01-01",
    metavar="YYYY-MM-DD",
    help="first day",
)
@click.option("--days", type=POSITIVE_INT, default=730, help="days of history")
@click.option("--events-per-customer", type=POSITIVE_FLOAT, default=100.0)
@click.option(
    "--subscriptions",
    is_flag=True,
    help="also write subscriptions.parquet (churn then happens at term ends)",
)
@click.option(
    "--campaign/--no-campaign",
    default=True,
    help="simulate the retention campaign demo-retention with a known effect: "
    "its truth in campaign_truth.parquet, its contact log in contacts.sqlite",
)
@pass_options
def demo_data(
    options: Options,
    customers: int,
    seed: int,
    out: str,
    start: datetime,
    days: int,
    events_per_customer: float,
    subscriptions: bool,
    campaign: bool,
) -> ExitCode:
    """Generate a synthetic usage history (Parquet), with a campaign whose true
    effect is known (its contact log holds the ids as the config stores them:
    pseudonyms when the config found pseudonymises)."""
    from features.synthetic.demo import generate

    summary = generate(
        out,
        customers=customers,
        seed=seed,
        start=f"{start:%Y-%m-%d}",
        days=days,
        events_per_customer=events_per_customer,
        subscriptions=subscriptions,
        campaign=campaign,
    )
    click.echo(
        f"wrote {summary.events:,} events for {summary.customers:,} customers "
        f"({summary.start:%Y-%m-%d} .. {summary.end:%Y-%m-%d}) to {out}"
    )
    if summary.subscriptions_path is not None:
        click.echo(f"wrote subscription terms to {summary.subscriptions_path}")
    if summary.campaign_path is not None:
        log = Path(out) / "contacts.sqlite"
        write_demo_contacts(summary.campaign_path, log, _stored_ids(options))
        click.echo(
            f"wrote campaign demo-retention's truth to {summary.campaign_path} and "
            f"its contact log to {log}"
        )
    return ExitCode.OK


def _stored_ids(options: Options) -> Callable[[list[str]], list[str]]:
    """How the config found (if any) stores customer ids: its pseudonymiser."""
    from core.config import config_path, load_config
    from features.sources.privacy import pseudonymiser

    path = config_path(options.config)
    if not path.is_file():
        return list
    return pseudonymiser(load_config(path).privacy).many


def write_demo_contacts(
    truth_path: Path, log_path: Path, stored: Callable[[list[str]], list[str]]
) -> int:
    """The demo campaign's contact log (features.synthetic.campaign), written
    atomically from its truth table: every selected customer (ids as `stored`
    maps them) with its group, confirmed at the campaign's moment; no scores.
    Returns the rows written."""
    import pyarrow.parquet as pq

    from core.atomic import atomic_write
    from features.synthetic.campaign import (
        CAMPAIGN_TARGET,
        CONTROL_SHARE,
        confirmed_at,
    )
    from serving.outreach.contact_log import ContactLog

    truth = pq.read_table(truth_path)
    [campaign] = truth.column("campaign_id").unique().to_pylist()
    ids = stored(truth.column("customer_id").to_pylist())
    rows = list(zip(ids, truth.column("contact_group").to_pylist(), strict=True))

    def write(tmp: Path) -> int:
        with ContactLog(tmp).confirming(campaign, now=confirmed_at(truth)) as tx:
            return tx.record(
                CAMPAIGN_TARGET, rows, control_share=CONTROL_SHARE, contact_cost=0.0
            )

    return atomic_write(log_path, write)


@click.command("import")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="folder for events.parquet (+ customers)",
)
def import_(dataset: str, source: Path, out: Path) -> ExitCode:
    """Turn a real dataset into the data contract.

    SOURCE: CDNOW_master.txt, CDNOW_sample.txt, online_retail.parquet or
    hillstrom.csv (with its contact log of two campaigns and a config).
    """
    from features.sources import adapters

    if dataset == "hillstrom":
        return _import_hillstrom(source, out)
    if dataset == "cdnow":
        events, customers = adapters.cdnow(source), None
    else:
        events = adapters.online_retail(source)
        customers = adapters.online_retail_customers(source)
    adapters.write_contract(events, out / "events.parquet")
    if customers is not None:
        adapters.write_contract(customers, out / "customers.parquet")
    roles = adapters.ROLES[dataset.replace("-", "_")].model_dump()
    click.echo(f"wrote {events.num_rows:,} events to {out / 'events.parquet'}")
    click.echo("roles for the config:")
    for role, types in roles.items():
        click.echo(f"  {role}: {types}")
    return ExitCode.OK


def _import_hillstrom(source: Path, out: Path) -> ExitCode:
    """Events, customers, the contact log of the two campaigns and a config,
    each written atomically (a second import replaces the first)."""
    from core.atomic import atomic_write
    from features.sources import adapters
    from serving.outreach.contact_log import ContactLog

    found = adapters.hillstrom(source)
    adapters.write_contract(found.events, out / "events.parquet")
    adapters.write_contract(found.customers, out / "customers.parquet")
    send = adapters.HILLSTROM_SEND.replace(tzinfo=UTC)

    def contacts(tmp: Path) -> None:
        log = ContactLog(tmp)
        for campaign, rows in found.campaigns.items():
            with log.confirming(campaign, now=send) as tx:
                tx.record("purchase", rows, control_share=0.5, contact_cost=0.0)

    atomic_write(out / "contacts.sqlite", contacts)
    config = HILLSTROM_CONFIG.format(
        outcome=f"{adapters.HILLSTROM_OUTCOME_AT:%Y-%m-%d}",
        send=f"{adapters.HILLSTROM_SEND:%Y-%m-%d}",
        day=f"{adapters.HILLSTROM_SEND:%Y-%m-%d}",
        days=7 * adapters.HILLSTROM_WEEKS,
    )
    atomic_write(out / "propensity.yaml", lambda tmp: tmp.write_text(config))
    click.echo(
        f"wrote {found.events.num_rows:,} events and {found.customers.num_rows:,} "
        f"customers to {out}; campaigns {', '.join(found.campaigns)} (confirmed "
        f"{send:%Y-%m-%d}) to {out / 'contacts.sqlite'}; config "
        f"{out / 'propensity.yaml'}"
    )
    return ExitCode.OK


@click.group("features")
def features() -> None:
    """The feature catalogue."""


@features.command("list")
@pass_options
def features_list(options: Options) -> ExitCode:
    """Print name, role, window and description."""
    from features.definition import FeatureSpec, catalogue

    _, config, _ = options.context()
    customers = None
    if config.data.customers is not None:
        from features.sources.load import load_customers

        customers = load_customers(
            config.data.customers,
            fmt=config.data.format,
            columns=config.data.columns,
        )
    cat = catalogue(FeatureSpec.from_config(config), customers)
    click.echo(f"{'name':34} {'role':16} {'window':>6}  description")
    for f in cat.features:
        window = f"{f.window_days}d" if f.window_days else ""
        click.echo(f"{f.name:34} {f.role or '':16} {window:>6}  {f.description}")
    click.echo(f"\n{len(cat.features)} features, feature-set version {cat.version()}")
    return ExitCode.OK


COMMANDS = (demo_data, import_, features)
