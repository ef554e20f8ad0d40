"""Load with faults: 32 clients on predict, predict_by_id and outreach (dry run)
against a real `bentoml serve` with 2 workers, while, in turn, the nightly job
swaps the online store, the API key file is rotated, a TCP proxy in front of
Postgres drops every connection for 5 s, and one worker is killed with SIGKILL.

The server reads its online store and contact log from Postgres through the
proxy (tests/load.py). Every 2xx answer is checked against in-process
predictions of the same champions (serving.scoring.Champions) and the nightly
outputs. Goals: no wrong answer ever; no timeout; the only 5xx are the 503s of
the database outage (predict_by_id and outreach, naming what is unavailable),
the only dropped requests those in flight on the killed worker; the service
recovers by itself. Each fault runs FAULT_SECONDS (60 by default; `make test`
sets 15). The per-fault table is written to `faults.json` in the module's temp
folder and printed (docs/reliability.md).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pandas as pd
import psutil
import pytest

from serving.api.auth import add_key, remove_key
from serving.api.servers import with_workers
from serving.scoring import Champions
from tests.helpers import (
    BIN,
    POSTGRES_USER,
    ROOT,
    TEST_API_KEY,
    Project,
    Server,
    eligible_features,
    postgres_database,
    run_cli,
    start_bentoml,
    stop,
    wait_ready,
    write_config,
)
from tests.load import (
    CLIENTS,
    FAULT_SECONDS,
    Call,
    DroppingProxy,
    Load,
    Sent,
    Tally,
    table,
    tally,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.xdist_group("load_faults"),
]

TARGET = "purchase"
FIRST_NIGHT, SECOND_NIGHT = "2025-11-01", "2025-12-01"
OUTAGE_S = 5.0
# how long after a fault has ended every request must succeed again
GRACE_S = 2.0
UNKNOWN_ID = "no-such-customer"
WORKERS = 2
SCOPES = frozenset({"score", "outreach"})
ROWS: list[dict] = []


def fault_at() -> float:
    """When each fault starts: after a quarter of the run at steady load."""
    return max(3.0, FAULT_SECONDS / 4)


@dataclass
class Setup:
    project: Project
    env: dict[str, str]
    proxy: DroppingProxy
    keys_file: Path
    old_key: str
    server: Server
    calls: list[Call]
    # the nightly outputs by as-of date, filled as the nights run
    nights: dict[str, pd.DataFrame]


def proxied(uri: str, port: int) -> str:
    return urlunsplit(urlsplit(uri)._replace(netloc=f"127.0.0.1:{port}"))


def night(project: Project, as_of: str) -> pd.DataFrame:
    return pd.read_parquet(project.root / "scores" / f"as_of={as_of}").set_index(
        "customer_id"
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[Setup]:
    """A trained project (one target, Postgres online store and contact log
    behind the proxy, an API key file), its first night scored, served by 2
    workers; the calls the clients send."""
    root = tmp_path_factory.mktemp("load-faults")
    with (
        postgres_database("propensity_load") as database,
        DroppingProxy(
            (urlsplit(database).hostname, urlsplit(database).port or 5432)
        ) as proxy,
    ):
        uri = proxied(database, proxy.port)
        keys_file = root / "api-keys.txt"
        config = write_config(
            root / "propensity.yaml",
            demo_dir / "events.parquet",
            None,
            targets={TARGET: {}},
            # a small model, quick to train: what is under test is serving it
            training={
                "cutoffs": {"start": "2025-08-01", "freq": "MS"},
                "lightgbm": {"num_boost_round": 30, "num_leaves": 15},
                "backtest": {"origins": 2},
            },
            online_store={"postgres": {"uri": uri, "table": "online"}},
            outreach={
                "contact_log": {"uri": uri, "table": "contacts"},
                "frequency_cap": {"max_contacts": 2, "per_days": 30},
            },
            api={"keys_file": str(keys_file), "workers": WORKERS},
        )
        project = Project(
            root,
            config,
            f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            demo_dir / "events.parquet",
            demo_dir / "customers.parquet",
        )
        env = {**project.env(), "PGUSER": POSTGRES_USER}
        done = run_cli(["train"], env)
        assert done.returncode == 0, done.stderr[-3000:]
        done = run_cli(["score", "--as-of", FIRST_NIGHT], env)
        assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: a drift alert
        old_key = add_key(keys_file, "load-a", SCOPES)
        nights = {FIRST_NIGHT: night(project, FIRST_NIGHT)}
        served_env = with_workers(env, "propensity", WORKERS)
        log = root / "serve.log"
        url, process = start_bentoml(served_env, log)
        try:
            # 2 workers loading at once on a busy machine: a generous deadline
            wait_ready(url, process, log, deadline_s=240)
            server = Server(url, process, log)
            calls = make_calls(project, server, nights)
            yield Setup(project, env, proxy, keys_file, old_key, server, calls, nights)
        finally:
            stop(process)
    (root / "faults.json").write_text(json.dumps(ROWS, indent=2))
    print(f"\nload with faults ({root / 'faults.json'}):\n{table(ROWS)}")


def make_calls(
    project: Project, server: Server, nights: dict[str, pd.DataFrame]
) -> list[Call]:
    """Four calls of each endpoint, each with a check of its answer."""
    config, frame = eligible_features(project, datetime(2025, 11, 15))
    champions = Champions.load(config, project.tracking_uri)
    frame = frame.sort_values("customer_id").reset_index(drop=True)
    expected = dict(
        zip(frame.customer_id, champions.predict_frame(frame)[TARGET], strict=True)
    )
    features = frame[champions.feature_names].astype(object)
    records = [
        {
            "customer_id": cid,
            "features": {
                k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in row.items()
            },
        }
        for cid, row in zip(frame.customer_id, features.to_dict("records"), strict=True)
    ]
    ids = sorted(nights[FIRST_NIGHT].index)
    calls = []
    for n in range(4):
        calls.append(predict_call(records[n * 8 : n * 8 + 8], expected))
        calls.append(by_id_call(ids[n * 97 : n * 97 + 8] + [UNKNOWN_ID], nights))
        calls.append(
            outreach_call(server, f"load-{n}", records[40 + n * 12 :][:12], expected)
        )
    return calls


def predict_call(records: list[dict], expected: dict[str, float]) -> Call:
    def check(answer: dict) -> str | None:
        got = [
            (p["customer_id"], p["probabilities"][TARGET])
            for p in answer["predictions"]
        ]
        want = [(r["customer_id"], expected[r["customer_id"]]) for r in records]
        if len(got) != len(want) or any(
            g[0] != w[0] or abs(g[1] - w[1]) > 1e-12
            for g, w in zip(got, want, strict=False)
        ):
            return f"predict answered {got}, in-process {want}"
        return None

    return Call("/predict", {"customers": records}, check)


def by_id_call(ids: list[str], nights: dict[str, pd.DataFrame]) -> Call:
    """predict_by_id of `ids`: one night's scores, exactly, for all of them."""

    def check(answer: dict) -> str | None:
        preds = answer["predictions"]
        if [p["customer_id"] for p in preds] != ids:
            return f"ids {[p['customer_id'] for p in preds]}, sent {ids}"
        dates = {p["as_of"] for p in preds if p["status"] == "ok"}
        if len(dates) != 1 or (as_of := dates.pop()) not in nights:
            return f"as_of {dates}: not one night the job ran ({sorted(nights)})"
        scores = nights[as_of]
        for p in preds:
            cid = p["customer_id"]
            if cid not in scores.index:
                if p["status"] != "not_found":
                    return f"{cid}: {p['status']}, not in the night {as_of}"
                continue
            want = scores.loc[cid, TARGET]
            got = (p["probabilities"] or {}).get(TARGET)
            if pd.isna(want) != (got is None) or (got is not None and got != want):
                return f"{cid} as of {as_of}: {got}, the nightly output {want}"
        return None

    return Call("/predict_by_id", {"customer_ids": ids}, check)


def outreach_call(
    server: Server, campaign: str, records: list[dict], expected: dict[str, float]
) -> Call:
    """A dry run, answered alike every time: its reference answer is asked of
    the quiet server and checked against the in-process probabilities."""
    body = {
        "campaign_id": campaign,
        "target": TARGET,
        "budget": 3,
        "customers": records,
        "mode": "dry_run",
    }

    def picked(answer: dict) -> list:
        return [
            (r["customer_id"], r["group"], r["rank"], r["probability"])
            for r in answer["selected"]
        ]

    r = httpx.post(
        f"{server.url}/outreach",
        json=body,
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    reference = r.json()
    for cid, _, _, p in picked(reference):
        assert abs(p - expected[cid]) <= 1e-12, (cid, p, expected[cid])
    assert reference["counts"]["eligible"] == len(records)

    def check(answer: dict) -> str | None:
        if (
            picked(answer) != picked(reference)
            or answer["counts"] != (reference["counts"])
        ):
            return f"outreach selected {picked(answer)}, reference {picked(reference)}"
        return None

    return Call("/outreach", body, check)


def env_key(_: int) -> tuple[str, str]:
    return "env", TEST_API_KEY


def after(load: Load, sent: list[Sent], since: float) -> list[Sent]:
    """The requests started `since` seconds into the load or later."""
    return [s for s in sent if load.relative(s.started) >= since]


def bad(sent: list[Sent]) -> list[str]:
    return [f"{s.endpoint} {s.kind} {s.error or ''}"[:300] for s in sent]


def record(result: Tally, outcome: str) -> None:
    result.outcome = outcome
    ROWS.append(result.row())
    print(json.dumps(result.row()))


def check_common(result: Tally, reasons: list[str], server: Server) -> None:
    """Goals every fault shares: no wrong answer and no timeout."""
    assert not reasons, reasons[:5]
    assert result.timeouts == 0, server.log.read_text()[-2000:]


def test_nightly_job_swaps_the_store_under_load(setup: Setup) -> None:
    """The nightly job scores a new night into the Postgres table the API reads
    (built aside, renamed in one transaction): every answer is one night's
    scores, exactly; none fails; the new night is served without a restart."""
    start = fault_at()
    with Load(setup.server.url, setup.calls, env_key, FAULT_SECONDS + 600) as load:
        load.sleep_until(start)
        nightly = subprocess.Popen(
            [str(BIN / "propensity"), "score", "--as-of", SECOND_NIGHT],
            env=setup.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, stderr = nightly.communicate(timeout=600)
        swapped = load.at()
        load.sleep_until(max(FAULT_SECONDS, swapped + fault_at()))
    assert nightly.returncode in (0, 3), stderr[-3000:]
    setup.nights[SECOND_NIGHT] = night(setup.project, SECOND_NIGHT)
    result, reasons = tally("nightly job swaps the online store", load, load.at())
    check_common(result, reasons, setup.server)
    assert result.ok == result.requests, bad([s for s in load.sent if s.kind != "2xx"])[
        :5
    ]
    later = [
        s
        for s in after(load, load.sent, swapped + GRACE_S)
        if s.endpoint == "/predict_by_id"
    ]
    stale = [s for s in later if s.answer["predictions"][0]["as_of"] != SECOND_NIGHT]
    assert later and not stale, f"{len(stale)} answers of the old night after the swap"
    record(
        result,
        f"store swapped {FIRST_NIGHT} -> {SECOND_NIGHT} by a nightly run of "
        f"{swapped - start:.0f} s under load; every answer one night's scores; "
        "the new night served at once, no restart",
    )


def test_api_key_file_rotated_under_load(setup: Setup) -> None:
    """A new key is added to the key file and the old one revoked while the
    clients call: half switch to the new key at once, half lag behind until
    the revocation and then switch. The new key works from the moment it is
    written, the old one until it is revoked and never after; nothing else
    fails."""
    keys = {"load-a": setup.old_key}
    state = {"new_for_all": False}

    def key_of(i: int) -> tuple[str, str]:
        if "load-b" in keys and (i % 2 == 0 or state["new_for_all"]):
            return "load-b", keys["load-b"]
        return "load-a", keys["load-a"]

    start = fault_at()
    with Load(setup.server.url, setup.calls, key_of, FAULT_SECONDS + 60) as load:
        load.sleep_until(start)
        keys["load-b"] = add_key(setup.keys_file, "load-b", SCOPES)
        added = load.at()
        load.sleep_until(start + FAULT_SECONDS / 4)
        revoking = load.at()
        remove_key(setup.keys_file, "load-a")
        revoked = load.at()
        load.sleep_until(revoked + 1.0)  # the laggards see 401 for a second
        state["new_for_all"] = True
        switched = load.at()
        load.sleep_until(max(FAULT_SECONDS, switched + fault_at()))
    result, reasons = tally("API key file rotated", load, load.at())
    check_common(result, reasons, setup.server)
    old = [s for s in load.sent if s.key == "load-a"]
    new = [s for s in load.sent if s.key == "load-b"]
    assert [
        s for s in new if load.relative(s.started) >= added and s.status == 401
    ] == []
    before = [s for s in old if load.relative(s.ended) < revoking]
    assert before and all(s.kind == "2xx" for s in before), bad(before)[:5]
    late = [s for s in old if load.relative(s.started) >= revoked]
    assert late and all(s.status == 401 for s in late), bad(late)[:5]
    others = [
        s
        for s in load.sent
        if s.kind != "2xx" and not (s.key == "load-a" and s.status == 401)
    ]
    assert not others, bad(others)[:5]
    assert all(s.kind == "2xx" for s in after(load, load.sent, switched + GRACE_S))
    keys_left = setup.keys_file.read_text()
    assert "load-b" in keys_left and "load-a" not in keys_left
    record(
        result,
        f"new key served from the moment it was written; old key 2xx until revoked, "
        f"401 after ({result.client_errors} requests of lagging clients); no 5xx",
    )


def test_postgres_drops_every_connection_for_5_s(setup: Setup) -> None:
    """The proxy in front of Postgres cuts every connection and refuses new
    ones for 5 s: predict_by_id (online store) and outreach (the contact log
    read for the frequency cap) answer 503 naming what is unavailable, predict
    never fails, and all answer again once the database is back, without a
    restart."""
    start = fault_at()
    with Load(setup.server.url, setup.calls, env_key, FAULT_SECONDS + 60) as load:
        load.sleep_until(start)
        cut_at = load.at()
        setup.proxy.drop(OUTAGE_S)
        back = cut_at + OUTAGE_S
        load.sleep_until(max(FAULT_SECONDS, back + fault_at()))
    result, reasons = tally("Postgres drops every connection for 5 s", load, load.at())
    check_common(result, reasons, setup.server)
    failed = [s for s in load.sent if s.kind != "2xx"]
    unexpected = [
        s
        for s in failed
        if s.status != 503
        or s.endpoint == "/predict"
        or not cut_at <= load.relative(s.ended)
        or load.relative(s.started) > back + GRACE_S
        or not any(w in (s.error or "") for w in ("online store", "contact log"))
    ]
    assert not unexpected, bad(unexpected)[:5]
    refused = {s.endpoint for s in failed}
    assert refused == {"/predict_by_id", "/outreach"}, (
        f"the outage was not seen by both database users: {refused}; "
        f"{setup.proxy.cut} connections cut"
    )
    recovered = max((load.relative(s.started) for s in failed), default=back) - back
    record(
        result,
        f"{result.server_errors} x 503 (online store, contact log unavailable) "
        f"during the {OUTAGE_S:.0f} s outage, predict unaffected; all 2xx again "
        f"{max(recovered, 0):.1f} s after, no restart",
    )


def workers(server: Server) -> list[psutil.Process]:
    """The live serving worker processes of a `bentoml serve` (children of it;
    a killed one not yet reaped is left out)."""
    found = []
    for p in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if (
                p.status() != psutil.STATUS_ZOMBIE
                and "_bentoml_impl.worker.service" in (" ".join(p.cmdline()))
            ):
                found.append(p)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def test_a_worker_killed_under_load(setup: Setup) -> None:
    """One of the 2 workers is killed with SIGKILL: only requests in flight on
    it fail (their connection drops; at most one per client), the other worker
    answers the rest, BentoML starts a new worker, which takes new connections
    once it has loaded the champions."""
    start = fault_at()
    before = workers(setup.server)
    assert len(before) == WORKERS, before
    with Load(setup.server.url, setup.calls, env_key, FAULT_SECONDS + 120) as load:
        load.sleep_until(start)
        victim = before[-1]
        victim.send_signal(signal.SIGKILL)
        killed = load.at()
        while load.at() < killed + 90:
            now = workers(setup.server)
            if len(now) == WORKERS and victim.pid not in {p.pid for p in now}:
                break
            time.sleep(0.2)
        respawned = load.at()
        load.sleep_until(max(FAULT_SECONDS, respawned + fault_at()))
    result, reasons = tally("a worker killed (SIGKILL)", load, load.at())
    check_common(result, reasons, setup.server)
    now = workers(setup.server)
    assert len(now) == WORKERS and victim.pid not in {p.pid for p in now}, now
    failed = [s for s in load.sent if s.kind != "2xx"]
    in_flight = [
        s
        for s in failed
        if s.kind == "dropped" and load.relative(s.started) <= killed + 1.0
    ]
    assert len(failed) == len(in_flight) <= CLIENTS, bad(failed)[:5]
    assert all(s.kind == "2xx" for s in after(load, load.sent, killed + GRACE_S))
    assert setup.server.process.poll() is None  # the server itself never restarted
    new = next(p for p in now if p.pid not in {b.pid for b in before})
    serving_s = load.relative(takes_connections(setup.server, new, 180)) - killed
    record(
        result,
        f"{len(in_flight)} request(s) in flight on the killed worker dropped (no "
        f"answer), none else failed; a new worker started {respawned - killed:.0f} s "
        f"after, answering new connections {serving_s:.0f} s after; no restart",
    )


def takes_connections(
    server: Server, worker: psutil.Process, deadline_s: float
) -> float:
    """When (time.monotonic()) `worker` first holds a client connection: new
    connections, kept open, are spread over the workers accepting on the shared
    socket, so the new worker holds some once it has loaded the champions.
    (Connections kept alive stay on the worker that accepted them: the load's
    clients are all on the survivor.)"""
    port = urlsplit(server.url).port
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        clients = [httpx.Client(timeout=30) for _ in range(2 * CLIENTS)]
        try:
            for c in clients:
                assert c.get(f"{server.url}/readyz").status_code == 200
            held = [
                c
                for c in worker.net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            ]
            if held:
                return time.monotonic()
        finally:
            for c in clients:
                c.close()
        time.sleep(1)
    raise AssertionError(f"the new worker {worker.pid} took no connection")
