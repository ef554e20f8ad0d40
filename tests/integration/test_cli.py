"""The installed `propensity` command, run as a user runs it."""

from __future__ import annotations

import subprocess

from tests.helpers import BIN


def test_the_installed_command_runs_and_exits_2_on_a_bad_value() -> None:
    ok = subprocess.run(
        [str(BIN / "propensity"), "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "demo-data" in ok.stdout
    bad = subprocess.run(
        [str(BIN / "propensity"), "demo-data", "--customers", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "Invalid value for '--customers': 0 is not in the range x>=1" in bad.stderr
