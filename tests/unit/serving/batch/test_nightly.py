"""The nightly run's guards, piece by piece: the baseline a count is held
against, the too-few verdict, and marking killed runs FAILED in a real MLflow
sqlite store."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from serving.batch.nightly import (
    STATUS_FILE,
    find_baseline,
    mark_killed_runs,
    min_rows,
    record_failure,
    too_few,
)


def _partition(output: Path, day: str, rows: int) -> None:
    folder = output / f"as_of={day}"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table({"customer_id": [str(i) for i in range(rows)]}),
        folder / "part-0.parquet",
    )


def test_the_baseline_is_the_status_files_last_good_run(tmp_path: Path) -> None:
    _partition(tmp_path, "2025-11-01", 7)  # ignored: the status file says better
    good = {"as_of": "2025-10-01", "rows_scored": 1200, "run_id": "abc"}
    last = {"state": "finished", "as_of": "2025-11-01", "baseline": good}
    assert find_baseline(tmp_path, last, "2025-12-01") == good


def test_without_a_status_the_latest_other_folder_is_the_baseline(
    tmp_path: Path,
) -> None:
    _partition(tmp_path, "2025-10-01", 30)
    _partition(tmp_path, "2025-11-01", 20)
    _partition(tmp_path, "2025-12-01", 3)  # tonight's own date (a rerun): not it
    (tmp_path / "_drift").mkdir()
    assert find_baseline(tmp_path, None, "2025-12-01") == {
        "as_of": "2025-11-01",
        "rows_scored": 20,
    }
    # a status file from before baselines were carried: the folders still count
    assert find_baseline(tmp_path, {"state": "finished"}, "2025-12-02") == {
        "as_of": "2025-12-01",
        "rows_scored": 3,
    }


def test_an_unreadable_folder_is_passed_over(tmp_path: Path) -> None:
    _partition(tmp_path, "2025-10-01", 30)
    broken = tmp_path / "as_of=2025-11-01"
    broken.mkdir()
    (broken / "part-0.parquet").write_bytes(b"not parquet")
    assert find_baseline(tmp_path, None, "2025-12-01") == {
        "as_of": "2025-10-01",
        "rows_scored": 30,
    }


def test_a_first_run_has_no_baseline(tmp_path: Path) -> None:
    assert find_baseline(tmp_path / "missing", None, "2025-12-01") is None


def test_no_one_scored_is_always_too_few() -> None:
    assert min_rows(None, 0.5) == 1
    few = too_few(0, None, 0.5, "2025-12-01")
    assert few is not None and few["rows_scored"] == 0 and few["min_rows"] == 1
    assert "scored 0 customers as of 2025-12-01" in few["message"]
    # even with the drop check off
    baseline = {"as_of": "2025-11-01", "rows_scored": 1000}
    assert too_few(0, baseline, 0.0, "2025-12-01") is not None
    assert too_few(1, baseline, 0.0, "2025-12-01") is None


def test_a_drop_under_the_ratio_is_too_few_and_says_why() -> None:
    baseline = {"as_of": "2025-11-01", "rows_scored": 1481, "run_id": "r1"}
    assert min_rows(baseline, 0.5) == 741  # ceil(740.5)
    assert too_few(741, baseline, 0.5, "2025-12-01") is None
    few = too_few(740, baseline, 0.5, "2025-12-01")
    assert few is not None and few["baseline"] == baseline
    message = few["message"]
    for part in ("740", "2025-12-01", "2025-11-01", "1,481", "741", "r1"):
        assert part in message, part
    assert "scoring.min_scored_ratio" in message


def test_a_failed_start_carries_the_baseline_on(tmp_path: Path) -> None:
    good = {"as_of": "2025-11-01", "rows_scored": 900, "run_id": "r1"}
    (tmp_path / STATUS_FILE).write_text(json.dumps({"baseline": good}))
    record_failure(tmp_path, "no champion", 1)
    status = json.loads((tmp_path / STATUS_FILE).read_text())
    assert status["state"] == "failed" and status["baseline"] == good


# -- killed runs ----------------------------------------------------------------


def _dead_pid() -> int:
    """A pid no process can have: above the kernel's maximum."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


@pytest.fixture
def client(tmp_path: Path) -> tuple[MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(uri, uri)
    return c, c.create_experiment("p.scoring", str(tmp_path / "artifacts"))


def _run(c: MlflowClient, experiment: str, **tags: str) -> str:
    return c.create_run(experiment, tags={"kind": "scoring", **tags}).info.run_id


def test_killed_runs_on_this_host_are_marked_failed(client) -> None:
    c, exp = client
    host = socket.gethostname()
    dead = _run(c, exp, pid=str(_dead_pid()), host=host)
    recycled = _run(c, exp, pid=str(os.getpid()), host=host)  # a container restart
    alive = _run(c, exp, pid=str(os.getppid()), host=host)
    elsewhere = _run(c, exp, pid=str(_dead_pid()), host=host + "-other")
    finished = _run(c, exp, pid=str(_dead_pid()), host=host)
    c.set_terminated(finished, "FINISHED")
    training = c.create_run(
        exp, tags={"kind": "training", "pid": str(_dead_pid()), "host": host}
    ).info.run_id
    current = _run(c, exp, pid=str(_dead_pid()), host=host)

    marked = mark_killed_runs(c, exp, current)

    assert sorted(marked) == sorted([dead, recycled])
    for run_id in (dead, recycled):
        run = c.get_run(run_id)
        assert run.info.status == "FAILED"
        reason = run.data.tags["failed.reason"]
        assert host in reason and current in reason and "killed" in reason
    for run_id, status in (
        (alive, "RUNNING"),
        (elsewhere, "RUNNING"),
        (finished, "FINISHED"),
        (training, "RUNNING"),
        (current, "RUNNING"),
    ):
        assert c.get_run(run_id).info.status == status
        assert "failed.reason" not in c.get_run(run_id).data.tags
    assert mark_killed_runs(c, exp, current) == []  # once only


def test_a_run_without_tags_is_found_through_the_status_file(client) -> None:
    c, exp = client
    old = _run(c, exp)  # from before runs carried pid and host
    current = _run(c, exp)
    last = {
        "state": "running",
        "run_id": old,
        "pid": _dead_pid(),
        "host": socket.gethostname(),
    }
    assert mark_killed_runs(c, exp, current, {**last, "state": "finished"}) == []
    assert mark_killed_runs(c, exp, current, last) == [old]
    assert c.get_run(old).info.status == "FAILED"
    # a status file naming a run that is gone is no error
    assert mark_killed_runs(c, exp, current, {**last, "run_id": "f" * 32}) == []
