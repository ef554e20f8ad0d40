"""Starting on your own data: `init` (profile the data, write a starter config)
and `check` (validate config and data, print what `train` would do)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import Options, error, pass_options
from core.exitcodes import ExitCode

FILE = click.Path(path_type=Path)


@click.command("init")
@click.option(
    "--events",
    required=True,
    multiple=True,
    type=FILE,
    help="the event log: a CSV or Parquet file, or a folder of them; repeat it "
    "for several sources read as one log (e.g. orders and tickets)",
)
@click.option("--customers", type=FILE, default=None, help="a customers table")
@click.option("--subscriptions", type=FILE, default=None, help="subscription terms")
@click.option(
    "--out",
    type=FILE,
    default=Path("propensity.yaml"),
    help="the config to write (never overwritten)",
)
def init(
    events: tuple[Path, ...],
    customers: Path | None,
    subscriptions: Path | None,
    out: Path,
) -> ExitCode:
    """Profile the data and write a commented starter config that works as is.

    Exit 2 when --out exists or the data cannot be read; 1 when the data are too
    short for a backtest.
    """
    from core.atomic import atomic_write
    from features.sources.profile import profile_events
    from training.plan import propose_schedule
    from training.starter import CONTRACT_GRACE_DAYS, render

    if out.exists():
        error(
            f"{out} exists; init never overwrites a file (remove it or choose "
            "another --out)"
        )
        return ExitCode.USAGE
    profile = profile_events(events, customers, subscriptions)
    click.echo(profile.text())
    grace = CONTRACT_GRACE_DAYS if subscriptions is not None else 0
    schedule = propose_schedule(profile.first, profile.data_end, grace_days=grace)
    text = render(profile, out, schedule)
    if out.exists():  # written meanwhile
        error(f"{out} exists; init never overwrites a file")
        return ExitCode.USAGE
    atomic_write(out, lambda tmp: tmp.write_text(text))
    click.echo(f"\nbacktest: {schedule.note}")
    click.echo(f"wrote {out}; next: propensity --config {out} check")
    return ExitCode.OK


@click.command("check")
@pass_options
def check(options: Options) -> ExitCode:
    """Validate config and data; print what `train` would do, without training.

    Exit 0 when train would train every listed target, 1 when it would not (the
    reasons printed), 2 when the config or the data are invalid.
    """
    from features.sources.load import connect, load_project
    from training.plan import preview

    path, config, _ = options.context()
    ds = load_project(
        config, con=connect(config.engine.memory_limit, config.engine.threads)
    )
    click.echo(f"config: {path}")
    result = preview(config, ds)
    click.echo(result.text())
    return ExitCode.OK if result.ok else ExitCode.FAILED


COMMANDS = (init, check)
