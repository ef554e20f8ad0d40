"""Locks held by one process and met by another: the scoring output's writer lock
and the contact log's confirm transaction under a frequency cap. These start
processes, so they run with the integration tests."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.atomic import Busy, exclusive, publish_dir
from serving.outreach.contact_log import ContactLog
from serving.outreach.contact_policy import exclusions
from tests.helpers import ROOT


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from core.atomic import exclusive\n"
            f"with exclusive({str(tmp_path)!r}):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="another run is writing"), exclusive(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(tmp_path), publish_dir(tmp_path / "out") as tmp:  # free again
        (tmp / "a").write_text("1")
    assert (tmp_path / "out" / "a").read_text() == "1"


def race(path: str, campaign: str, barrier, results) -> None:
    """Confirm `campaign` for customer x under a cap of 1 per 30 days, holding the
    transaction open long enough for the other process to try meanwhile."""
    log = ContactLog(Path(path))
    barrier.wait()
    with log.confirming(campaign) as tx:
        recent = tx.recent(["x"], 30)
        reason = exclusions(["x"], ["x"], [None], contacts=recent, max_contacts=1)[0]
        allowed = [] if reason else ["x"]
        time.sleep(0.5)
        tx.record("churn", [(c, "treatment") for c in allowed])
    results.put((campaign, allowed))


def test_two_processes_confirming_at_once_cannot_both_pass_a_cap(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=race, args=(str(path), name, barrier, results))
        for name in ("first", "second")
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    outcome = dict(results.get(timeout=5) for _ in workers)
    assert sorted(len(v) for v in outcome.values()) == [0, 1]
    rows = ContactLog(path).contacts()
    assert [(r.customer, r.group) for r in rows] == [("x", "treatment")]
    assert ContactLog(path).recent(["x"], 30, datetime.now(UTC)) == {"x": 1}
