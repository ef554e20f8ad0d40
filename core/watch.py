"""A file whose parsed content is kept and re-parsed only when the file changes.

The API reads a few small files on every request (the API key file, the opt-out
file, the suppression list); they change rarely, by hand or by `propensity
forget`, and the change must take effect without a restart. `WatchedFile` makes a
request cost one stat: the file is parsed again only when its (inode, mtime_ns,
size) differs from the last parse, which an atomic replace (core.atomic: a new
inode) or an edit in place (a new mtime or size) both change.

What a missing or unreadable file means is the caller's to say (`missing`): the
key file keeps the keys last read, the opt-out file refuses, the suppression list
means nobody. When `parse` or `missing` raises, nothing is kept, so the next call
tries again; what they return is kept until the file changes again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
# (inode, mtime_ns, size), or None when the file cannot be stat'ed
Stamp = tuple[int, int, int] | None


def stamp(path: Path) -> tuple[Stamp, OSError | None]:
    """The file's (inode, mtime_ns, size), or None and the error of `os.stat`."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return None, exc
    return (st.st_ino, st.st_mtime_ns, st.st_size), None


class WatchedFile(Generic[T]):
    """`get()` returns `parse(path)`, parsed again when the file has changed
    since; when the file cannot be stat'ed (missing, or a folder on the way
    unreadable), `missing(path, error)` instead. Thread-safe: one parse at a
    time, and every caller sees a whole value."""

    def __init__(
        self,
        path: Path,
        parse: Callable[[Path], T],
        missing: Callable[[Path, OSError], T],
    ) -> None:
        self.path = Path(path)
        self._parse = parse
        self._missing = missing
        self._lock = threading.Lock()
        self._loaded = False
        self._stamp: Stamp = None
        self._value: T | None = None

    @property
    def value(self) -> T | None:
        """The value last kept, None before the first; for `parse` and `missing`
        to fall back on (they run while `get` holds the lock)."""
        return self._value

    def get(self) -> T:
        with self._lock:
            now, error = stamp(self.path)
            if self._loaded and now == self._stamp:
                return self._value  # type: ignore[return-value]
            if error is None:
                value = self._parse(self.path)
            else:
                value = self._missing(self.path, error)
            self._value, self._stamp, self._loaded = value, now, True
            return value
