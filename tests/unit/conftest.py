"""Unit tests start no process: `make test-unit` is the quick loop, and a test that
spawns a server, a CLI or a worker belongs in tests/integration/."""

from __future__ import annotations

import multiprocessing.process
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

# what libraries run for themselves: ctypes.util.find_library asks ldconfig,
# platform.uname asks uname
LIBRARY_PROBES = {"ldconfig", "uname"}


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    popen = subprocess.Popen.__init__

    def refuse_popen(self, args, *rest, **kwargs):  # noqa: ANN001
        program = args if isinstance(args, str | Path) else args[0]
        if Path(str(program).split()[0]).name not in LIBRARY_PROBES:
            raise AssertionError(
                f"a unit test started a process ({program}): move it to "
                "tests/integration/"
            )
        return popen(self, args, *rest, **kwargs)

    def refuse_start(self) -> None:  # noqa: ANN001
        raise AssertionError(
            "a unit test started a process (multiprocessing): move it to "
            "tests/integration/"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_popen)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse_start)
    yield
