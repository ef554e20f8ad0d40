"""Progress of a long job: a bar on a terminal, key=value log lines otherwise.

A scheduler's log gets one line per stage step (at most one every `every_s`
seconds, plus the last), e.g.
`progress stage=score done=300000 total=1000000 unit=customers pct=30.0
elapsed_s=12.4 rate_per_s=24193` (one line).
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """Counts `done` of `total` units of a stage."""

    def __init__(
        self,
        stage: str,
        total: int,
        unit: str,
        bar: bool | None = None,
        every_s: float = 10.0,
    ) -> None:
        self.stage, self.total, self.unit, self.every_s = stage, total, unit, every_s
        self.done = 0
        self.started = self.logged = time.monotonic()
        use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = (
            tqdm(total=total, unit=unit, desc=stage, file=sys.stderr)
            if use_bar
            else None
        )

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.logged >= self.every_s or self.done >= self.total:
            self.logged = now
            log.info(self.line())

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (
            f"progress stage={self.stage} done={self.done} total={self.total} "
            f"unit={self.unit} pct={pct:.1f} elapsed_s={elapsed:.1f} "
            f"rate_per_s={rate:.0f}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
