"""The batch benchmark at a tiny scale: it runs end to end and writes its keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.batch
from benchmarks.__main__ import main
from benchmarks.batch import RESULTS_FILE, run_batch

ISSUE_KEYS = (
    "customers",
    "end_to_end_customers_per_s",
    "score_rows_per_s",
    "raw_predict_rows_per_s",
    "score_vs_raw_ratio",
    "peak_mb",
    "reasons_rows_per_s",
)


def test_tiny_batch_bench_writes_the_issue_keys(tmp_path: Path) -> None:
    record = run_batch(
        customers=800, seed=3, workdir=tmp_path / "work", results=tmp_path / "res"
    )
    saved = json.loads((tmp_path / "res" / RESULTS_FILE).read_text())
    assert saved == json.loads(json.dumps(record))
    for key in ISSUE_KEYS:
        assert saved[key] is not None and saved[key] > 0, key
    assert saved["customers"] == 800
    assert saved["rows_scored"] + saved["rows_skipped"] >= 800 * 0.9
    assert saved["reasons_method"] == "path"
    assert saved["reasons_shap_rows_per_s"] > 0 and saved["reasons_path_rows_per_s"] > 0
    assert saved["score_vs_raw_ratio"] == (
        saved["score_rows_per_s"] / saved["raw_predict_rows_per_s"]
    )
    # the scored output was removed; the models and data stay for a rerun
    assert not [p for p in (tmp_path / "work").iterdir() if "batch-scores" in p.name]


def test_bench_batch_cli_defaults_to_a_million_customers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(benchmarks.batch, "run_batch", lambda **kw: calls.append(kw))
    assert main(["batch"]) == 0
    assert calls[0]["customers"] == 1_000_000 and calls[0]["memory_limit"] == "1GB"
    assert main(["batch", "--customers", "5000"]) == 0
    assert calls[1]["customers"] == 5000
    assert main(["batch", "--customers", "0"]) == 2 and len(calls) == 2
    assert "Invalid value for '--customers'" in capsys.readouterr().err
