"""API benchmark: a bounded load against a real `bentoml serve` of the service.

Not a test: `make bench-api` (`python -m benchmarks api`) trains the champions on
seeded demo data (once per work folder), runs the nightly job for the online
store, then serves both the service and a bare BentoML service that only echoes
(`benchmarks.echo_service`). Each is sent the same fixed number of requests, 1 and 100
records, from 1 and from 8 concurrent clients (threads with keep-alive
connections, bodies encoded once beforehand). It prints p50, p99 and throughput
beside the bare service and beside the in-process call of the same code path,
and writes `bench/results/api.json` (keys carry their units).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import yaml

from benchmarks.harness import write_json
from core.config import load_config
from core.exitcodes import ExitCode
from serving.api.servers import ROOT, start_service, stop, wait_ready, with_workers

log = logging.getLogger(__name__)

RESULTS_FILE = "api.json"
API_KEY = "bench-api-key-2f8c41d9e07b"
OUTREACH_KEY = "bench-outreach-key-5a1e93c2"
CLIENTS = 8
GOALS = {
    "predict_1_seq_p50_ms": ("<=", 2.0),
    "predict_1_c8_p99_ms": ("<=", 25.0),
    "predict_1_c8_rps": (">=", 500.0),
    "by_id_vs_predict_ratio": ("<=", 1.3),
    "explain_100_ms": ("<", 50.0),
}


@dataclass(frozen=True)
class Load:
    """Latencies (ms) of a fixed number of requests and the wall time they took."""

    latencies_ms: list[float]
    seconds: float

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.latencies_ms, 99))

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds


def run_load(
    url: str,
    body: bytes,
    clients: int,
    requests_each: int,
    warmup: int = 20,
    key: str = API_KEY,
) -> Load:
    """`clients` threads, each posting `body` `requests_each` times after a
    warm-up; a non-200 answer stops the bench (a fast error is no figure)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start_gate = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        with httpx.Client(headers=headers, timeout=60) as http:
            for _ in range(warmup):
                http.post(url, content=body)
            start_gate.wait()
            for _ in range(requests_each):
                t0 = time.perf_counter()
                r = http.post(url, content=body)
                latencies[i].append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    errors.append(f"{url}: {r.status_code} {r.text[:300]}")
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(errors[0])
    return Load([x for per in latencies for x in per], seconds)


def median_ms(job: Callable[[], object], repetitions: int = 200) -> float:
    times = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        job()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# -- the project the bench serves ---------------------------------------------


def prepare(workdir: Path, customers: int, seed: int) -> Path:
    """Demo data, a config, trained champions and the online store in `workdir`
    (reused by later runs with the same size and seed); the config's path."""
    from features.synthetic.demo import generate

    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"data-{customers}-{seed}"
    if not (data / "events.parquet").exists():
        generate(data, customers=customers, seed=seed)
    config = yaml.safe_load((ROOT / "propensity.yaml").read_text())
    config["data"] = {
        "events": str(data / "events.parquet"),
        "customers": str(data / "customers.parquet"),
        "as_of": None,
    }
    config["mlflow"].update(
        tracking_uri=f"sqlite:///{workdir / f'mlruns-{customers}-{seed}.db'}",
        experiment="bench-api",
    )
    config["scoring"]["output"] = str(workdir / "scores")
    config["online_store"] = {"path": str(workdir / "online" / "store.sqlite")}
    config["api"].update(keys_file=None, require_keys=True)
    path = workdir / "propensity.yaml"
    path.write_text(yaml.safe_dump(config))
    env = bench_env(path)
    trained = workdir / f".trained-{customers}-{seed}"
    if not trained.exists():
        _cli(["train"], env)
        trained.touch()
    _cli(
        ["score"], env, ok=(ExitCode.OK, ExitCode.DRIFT_ALERT)
    )  # drift: scores are written
    return path


def bench_env(config: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PROPENSITY_CONFIG": str(config),
        "PROPENSITY_API_KEYS": API_KEY,
        "PROPENSITY_OUTREACH_KEY": OUTREACH_KEY,
        "BENTOML_DO_NOT_TRACK": "True",
        "DO_NOT_TRACK": "1",
        "OMP_WAIT_POLICY": "passive",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _cli(
    args: list[str], env: dict[str, str], ok: tuple[int, ...] = (ExitCode.OK,)
) -> None:
    cmd = [str(Path(sys.executable).parent / "propensity"), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def sample_requests(config: Path, n: int = 100) -> tuple[list[dict], list[str]]:
    """n customer ids the online store holds (from the nightly output of its
    date), and their features as the records a marketing system would send."""
    import pyarrow.parquet as pq

    from serving.online_store.sqlite import SqliteStore

    loaded = load_config(config)
    store = SqliteStore(loaded.online_store.path)
    scored = loaded.scoring.output / f"as_of={store.meta().as_of}"
    ids = sorted(
        pq.read_table(scored, columns=["customer_id"])["customer_id"].to_pylist()
    )
    ids = ids[:n]
    found = store.lookup(ids)
    if len(found) < n:
        raise RuntimeError(f"the online store holds fewer than {n} customers")
    return [{"customer_id": c, "features": found[c].record} for c in ids], ids


def request_bodies(records: list[dict], ids: list[str]) -> dict[str, bytes]:
    """Every request body of the bench, JSON-encoded once."""
    bodies = {
        "predict_1": {"customers": records[:1]},
        "predict_100": {"customers": records},
        "by_id_1": {"customer_ids": ids[:1]},
        "by_id_100": {"customer_ids": ids},
        "explain_100": {"customers": records, "target": "churn"},
        "bare_1": {"customers": [r["features"] for r in records[:1]]},
        "bare_100": {"customers": [r["features"] for r in records]},
    }
    return {k: json.dumps(v).encode() for k, v in bodies.items()}


def ratios(out: dict[str, float]) -> dict[str, float]:
    """The figures compared: predict_by_id against predict, ours against bare."""
    return {
        "by_id_vs_predict_ratio": out["by_id_1_seq_p50_ms"]
        / out["predict_1_seq_p50_ms"],
        "predict_vs_bare_1_seq_p50_ratio": out["predict_1_seq_p50_ms"]
        / out["bare_1_seq_p50_ms"],
    }


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def in_process(config: Path, records: list[dict]) -> dict[str, float]:
    """The same endpoint code, called in this process without HTTP."""
    from serving.api.service import CustomerFeatures, Propensity

    with _environ(PROPENSITY_CONFIG=str(config), PROPENSITY_API_KEYS=API_KEY):
        service = Propensity.inner()
    one = [CustomerFeatures.model_validate(r) for r in records[:1]]
    hundred = [CustomerFeatures.model_validate(r) for r in records]
    return {
        "inprocess_1_ms": median_ms(
            lambda: service.predict(
                [CustomerFeatures.model_validate(r) for r in records[:1]]
            )
        ),
        "inprocess_100_ms": median_ms(lambda: service.predict(hundred), 50),
        "inprocess_explain_100_ms": median_ms(
            lambda: service.explain(hundred, "churn"), 20
        ),
        "inprocess_explain_1_ms": median_ms(lambda: service.explain(one, "churn"), 50),
    }


def run_api(
    customers: int, seed: int, requests: int, workdir: Path, results: Path
) -> dict[str, float]:
    workdir, results = Path(workdir).resolve(), Path(results)
    t0 = time.perf_counter()
    config = prepare(workdir, customers, seed)
    print(
        f"prepared {customers:,} demo customers in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    records, ids = sample_requests(config)
    encoded = request_bodies(records, ids)
    env = bench_env(config)
    out: dict[str, float] = {"customers": float(customers), "requests": float(requests)}
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    workers = load_config(config).api.workers  # both services alike
    out["workers"] = float(workers)
    for name, service, bento_name in [
        ("ours", "serving.api.service:Propensity", "propensity"),
        ("bare", "benchmarks.echo_service:Bare", "bare"),
    ]:
        log_path = logs / f"{name}.log"
        url, process = start_service(
            service, with_workers(env, bento_name, workers), log_path
        )
        try:
            wait_ready(url, process, log_path, deadline_s=180)
            out.update(measure(name, url, encoded, requests))
        finally:
            stop(process)
    out.update(in_process(config, records))
    out.update(ratios(out))
    print(format_table(out))
    write_json(results / RESULTS_FILE, out)
    print(f"figures written to {results / RESULTS_FILE}")
    return out


def measure(
    name: str, url: str, encoded: dict[str, bytes], requests: int, key: str = API_KEY
) -> dict[str, float]:
    """The figures of one server: `ours` (every endpoint) or `bare`."""
    out: dict[str, float] = {}
    if name == "bare":
        plan = [("bare_1", "/predict", "bare_1"), ("bare_100", "/predict", "bare_100")]
    else:
        plan = [
            ("predict_1", "/predict", "predict_1"),
            ("predict_100", "/predict", "predict_100"),
            ("by_id_1", "/predict_by_id", "by_id_1"),
            ("by_id_100", "/predict_by_id", "by_id_100"),
        ]
    for figure, path, body in plan:
        scale = 1 if figure.endswith("_1") else 4  # 100 records: fewer requests
        n = max(requests // scale, 2)
        seq = run_load(url + path, encoded[body], 1, n, key=key)
        c8 = run_load(url + path, encoded[body], CLIENTS, max(n // 2, 1), key=key)
        out[f"{figure}_seq_p50_ms"] = seq.p50
        out[f"{figure}_seq_p99_ms"] = seq.p99
        out[f"{figure}_c8_p50_ms"] = c8.p50
        out[f"{figure}_c8_p99_ms"] = c8.p99
        out[f"{figure}_c8_rps"] = c8.rps
        print(
            f"  {figure:<12} seq p50 {seq.p50:6.2f} ms  p99 {seq.p99:6.2f} ms | "
            f"8 clients p50 {c8.p50:6.2f} ms  p99 {c8.p99:6.2f} ms  "
            f"{c8.rps:6.0f} req/s",
            flush=True,
        )
    if name == "ours":
        explain = run_load(
            url + "/explain", encoded["explain_100"], 1, max(requests // 40, 5), key=key
        )
        out["explain_100_ms"] = explain.p50
        out["explain_100_p99_ms"] = explain.p99
        print(f"  explain_100  seq p50 {explain.p50:6.2f} ms", flush=True)
    return out


def format_table(r: dict[str, float]) -> str:
    def goal(key: str) -> str:
        if key not in GOALS:
            return ""
        op, value = GOALS[key]
        met = (
            r[key] <= value
            if op == "<="
            else (r[key] >= value if op == ">=" else r[key] < value)
        )
        return f"goal {op} {value:g}: {'met' if met else 'NOT met'}"

    rows = [
        (
            "predict 1 record, sequential p50",
            "predict_1_seq_p50_ms",
            "ms",
            f"bare {r['bare_1_seq_p50_ms']:.2f} ms; "
            f"in-process {r['inprocess_1_ms']:.3f} ms",
        ),
        (
            "predict 1 record, 8 clients p99",
            "predict_1_c8_p99_ms",
            "ms",
            f"bare {r['bare_1_c8_p99_ms']:.2f} ms",
        ),
        (
            "predict 1 record, 8 clients",
            "predict_1_c8_rps",
            "req/s",
            f"bare {r['bare_1_c8_rps']:.0f} req/s",
        ),
        (
            "predict 100 records, sequential p50",
            "predict_100_seq_p50_ms",
            "ms",
            f"bare {r['bare_100_seq_p50_ms']:.2f} ms; "
            f"in-process {r['inprocess_100_ms']:.2f} ms",
        ),
        (
            "predict 100 records, 8 clients",
            "predict_100_c8_rps",
            "req/s",
            f"bare {r['bare_100_c8_rps']:.0f} req/s",
        ),
        (
            "predict_by_id 1 id, sequential p50",
            "by_id_1_seq_p50_ms",
            "ms",
            f"predict {r['predict_1_seq_p50_ms']:.2f} ms",
        ),
        ("predict_by_id / predict (1, p50)", "by_id_vs_predict_ratio", "x", ""),
        (
            "predict_by_id 100 ids, sequential p50",
            "by_id_100_seq_p50_ms",
            "ms",
            f"predict {r['predict_100_seq_p50_ms']:.2f} ms",
        ),
        (
            "explain 100 customers, p50",
            "explain_100_ms",
            "ms",
            f"in-process {r['inprocess_explain_100_ms']:.2f} ms",
        ),
    ]
    head = (
        f"API benchmark: {int(r.get('workers', 1))} worker(s) per service, "
        f"{int(r['requests'])} requests per figure "
        "(100-record figures: a quarter), 8 clients = 8 threads"
    )
    lines = [head, f"{'':<40}{'propensity':>14}   {'reference (same run)':<44}"]
    for label, key, unit, ref in rows:
        lines.append(f"{label:<40}{r[key]:>10.2f} {unit:<5}  {ref:<44}{goal(key)}")
    return "\n".join(lines)
