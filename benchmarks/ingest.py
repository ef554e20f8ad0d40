"""Ingest benchmark (the real-time part of `make bench-incremental`): events
through `POST /events` and the Redis Stream consumer against a real `bentoml
serve` of the service, with the online store updated, and `predict_by_id`
beside it.

A trained project with its nightly store and feature state comes from
`benchmarks.api.prepare` (demo data, `--ingest-customers`, default 20,000; reused
per work folder). The event log and live rows are reset at the start. In one run:

- reference: `predict_by_id` (1 id, 2 clients) for `seconds` without ingest: its
  p50 and p99;
- HTTP, most: `CLIENTS` clients in a process of their own post batches of 100
  events (random customers, times after the store's date, unique ids) as fast
  as they are answered for `seconds`, `predict_by_id` running beside them as in
  the reference: events/s accepted (`ingest_http_events_per_s`, goal >= 5,000),
  with the `predict_by_id` p99 beside it for information
  (`by_id_p99_ratio_at_most`);
- HTTP, at the goal's load: the same clients paced to `PACE` (5,000) events/s
  in all, `predict_by_id` beside them: the `predict_by_id` p99 under ingest over
  the reference's (`by_id_p99_ratio_under_ingest`, goal <= 1.3); a probe sends
  one event at a time for a customer at a later time each and polls
  `predict_by_id` until its `as_of` shows it: from the answer to `POST /events`
  (the acknowledgement) to the first `predict_by_id` showing it
  (`freshness_p99_s`, goal <= 1 s), and from the send
  (`freshness_from_send_p99_s`, for information). The issue asks both "under
  that load": 5,000 events/s, not the most the server takes. The posters run
  in their own process so that the `predict_by_id` clients' latencies are the
  server's, not the wait for the bench's own interpreter;
- stream: `STREAM_EVENTS` events put on a fresh stream, then `propensity ingest`
  started: events/s from its start to the last acknowledgement
  (`ingest_stream_events_per_s`, goal >= 5,000), the stream's own XADD rate
  beside it.

Figures are merged into `bench/results/incremental.json` under their own keys
(the nightly part's keys are left as they are).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.api import API_KEY, bench_env, prepare
from core.config import load_config
from serving.api.servers import start_service, stop, wait_ready

CLIENTS = 8
BATCH = 100
PACE = 5000.0  # events/s of the latency goals' phase (the goal's load)
POLL_S = 0.01  # the freshness probe's pause between predict_by_id calls
STREAM_EVENTS = 60_000
GOALS = {
    "ingest_http_events_per_s": (">=", 5000.0),
    "ingest_stream_events_per_s": (">=", 5000.0),
    "freshness_p99_s": ("<=", 1.0),
    "by_id_p99_ratio_under_ingest": ("<=", 1.3),
}
KEYS = (*GOALS, "freshness_from_send_p99_s")
TYPES = ("login", "purchase", "support_ticket", "page_view")


def _met(key: str, value: float) -> bool:
    op, goal = GOALS[key]
    return value >= goal if op == ">=" else value <= goal


def _ids(config_path: Path, n: int) -> tuple[list[str], datetime]:
    """Raw ids of customers the store holds, and the store's date."""
    import pyarrow.parquet as pq

    from features.sources.privacy import pseudonymiser
    from serving.online_store.sqlite import SqliteStore

    config = load_config(config_path)
    store = SqliteStore(config.online_store.path)
    raw = pq.read_table(config.data.customers, columns=["customer_id"])
    raw = raw["customer_id"].to_pylist()
    random.Random(1).shuffle(raw)
    raw = raw[: n * 3]
    pseudo = pseudonymiser(config.privacy)
    found = store.lookup(pseudo.many(raw))
    ids = [r for r, s in zip(raw, pseudo.many(raw), strict=True) if s in found][:n]
    return ids, datetime.fromisoformat(store.meta().as_of)


class ByIdLoad:
    """2 clients calling predict_by_id (1 id) until stopped; latencies in s."""

    def __init__(self, url: str, ids: list[str]) -> None:
        self.url, self.ids = url, ids
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,)) for i in range(2)
        ]

    def _run(self, i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(headers=_auth(), timeout=60) as http:
            while not self._stop.is_set():
                body = {"customer_ids": [rng.choice(self.ids)]}
                t0 = time.perf_counter()
                r = http.post(f"{self.url}/predict_by_id", json=body)
                self.latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"predict_by_id: {r.status_code} {r.text[:300]}")

    def __enter__(self) -> ByIdLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q))


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def _events(
    rng: random.Random, ids: list[str], day: datetime, n: int, tag: str
) -> list[dict]:
    out = []
    for k in range(n):
        t = day + timedelta(seconds=rng.randrange(0, 6 * 3600))
        out.append(
            {
                "customer_id": rng.choice(ids),
                "event_time": t.isoformat(sep=" "),
                "event_type": rng.choice(TYPES),
                "amount": round(rng.uniform(1, 80), 2),
                "event_id": f"{tag}-{k}",
            }
        )
    return out


def _http_load(
    url: str,
    ids: list[str],
    day: datetime,
    seconds: float,
    rate: float,
    tag: str,
    workdir: Path,
) -> tuple[int, float]:
    """CLIENTS clients posting batches of 100 for `seconds`, in a process of
    their own (`_posters`): as fast as answered (`rate` 0) or paced to `rate`
    events/s in all. Events accepted, wall time."""
    args = workdir / f"posters-{tag}.json"
    args.write_text(
        json.dumps(
            {
                "url": url,
                "ids": ids,
                "day": day.isoformat(),
                "seconds": seconds,
                "rate": rate,
                "tag": tag,
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "posters", str(args)],
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"POST /events: {done.stderr.strip()[-1000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["accepted"], out["wall"]


def _posters(args: dict[str, Any]) -> dict[str, Any]:
    """The posters' process: CLIENTS threads, each paced to a CLIENTS-th of
    `rate` (a late batch is sent at once, so a server slower than the pace is
    posted to as fast as it answers), or unpaced when `rate` is 0."""
    url, ids, tag = args["url"], args["ids"], args["tag"]
    day = datetime.fromisoformat(args["day"])
    period = CLIENTS * BATCH / args["rate"] if args["rate"] else 0.0
    accepted = [0] * CLIENTS
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + args["seconds"]

    def client(i: int) -> None:
        rng = random.Random(100 + i)
        n = 0
        due = start + period * i / CLIENTS  # spread over the period
        with httpx.Client(headers=_auth(), timeout=120) as http:
            while time.perf_counter() < deadline:
                if period:
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    due += period
                body = {"events": _events(rng, ids, day, BATCH, f"{tag}{i}-{n}")}
                n += 1
                r = http.post(f"{url}/events", json=body)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:300]}")
                    return
                accepted[i] += r.json()["accepted"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"POST /events: {errors[0]}")
    return {"accepted": sum(accepted), "wall": time.perf_counter() - start}


def _probe(
    url: str, customer: str, day: datetime, stop: threading.Event, out: dict
) -> None:
    """One event at a time, each later than the last; the time from its send
    and from its acknowledgement to predict_by_id showing its as_of."""
    n = 0
    with httpx.Client(headers=_auth(), timeout=60) as http:
        while not stop.is_set():
            n += 1
            t = day + timedelta(hours=7, seconds=n)
            event = {
                "customer_id": customer,
                "event_time": t.isoformat(sep=" "),
                "event_type": "support_ticket",
                "event_id": f"probe-{uuid.uuid4().hex}",
            }
            sent = time.perf_counter()
            r = http.post(f"{url}/events", json={"events": [event]})
            acked = time.perf_counter()
            if r.status_code != 200:
                out.setdefault("errors", []).append(r.text[:300])
                return
            # polled every 10 ms: the probe is not a third predict_by_id client
            # as busy as the two measured (freshness is read 10 ms late at most)
            shown, got = _shows(
                http, url, customer, t.isoformat(), within_s=30, pause_s=POLL_S
            )
            if not shown:
                out.setdefault("errors", []).append(
                    f"not visible: {got} < {t.isoformat()}"
                )
                return
            seen = time.perf_counter()
            out.setdefault("ack", []).append(seen - acked)
            out.setdefault("send", []).append(seen - sent)
            time.sleep(0.1)


def _shows(
    http: httpx.Client,
    url: str,
    customer: str,
    want: str,
    within_s: float,
    pause_s: float = 0.0,
) -> tuple[bool, str | None]:
    """Asks predict_by_id until the customer's `as_of` reaches `want` (an ISO
    time) or `within_s` pass: whether it did, and the last `as_of` seen."""
    give_up = time.perf_counter() + within_s
    while True:
        got = http.post(
            f"{url}/predict_by_id", json={"customer_ids": [customer]}
        ).json()["predictions"][0]["as_of"]
        if got and got >= want:
            return True, got
        if time.perf_counter() >= give_up:
            return False, got
        time.sleep(pause_s)


def _wait_visible(http: httpx.Client, url: str, event: dict, deadline_s: float) -> None:
    """Until predict_by_id's `as_of` for the event's customer includes it
    (with `acknowledge: logged` the answer comes before the rows)."""
    want = datetime.fromisoformat(event["event_time"]).isoformat()
    if not _shows(http, url, event["customer_id"], want, deadline_s, pause_s=0.2)[0]:
        raise RuntimeError(f"the warm-up event was not visible after {deadline_s} s")


def _stream(
    config_path: Path, env: dict, ids: list[str], day: datetime, logs: Path
) -> dict:
    import redis

    config = load_config(config_path)
    client = redis.Redis.from_url(config.ingest.redis)
    # a prefix per user of the machine's Redis ($PROPENSITY_BENCH_STREAM_PREFIX)
    prefix = os.environ.get("PROPENSITY_BENCH_STREAM_PREFIX", "bench-ingest-")
    stream = f"{prefix}{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    events = _events(rng, ids, day, STREAM_EVENTS, "s")
    t0 = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i, e in enumerate(events):
        pipe.xadd(stream, {k: str(v) for k, v in e.items()})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    xadd_s = time.perf_counter() - t0
    cmd = [
        str(Path(sys.executable).parent / "propensity"),
        "ingest",
        "--stream",
        stream,
        "--consumer",
        "bench",
        "--idle-exit",
        "2",
    ]
    t0 = time.perf_counter()
    with open(logs / "ingest-stream.log", "w") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(
            f"propensity ingest failed: see {logs / 'ingest-stream.log'}"
        )
    info = client.xinfo_groups(stream)[0]
    if int(info["pending"]) != 0:
        raise RuntimeError(f"{info['pending']} entries left pending")
    # the consumer idles 2 s before it exits: not part of the figure
    seconds = time.perf_counter() - t0 - 2.0
    client.delete(stream, stream + ":rejected")
    return {
        "ingest_stream_events_per_s": STREAM_EVENTS / seconds,
        "stream_xadd_events_per_s": STREAM_EVENTS / xadd_s,
        "stream_events": float(STREAM_EVENTS),
    }


def run_ingest(
    customers: int,
    seed: int,
    workdir: Path,
    seconds: float = 20.0,
    acknowledge: str = "logged",
    nice: int = 0,
    stream: bool = True,
) -> dict[str, Any]:
    workdir = Path(workdir).resolve() / "ingest"
    t0 = time.perf_counter()
    os.environ.setdefault(
        "PROPENSITY_PSEUDONYM_KEY", "bench-ingest-pseudonym-key-0123456789"
    )
    config_path = prepare(workdir, customers, seed)
    _set_ingest(config_path, acknowledge=acknowledge, nice=nice)
    config = load_config(config_path)
    print(
        f"ingest: project of {customers:,} customers ready in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    shutil.rmtree(config.ingest.log, ignore_errors=True)
    from serving.online_store.live import live_path

    live = live_path(config.online_store.path)
    for f in live.parent.glob(live.name + "*"):
        f.unlink()
    ids, as_of = _ids(config_path, 5000)
    day = as_of  # events on the day after the store's date (after its watermark)
    env = bench_env(config_path)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    url, process = start_service(
        "serving.api.service:Propensity", env, logs / "ingest-serve.log"
    )
    out: dict[str, Any] = {
        "ingest_customers": customers,
        "ingest_batch_events": BATCH,
        "ingest_clients": CLIENTS,
        "ingest_acknowledge": acknowledge,
        "ingest_nice": nice,
    }
    try:
        wait_ready(url, process, logs / "ingest-serve.log", deadline_s=180)
        with httpx.Client(
            headers=_auth(), timeout=120
        ) as http:  # warm: the first batch loads the state, shown before timing
            warm = _events(random.Random(0), ids, day, BATCH, "w")
            r = http.post(f"{url}/events", json={"events": warm})
            if r.status_code != 200:
                raise RuntimeError(r.text[:500])
            _wait_visible(http, url, warm[0], deadline_s=600)
        with ByIdLoad(url, ids) as ref:
            time.sleep(seconds / 2)
        out["by_id_p50_ms_without_ingest"] = ref.p(50) * 1000
        out["by_id_p99_ms_without_ingest"] = ref.p(99) * 1000
        # the most: posters as fast as answered
        with ByIdLoad(url, ids[1:]) as most:
            cpu0 = _cpu_s(process.pid)
            accepted, wall = _http_load(url, ids[1:], day, seconds, 0.0, "h", logs)
            cpu1 = _cpu_s(process.pid)
        out.update(_cpu_per_1k("http", cpu0, cpu1, accepted))
        out["ingest_http_events_per_s"] = accepted / wall
        out["ingest_http_events"] = float(accepted)
        out["by_id_p99_ms_at_most"] = most.p(99) * 1000
        out["by_id_p99_ratio_at_most"] = (
            out["by_id_p99_ms_at_most"] / out["by_id_p99_ms_without_ingest"]
        )
        with httpx.Client(headers=_auth(), timeout=120) as http:
            # the refreshes caught up before the goal's load starts
            # (a time after every poster's, before the probe's)
            mark = [
                {
                    "customer_id": ids[1],
                    "event_time": (day + timedelta(hours=6, minutes=30)).isoformat(
                        sep=" "
                    ),
                    "event_type": "login",
                    "event_id": "mark",
                }
            ]
            r = http.post(f"{url}/events", json={"events": mark})
            if r.status_code != 200:
                raise RuntimeError(r.text[:500])
            _wait_visible(http, url, mark[0], deadline_s=120)
        # the goal's load: posters paced to PACE events/s, the probe beside them
        stop_probe, probe = threading.Event(), {}
        prober = threading.Thread(
            target=_probe, args=(url, ids[0], day, stop_probe, probe)
        )
        with ByIdLoad(url, ids[1:]) as under:
            prober.start()
            cpu0 = _cpu_s(process.pid)
            accepted, wall = _http_load(url, ids[1:], day, seconds, PACE, "p", logs)
            cpu1 = _cpu_s(process.pid)
            stop_probe.set()
            prober.join()
        out.update(_cpu_per_1k("paced", cpu0, cpu1, accepted))
        if probe.get("errors"):
            raise RuntimeError(f"freshness probe: {probe['errors'][0]}")
        out["ingest_paced_events_per_s"] = accepted / wall
        out["by_id_p50_ms_under_ingest"] = under.p(50) * 1000
        out["by_id_p99_ms_under_ingest"] = under.p(99) * 1000
        out["by_id_p99_ratio_under_ingest"] = (
            out["by_id_p99_ms_under_ingest"] / out["by_id_p99_ms_without_ingest"]
        )
        out["freshness_p99_s"] = float(np.percentile(probe["ack"], 99))
        out["freshness_p50_s"] = float(np.percentile(probe["ack"], 50))
        out["freshness_from_send_p99_s"] = float(np.percentile(probe["send"], 99))
        out["freshness_probes"] = float(len(probe["ack"]))
    finally:
        stop(process)
    if stream:
        out.update(_stream(config_path, env, ids, day, logs))
    out["ingest_goals"] = {k: _met(k, out[k]) for k in GOALS if k in out}
    out["ingest_load"] = os.getloadavg()[0]
    return out


def _cpu_per_1k(
    phase: str, cpu0: dict[str, float], cpu1: dict[str, float], events: int
) -> dict[str, float]:
    """The server's CPU (its worker, the refresh process) per 1,000 events of a
    phase: of these figures, what the load of other jobs moves least."""
    return {
        f"ingest_{phase}_{name}_cpu_s_per_1k_events": (
            (cpu1[name] - cpu0.get(name, 0.0)) / max(events, 1) * 1000
        )
        for name in cpu1
    }


def _cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the server's processes: `server`
    (the bentoml worker, which answers the requests) and `refresh` (the child
    refreshing the live rows), by their command lines."""
    import psutil

    out = {"server": 0.0, "refresh": 0.0}
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for child in children:
        try:
            cmd = " ".join(child.cmdline())
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        if "multiprocessing.spawn" in cmd:
            out["refresh"] += times.user + times.system
        elif "_bentoml_impl.worker" in cmd:
            out["server"] += times.user + times.system
    return out


def _set_ingest(config_path: Path, **keys) -> None:
    """`ingest` keys (acknowledge, nice) in the bench project's config."""
    import yaml

    raw = yaml.safe_load(config_path.read_text())
    raw.setdefault("ingest", {}).update(keys)
    config_path.write_text(yaml.safe_dump(raw))


def format_table(r: dict[str, Any]) -> str:
    def verdict(key: str) -> str:
        op, goal = GOALS[key]
        return f"goal {op} {goal:g}: {'met' if r['ingest_goals'][key] else 'NOT met'}"

    return "\n".join(
        [
            f"ingest ({r['ingest_customers']:,} customers' project, batches of "
            f"{r['ingest_batch_events']}, {r['ingest_clients']} clients, 1 API worker, "
            f"acknowledge: {r.get('ingest_acknowledge', 'applied')}, "
            f"nice: {r.get('ingest_nice', 0)}; "
            f"load {r['ingest_load']:.1f})",
            "  POST /events, online store updated  "
            f"{r['ingest_http_events_per_s']:9.0f} "
            f"events/s ({verdict('ingest_http_events_per_s')})",
            (
                "  Redis Stream consumer               "
                f"{r['ingest_stream_events_per_s']:9.0f} "
                f"events/s ({verdict('ingest_stream_events_per_s')}); XADD alone "
                f"{r['stream_xadd_events_per_s']:.0f} events/s"
                if "ingest_stream_events_per_s" in r
                else "  Redis Stream consumer               not run"
            ),
            "  predict_by_id p99 beside it         "
            f"{r['by_id_p99_ms_at_most']:9.2f} ms (ratio "
            f"{r['by_id_p99_ratio_at_most']:.2f}, for information)",
            f"  at {PACE:,.0f} events/s (the goal's load; "
            f"{r['ingest_paced_events_per_s']:,.0f} reached):",
            f"  freshness, ack -> predict_by_id p99 {r['freshness_p99_s']:9.3f} s "
            f"({verdict('freshness_p99_s')}); p50 {r['freshness_p50_s']:.3f} s; from "
            f"the send p99 {r['freshness_from_send_p99_s']:.3f} s; predict_by_id p50 "
            f"without ingest {r['by_id_p50_ms_without_ingest'] / 1000:.3f} s",
            "  predict_by_id p99 under ingest      "
            f"{r['by_id_p99_ms_under_ingest']:9.2f} ms"
            f" vs {r['by_id_p99_ms_without_ingest']:.2f} ms without: ratio "
            f"{r['by_id_p99_ratio_under_ingest']:.2f} "
            f"({verdict('by_id_p99_ratio_under_ingest')})",
            "  CPU s per 1,000 events, posters as fast as answered: API worker "
            f"{r.get('ingest_http_server_cpu_s_per_1k_events', float('nan')):.3f}, "
            "refresh process "
            f"{r.get('ingest_http_refresh_cpu_s_per_1k_events', float('nan')):.3f}",
        ]
    )


def merge_json(path: Path, figures: dict[str, Any]) -> None:
    """Merge `figures` into the JSON file at `path` (other keys kept)."""
    from benchmarks.harness import write_json

    current = json.loads(path.read_text()) if path.is_file() else {}
    write_json(path, {**current, **figures})


if __name__ == "__main__":  # the posters' process (_http_load)
    if len(sys.argv) == 3 and sys.argv[1] == "posters":
        print(json.dumps(_posters(json.loads(Path(sys.argv[2]).read_text()))))
    else:
        sys.exit("usage: python -m benchmarks.ingest posters ARGS.json")
