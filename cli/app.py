"""`propensity`: one command, a subcommand per stage.

This is the wiring layer: it reads the config, opens the data, sets MLflow's URI
and calls into features/, training/ and serving/. Heavy imports (MLflow, LightGBM,
BentoML) happen inside the subcommands that need them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

from core.config import ConfigError, config_path, load_config
from features.sources.contract import ContractError

log = logging.getLogger("propensity")

# OpenMP threads that spin while idle (the default) fight each other when LightGBM,
# scikit-learn and DuckDB share two cores: a 0.3 s LightGBM fit took 2-30 s. Set
# before any of them loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _date(text: str) -> datetime:
    try:
        d = date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a date YYYY-MM-DD, got {text!r}"
        ) from exc
    return datetime(d.year, d.month, d.day)


def _moment(text: str) -> datetime:
    """A date or an ISO date-time (UTC unless it carries an offset)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM], got {text!r}"
        ) from exc


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _context(args: argparse.Namespace):
    path = config_path(args.config).resolve()
    config = load_config(path)
    return path, config, config.tracking_uri(path.parent)


def _load_data(config, args: argparse.Namespace):
    """The validated data on the engine the CLI (--engine) or the config chose."""
    from features.sources.load import connect, load_project

    ds = load_project(
        config, con=connect(config.engine.memory_limit, config.engine.threads)
    )
    if (args.engine or config.engine.kind) != "spark":
        return ds
    from features.sources.spark import load_spark, refuse_privacy, session

    refuse_privacy(config)

    spark = session(config.engine.spark, master=args.spark_master)
    return load_spark(
        spark,
        config.data.events,
        config.data.customers,
        fmt=config.data.format,
        validated=ds,
    )


def cmd_demo_data(args: argparse.Namespace) -> int:
    from features.synthetic.demo import generate

    summary = generate(
        args.out,
        customers=args.customers,
        seed=args.seed,
        start=args.start,
        days=args.days,
        events_per_customer=args.events_per_customer,
        subscriptions=args.subscriptions,
    )
    print(
        f"wrote {summary.events:,} events for {summary.customers:,} customers "
        f"({summary.start:%Y-%m-%d} .. {summary.end:%Y-%m-%d}) to {args.out}"
    )
    if summary.subscriptions_path is not None:
        print(f"wrote subscription terms to {summary.subscriptions_path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from features.sources import adapters

    out = Path(args.out)
    src = Path(args.source)
    if args.dataset == "cdnow":
        events, customers = adapters.cdnow(src), None
    else:
        events = adapters.online_retail(src)
        customers = adapters.online_retail_customers(src)
    adapters.write_contract(events, out / "events.parquet")
    if customers is not None:
        adapters.write_contract(customers, out / "customers.parquet")
    roles = adapters.ROLES[args.dataset.replace("-", "_")].model_dump()
    print(f"wrote {events.num_rows:,} events to {out / 'events.parquet'}")
    print("roles for the config:")
    for role, types in roles.items():
        print(f"  {role}: {types}")
    return 0


def cmd_features_list(args: argparse.Namespace) -> int:
    from features.definition import FeatureSpec, catalogue

    _, config, _ = _context(args)
    customers = None
    if config.data.customers is not None:
        from features.sources.load import load_customers

        customers = load_customers(config.data.customers, fmt=config.data.format)
    cat = catalogue(FeatureSpec.from_config(config), customers)
    print(f"{'name':34} {'role':16} {'window':>6}  description")
    for f in cat.features:
        window = f"{f.window_days}d" if f.window_days else ""
        print(f"{f.name:34} {f.role or '':16} {window:>6}  {f.description}")
    print(f"\n{len(cat.features)} features, feature-set version {cat.version()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import train_all

    _, config, uri = _context(args)
    ds = _load_data(config, args)
    results = train_all(config, ds, uri)
    print(f"MLflow: {uri}")
    print(
        f"{'target':16} {'version':>7} {'origins':>23} {'AUC':>7} {'logloss':>8} "
        f"{'ECE cal':>7} {'calib':>8}  baselines AUC"
    )
    for r in results:
        m = r.metrics
        bases = ", ".join(
            f"{name} {values['roc_auc_mean']:.4f}"
            for name, values in r.baselines.items()
        )
        print(
            f"{r.target:16} {r.version:>7} "
            f"{r.origins[0]:%Y-%m-%d}..{r.origins[-1]:%Y-%m-%d} "
            f"{m['backtest_roc_auc_mean']:7.4f} {m['backtest_log_loss_mean']:8.4f} "
            f"{m.get('calibrated_ece_mean', float('nan')):7.4f} "
            f"{r.calibration:>8}  {bases}"
        )
        verdict = "champion" if r.decision.promote else "challenger"
        print(f"  -> {verdict}: {r.decision.reason}")
    return 0


def _client(args: argparse.Namespace):
    from mlflow.tracking import MlflowClient

    from model.registry import configure

    _, config, uri = _context(args)
    configure(uri)
    return config, MlflowClient(uri, uri)


def cmd_runs(args: argparse.Namespace) -> int:
    from training import runs

    config, client = _client(args)
    if args.runs_command == "compare":
        print(runs.compare(client, args.a, args.b).text())
    elif args.runs_command == "history":
        from training.promote import champion_at, history

        name = config.model_name(args.target)
        moves = history(client, config.mlflow.experiment, name)
        print(runs.format_history(moves))
        if args.at is not None:
            holder = champion_at(moves, args.at)
            print(
                f"\n{name} champion at {args.at.isoformat()}: "
                f"{'v' + holder if holder else 'none'}"
            )
    else:
        rows = runs.table(client, config, args.target, args.limit)
        print(runs.format_table(rows) if rows else "no model runs yet: train first")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from training import runs

    config, client = _client(args)
    moved, text = runs.promote(
        client, config, args.target, args.version, args.force, args.reason
    )
    print(text)
    return 0 if moved else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from training import runs

    config, client = _client(args)
    print(runs.rollback(client, config, args.target, args.reason))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna

    from training.tune import ARTIFACT, tune

    _, config, uri = _context(args)
    ds = _load_data(config, args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tune logs each trial
    r = tune(config, ds, uri, args.target, args.trials, args.timeout, args.seed)
    print(f"MLflow: {uri}, run {r.run_name} ({r.run_id})")
    print(f"{r.target}: {r.trials} trials, mean backtest log loss")
    print(f"  {'config params (trial 0)':26} {r.baseline:.5f}")
    if r.best_trial == 0:
        print("  no trial beat the config's params: keep them")
    else:
        print(
            f"  {f'best (trial {r.best_trial})':26} {r.best:.5f}, "
            f"{r.improvement:.5f} lower ({r.improvement / r.baseline:.1%})"
        )
    print("best params: " + ", ".join(f"{k}={v:.6g}" for k, v in r.best_params.items()))
    print(f"\npaste under training.lightgbm (artifact {ARTIFACT} of the run):")
    print(r.snippet, end="")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    if args.score_command == "status":
        return cmd_score_status(args)
    from core.atomic import Busy
    from model.registry import configure
    from serving.batch.nightly import record_failure, run_nightly
    from serving.batch.score import default_as_of
    from serving.scoring import Champions

    _, config, uri = _context(args)
    try:
        ds = _load_data(config, args)
        configure(uri)
        champions = Champions.load(config, uri)
    except Exception as exc:  # the status says why nothing ran, then as usual
        code = 2 if isinstance(exc, ContractError) else 1
        record_failure(config.scoring.output, str(exc), code, tracking_uri=uri)
        raise
    as_of = args.as_of or default_as_of(ds)
    try:
        r = run_nightly(config, ds, champions, as_of, uri)
    except Busy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    s = r.score
    print(f"scored {s.rows:,} customers as of {as_of:%Y-%m-%d} -> {s.path}")
    print(
        "skipped: "
        + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in s.skipped.items())
    )
    print(f"MLflow run {r.run_id}; drift report {r.drift_dir}: {r.drift['level']}")
    if r.sink_rows is not None:
        print(f"Postgres: {r.sink_rows:,} rows upserted")
    if r.sink_error:
        print(f"error: Postgres sink failed: {r.sink_error}", file=sys.stderr)
    if r.drift["alerts"]:
        print(
            "drift alert (PSI >= "
            f"{config.scoring.drift.alert}): {', '.join(r.drift['alerts'])}",
            file=sys.stderr,
        )
    return r.exit_code


def cmd_score_status(args: argparse.Namespace) -> int:
    """Print the last run's status file; exit with its exit code (1 when it
    failed or was interrupted, 5 while it runs, 6 when there is none)."""
    import json

    from serving.batch.nightly import read_status

    _, config, _ = _context(args)
    status = read_status(config.scoring.output)
    if status is None:
        print(f"no scoring run recorded under {config.scoring.output}")
        return 6
    print(json.dumps(status, indent=2))
    if status["state"] == "running":
        return 5
    if status["state"] == "finished":
        return int(status["exit_code"])
    return 1


def cmd_serve(args: argparse.Namespace) -> int:
    from model.registry import configure
    from serving.api.auth import keyring_from_config
    from serving.scoring import Champions

    path, config, uri = _context(args)
    keyring_from_config(config.api)  # no key configured: fail here, saying how
    configure(uri)
    champions = Champions.load(
        config, uri
    )  # fail here, clearly, before starting a server
    log.info("champions: %s", champions.versions)
    from serving.api.servers import with_workers

    env = {**os.environ, "PROPENSITY_CONFIG": str(path), "MLFLOW_TRACKING_URI": uri}
    env = with_workers(env, "propensity", config.api.workers)
    cmd = [
        _bin("bentoml"),
        "serve",
        "serving.api.service:Propensity",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(
        f"serving on http://{args.host}:{args.port} with {config.api.workers} "
        "worker(s) (docs at /docs)",
        flush=True,
    )
    return subprocess.call(cmd, env=env)


def _keys_file(args: argparse.Namespace) -> Path:
    path, config, _ = _context(args)
    if config.api.keys_file is None:
        raise ConfigError(
            f"{path}: api.keys_file is not set; add e.g. "
            "`api: {keys_file: api-keys.txt}` (relative to the config)"
        )
    return config.api.keys_file


def cmd_bento(args: argparse.Namespace) -> int:
    from model.registry import configure
    from serving.api import bento

    _, config, uri = _context(args)
    configure(uri)
    for tag in bento.import_champions(config, uri):
        print(f"champion in the BentoML model store: {tag}")
    if args.import_only:
        return 0
    tag = bento.build(args.version)
    print(f"built Bento {tag}; serve it with `bentoml serve {tag}`")
    return 0


def cmd_api_key(args: argparse.Namespace) -> int:
    from serving.api.auth import (
        SCOPES,
        add_key,
        parse_scopes,
        read_key_file,
        remove_key,
    )

    path = _keys_file(args)
    if args.api_key_command == "new":
        scopes = parse_scopes(args.scopes, "--scopes")
        key = add_key(path, args.name, scopes)
        print(key)
        print(
            f"added key {args.name!r} ({', '.join(s for s in SCOPES if s in scopes)}) "
            f"to {path}; the key is shown only now: give it to the client (header "
            "`Authorization: Bearer <key>`)",
            file=sys.stderr,
        )
    elif args.api_key_command == "revoke":
        remove_key(path, args.name)
        print(f"revoked key {args.name!r} in {path}", file=sys.stderr)
    else:
        for key in read_key_file(path) if path.exists() else []:
            print(f"{key.name}\t{','.join(s for s in SCOPES if s in key.scopes)}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from serving.privacy.forget import forget, read_ids_file

    _, config, _ = _context(args)
    ids = list(args.customer_id or [])
    for path in args.file or []:
        ids += read_ids_file(path)
    if not ids:
        print("error: give --customer-id ID or --file PATH", file=sys.stderr)
        return 2
    erasure = forget(config, ids)
    for place, by_id in sorted(erasure.removed.items()):
        print(f"{place}: {sum(by_id.values()):,} row(s) removed")
    print(
        f"forgot {len(erasure.customers):,} customer(s): {erasure.rows():,} row(s) "
        f"removed; on the suppression list of {config.privacy.dir}"
    )
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from serving.privacy.retention import prune_contacts, prune_scores
    from training.dataset import prune_snapshots

    _, config, _ = _context(args)
    days = config.privacy.retention_days
    if days is None:
        print("privacy.retention_days is not set: nothing is deleted")
        return 0
    removed = prune_scores(config.scoring.output, days)
    if config.training.snapshot_dir is not None:
        removed += prune_snapshots(config.training.snapshot_dir, days)
    for path in removed:
        print(f"deleted {path}")
    print(f"{len(removed)} output(s) older than {days} days deleted")
    print(f"{prune_contacts(config):,} contact log row(s) deleted")
    return 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    from features.sources.privacy import pseudonymiser

    _, config, _ = _context(args)
    pseudonyms = pseudonymiser(config.privacy)
    for customer_id in args.customer_id:
        print(f"{customer_id}\t{pseudonyms.one(customer_id)}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    _, _, uri = _context(args)
    if uri.startswith(("http://", "https://")):
        # team mode: the tracking server is the UI; `mlflow ui` cannot open it
        print(f"MLflow UI: {uri} (the tracking server serves it)")
        return 0
    cmd = [
        _bin("mlflow"),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    print(f"MLflow UI on http://{args.host}:{args.port} for {uri}", flush=True)
    return subprocess.call(cmd)


def _bench_on_demo(run, args: argparse.Namespace) -> int:
    """A benchmark taking the demo data's size, seed and cutoffs."""
    run(
        customers=args.customers,
        seed=args.seed,
        cutoffs=args.cutoffs,
        workdir=Path(args.workdir),
        results=Path(args.results),
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.harness import run_foundation

    return _bench_on_demo(run_foundation, args)


def cmd_bench_features(args: argparse.Namespace) -> int:
    from benchmarks.features import run_features

    run_features(
        customers=args.customers,
        large_customers=args.large_customers,
        seed=args.seed,
        workdir=Path(args.workdir),
        results=Path(args.results),
        cutoffs=args.cutoffs,
        training_cutoffs=args.training_cutoffs,
        skip_large=args.skip_large,
        memory_limit=args.memory_limit,
        large_memory_limit=args.large_memory_limit,
        threads=args.threads,
    )
    return 0


def cmd_bench_batch(args: argparse.Namespace) -> int:
    from benchmarks.batch import run_batch

    run_batch(
        customers=args.customers,
        seed=args.seed,
        workdir=Path(args.workdir),
        results=Path(args.results),
        memory_limit=args.memory_limit,
        threads=args.threads,
    )
    return 0


def cmd_bench_privacy(args: argparse.Namespace) -> int:
    from benchmarks.privacy import run_privacy

    return _bench_on_demo(run_privacy, args)


def cmd_bench_spark(args: argparse.Namespace) -> int:
    from benchmarks.spark import run_spark

    run_spark(
        customers=args.customers,
        seed=args.seed,
        cutoffs=args.cutoffs,
        workdir=Path(args.workdir),
        results=Path(args.results),
        master=args.spark_master or "local[2]",
        threads=args.threads,
    )
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    from benchmarks.quality import DATA, run_quality

    run_quality(
        data=Path(args.data) if args.data else DATA,
        workdir=Path(args.workdir),
        results=Path(args.results),
    )
    return 0


def cmd_bench_api(args: argparse.Namespace) -> int:
    from benchmarks.api import run_api

    run_api(
        customers=args.customers,
        seed=args.seed,
        requests=args.requests,
        workdir=Path(args.workdir),
        results=Path(args.results),
    )
    return 0


def _bin(name: str) -> str:
    """An executable next to this Python (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="propensity", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--config",
        help="config file (default: $PROPENSITY_CONFIG or ./propensity.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--engine",
        choices=["duckdb", "spark"],
        default=None,
        help="what builds features and training sets and scores (default: the "
        "config's engine.kind, duckdb)",
    )
    parser.add_argument(
        "--spark-master",
        default=None,
        help="Spark master URL for --engine spark, e.g. local[4], spark://host:7077, "
        "yarn (default: engine.spark.master, then Spark's own environment: local)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo-data", help="generate a synthetic usage history (Parquet)")
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/demo")
    p.add_argument("--start", default="2024-01-01", help="first day (YYYY-MM-DD)")
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--events-per-customer", type=float, default=100.0)
    p.add_argument(
        "--subscriptions",
        action="store_true",
        help="also write subscriptions.parquet (churn then happens at term ends)",
    )
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("import", help="turn a real dataset into the data contract")
    p.add_argument("dataset", choices=["cdnow", "online-retail"])
    p.add_argument(
        "source", help="CDNOW_master.txt, CDNOW_sample.txt or online_retail.parquet"
    )
    p.add_argument(
        "--out", required=True, help="folder for events.parquet (+ customers)"
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("features", help="the feature catalogue")
    fsub = p.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    fsub.add_parser(
        "list", help="print name, role, window and description"
    ).set_defaults(func=cmd_features_list)

    sub.add_parser(
        "train", help="build features and labels, train, track, register, promote"
    ).set_defaults(func=cmd_train)

    _add_runs(sub)
    _add_tune(sub)

    p = sub.add_parser("score", help="score every eligible customer as of a date")
    p.add_argument(
        "--as-of",
        type=_date,
        default=None,
        help="cutoff date; events before it count "
        "(default: the day after the last event)",
    )
    p.set_defaults(func=cmd_score, score_command=None)
    ssub = p.add_subparsers(dest="score_command", metavar="ACTION")
    ssub.add_parser(
        "status",
        help="the last run's status (exit code: the run's, 5 running, 6 none)",
    ).set_defaults(func=cmd_score)

    p = sub.add_parser("serve", help="serve the champions over HTTP with BentoML")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_serve)

    _add_api_key(sub)
    _add_privacy(sub)

    p = sub.add_parser(
        "bento",
        help="import the champions into the BentoML model store and `bentoml build` "
        "a Bento pinning them (bentofile.yaml)",
    )
    p.add_argument("--version", default=None, help="the Bento's version tag")
    p.add_argument(
        "--import-only", action="store_true", help="import the models, build nothing"
    )
    p.set_defaults(func=cmd_bento)
    p = sub.add_parser("ui", help="the MLflow UI on the tracking store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser(
        "bench",
        help="foundation benchmark: features vs SQL, scoring vs raw predict "
        "(`bench features`: the features benchmark)",
    )
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cutoffs", type=int, default=3)
    p.add_argument("--workdir", default="bench/work")
    p.add_argument("--results", default="bench/results")
    p.set_defaults(func=cmd_bench)
    suites = p.add_subparsers(dest="suite", metavar="SUITE")
    _add_bench_features(suites)
    _add_bench_quality(suites)
    _add_bench_api(suites)
    _add_bench_batch(suites)
    _add_bench_spark(suites)
    return parser


def _add_runs(sub: argparse._SubParsersAction) -> None:
    from features.columns import TARGETS

    p = sub.add_parser(
        "runs", help="recent runs per target with metrics, baselines and champions"
    )
    p.add_argument("--target", choices=TARGETS)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_runs, runs_command=None)
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION")
    c = rsub.add_parser(
        "compare", help="metric differences per origin and parameter differences"
    )
    c.add_argument("a", help="run id, NAME/VERSION or models:/NAME/VERSION")
    c.add_argument("b", help="run id, NAME/VERSION or models:/NAME/VERSION")
    c.set_defaults(func=cmd_runs)
    h = rsub.add_parser("history", help="every move of the champion alias")
    h.add_argument("target", choices=TARGETS)
    h.add_argument(
        "--at",
        type=_moment,
        default=None,
        help="which version was champion then (a date or ISO date-time, UTC)",
    )
    h.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "promote", help="make a version champion through the gate (or --force)"
    )
    p.add_argument("target", choices=TARGETS)
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="override the gate")
    p.add_argument("--reason", help="why (required with --force); recorded")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", help="move champion back to the previous one")
    p.add_argument("target", choices=TARGETS)
    p.add_argument("--reason", help="why; recorded")
    p.set_defaults(func=cmd_rollback)


def _add_api_key(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "api-key", help="create, list or revoke API keys in the config's api.keys_file"
    )
    ksub = p.add_subparsers(dest="api_key_command", required=True, metavar="ACTION")
    n = ksub.add_parser(
        "new", help="generate a key, print it once, store only its salted hash"
    )
    n.add_argument("--name", required=True, help="who holds it, e.g. crm-2026-11")
    n.add_argument(
        "--scopes",
        default="score",
        help="what it may call, comma-separated: score (predict, predict_by_id, "
        "explain), outreach, admin (metadata, forget); default score",
    )
    ksub.add_parser("list", help="the names of the keys in the file")
    r = ksub.add_parser("revoke", help="remove a key's line from the file")
    r.add_argument("name")
    p.set_defaults(func=cmd_api_key)


def _add_privacy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "forget",
        help="remove customers from the online store, scores and training "
        "snapshots, and suppress them in every later run",
    )
    p.add_argument(
        "--customer-id", action="append", metavar="ID", help="an id (repeatable)"
    )
    p.add_argument(
        "--file", action="append", type=Path, help="a file of ids, one per line"
    )
    p.set_defaults(func=cmd_forget)
    p = sub.add_parser(
        "retention",
        help="delete score outputs and training snapshots older than "
        "privacy.retention_days",
    )
    p.set_defaults(func=cmd_retention)
    p = sub.add_parser(
        "pseudonym",
        help="print the stored form (pseudonym) of customer ids, to join outputs",
    )
    p.add_argument("customer_id", nargs="+")
    p.set_defaults(func=cmd_pseudonym)


def _add_tune(sub: argparse._SubParsersAction) -> None:
    from features.columns import TARGETS

    p = sub.add_parser(
        "tune",
        help="search LightGBM params for a target on the backtest origins "
        "(registers nothing)",
    )
    p.add_argument("--target", required=True, choices=TARGETS)
    p.add_argument("--trials", required=True, type=_positive_int, help="at most N")
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="start no trial after this many seconds of search",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="the sampler's seed (default: training.lightgbm.seed)",
    )
    p.set_defaults(func=cmd_tune)


def _add_bench_features(suites: argparse._SubParsersAction) -> None:
    p = suites.add_parser(
        "features",
        help="engine vs hand-written SQL: reference, training-set and large jobs",
    )
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument(
        "--large-customers", type=int, default=1_000_000, help="for the large job"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cutoffs", type=int, default=3)
    p.add_argument(
        "--training-cutoffs", type=int, default=12, help="for the training-set job"
    )
    p.add_argument("--skip-large", action="store_true", help="skip the large job")
    p.add_argument(
        "--memory-limit",
        default="1GB",
        help="DuckDB memory_limit of the reference and training-set jobs",
    )
    p.add_argument(
        "--large-memory-limit", default="1GB", help="DuckDB memory_limit, large job"
    )
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--workdir", default="bench/work")
    p.add_argument("--results", default="bench/results")
    p.set_defaults(func=cmd_bench_features)


def _add_bench_spark(suites: argparse._SubParsersAction) -> None:
    p = suites.add_parser(
        "privacy",
        help="features with pseudonyms vs plain ids and hand-written SQL; forget "
        "vs a bare rewrite",
    )
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cutoffs", type=int, default=3)
    p.add_argument("--workdir", default="bench/work")
    p.add_argument("--results", default="bench/results")
    p.set_defaults(func=cmd_bench_privacy)

    p = suites.add_parser(
        "spark",
        help="the reference feature job and scoring: Spark local (--spark-master, "
        "default local[2]) vs DuckDB and in-process",
    )
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cutoffs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--workdir", default="bench/work")
    p.add_argument("--results", default="bench/results")
    p.set_defaults(func=cmd_bench_spark)


def _add_bench_batch(suites: argparse._SubParsersAction) -> None:
    p = suites.add_parser(
        "batch",
        help="the nightly job end to end at scale: customers/s, scoring vs raw "
        "predict, reason codes, peak memory",
    )
    p.add_argument(
        "--customers",
        type=_positive_int,
        default=1_000_000,
        help="demo customers (about 100 events each; default 1,000,000)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--workdir", default="bench/work")
    p.add_argument("--results", default="bench/results")
    p.set_defaults(func=cmd_bench_batch)


def _add_bench_quality(suites: argparse._SubParsersAction) -> None:
    p = suites.add_parser(
        "quality",
        help="model quality on the real event logs (CDNOW, Online Retail) against "
        "recency, BG/NBD and the reference figures",
    )
    p.add_argument(
        "--data",
        default=None,
        help="folder of the real datasets (default: ../shared/data from the project)",
    )
    p.add_argument("--workdir", default="bench/work/quality")
    p.add_argument("--results", default="bench/results")
    p.set_defaults(func=cmd_bench_quality)


def _add_bench_api(suites: argparse._SubParsersAction) -> None:
    p = suites.add_parser(
        "api",
        help="a bounded load on a real `bentoml serve` of the API, beside a bare "
        "echo service and the in-process call",
    )
    p.add_argument("--customers", type=int, default=5000, help="demo customers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--requests",
        type=_positive_int,
        default=2000,
        help="requests per 1-record figure (100-record figures: a quarter)",
    )
    p.add_argument("--workdir", default="bench/work/api")
    p.add_argument("--results", default="bench/results")
    p.set_defaults(func=cmd_bench_api)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "mlflow.store", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (ConfigError, ContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from serving.scoring import NoChampionError

        if isinstance(exc, NoChampionError | ValueError):  # incl. RunsError
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
