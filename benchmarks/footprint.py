"""Serving footprint: what the Bento and an API worker weigh (issue 16).

Not a test: `make bench-footprint` measures, in one run, each figure beside its
reference:

1. a runtime venv (`<workdir>/runtime-venv`): `serving/requirements.txt` installed
   with constraints.txt, the set the Bento installs, reused while a stamp holding
   the requirements' hash matches. The project itself is not installed into it: the
   measurements put the repository root on PYTHONPATH (and a Bento serves its own
   `src/`). Its size on disk and number of distributions, beside the dev venv's
   (`.venv`, the full constraints).
2. the import of the API module `serving.api.service` in a fresh interpreter (the
   median of 5 runs: seconds, and the peak resident memory), in the runtime venv
   and in the dev venv, beside a bare BentoML service (`benchmarks.echo_service`)
   imported the same way in the runtime venv; and whether scikit-learn, pyspark,
   optuna or `training` were imported with it.
3. a served worker: champions trained on demo data (`benchmarks.api.prepare`),
   packed with `propensity bento`, the Bento served by the runtime venv's
   `bentoml serve` with 1 worker: its time to /readyz, a few /predict calls that
   must answer 200 with probabilities in [0, 1], then the worker's resident memory
   (the largest process under `bentoml serve`, and the whole tree's sum) beside the
   bare echo service served from the same venv the same way.
4. the Bento's size: src (code), models and env in MB, its .py files, the
   requirements it declares, and any top-level package in src other than core,
   features, model and serving (expected: none).

Peak memory of an import is the child's own VmHWM (/proc/self/status).
`ru_maxrss` is recorded too, but on Linux a child starts with its parent's peak
(see benchmarks.harness), so it overstates a small child of a big parent.

These are measurements: there is no goal. Figures go to
`bench/results/footprint.json` (keys carry their units).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import write_json
from serving.api.servers import free_port, spawn, stop, wait_ready, with_workers

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "serving" / "requirements.txt"
CONSTRAINTS = ROOT / "constraints.txt"
DEV_VENV = ROOT / ".venv"
RESULTS_FILE = "footprint.json"
SERVICE_MODULE = "serving.api.service"
ECHO_MODULE = "benchmarks.echo_service"
ECHO_SERVICE = "benchmarks.echo_service:Bare"
IMPORT_RUNS = 5
PREDICT_CALLS = 5
SEED = 42
BENTO_VERSION = "footprint"
# the modules whose presence after importing the API is recorded
PROBED = ("sklearn", "pyspark", "optuna", "training")
# what the Bento's src may hold (bentofile.yaml)
SERVING_PACKAGES = frozenset({"core", "features", "model", "serving"})
STAMP = ".footprint-requirements"
PSEUDONYM_ENV = "PROPENSITY_PSEUDONYM_KEY"
BENCH_PSEUDONYM_KEY = "footprint-bench-pseudonym-key-61c0"
MB = 1024 * 1024

# Run as `python -c` in a fresh interpreter: the import's wall time, then the
# process's memory and which of PROBED were imported, as one JSON line.
IMPORT_PROBE = """\
import time, resource
t = time.perf_counter()
import {module} as m
seconds = time.perf_counter() - t
import json, sys
with open("/proc/self/status") as f:
    status = f.read()
print(json.dumps({{
    "seconds": seconds,
    "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "status": status,
    "file": m.__file__,
    "modules": {{p: any(k == p or k.startswith(p + ".") for k in sys.modules)
                for p in {probed!r}}},
}}))
"""


# -- pure helpers -------------------------------------------------------------


def folder_mb(path: Path) -> float:
    """The size of every file under `path` (symlinks counted as links, not
    followed), in MB; 0 when it does not exist."""
    if not path.exists():
        return 0.0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += (Path(root) / name).lstat().st_size
    return total / MB


def count_distributions(venv: Path) -> int:
    """The distributions installed in a venv: its `*.dist-info` folders."""
    return sum(1 for _ in venv.glob("lib/python*/site-packages/*.dist-info"))


def requirement_count(text: str) -> int:
    """The requirements a requirements file declares (comments, blank lines and
    pip options such as `-c` left out)."""
    count = 0
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            count += 1
    return count


def status_kb(status: str, field: str = "VmHWM") -> int:
    """A memory field of /proc/<pid>/status (`VmHWM:   123456 kB`), in kB."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise ValueError(f"no {field} in the process status")


def maxrss_mb(value: int, platform: str = sys.platform) -> float:
    """`ru_maxrss` in MB: Linux reports kB, macOS bytes."""
    return value / MB if platform == "darwin" else value / 1024


def digest(*texts: str) -> str:
    """A short hash of the texts: the runtime venv's stamp."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def extra_packages(src: Path, allowed: frozenset[str] = SERVING_PACKAGES) -> list[str]:
    """Top-level Python packages or modules in a Bento's src other than `allowed`."""
    extra = []
    for entry in sorted(src.iterdir()):
        if entry.name in allowed or entry.name.startswith("."):
            continue
        if entry.is_dir() and any(entry.rglob("*.py")):
            extra.append(entry.name)
        elif entry.suffix == ".py":
            extra.append(entry.stem)
    return extra


def median_probe(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median seconds and peak memory of several import runs, and which of
    PROBED any run imported."""
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "hwm_mb": statistics.median(status_kb(r["status"]) / 1024 for r in runs),
        "maxrss_mb": statistics.median(maxrss_mb(r["ru_maxrss"]) for r in runs),
        "modules": {p: any(r["modules"][p] for r in runs) for p in PROBED},
        "file": runs[0]["file"],
    }


def bento_parts(bento: Path, home: Path) -> dict[str, float]:
    """A built Bento's size: its folder split into src and env, and the models it
    names (bento.yaml), which BentoML 1.4 keeps in the model store of `home` and
    `bentoml export` or `containerize` pack with it (MB); its .py files and the
    requirements its env declares. `bento_size_mb` is the folder plus the models."""
    import yaml

    src = bento / "src"
    requirements = bento / "env" / "python" / "requirements.txt"
    meta = yaml.safe_load((bento / "bento.yaml").read_text()) or {}
    models = 0.0
    for model in meta.get("models") or []:
        name, _, version = str(model["tag"]).partition(":")
        models += folder_mb(home / "models" / name / version)
    folder = folder_mb(bento)
    return {
        "bento_size_mb": folder + models,
        "bento_folder_mb": folder,
        "bento_src_mb": folder_mb(src),
        "bento_models_mb": models,
        "bento_env_mb": folder_mb(bento / "env"),
        "bento_py_files": float(sum(1 for _ in src.rglob("*.py"))),
        "bento_requirements": float(
            requirement_count(requirements.read_text()) if requirements.exists() else 0
        ),
    }


# -- the runtime venv -----------------------------------------------------------


def runtime_venv(workdir: Path) -> Path:
    """`<workdir>/runtime-venv` with serving/requirements.txt installed under
    constraints.txt; reused while its stamp matches the requirements."""
    venv = workdir / "runtime-venv"
    stamp = venv / STAMP
    want = digest(REQUIREMENTS.read_text(), CONSTRAINTS.read_text())
    if stamp.exists() and stamp.read_text().strip() == want:
        log.info("runtime venv %s is current", venv)
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    done = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS)]
        + ["-r", str(REQUIREMENTS)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install into {venv} failed:\n{done.stderr[-3000:]}")
    stamp.write_text(want + "\n")
    print(f"runtime venv installed in {time.perf_counter() - t0:.0f} s", flush=True)
    return venv


# -- imports ----------------------------------------------------------------------


def probe_import(
    python: Path, module: str, cwd: Path = ROOT, runs: int = IMPORT_RUNS
) -> dict[str, Any]:
    """`import module` in `runs` fresh interpreters of `python`, the repository
    root on PYTHONPATH; the median figures (see median_probe)."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "OMP_WAIT_POLICY": "passive"}
    code = IMPORT_PROBE.format(module=module, probed=PROBED)
    results = []
    for _ in range(runs):
        done = subprocess.run(
            [str(python), "-c", code], env=env, cwd=cwd, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{python} could not import {module}:\n{done.stderr[-3000:]}"
            )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return median_probe(results)


# -- served workers ---------------------------------------------------------------


def tree_rss_mb(pid: int) -> tuple[float, float, int]:
    """The resident memory under a server process: the largest descendant (the
    worker), the sum of the process and all its descendants (MB), and how many
    descendants there are."""
    import psutil

    root = psutil.Process(pid)
    children = root.children(recursive=True)
    sizes = []
    for p in children:
        try:
            sizes.append(p.memory_info().rss / MB)
        except psutil.NoSuchProcess:
            continue
    own = root.memory_info().rss / MB
    return max(sizes, default=0.0), own + sum(sizes), len(sizes)


def serve_and_measure(
    venv: Path,
    target: str,
    env: dict[str, str],
    log_path: Path,
    cwd: Path,
    check: Any,
) -> dict[str, float]:
    """`bentoml serve target` from `venv` with 1 worker on a free port: seconds to
    /readyz, `check(url)` (the requests proving it serves), then the RSS figures
    read once the requests have run."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(venv / "bin" / "bentoml"), "serve", target, "--host", "127.0.0.1"]
    cmd += ["--port", str(port)]
    t0 = time.perf_counter()
    process = spawn(cmd, env, log_path, cwd)
    try:
        wait_ready(url, process, log_path, deadline_s=180)
        ready_s = time.perf_counter() - t0
        check(url)
        time.sleep(1.0)  # let the worker settle after the requests
        worker, total, count = tree_rss_mb(process.pid)
    finally:
        stop(process)
    return {
        "ready_s": ready_s,
        "worker_rss_mb": worker,
        "tree_rss_mb": total,
        "processes": float(count + 1),
    }


def check_predict(records: list[dict], key: str) -> Any:
    """A check posting the records to /predict: 200 and every probability in [0, 1]."""

    def check(url: str) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        for i in range(PREDICT_CALLS):
            r = httpx.post(
                f"{url}/predict",
                json={"customers": records[i : i + 10]},
                headers=headers,
                timeout=30,
            )
            if r.status_code != 200:
                raise RuntimeError(f"/predict answered {r.status_code}: {r.text[:500]}")
            for p in r.json()["predictions"]:
                if not all(0.0 <= v <= 1.0 for v in p["probabilities"].values()):
                    raise RuntimeError(f"a probability outside [0, 1]: {p}")

    return check


def check_echo(records: list[dict]) -> Any:
    """A check posting feature records to the echo service: 200."""

    def check(url: str) -> None:
        body = {"customers": [r["features"] for r in records[:10]]}
        for _ in range(PREDICT_CALLS):
            r = httpx.post(f"{url}/predict", json=body, timeout=30)
            if r.status_code != 200:
                raise RuntimeError(f"echo answered {r.status_code}: {r.text[:500]}")

    return check


# -- the Bento --------------------------------------------------------------------


def build_bento(env: dict[str, str], home: Path) -> Path:
    """`propensity bento --version footprint` (the champions imported into `home`'s
    model store, then `bentoml build`); the built Bento's folder. A previous build
    of the same tag is removed first."""
    old = home / "bentos" / "propensity" / BENTO_VERSION
    if old.exists():
        shutil.rmtree(old)
    cli = Path(sys.executable).parent / "propensity"
    done = subprocess.run(
        [str(cli), "bento", "--version", BENTO_VERSION],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"propensity bento failed:\n{done.stderr[-3000:]}")
    if not old.is_dir():
        raise RuntimeError(f"no Bento at {old} after the build:\n{done.stdout}")
    return old


# -- the run ------------------------------------------------------------------------


def run_footprint(
    workdir: Path, customers: int = 5000, results: Path = ROOT / "bench" / "results"
) -> dict[str, Any]:
    """Every figure of the footprint (see the module docstring); printed as a
    table and written to `results/footprint.json`."""
    from benchmarks.api import API_KEY, bench_env, prepare, sample_requests

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"customers": float(customers)}

    # 1. the venvs
    venv = runtime_venv(workdir)
    out["runtime_venv_mb"] = folder_mb(venv)
    out["runtime_venv_distributions"] = float(count_distributions(venv))
    out["dev_venv_mb"] = folder_mb(DEV_VENV)
    out["dev_venv_distributions"] = float(count_distributions(DEV_VENV))
    print("venvs measured", flush=True)

    # 2. imports in fresh interpreters
    for name, python, module in [
        ("service_import_runtime", venv / "bin" / "python", SERVICE_MODULE),
        ("service_import_dev", DEV_VENV / "bin" / "python", SERVICE_MODULE),
        ("echo_import_runtime", venv / "bin" / "python", ECHO_MODULE),
    ]:
        probe = probe_import(python, module)
        out[f"{name}_s"] = probe["seconds"]
        out[f"{name}_rss_mb"] = probe["hwm_mb"]
        out[f"{name}_maxrss_mb"] = probe["maxrss_mb"]
        for mod, present in probe["modules"].items():
            out[f"{name}_loads_{mod}"] = present
        print(f"  {name}: {probe['seconds']:.2f} s from {probe['file']}", flush=True)

    # 3. train, pack and serve (the demo config pseudonymises: a key is needed,
    # the bench's own unless one is set; make sets the demo's)
    os.environ.setdefault(PSEUDONYM_ENV, BENCH_PSEUDONYM_KEY)
    t0 = time.perf_counter()
    config = prepare(workdir, customers, SEED)
    print(f"prepared {customers:,} demo customers in {time.perf_counter() - t0:.0f} s")
    records, _ids = sample_requests(config)
    home = workdir / "bentoml_home"
    env = {**bench_env(config), "BENTOML_HOME": str(home)}
    bento = build_bento(env, home)
    out.update(bento_parts(bento, home))
    out["bento_extra_packages"] = extra_packages(bento / "src")
    out["bento_src_entries"] = sorted(x.name for x in (bento / "src").iterdir())

    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    # served as test_bento serves a Bento: the packed models, an empty registry,
    # no project config, somewhere other than the repository
    served = dict(env)
    served.pop("PROPENSITY_CONFIG", None)
    served.pop("PYTHONPATH", None)
    served["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'empty-registry.db'}"
    bento_cwd = workdir / "bento-cwd"
    bento_cwd.mkdir(exist_ok=True)
    ours = serve_and_measure(
        venv,
        f"propensity:{BENTO_VERSION}",
        with_workers(served, "propensity", 1),
        logs / "bento.log",
        bento_cwd,
        check_predict(records, API_KEY),
    )
    echo_env = {
        **with_workers(env, "bare", 1),
        "BENTOML_HOME": str(workdir / "bentoml_home_echo"),
        "PYTHONPATH": str(ROOT),
    }
    bare = serve_and_measure(
        venv, ECHO_SERVICE, echo_env, logs / "echo.log", ROOT, check_echo(records)
    )
    for suffix, figures in [("runtime", ours), ("echo", bare)]:
        out[f"ready_{suffix}_s"] = figures["ready_s"]
        out[f"worker_rss_{suffix}_mb"] = figures["worker_rss_mb"]
        out[f"serve_tree_rss_{suffix}_mb"] = figures["tree_rss_mb"]
        out[f"serve_processes_{suffix}"] = figures["processes"]

    print(format_table(out))
    write_json(Path(results) / RESULTS_FILE, out)
    print(f"figures written to {Path(results) / RESULTS_FILE}")
    return out


def format_table(r: dict[str, Any]) -> str:
    """Each figure beside its reference of the same run."""

    def loads(prefix: str) -> str:
        names = [p for p in PROBED if r.get(f"{prefix}_loads_{p}")]
        return ", ".join(names) if names else "none of " + "/".join(PROBED)

    rows = [
        (
            "runtime venv size (MB)",
            f"{r['runtime_venv_mb']:.0f}",
            f"dev venv {r['dev_venv_mb']:.0f}",
        ),
        (
            "runtime venv distributions",
            f"{r['runtime_venv_distributions']:.0f}",
            f"dev venv {r['dev_venv_distributions']:.0f}",
        ),
        (
            "import serving.api.service, runtime venv (s)",
            f"{r['service_import_runtime_s']:.2f}",
            f"dev venv {r['service_import_dev_s']:.2f}; "
            f"echo {r['echo_import_runtime_s']:.2f}",
        ),
        (
            "  peak RSS after the import (MB)",
            f"{r['service_import_runtime_rss_mb']:.0f}",
            f"dev venv {r['service_import_dev_rss_mb']:.0f}; "
            f"echo {r['echo_import_runtime_rss_mb']:.0f}",
        ),
        (
            "  also imported (runtime venv)",
            loads("service_import_runtime"),
            f"dev venv: {loads('service_import_dev')}",
        ),
        (
            "served Bento: time to /readyz (s)",
            f"{r['ready_runtime_s']:.1f}",
            f"echo {r['ready_echo_s']:.1f}",
        ),
        (
            "served Bento: worker RSS (MB)",
            f"{r['worker_rss_runtime_mb']:.0f}",
            f"echo {r['worker_rss_echo_mb']:.0f}",
        ),
        (
            "served Bento: serve + worker RSS (MB)",
            f"{r['serve_tree_rss_runtime_mb']:.0f}",
            f"echo {r['serve_tree_rss_echo_mb']:.0f}",
        ),
        (
            "Bento size with its models (MB)",
            f"{r['bento_size_mb']:.2f}",
            f"src {r['bento_src_mb']:.2f}, models {r['bento_models_mb']:.2f}, "
            f"env {r['bento_env_mb']:.2f} (installs the runtime venv)",
        ),
        (
            "Bento .py files / requirements",
            f"{r['bento_py_files']:.0f} / {r['bento_requirements']:.0f}",
            "extra packages in src: "
            + (", ".join(r["bento_extra_packages"]) or "none"),
        ),
    ]
    lines = [
        "Serving footprint: 1 worker per service; imports: median of "
        f"{IMPORT_RUNS} fresh interpreters",
        f"{'':<46}{'figure':>10}   reference (same run)",
    ]
    lines += [f"{label:<46}{value:>10}   {ref}" for label, value, ref in rows]
    return "\n".join(lines)
