"""Start-up and run faults (issue 22, part 2): a real `bentoml serve` whose
registry is unreachable, empty, then holds a corrupted champion is up but not
ready, saying why, and turns ready once fixed without a restart; the nightly
run with MLflow failing mid-run publishes its outputs and exits 11, with MLflow
down at the start writes nothing, and on a full disk leaves the previous
outputs intact.

The registry is a copy of the session's trained one (its paths moved to the
copy), served by a real `mlflow server` behind a small HTTP proxy the tests
switch off (every connection dropped) or arm to go down at a given request.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from core.config import load_config
from features.columns import TARGETS
from serving.batch.nightly import read_status
from serving.online_store.sqlite import stored_as_of
from tests.helpers import (
    BIN,
    Project,
    auth,
    free_port,
    records,
    run_cli,
    spawn,
    start_bentoml,
    stop,
    wait_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CHAMPION = "champion"


class DroppingProxy:
    """An HTTP proxy to `upstream` that can be down (every connection closed
    unanswered, as a tracking server gone looks to a client) or armed to go
    down for good at the first request whose path holds `fail_from`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.up = True
        self.fail_from: str | None = None
        self.seen: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _forward(self) -> None:
                proxy.seen.append(self.path)
                if proxy.fail_from and proxy.fail_from in self.path:
                    proxy.up = False
                if not proxy.up:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size) if size else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                r = httpx.request(
                    self.command,
                    f"{proxy.upstream}{self.path}",
                    content=body,
                    headers=headers,
                    timeout=60,
                )
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Registry:
    """A copy of the trained registry behind `mlflow server` and the proxy."""

    root: Path
    upstream: str
    proxy: DroppingProxy
    config: Path

    def client(self) -> MlflowClient:
        return MlflowClient(self.upstream, self.upstream)


def relocate(db: Path, old: str, new: str) -> None:
    """Every text value of the SQLite store naming `old` names `new` instead
    (artifact locations, sources): the copy then holds its own artifacts."""
    con = sqlite3.connect(db)
    try:
        for (table,) in con.execute(
            "select name from sqlite_master where type='table'"
        ):
            for col in con.execute(f"pragma table_info('{table}')").fetchall():
                if "CHAR" in col[2].upper() or "TEXT" in col[2].upper():
                    con.execute(
                        f'update "{table}" set "{col[1]}" = replace("{col[1]}", ?, ?)'
                        f' where "{col[1]}" like ?',
                        (old, new, f"%{old}%"),
                    )
        con.commit()
    finally:
        con.close()


@pytest.fixture(scope="module")
def registry(
    trained: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(trained.root / "mlruns", root / "mlruns")
    relocate(
        root / "mlruns" / "mlflow.db",
        str(trained.root / "mlruns"),
        str(root / "mlruns"),
    )
    config = yaml.safe_load(trained.config.read_text())
    config.setdefault("api", {})["load_retry_max_s"] = 1
    config["scoring"]["output"] = str(root / "scores")
    config["online_store"] = {"path": str(root / "online" / "store.sqlite")}
    (root / "propensity.yaml").write_text(yaml.safe_dump(config))
    port, log = free_port(), root / "mlflow.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    process = spawn(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env,
        log,
        cwd=root,
    )
    upstream = f"http://127.0.0.1:{port}"
    proxy = DroppingProxy(upstream)
    try:
        wait_ready(upstream, process, log, deadline_s=180, path="/health")
        yield Registry(root, upstream, proxy, root / "propensity.yaml")
    finally:
        proxy.close()
        stop(process)


def env_for(trained: Project, registry: Registry) -> dict[str, str]:
    return {
        **trained.env(),
        "PROPENSITY_CONFIG": str(registry.config),
        "MLFLOW_TRACKING_URI": registry.proxy.url,
        # one try per call: the faults show at once
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }


def artifact_file(db: Path, name: str, version: str) -> Path:
    """The LightGBM model file of a registered version, in the copy."""
    con = sqlite3.connect(db)
    try:
        ((location,),) = con.execute(
            "select storage_location from model_versions where name = ? "
            "and version = ?",
            (name, int(version)),
        ).fetchall()
    finally:
        con.close()
    return Path(unquote(urlparse(location).path)) / "model.lgb"


def readyz(url: str) -> httpx.Response | None:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=5)
    return None


def wait_reason(url: str, process: subprocess.Popen, log: Path, words: str) -> str:
    """Poll /readyz until its 503 body holds `words`; /readyz never 200 meanwhile."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        r = readyz(url)
        if r is not None:
            assert r.status_code == 503, r.text
            if words in r.text:
                return r.text
        time.sleep(0.3)
    raise AssertionError(f"/readyz never said {words!r}:\n{log.read_text()[-3000:]}")


def workers(process: subprocess.Popen) -> set[int]:
    return {p.pid for p in psutil.Process(process.pid).children(recursive=True)}


def test_api_starts_not_ready_says_why_and_recovers_by_itself(
    trained: Project, registry: Registry, tmp_path: Path
) -> None:
    """Unreachable tracking server, then no champion, then a corrupted champion
    artifact: the worker stays up (same processes), /readyz 503 says which,
    endpoints 503 with the reason; fixed, it turns ready with no restart."""
    client = registry.client()
    names = {t: load_config(registry.config).model_name(t) for t in TARGETS}
    champions = {
        t: client.get_model_version_by_alias(n, CHAMPION).version
        for t, n in names.items()
    }
    for name in names.values():
        client.delete_registered_model_alias(name, CHAMPION)
    model_file = artifact_file(
        registry.root / "mlruns" / "mlflow.db", names["churn"], champions["churn"]
    )
    good = model_file.read_bytes()
    registry.proxy.up, registry.proxy.fail_from = False, None
    log = tmp_path / "serve.log"
    url, process = start_bentoml(env_for(trained, registry), log)
    try:
        text = wait_reason(url, process, log, "cannot be read")
        assert registry.proxy.url in text
        before = workers(process)
        assert httpx.get(f"{url}/livez", timeout=5).status_code == 200
        body, _ = records(trained, 1)
        r = httpx.post(
            f"{url}/predict", json={"customers": body}, headers=auth(), timeout=10
        )
        assert r.status_code == 503 and "cannot be read" in r.json()["error"]
        assert r.headers["retry-after"]
        # a key is still checked first: no reason for a caller without one
        assert httpx.post(f"{url}/predict", json={"customers": body}).status_code == 401

        registry.proxy.up = True  # the tracking server is back, the registry empty
        assert "train first" in wait_reason(url, process, log, "train first")

        model_file.write_bytes(b"not a LightGBM model\n" + good[: len(good) // 3])
        for target, name in names.items():
            client.set_registered_model_alias(name, CHAMPION, champions[target])
        text = wait_reason(url, process, log, "cannot be loaded")
        assert f"{names['churn']} version {champions['churn']}" in text

        model_file.write_bytes(good)
        wait_ready(url, process, log, deadline_s=60)
        r = httpx.post(
            f"{url}/predict", json={"customers": body}, headers=auth(), timeout=30
        )
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["model_versions"] == champions
        assert workers(process) == before, "a worker was restarted"
    finally:
        stop(process)
        model_file.write_bytes(good)
        registry.proxy.up = True


def scores_state(output: Path) -> dict[str, bytes]:
    """Every published file of a scores folder and its bytes."""
    return {
        str(p.relative_to(output)): p.read_bytes()
        for p in sorted(output.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_nightly_mlflow_down_mid_run_publishes_and_exits_11(
    trained: Project, registry: Registry
) -> None:
    """MLflow gone once the scores are written: Parquet and the online store are
    published, the status file says what was lost, exit 11. MLflow down at the
    start: nothing scored, nothing written but the status, exit 1."""
    config = load_config(registry.config)
    env = env_for(trained, registry)
    registry.proxy.up, registry.proxy.fail_from = True, "/runs/log-batch"
    done = run_cli(["score", "--as-of", "2025-12-01"], env)
    assert done.returncode == 11, done.stderr[-3000:]
    assert "not recorded" in done.stderr
    assert any("/runs/log-batch" in p for p in registry.proxy.seen)
    published = config.scoring.output / "as_of=2025-12-01"
    assert list(published.glob("*.parquet")), "no Parquet published"
    assert stored_as_of(config.online_store.path) == "2025-12-01"
    status = read_status(config.scoring.output)
    assert status["exit_code"] == 11 and status["tracking_error"]

    before = scores_state(config.scoring.output)
    store = config.online_store.path.read_bytes()
    registry.proxy.up, registry.proxy.fail_from = False, None
    done = run_cli(["score", "--as-of", "2025-12-02"], env)
    registry.proxy.up = True
    assert done.returncode == 1, done.stderr[-3000:]
    assert "cannot be read" in done.stderr
    after = scores_state(config.scoring.output)
    assert {k: v for k, v in after.items() if k != "_last_run.json"} == {
        k: v for k, v in before.items() if k != "_last_run.json"
    }
    assert config.online_store.path.read_bytes() == store
    assert read_status(config.scoring.output)["state"] == "failed"


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path`; skips, saying why, when mounting is
    not permitted here."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs for the full disk: {done.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_nightly_on_a_full_disk_keeps_the_previous_outputs(
    trained: Project, registry: Registry, tmp_path: Path
) -> None:
    """Scores (and the feature state) on an 8 MB filesystem: one night fits;
    then filled to a few KB free, the next night fails while writing (exit 1,
    naming the device error)
    and the previous night's outputs, the online store and no temporary files
    are what is left."""
    config_data = yaml.safe_load(registry.config.read_text())
    config_data["scoring"]["output"] = str(tmp_path / "disk" / "scores")
    config_data["online_store"] = {"path": str(tmp_path / "online" / "store.sqlite")}
    path = tmp_path / "propensity.yaml"
    path.write_text(yaml.safe_dump(config_data))
    config = load_config(path)
    env = {**env_for(trained, registry), "PROPENSITY_CONFIG": str(path)}
    registry.proxy.up, registry.proxy.fail_from = True, None
    with small_disk(tmp_path / "disk", "8m") as disk:
        done = run_cli(["score", "--as-of", "2025-12-01"], env)
        assert done.returncode in (0, 3), done.stderr[-3000:]
        before = scores_state(config.scoring.output)
        store = config.online_store.path.read_bytes()
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(0, free - 24_000))
        done = run_cli(["score", "--as-of", "2025-12-02"], env)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "No space left on device" in done.stderr, done.stderr[-3000:]
        after = scores_state(config.scoring.output)
        assert {k: v for k, v in after.items() if k != "_last_run.json"} == {
            k: v for k, v in before.items() if k != "_last_run.json"
        }
        assert not (config.scoring.output / "as_of=2025-12-02").exists()
        leftovers = [p for p in config.scoring.output.rglob(".*") if p.is_file()]
        assert leftovers == [], leftovers
        assert config.online_store.path.read_bytes() == store
