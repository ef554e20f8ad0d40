"""`make bench-api`'s measuring parts, briefly, on the tests' real server: every
figure of api.json is produced, and the table prints each beside its reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.api import (
    format_table,
    in_process,
    measure,
    ratios,
    request_bodies,
    run_load,
    sample_requests,
)
from benchmarks.harness import write_json
from core.config import load_config
from serving.online_store.sqlite import stored_as_of
from tests.helpers import (
    TEST_API_KEY,
    Project,
    Server,
    run_cli,
    start_service,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.integration

REQUIRED = [
    "predict_1_seq_p50_ms",
    "predict_1_c8_p99_ms",
    "predict_1_c8_rps",
    "by_id_vs_predict_ratio",
    "explain_100_ms",
    "bare_1_seq_p50_ms",
    "inprocess_1_ms",
]


def test_every_figure_is_measured_and_printed(
    server: Server, trained: Project, tmp_path: Path
) -> None:
    if stored_as_of(load_config(trained.config).online_store.path) is None:
        done = run_cli(["score"], trained.env())
        assert done.returncode in (0, 3), done.stderr[-2000:]
    records, ids = sample_requests(trained.config)
    encoded = request_bodies(records, ids)
    out = {"customers": 1500.0, "requests": 8.0}
    out.update(measure("ours", server.url, encoded, 8, key=TEST_API_KEY))
    log = tmp_path / "bare.log"
    url, process = start_service("benchmarks.echo_service:Bare", trained.env(), log)
    try:
        wait_ready(url, process, log)
        out.update(measure("bare", url, encoded, 8, key=TEST_API_KEY))
    finally:
        stop(process)
    out.update(in_process(trained.config, records))
    out.update(ratios(out))
    for key in REQUIRED:
        assert out[key] > 0, key
    table = format_table(out)
    for label in ["predict 1 record, sequential p50", "explain 100 customers, p50"]:
        assert label in table
    assert f"bare {out['bare_1_seq_p50_ms']:.2f} ms" in table
    write_json(tmp_path / "api.json", out)
    assert set(REQUIRED) <= set(json.loads((tmp_path / "api.json").read_text()))


def test_a_failing_request_stops_the_load(server: Server) -> None:
    with pytest.raises(RuntimeError, match="401"):
        run_load(f"{server.url}/predict", b"{}", 1, 3, warmup=0, key="wrong-key")
