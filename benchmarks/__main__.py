"""`python -m benchmarks [SUITE] [options]`: the benchmarks, from the repo root.

benchmarks/ is not installed (it is never in the wheel nor in the Bento), so it
has its own entry point instead of a `propensity` subcommand. Suites:
`foundation` (the default: features vs hand-written SQL, scoring vs raw predict),
`features`, `batch`, `incremental`, `readout`, `spark`, `privacy`, `quality`,
`api`, `footprint`, `console`, `soak`, `uplift`. Each prints its table and writes
its JSON under --results (bench/results); `make bench*` run them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli.main import run
from core.exitcodes import ExitCode

POSITIVE_INT = click.IntRange(min=1)
WORKDIR = "bench/work"
RESULTS = "bench/results"
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


def _demo_options(
    customers: int = 200_000, workdir: str = WORKDIR
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--customers, --seed, --workdir, --results: every suite on demo data."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            (
                click.option(
                    "--customers",
                    type=POSITIVE_INT,
                    default=customers,
                    help="demo customers (about 100 events each)",
                ),
                click.option("--seed", type=int, default=0),
                click.option("--workdir", default=workdir, help="data and scratch"),
                click.option("--results", default=RESULTS, help="the JSON figures"),
            )
        ):
            f = option(f)
        return f

    return decorate


CUTOFFS = click.option(
    "--cutoffs", type=POSITIVE_INT, default=3, help="monthly feature cutoffs"
)
THREADS = click.option("--threads", type=POSITIVE_INT, default=2, help="DuckDB threads")
MEMORY_LIMIT = click.option("--memory-limit", default="1GB", help="DuckDB memory_limit")


@click.group(
    "benchmarks",
    invoke_without_command=True,
    context_settings=CONTEXT,
    help="The benchmarks (default suite: foundation).",
)
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.pass_context
def bench(ctx: click.Context, verbose: bool) -> ExitCode | None:
    """Set up logging; without a suite, run the foundation bench's defaults."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "mlflow.store", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if ctx.invoked_subcommand is None:
        return ctx.invoke(foundation)
    return None


@bench.command("foundation")
@_demo_options()
@CUTOFFS
def foundation(
    customers: int, seed: int, cutoffs: int, workdir: str, results: str
) -> ExitCode:
    """Features vs hand-written SQL, scoring vs raw booster.predict."""
    from benchmarks.harness import run_foundation

    run_foundation(
        customers=customers,
        seed=seed,
        cutoffs=cutoffs,
        workdir=Path(workdir),
        results=Path(results),
    )
    return ExitCode.OK


@bench.command("features")
@_demo_options()
@click.option(
    "--large-customers", type=POSITIVE_INT, default=1_000_000, help="the large job"
)
@CUTOFFS
@click.option(
    "--training-cutoffs",
    type=POSITIVE_INT,
    default=12,
    help="for the training-set job",
)
@click.option("--skip-large", is_flag=True, help="skip the large job")
@click.option(
    "--memory-limit",
    default="1GB",
    help="DuckDB memory_limit of the reference and training-set jobs",
)
@click.option("--large-memory-limit", default="1GB", help="DuckDB memory_limit, large")
@THREADS
def features(
    customers: int,
    seed: int,
    workdir: str,
    results: str,
    large_customers: int,
    cutoffs: int,
    training_cutoffs: int,
    skip_large: bool,
    memory_limit: str,
    large_memory_limit: str,
    threads: int,
) -> ExitCode:
    """Engine vs hand-written SQL: reference, training-set and large jobs."""
    from benchmarks.features import run_features

    run_features(
        customers=customers,
        large_customers=large_customers,
        seed=seed,
        workdir=Path(workdir),
        results=Path(results),
        cutoffs=cutoffs,
        training_cutoffs=training_cutoffs,
        skip_large=skip_large,
        memory_limit=memory_limit,
        large_memory_limit=large_memory_limit,
        threads=threads,
    )
    return ExitCode.OK


@bench.command("batch")
@_demo_options(customers=1_000_000)
@MEMORY_LIMIT
@THREADS
def batch(
    customers: int,
    seed: int,
    workdir: str,
    results: str,
    memory_limit: str,
    threads: int,
) -> ExitCode:
    """The nightly job end to end at scale: customers/s, scoring vs raw predict,
    reason codes, peak memory."""
    from benchmarks.batch import run_batch

    run_batch(
        customers=customers,
        seed=seed,
        workdir=Path(workdir),
        results=Path(results),
        memory_limit=memory_limit,
        threads=threads,
    )
    return ExitCode.OK


@bench.command("incremental")
@_demo_options(customers=1_000_000)
@MEMORY_LIMIT
@THREADS
@click.option(
    "--ingest-only",
    is_flag=True,
    help="only the real-time ingest part (benchmarks.ingest)",
)
@click.option(
    "--no-ingest", is_flag=True, help="only the nightly part (no ingest figures)"
)
@click.option(
    "--ingest-customers",
    type=int,
    default=20_000,
    show_default=True,
    help="customers of the trained project the ingest part serves",
)
@click.option(
    "--ingest-seconds",
    type=float,
    default=20.0,
    show_default=True,
    help="how long each ingest load runs",
)
@click.option(
    "--ingest-acknowledge",
    type=click.Choice(["logged", "applied"]),
    default="logged",
    show_default=True,
    help="ingest.acknowledge of the ingest run",
)
@click.option(
    "--ingest-nice",
    type=click.IntRange(0, 19),
    default=0,
    show_default=True,
    help="ingest.nice of the ingest run (the refreshes' niceness)",
)
@click.option(
    "--ingest-no-stream",
    is_flag=True,
    help="leave out the Redis Stream consumer part (POST /events alone)",
)
def incremental(
    customers: int,
    seed: int,
    workdir: str,
    results: str,
    memory_limit: str,
    threads: int,
    ingest_only: bool,
    no_ingest: bool,
    ingest_customers: int,
    ingest_seconds: float,
    ingest_acknowledge: str,
    ingest_nice: int,
    ingest_no_stream: bool,
) -> ExitCode:
    """The nightly feature step from the incremental state vs the full rebuild
    (one new day on the history), identical output, peak memory; then real-time
    ingest: POST /events and the Redis Stream consumer, freshness, predict_by_id
    under ingest."""
    from benchmarks.incremental import RESULTS_FILE, run_incremental

    if not ingest_only:
        run_incremental(
            customers=customers,
            seed=seed,
            workdir=Path(workdir),
            results=Path(results),
            memory_limit=memory_limit,
            threads=threads,
        )
    if not no_ingest:
        from benchmarks.ingest import format_table, merge_json, run_ingest

        figures = run_ingest(
            ingest_customers,
            seed,
            Path(workdir),
            seconds=ingest_seconds,
            acknowledge=ingest_acknowledge,
            nice=ingest_nice,
            stream=not ingest_no_stream,
        )
        print(format_table(figures))
        merge_json(Path(results) / RESULTS_FILE, figures)
    return ExitCode.OK


@bench.command("readout")
@_demo_options(customers=1_000_000)
@MEMORY_LIMIT
@THREADS
@click.option(
    "--data",
    default=None,
    help="folder of the real datasets, for Hillstrom (default: ../shared/data)",
)
@click.option("--skip-hillstrom", is_flag=True, help="only the readout at scale")
def readout(
    customers: int,
    seed: int,
    workdir: str,
    results: str,
    memory_limit: str,
    threads: int,
    data: str | None,
    skip_hillstrom: bool,
) -> ExitCode:
    """A campaign readout at scale vs hand-written SQL (time, peak memory), and
    the Hillstrom readouts and uplift comparison."""
    from benchmarks.readout import DATA, run_readout

    run_readout(
        customers=customers,
        seed=seed,
        workdir=Path(workdir),
        results=Path(results),
        data_dir=Path(data) if data else DATA,
        memory_limit=memory_limit,
        threads=threads,
        skip_hillstrom=skip_hillstrom,
    )
    return ExitCode.OK


@bench.command("spark")
@_demo_options()
@CUTOFFS
@THREADS
@click.option(
    "--spark-master", default="local[2]", help="Spark master URL, e.g. local[4]"
)
@click.option(
    "--sums",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="the per-customer sums after the shuffle: each Spark task with DuckDB, "
    "or Spark SQL (SparkDataset.build_features)",
)
def spark(
    customers: int,
    seed: int,
    workdir: str,
    results: str,
    cutoffs: int,
    threads: int,
    spark_master: str,
    sums: str,
) -> ExitCode:
    """The reference feature job and scoring: Spark (local) vs DuckDB and
    in-process."""
    from benchmarks.spark import run_spark

    run_spark(
        customers=customers,
        seed=seed,
        cutoffs=cutoffs,
        workdir=Path(workdir),
        results=Path(results),
        master=spark_master,
        threads=threads,
        sums=sums,
    )
    return ExitCode.OK


@bench.command("privacy")
@_demo_options()
@CUTOFFS
def privacy(
    customers: int, seed: int, cutoffs: int, workdir: str, results: str
) -> ExitCode:
    """Features with pseudonyms vs plain ids and hand-written SQL; forget vs a
    bare rewrite."""
    from benchmarks.privacy import run_privacy

    run_privacy(
        customers=customers,
        seed=seed,
        cutoffs=cutoffs,
        workdir=Path(workdir),
        results=Path(results),
    )
    return ExitCode.OK


@bench.command("quality")
@click.option(
    "--data",
    default=None,
    help="folder of the real datasets (default: ../shared/data from the project)",
)
@click.option("--workdir", default=f"{WORKDIR}/quality", help="scratch")
@click.option("--results", default=RESULTS, help="the JSON figures")
def quality(data: str | None, workdir: str, results: str) -> ExitCode:
    """Model quality on the real event logs (CDNOW, Online Retail) against
    recency, BG/NBD and the reference figures."""
    from benchmarks.quality import DATA, run_quality

    run_quality(
        data=Path(data) if data else DATA,
        workdir=Path(workdir),
        results=Path(results),
    )
    return ExitCode.OK


@bench.command("uplift")
@click.option(
    "--data",
    default=None,
    help="folder of the real datasets (default: ../shared/data from the project)",
)
@click.option("--results", default=RESULTS, help="the JSON figures")
def uplift(data: str | None, results: str) -> ExitCode:
    """Uplift on Hillstrom (visit, women's e-mail vs none): the T- and X-learner
    against rank by probability and random, over keyed-hash splits."""
    from benchmarks.uplift import DATA, run_uplift

    run_uplift(Path(data) if data else DATA, Path(results))
    return ExitCode.OK


@bench.command("api")
@_demo_options(customers=5000, workdir=f"{WORKDIR}/api")
@click.option(
    "--requests",
    type=POSITIVE_INT,
    default=2000,
    help="requests per 1-record figure (100-record figures: a quarter)",
)
def api(
    customers: int, seed: int, workdir: str, results: str, requests: int
) -> ExitCode:
    """A bounded load on a real `bentoml serve` of the API, beside a bare echo
    service and the in-process call."""
    from benchmarks.api import run_api

    run_api(
        customers=customers,
        seed=seed,
        requests=requests,
        workdir=Path(workdir),
        results=Path(results),
    )
    return ExitCode.OK


@bench.command("soak")
@_demo_options(customers=5000, workdir=f"{WORKDIR}/soak")
@click.option(
    "--seconds",
    type=click.FloatRange(min=10),
    default=600,
    envvar="SOAK_SECONDS",
    help="how long the measured load runs ($SOAK_SECONDS)",
)
@click.option("--rate", type=click.FloatRange(min=1), default=60.0, help="requests/s")
@click.option("--clients", type=POSITIVE_INT, default=8, help="client threads")
def soak(
    customers: int,
    seed: int,
    workdir: str,
    results: str,
    seconds: float,
    rate: float,
    clients: int,
) -> ExitCode:
    """A steady mixed load on every endpoint of a real `bentoml serve` (2
    workers) with the nightly run in the middle: errors, p99 drift, memory."""
    from benchmarks.soak import run_soak

    run_soak(
        seconds=seconds,
        rate=rate,
        clients=clients,
        customers=customers,
        seed=seed,
        workdir=Path(workdir),
        results=Path(results),
    )
    return ExitCode.OK


@bench.command("footprint")
@click.option("--customers", type=POSITIVE_INT, default=5000, help="demo customers")
@click.option("--workdir", default=f"{WORKDIR}/footprint", help="work folder")
@click.option("--results", default="bench/results", help="results folder")
def footprint(customers: int, workdir: str, results: str) -> ExitCode:
    """What serving weighs: a runtime venv of serving/requirements.txt, the API's
    import, a served Bento's worker, the Bento itself."""
    from benchmarks.footprint import run_footprint

    run_footprint(Path(workdir), customers, Path(results))
    return ExitCode.OK


@bench.command("console")
@click.option(
    "--customers", type=POSITIVE_INT, default=1_000_000, help="scored customers"
)
@click.option("--seed", type=int, default=0)
@click.option("--requests", type=POSITIVE_INT, default=50, help="requests per page")
@click.option("--workdir", default=WORKDIR, help="the laid-out base (kept)")
@click.option("--results", default=RESULTS, help="the JSON figures")
def console(
    customers: int, seed: int, requests: int, workdir: str, results: str
) -> ExitCode:
    """Each console page's server-side render time on a large scored base."""
    from benchmarks.console import run_console

    run_console(customers, seed, requests, Path(workdir), Path(results))
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """Run a suite on `argv`; return the exit code, with the errors and exit codes
    of `propensity` (cli.main.run)."""
    return run(bench, argv, "python -m benchmarks")


if __name__ == "__main__":
    sys.exit(main())
