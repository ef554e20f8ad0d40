"""Soak benchmark: a steady mixed load on every endpoint of a real `bentoml serve`
(2 workers) for 10 minutes, with the nightly run in the middle.

Not a test: `make bench-soak` (`python -m benchmarks soak`, `SOAK_SECONDS` or
`--seconds` to shorten it). It trains the champions on seeded demo data (once
per work folder, as `make bench-api` does), runs the nightly job, serves the API
with 2 workers and, after a warm-up that is not counted, sends a paced load
(`--rate` requests per second from `--clients` threads with keep-alive
connections, bodies encoded once) cycling through predict (1 and 10 records),
predict_by_id (10 ids), explain (10 records), outreach (dry run, 20 customers)
and metadata. Halfway through, `propensity score` runs once more for a later
date: it rebuilds the online store and swaps it in under the load.
`campaign_report` is left out: it reads the whole event log at each call (a
report, not a request path), which would measure DuckDB, not the service.

Figures: requests, errors (any answer but 200, or no answer; goal 0), p50 and
p99 per minute (goal: the last minute's p99 within 1.2x the first's), each
worker's resident memory sampled every few seconds (goal: growth from the end
of the warm-up to the end under 50 MB), and whether a worker was restarted.
The machine is shared: p99s are noisy; the ratio last/first, taken in the same
run, is what counts. Writes `bench/results/soak.json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmarks.api import API_KEY, bench_env, prepare, sample_requests
from benchmarks.harness import write_json
from core.config import load_config
from core.exitcodes import ExitCode
from serving.api.servers import start_service, stop, wait_ready, with_workers

RESULTS_FILE = "soak.json"
WORKERS = 2
SAMPLE_EVERY_S = 5.0
GOALS = {
    "errors": ("<=", 0.0),
    "p99_last_vs_first": ("<=", 1.2),
    "rss_growth_mb": ("<", 50.0),
    "worker_restarts": ("<=", 0.0),
}


@dataclass
class Record:
    """What the clients saw: per request its time from the start (s), the
    endpoint, latency (ms) and status (0: no answer)."""

    t: list[float] = field(default_factory=list)
    endpoint: list[str] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, t: float, endpoint: str, ms: float, status: int, why: str) -> None:
        with self.lock:
            self.t.append(t)
            self.endpoint.append(endpoint)
            self.ms.append(ms)
            self.status.append(status)
            if status != 200:
                self.failures[f"{endpoint} {status} {why[:120]}"] += 1


def mix(records: list[dict], ids: list[str]) -> list[tuple[str, str, bytes]]:
    """The request cycle: (name, path, body), every endpoint but campaign_report."""
    customers = [{**r, "value": 10.0} for r in records[:20]]
    bodies = [
        ("predict_1", "/predict", {"customers": records[:1]}),
        ("predict_10", "/predict", {"customers": records[:10]}),
        ("predict_by_id_10", "/predict_by_id", {"customer_ids": ids[:10]}),
        ("predict_1", "/predict", {"customers": records[1:2]}),
        ("predict_by_id_1", "/predict_by_id", {"customer_ids": ids[1:2]}),
        ("explain_10", "/explain", {"customers": records[:10], "target": "churn"}),
        (
            "outreach_dry_run_20",
            "/outreach",
            {
                "campaign_id": "soak",
                "target": "churn",
                "customers": customers,
                "budget": 5,
            },
        ),
        ("metadata", "/metadata", {}),
    ]
    return [(n, p, json.dumps(b).encode()) for n, p, b in bodies]


def load(
    url: str,
    plan: list[tuple[str, str, bytes]],
    clients: int,
    rate: float,
    start: float,
    until: float,
    record: Record | None,
) -> None:
    """`clients` threads pacing `rate` requests per second in all between the
    monotonic times `start` and `until`; answers go to `record` (None: warm-up)."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    interval = clients / rate

    def client(i: int) -> None:
        step = i  # clients start at different points of the cycle
        due = start + i * interval / clients
        with httpx.Client(headers=headers, timeout=30) as http:
            while (now := time.monotonic()) < until:
                if due > now:
                    time.sleep(due - now)
                due += interval
                name, path, body = plan[step % len(plan)]
                step += 1
                t0 = time.perf_counter()
                try:
                    r = http.post(url + path, content=body)
                    status, why = r.status_code, r.text if r.status_code != 200 else ""
                except httpx.HTTPError as exc:
                    status, why = 0, f"{type(exc).__name__}: {exc}"
                ms = (time.perf_counter() - t0) * 1000
                if record is not None:
                    record.add(time.monotonic() - start, name, ms, status, why)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def worker_processes(server: subprocess.Popen) -> list[psutil.Process]:
    """The BentoML worker processes under the server (those that loaded the
    service), found by their command line."""
    found = []
    for p in psutil.Process(server.pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "serving.api.service" in cmd or "_bentoml_impl.worker" in cmd:
            found.append(p)
    return found


class MemorySampler:
    """Each worker's RSS (MB) every SAMPLE_EVERY_S seconds, by pid."""

    def __init__(self, server: subprocess.Popen) -> None:
        self.server = server
        self.samples: dict[int, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, t0: float) -> None:
        self.t0 = t0
        self.sample()
        self._thread.start()

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        for p in worker_processes(self.server):
            try:
                rss = p.memory_info().rss / 1e6
            except psutil.Error:
                continue
            self.samples.setdefault(p.pid, []).append((now, rss))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def nightly(env: dict[str, str], as_of: str, out: dict) -> None:
    """`propensity score --as-of DATE` under the load; its exit code and time."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "propensity"), "score", "--as-of", as_of],
        env=env,
        capture_output=True,
        text=True,
    )
    out["nightly_s"] = time.perf_counter() - t0
    out["nightly_exit_code"] = done.returncode
    if done.returncode not in (ExitCode.OK, ExitCode.DRIFT_ALERT):
        out["nightly_error"] = done.stderr[-2000:]


def windows(record: Record, seconds: float, window_s: float) -> list[dict]:
    """Requests, errors, p50 and p99 per window of the run."""
    t = np.array(record.t)
    ms = np.array(record.ms)
    ok = np.array(record.status) == 200
    out = []
    for i in range(max(1, round(seconds / window_s))):
        inside = (t >= i * window_s) & (t < (i + 1) * window_s)
        lat = ms[inside]
        out.append(
            {
                "window": i + 1,
                "requests": int(inside.sum()),
                "errors": int((inside & ~ok).sum()),
                "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            }
        )
    return out


def figures(
    record: Record,
    seconds: float,
    window_s: float,
    memory: MemorySampler,
    warm: set[int],
) -> dict:
    per_window = windows(record, seconds, window_s)
    growth = {}
    for pid, samples in memory.samples.items():
        growth[pid] = samples[-1][1] - samples[0][1]
    ended = {p.pid for p in worker_processes(memory.server)}
    by_endpoint = {}
    names = np.array(record.endpoint)
    ms = np.array(record.ms)
    for name in sorted(set(record.endpoint)):
        lat = ms[names == name]
        by_endpoint[name] = {
            "requests": int(lat.size),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
        }
    return {
        "seconds": seconds,
        "window_s": window_s,
        "workers": WORKERS,
        "requests": len(record.ms),
        "errors": sum(1 for s in record.status if s != 200),
        "rps": len(record.ms) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "p99_first_ms": per_window[0]["p99_ms"],
        "p99_last_ms": per_window[-1]["p99_ms"],
        "p99_last_vs_first": per_window[-1]["p99_ms"] / per_window[0]["p99_ms"],
        "rss_growth_mb": max(growth.values()) if growth else float("nan"),
        "rss_growth_per_worker_mb": {str(k): v for k, v in growth.items()},
        "rss_start_mb": {str(k): s[0][1] for k, s in memory.samples.items()},
        "rss_end_mb": {str(k): s[-1][1] for k, s in memory.samples.items()},
        "worker_restarts": len(warm - ended),
        "per_window": per_window,
        "per_endpoint": by_endpoint,
        "failures": dict(record.failures.most_common(10)),
    }


def goal(out: dict, key: str) -> str:
    op, bar = GOALS[key]
    value = out[key]
    met = value <= bar if op == "<=" else value < bar
    return f"goal {op} {bar:g}: {'met' if met else 'NOT met'}"


def report(out: dict) -> str:
    lines = [
        f"soak: {out['seconds']:.0f} s, {out['workers']} workers, "
        f"{out['rps']:.0f} req/s, nightly run at {out['nightly_at_s']:.0f} s "
        f"({out['nightly_s']:.0f} s, exit {out['nightly_exit_code']})",
        f"{'window':>6} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for w in out["per_window"]:
        lines.append(
            f"{w['window']:>6} {w['requests']:>9,} {w['errors']:>7} "
            f"{w['p50_ms']:>8.2f} {w['p99_ms']:>8.2f}"
        )
    lines += [
        f"requests           {out['requests']:>10,}",
        f"errors             {out['errors']:>10,}   {goal(out, 'errors')}",
        f"p99 last/first     {out['p99_last_vs_first']:>10.2f}   "
        f"({out['p99_last_ms']:.2f} ms vs {out['p99_first_ms']:.2f} ms in the same "
        f"run) {goal(out, 'p99_last_vs_first')}",
        f"RSS growth (MB)    {out['rss_growth_mb']:>10.1f}   (max over workers; "
        + ", ".join(
            f"{out['rss_start_mb'][k]:.0f} -> {out['rss_end_mb'][k]:.0f}"
            for k in out["rss_start_mb"]
        )
        + f") {goal(out, 'rss_growth_mb')}",
        f"worker restarts    {out['worker_restarts']:>10}   "
        f"{goal(out, 'worker_restarts')}",
    ]
    for name, e in out["per_endpoint"].items():
        lines.append(
            f"  {name:<20} {e['requests']:>8,} req  p50 {e['p50_ms']:7.2f} ms  "
            f"p99 {e['p99_ms']:7.2f} ms"
        )
    for failure, n in out["failures"].items():
        lines.append(f"  failure x{n}: {failure}")
    return "\n".join(lines)


def run_soak(
    seconds: float,
    rate: float,
    clients: int,
    customers: int,
    seed: int,
    workdir: Path,
    results: Path,
    warmup_s: float = 15.0,
) -> dict:
    workdir, results = Path(workdir).resolve(), Path(results)
    t0 = time.perf_counter()
    config = prepare(workdir, customers, seed)
    print(f"prepared {customers:,} demo customers in {time.perf_counter() - t0:.0f} s")
    records, ids = sample_requests(config)
    plan = mix(records, ids)
    env = bench_env(config)
    later = _later_date(config)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    log_path = logs / "soak.log"
    url, process = start_service(
        "serving.api.service:Propensity",
        with_workers(env, "propensity", WORKERS),
        log_path,
    )
    out: dict = {"customers": customers, "rate_target": rate, "clients": clients}
    try:
        wait_ready(url, process, log_path, deadline_s=180)
        begin = time.monotonic()
        load(url, plan, clients, rate, begin, begin + warmup_s, None)
        warm = {p.pid for p in worker_processes(process)}
        memory = MemorySampler(process)
        record = Record()
        start = time.monotonic()
        memory.start(start)
        out["nightly_at_s"] = seconds / 2
        timer = threading.Timer(seconds / 2, nightly, (env, later, out))
        timer.start()
        load(url, plan, clients, rate, start, start + seconds, record)
        timer.join()
        memory.stop()
        window_s = 60.0 if seconds >= 300 else seconds / 5
        out.update(figures(record, seconds, window_s, memory, warm))
    finally:
        stop(process)
    print(report(out))
    write_json(results / RESULTS_FILE, out)
    print(f"figures written to {results / RESULTS_FILE}")
    return out


def _later_date(config: Path) -> str:
    """The day after the date the online store holds: the nightly run in the
    middle scores a new date, so the store is rebuilt and swapped."""
    from datetime import date, timedelta

    from serving.online_store.sqlite import stored_as_of

    held = stored_as_of(load_config(config).online_store.path)
    return str(date.fromisoformat(str(held)) + timedelta(days=1))
