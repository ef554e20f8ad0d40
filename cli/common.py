"""What every stage's commands share: the global options, the config they name,
the data they load, and the argument types.

The stage modules (data, train, score, serve, privacy) import from here, and
`cli.main` imports them, so nothing here imports a stage module.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from core.config import config_path, load_config

if TYPE_CHECKING:
    from core.config import ProjectConfig


@dataclass(frozen=True)
class Options:
    """The group's options, handed to every command (`pass_options`)."""

    config: str | None = None
    engine: str | None = None
    spark_master: str | None = None

    def context(self) -> tuple[Path, ProjectConfig, str]:
        """The config file's path, the config and its MLflow tracking URI."""
        path = config_path(self.config).resolve()
        config = load_config(path)
        return path, config, config.tracking_uri(path.parent)

    def load_data(self, config: ProjectConfig) -> Any:
        """The validated data on the engine `--engine` or the config chose."""
        from features.sources.load import connect, load_project

        ds = load_project(
            config, con=connect(config.engine.memory_limit, config.engine.threads)
        )
        if (self.engine or config.engine.kind) != "spark":
            return ds
        from features.sources.spark import load_spark, refuse_privacy, session

        refuse_privacy(config)
        spark = session(config.engine.spark, master=self.spark_master)
        return load_spark(
            spark,
            config.data.events,
            config.data.customers,
            fmt=config.data.format,
            validated=ds,
            columns=config.data.columns,
        )

    def client(self) -> tuple[ProjectConfig, Any]:
        """The config and an MLflow client on its tracking store (configured)."""
        from mlflow.tracking import MlflowClient

        from model.registry import configure

        _, config, uri = self.context()
        configure(uri)
        return config, MlflowClient(uri, uri)


pass_options = click.make_pass_decorator(Options, ensure=True)


def error(message: str) -> None:
    """`error: ...` on stderr, as every command reports a failure."""
    click.echo(f"error: {message}", err=True)


def executable(name: str) -> str:
    """An executable next to this Python (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


# -- argument types: a bad value exits 2 naming the option and what it expects --

POSITIVE_INT = click.IntRange(min=1)
PORT = click.IntRange(min=1, max=65_535)
DAY = click.DateTime(formats=["%Y-%m-%d"])


class PositiveFloat(click.FloatRange):
    """A finite number > 0 (FloatRange lets nan through: it compares False)."""

    name = "positive number"

    def __init__(self) -> None:
        super().__init__(min=0, max=math.inf, min_open=True, max_open=True)

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"expected a positive number, got {value!r}", param, ctx)
        return number


class Moment(click.ParamType):
    """A date or an ISO date-time (UTC unless it carries an offset)."""

    name = "moment"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(
                f"expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM], got {value!r}",
                param,
                ctx,
            )


POSITIVE_FLOAT = PositiveFloat()
MOMENT = Moment()


def outcome_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--outcome-event, --horizon-days, --as-of: what counts as a campaign's
    outcome and when it is judged mature (campaigns report, uplift train)."""
    for option in reversed(
        (
            click.option(
                "--outcome-event",
                "outcome_events",
                multiple=True,
                metavar="TYPE",
                help="count an event of this type in the window as the outcome, "
                "instead of the target's label (repeatable; e.g. visit)",
            ),
            click.option(
                "--horizon-days",
                type=POSITIVE_INT,
                default=None,
                help="the outcome window (default: the target's horizon_days)",
            ),
            click.option(
                "--as-of",
                type=MOMENT,
                default=None,
                metavar="DATE",
                help="judge maturity at this moment (default: data.as_of, else now)",
            ),
        )
    ):
        f = option(f)
    return f


def naive_utc(moment: datetime | None) -> datetime | None:
    """A moment as naive UTC (the data views' convention)."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
