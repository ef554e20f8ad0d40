"""`propensity`: one command, a subcommand per stage.

The click group, its global options (`--config`, `--verbose`, `--engine`,
`--spark-master`), logging, and the entry point `main()` that turns the
project's errors into a message and an exit code (`core.exitcodes.ExitCode`).
Each stage's commands live in their own module (data, train, score, serve,
privacy) and only wire: read the config, call into the packages, print, return
an exit code. Heavy imports (MLflow, LightGBM, BentoML) happen inside the
commands that need them.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from cli import (
    campaigns,
    data,
    ingest,
    outcomes,
    privacy,
    score,
    serve,
    starter,
    train,
    uplift,
)
from cli.common import Options, error
from core.config import ConfigError
from core.exitcodes import ExitCode
from features.sources.contract import ContractError

NOISY_LOGGERS = ("alembic", "mlflow.store", "urllib3", "httpx")
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


@click.group(
    "propensity",
    context_settings=CONTEXT,
    help="One command, a subcommand per stage.",
)
@click.option(
    "--config",
    default=None,
    show_default=False,
    help="config file (default: $PROPENSITY_CONFIG or ./propensity.yaml)",
)
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default=None,
    help="what builds features and training sets and scores (default: the "
    "config's engine.kind, duckdb)",
)
@click.option(
    "--spark-master",
    default=None,
    help="Spark master URL for --engine spark, e.g. local[4], spark://host:7077, "
    "yarn (default: engine.spark.master, then Spark's own environment: local)",
)
@click.pass_context
def propensity(
    ctx: click.Context,
    config: str | None,
    verbose: bool,
    engine: str | None,
    spark_master: str | None,
) -> None:
    """Set up logging and hand the options to the subcommand."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = Options(config=config, engine=engine, spark_master=spark_master)


for _module in (
    data,
    starter,
    train,
    score,
    outcomes,
    serve,
    ingest,
    privacy,
    campaigns,
    uplift,
):
    for _command in _module.COMMANDS:
        propensity.add_command(_command)


PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def main(argv: list[str] | None = None) -> int:
    """Run `propensity` on `argv` (default: the process's arguments); return the
    exit code (see `run`)."""
    return run(propensity, argv, "propensity")


def run(group: click.Group, argv: list[str] | None, prog_name: str) -> int:
    """Run the click `group` on `argv`; return the exit code. A bad argument exits
    USAGE with click's message naming it; a bad config or data contract USAGE; a
    missing champion or a refused value FAILED; anything else raises (a
    traceback is a bug). `python -m benchmarks` runs its suites through this too."""
    # OpenMP threads that spin while idle (the default) fight each other when
    # LightGBM, scikit-learn and DuckDB share two cores: a 0.3 s LightGBM fit took
    # 2-30 s. Set before any of them loads its OpenMP runtime.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    # MLflow's download progress bars are for a person at a terminal; in a log
    # file or a pipe they are noise (runs compare, train, score)
    if not sys.stderr.isatty():
        os.environ.setdefault(PROGRESS_BAR_ENV, "false")
    try:
        code = group.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.ClickException as exc:  # bad arguments: exit_code 2 (USAGE)
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return ExitCode.FAILED
    except (ConfigError, ContractError) as exc:
        error(str(exc))
        return ExitCode.USAGE
    except Exception as exc:
        from model.registry import ArtifactError, RegistryUnavailable
        from serving.scoring import NoChampionError

        # incl. RunsError; OSError: a full disk, a missing folder (names the path)
        known = NoChampionError | RegistryUnavailable | ArtifactError
        if isinstance(exc, known | ValueError | OSError):
            error(str(exc))
            return ExitCode.FAILED
        raise
    return int(code or ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
