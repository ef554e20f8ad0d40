"""`propensity ingest`: the Redis Stream consumer of real-time events
(serving.ingest.stream; docs/ingest.md)."""

from __future__ import annotations

import signal

import click

from cli.common import Options, pass_options
from core.exitcodes import ExitCode


@click.command("ingest")
@click.option("--stream", default=None, help="the stream (default: ingest.stream)")
@click.option(
    "--consumer",
    default=None,
    help="this consumer's name in the group; keep it across restarts so its "
    "pending entries are applied (default: <host>-ingest)",
)
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    metavar="SECONDS",
    help="stop after this long with no new entry (default: run until stopped)",
)
@pass_options
def ingest(
    options: Options, stream: str | None, consumer: str | None, idle_exit: float | None
) -> ExitCode | int:
    """Consume events from a Redis Stream in a consumer group: each read is
    checked by the data contract, appended to the event log the nightly run
    reads and applied to the customers' predict_by_id rows, then acknowledged
    (bad entries go to <stream>:rejected). SIGTERM or Ctrl-C stops it after the
    current read."""
    from serving.ingest.stream import Consumer

    _, config, _ = options.context()
    worker = Consumer(config, stream=stream, consumer=consumer)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    click.echo(
        f"consuming {worker.stream} as {worker.name} in group {worker.group}", err=True
    )
    try:
        totals = worker.run(lambda: bool(stopping), idle_exit_s=idle_exit)
    except KeyboardInterrupt:
        totals = worker.totals
    click.echo(
        f"read {totals.read}, applied {totals.accepted}, duplicates "
        f"{totals.duplicates}, rejected {totals.rejected}, suppressed "
        f"{totals.suppressed}, acknowledged {totals.acked}"
    )
    return ExitCode.OK


COMMANDS = (ingest,)
