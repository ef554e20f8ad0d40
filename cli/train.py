"""Training commands: `train`, `tune`, `runs` (compare, history), `promote`,
`rollback`."""

from __future__ import annotations

from datetime import datetime

import click

from cli.common import MOMENT, POSITIVE_FLOAT, POSITIVE_INT, Options, pass_options
from core.exitcodes import ExitCode
from core.names import TARGETS

TARGET = click.Choice(TARGETS)


@click.command("train")
@pass_options
def train(options: Options) -> ExitCode:
    """Build features and labels, train, track, register, promote the listed
    targets (exit 7 when one could not be trained)."""
    from training.train import train_all

    _, config, uri = options.context()
    ds = options.load_data(config)
    trained = train_all(config, ds, uri)
    for skipped in trained.skipped:
        click.echo(f"skipped {skipped}", err=True)
    if not trained.results:
        click.echo(
            "error: no listed target could be trained; nothing was registered "
            "(turn a target off by leaving it out of targets:)",
            err=True,
        )
        return ExitCode.FAILED
    results = trained.results
    click.echo(f"MLflow: {uri}")
    click.echo(
        f"{'target':16} {'version':>7} {'origins':>23} {'AUC':>7} {'logloss':>8} "
        f"{'ll cal':>8} {'ECE cal':>7} {'calib':>8}  baselines AUC"
    )
    for r in results:
        m = r.metrics
        bases = ", ".join(
            f"{name} {values['roc_auc_mean']:.4f}"
            for name, values in r.baselines.items()
        )
        click.echo(
            f"{r.target:16} {r.version:>7} "
            f"{r.origins[0]:%Y-%m-%d}..{r.origins[-1]:%Y-%m-%d} "
            f"{m['backtest_roc_auc_mean']:7.4f} {m['backtest_log_loss_mean']:8.4f} "
            f"{m.get('calibrated_log_loss_mean', float('nan')):8.4f} "
            f"{m.get('calibrated_ece_mean', float('nan')):7.4f} "
            f"{r.calibration:>8}  {bases}"
        )
        verdict = "champion" if r.decision.promote else "challenger"
        click.echo(f"  -> {verdict}: {r.decision.reason}")
        for line in r.dropped:
            click.echo(f"  {line}")
    click.echo(
        "AUC, logloss: the raw model, mean over the origins; ll cal, ECE cal: the "
        "calibrated probabilities the API and the nightly job serve, mean over the "
        "origins after the first (the first only fits the calibration)"
    )
    if trained.skipped:
        names = ", ".join(s.target for s in trained.skipped)
        click.echo(
            f"warning: {names} skipped (see above); the others were trained. Leave "
            "a target out of targets: to turn it off.",
            err=True,
        )
        return ExitCode.TARGET_SKIPPED
    return ExitCode.OK


@click.command("tune")
@click.option("--target", required=True, type=TARGET)
@click.option("--trials", required=True, type=POSITIVE_INT, help="at most N")
@click.option(
    "--timeout",
    type=POSITIVE_FLOAT,
    default=None,
    metavar="SECONDS",
    help="start no trial after this many seconds of search",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="the sampler's seed (default: training.lightgbm.seed)",
)
@pass_options
def tune(
    options: Options, target: str, trials: int, timeout: float | None, seed: int | None
) -> ExitCode:
    """Search LightGBM params for a target on the backtest origins (registers
    nothing)."""
    import optuna

    from training.tune import ARTIFACT
    from training.tune import tune as run_tune

    _, config, uri = options.context()
    ds = options.load_data(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tune logs each trial
    r = run_tune(config, ds, uri, target, trials, timeout, seed)
    click.echo(f"MLflow: {uri}, run {r.run_name} ({r.run_id})")
    click.echo(f"{r.target}: {r.trials} trials, mean backtest log loss")
    click.echo(f"  {'config params (trial 0)':26} {r.baseline:.5f}")
    if r.best_trial == 0:
        click.echo("  no trial beat the config's params: keep them")
    else:
        click.echo(
            f"  {f'best (trial {r.best_trial})':26} {r.best:.5f}, "
            f"{r.improvement:.5f} lower ({r.improvement / r.baseline:.1%})"
        )
    click.echo(
        "best params: " + ", ".join(f"{k}={v:.6g}" for k, v in r.best_params.items())
    )
    click.echo(f"\npaste under training.lightgbm (artifact {ARTIFACT} of the run):")
    click.echo(r.snippet, nl=False)
    return ExitCode.OK


@click.group("runs", invoke_without_command=True)
@click.option("--target", type=TARGET, default=None, help="one target (default all)")
@click.option("--limit", type=POSITIVE_INT, default=20, help="runs per target")
@click.pass_context
def runs(ctx: click.Context, target: str | None, limit: int) -> ExitCode | None:
    """Recent runs per target with metrics, baselines and champions."""
    if ctx.invoked_subcommand is not None:
        return None
    from training import runs as model_runs

    config, client = ctx.ensure_object(Options).client()
    rows = model_runs.table(client, config, target, limit)
    click.echo(
        model_runs.format_table(rows) if rows else "no model runs yet: train first"
    )
    return ExitCode.OK


@runs.command("compare")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@pass_options
def runs_compare(options: Options, a: str, b: str) -> ExitCode:
    """Metric differences per origin and parameter differences.

    A, B: a run id, NAME/VERSION or models:/NAME/VERSION.
    """
    from training import runs as model_runs

    _, client = options.client()
    click.echo(model_runs.compare(client, a, b).text())
    return ExitCode.OK


@runs.command("history")
@click.argument("target", type=TARGET)
@click.option(
    "--at",
    type=MOMENT,
    default=None,
    metavar="WHEN",
    help="which version was champion then (a date or ISO date-time, UTC)",
)
@pass_options
def runs_history(options: Options, target: str, at: datetime | None) -> ExitCode:
    """Every move of the champion alias."""
    from training import runs as model_runs
    from training.promote import champion_at, history

    config, client = options.client()
    name = config.model_name(target)
    moves = history(client, config.mlflow.experiment, name)
    click.echo(model_runs.format_history(moves))
    if at is not None:
        holder = champion_at(moves, at)
        click.echo(
            f"\n{name} champion at {at.isoformat()}: "
            f"{'v' + holder if holder else 'none'}"
        )
    return ExitCode.OK


@click.command("promote")
@click.argument("target", type=TARGET)
@click.argument("version")
@click.option("--force", is_flag=True, help="override the gate")
@click.option("--reason", default=None, help="why (required with --force); recorded")
@pass_options
def promote(
    options: Options, target: str, version: str, force: bool, reason: str | None
) -> ExitCode:
    """Make a version champion through the gate (or --force)."""
    from training import runs as model_runs

    config, client = options.client()
    moved, text = model_runs.promote(client, config, target, version, force, reason)
    click.echo(text)
    return ExitCode.OK if moved else ExitCode.FAILED


@click.command("rollback")
@click.argument("target", type=TARGET)
@click.option("--reason", default=None, help="why; recorded")
@pass_options
def rollback(options: Options, target: str, reason: str | None) -> ExitCode:
    """Move champion back to the previous one."""
    from training import runs as model_runs

    config, client = options.client()
    click.echo(model_runs.rollback(client, config, target, reason))
    return ExitCode.OK


COMMANDS = (train, tune, runs, promote, rollback)
