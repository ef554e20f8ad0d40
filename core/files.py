"""Writing a file so that readers see the old one or the new one, never part of
one: the demo data, training snapshots, the nightly status, files rewritten by
`propensity forget`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, write: Callable[[Path], T]) -> T:
    """Call write(a temp path beside `path`), fsync it, rename it onto `path` and
    fsync the folder. The temp name is hidden and ends in a random suffix, not
    the target's, so no reader's glob (`*.parquet`) picks it up (and the online
    store's writer removes one a kill left behind); it is removed
    when `write` or the rename fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        result = write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return result
