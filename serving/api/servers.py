"""Local server processes: start one in its own session, wait until it is
ready (with a deadline: a BentoML worker whose start-up fails is restarted
forever and never turns ready), stop its whole process group.

Used by the benchmarks and the tests that talk to a real `bentoml serve`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(
    url: str,
    process: subprocess.Popen,
    log: Path,
    deadline_s: float = 90,
    path: str = "/readyz",
) -> None:
    """Poll `path` (/readyz) until 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(
        f"server not ready after {deadline_s}s:\n{log.read_text()[-3000:]}"
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def spawn(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen:
    """A server process in its own session (so `stop` ends its whole group), its
    output to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_service(
    service: str,
    env: dict[str, str],
    log: Path,
    home: Path | None = None,
    cwd: Path = ROOT,
) -> tuple[str, subprocess.Popen]:
    """`bentoml serve <service>` (a module:Class, or a Bento's tag in `home`) on a
    free local port, output to `log`.

    By default each server gets its own BentoML home beside the log: a starting
    server clears the Prometheus files in its home, which would reset another
    server's /metrics.
    """
    port = free_port()
    home = home or log.parent / f"bentoml-home-{port}"
    process = spawn(
        [str(BIN / "bentoml"), "serve", service, "--host", "127.0.0.1"]
        + ["--port", str(port)],
        {**env, "BENTOML_HOME": str(home)},
        log,
        cwd,
    )
    return f"http://127.0.0.1:{port}", process


def with_workers(env: dict[str, str], service: str, workers: int) -> dict[str, str]:
    """`env` telling BentoML to run `workers` processes of `service` (by name)."""
    option = f"services.{service}.workers={workers}"
    current = env.get("BENTOML_CONFIG_OPTIONS", "")
    return {**env, "BENTOML_CONFIG_OPTIONS": f"{current} {option}".strip()}
