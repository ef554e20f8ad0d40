"""Data commands: `demo-data`, `import`, `features list`."""

from __future__ import annotations

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
def demo_data(
    customers: int,
    seed: int,
    out: str,
    start: datetime,
    days: int,
    events_per_customer: float,
    subscriptions: bool,
) -> ExitCode:
    """Generate a synthetic usage history (Parquet)."""
    from features.synthetic.demo import generate

    summary = generate(
        out,
        customers=customers,
        seed=seed,
        start=f"{start:%Y-%m-%d}",
        days=days,
        events_per_customer=events_per_customer,
        subscriptions=subscriptions,
    )
    click.echo(
        f"wrote {summary.events:,} events for {summary.customers:,} customers "
        f"({summary.start:%Y-%m-%d} .. {summary.end:%Y-%m-%d}) to {out}"
    )
    if summary.subscriptions_path is not None:
        click.echo(f"wrote subscription terms to {summary.subscriptions_path}")
    return ExitCode.OK


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
