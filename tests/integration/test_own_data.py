"""Your own event log, first try (README: Your own data): each real log in
../shared/data, exported as a plain CSV or Parquet file in its own column names by a
small script here (not by the project's adapters), goes through the CLI only:
`init` -> `check` -> `train` -> `score` -> `serve`, with no edit to the generated
config. The exports are what a data team would pull from its own systems."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from core.exitcodes import ExitCode
from serving.api.servers import free_port, spawn, stop, wait_ready
from tests.helpers import BIN, SHARED_DATA, TEST_API_KEY, auth, run_cli

# each test makes its own project from nothing: they run beside the other
# integration tests, which share the session's trained project
pytestmark = [
    pytest.mark.integration,
    pytest.mark.realdata,
    pytest.mark.xdist_group("own-data"),
]

CDNOW = SHARED_DATA / "cdnow" / "CDNOW_master.txt"
RETAIL = SHARED_DATA / "online_retail" / "online_retail.parquet"
CHURNSIM = SHARED_DATA / "churnsim_socialnet7"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: the real logs live in ../shared/data")
    return path


# ------------------------------------------------------------------ the exports


def export_cdnow(folder: Path) -> dict[str, list[Path]]:
    """CDNOW's master file as a CSV of orders in its own header's names
    (customer_id, date, number_of_cds, dollar_value), dates written as ISO dates."""
    raw = pd.read_csv(
        require(CDNOW), sep=r"\s+", dtype={"customer_id": str, "date": str}
    )
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d").dt.date
    path = folder / "cdnow_orders.csv"
    raw.to_csv(path, index=False)
    return {"events": [path]}


def export_online_retail(folder: Path) -> dict[str, list[Path]]:
    """The shop's invoice lines with a customer, as two CSV exports in the original
    columns: sales lines and cancellation lines (invoice numbers starting with C)."""
    lines = pd.read_parquet(require(RETAIL))
    lines = lines[lines["CustomerID"].notna()].copy()
    lines["CustomerID"] = lines["CustomerID"].astype("int64")
    cancelled = lines["InvoiceNo"].str.startswith("C")
    sales, cancellations = folder / "sales.csv", folder / "cancellations.csv"
    lines[~cancelled].to_csv(sales, index=False)
    lines[cancelled].to_csv(cancellations, index=False)
    return {"events": [sales, cancellations]}


def export_churnsim(folder: Path) -> dict[str, list[Path]]:
    """ChurnSim's tables as the simulator stored them: the usage log, the billing
    system's subscription terms (account_id, product, start_date, end_date, mrr,
    bill_period_months, ...) and the accounts, without the contract's id column the
    published copies add for joining."""
    events = folder / "usage_events.parquet"
    shutil.copy(require(CHURNSIM / "events.parquet"), events)
    out = {"events": [events]}
    for name, key in (("subscriptions", "subscriptions"), ("accounts", "customers")):
        table = pq.read_table(require(CHURNSIM / f"{name}.parquet"))
        path = folder / f"{name}.parquet"
        pq.write_table(table.drop(["customer_id"]), path)
        out[key] = [path]
    return out


# ------------------------------------------------------------------ the path


def env_for(root: Path) -> dict[str, str]:
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROPENSITY_", "MLFLOW_"))
    }
    return {
        **env,
        "PROPENSITY_API_KEYS": TEST_API_KEY,
        "BENTOML_HOME": str(root / "bentoml_home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "DO_NOT_TRACK": "1",
    }


def cli(args: list[str], env: dict[str, str], ok=(ExitCode.OK,)) -> str:
    done = run_cli(args, env, timeout=900)
    assert done.returncode in {int(c) for c in ok}, (
        f"propensity {' '.join(args)} exited {done.returncode}:\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout + done.stderr


@contextmanager
def served(config: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    process = spawn(
        [str(BIN / "propensity"), "--config", str(config), "serve"]
        + ["--port", str(port)],
        env,
        log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log, deadline_s=120)
        yield url
    finally:
        stop(process)


def first_try(tmp_path: Path, files: dict[str, list[Path]]) -> dict:
    """init -> check -> train -> score -> serve on `files`; returns what each step
    left for the test to check."""
    env = env_for(tmp_path)
    config = tmp_path / "propensity.yaml"
    args = ["init", "--out", str(config)]
    for option in ("events", "customers", "subscriptions"):
        for path in files.get(option, []):
            args += [f"--{option}", str(path)]
    profile = cli(args, env)
    assert config.is_file()
    refused = run_cli(args, env)
    assert refused.returncode == ExitCode.USAGE, "init must never overwrite"
    generated = yaml.safe_load(config.read_text())
    targets = list(generated["targets"])
    base = ["--config", str(config)]
    plan = cli([*base, "check"], env)
    assert f"train would train {', '.join(targets)}" in plan
    trained = cli([*base, "train"], env)
    scored = cli([*base, "score"], env, ok=(ExitCode.OK, ExitCode.DRIFT_ALERT))
    scores = sorted((tmp_path / "scores").glob("as_of=*/*.parquet"))
    assert scores, f"no score files under {tmp_path / 'scores'}"
    frame = pd.read_parquet(scores[-1])
    # one customer each target scored (a customer outside a target's population
    # has no score for it)
    some = list(
        dict.fromkeys(
            str(frame.loc[frame[t].notna(), "customer_id"].iloc[0]) for t in targets
        )
    )
    with served(config, env, tmp_path / "serve.log") as url:
        answer = httpx.post(
            f"{url}/predict_by_id",
            json={"customer_ids": some},
            headers=auth(),
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    return {
        "profile": profile,
        "config": generated,
        "targets": targets,
        "plan": plan,
        "trained": trained,
        "scored": scored,
        "scores": frame,
        "answer": answer.json(),
    }


def served_targets(answer: dict) -> set[str]:
    """The targets the API scored any of the customers for."""
    found = [p for p in answer["predictions"] if p["status"] == "ok"]
    assert found, answer
    return {t for p in found for t in p["probabilities"]}


def test_cdnow_orders_first_try(tmp_path: Path) -> None:
    out = first_try(tmp_path, export_cdnow(tmp_path))
    # a purchases-only log: purchase and inactivity churn, no service requests
    assert "service_request" not in out["targets"]
    assert "purchase" in out["targets"]
    assert out["config"]["data"]["columns"]["events"]["event_time"] == "date"
    assert served_targets(out["answer"]) == set(out["targets"])
    # purchase covers every customer seen; churn only the active ones: most of
    # CDNOW's 1997 cohort had long stopped buying by mid-1998
    scores = out["scores"]
    assert len(scores) == 23_570
    lapsed = scores["churn"].isna() & scores["purchase"].notna()
    assert lapsed.sum() > len(scores) / 2
    assert "dropped" not in out["plan"] or "label window incomplete" in out["plan"]


def test_online_retail_two_exports_first_try(tmp_path: Path) -> None:
    out = first_try(tmp_path, export_online_retail(tmp_path))
    assert "purchase" in out["targets"]
    assert served_targets(out["answer"]) == set(out["targets"])


def test_churnsim_billing_export_first_try(tmp_path: Path) -> None:
    out = first_try(tmp_path, export_churnsim(tmp_path))
    assert out["config"]["targets"]["churn"]["definition"] == "contract"
    assert "purchase" not in out["targets"]
    assert set(out["targets"]) == {"churn"}
    assert served_targets(out["answer"]) == {"churn"}
