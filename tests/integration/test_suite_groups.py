"""`make test` relies on `--dist loadgroup`: the integration tests share one
worker (its trained project and server), the unit tests take the other. pytest
9.2 changed how node ids are stored and pytest-xdist 3.8 then ignored every
group without a word (each worker trained its own project, module fixtures were
built twice, the suite took half as long again): this checks the pinned pair."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("suite-groups")]


def test_xdist_sends_a_group_to_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(
        "import os, pytest\n"
        "pytestmark = pytest.mark.xdist_group('g')\n"
        "def test_a(): print(os.environ['PYTEST_XDIST_WORKER'])\n"
        "def test_b(): pass\n"
        "def test_c(): pass\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-v",
            "-p",
            "no:cacheprovider",
            "test_grouped.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    ran = [ln for ln in done.stdout.splitlines() if "PASSED" in ln]
    assert len(ran) == 3, done.stdout[-2000:]
    assert all(ln.rstrip().endswith("@g") for ln in ran), ran  # the group kept
    assert len({ln.split("]")[0] for ln in ran}) == 1, ran  # on one worker
