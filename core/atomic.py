"""Atomic writes: one file, or a whole output folder, published so that readers
see the old one or the new one, never part of one.

- `atomic_write(path, write)`: one file (the demo data, training snapshots, the
  nightly status, the API key file, importers' output, benchmark results, files
  rewritten by `propensity forget`). `write` fills a hidden temp file beside the
  target; it is fsync'd, renamed over the target and the folder fsync'd.
  `replace_file` is that last step alone, for a writer that fills its temp file
  over several calls (the online store's SQLite file).
- `publish_dir(target)`: a folder, written completely under a hidden temporary
  name, fsync'd, then swapped into place with one rename. Replacing an existing
  folder uses Linux's renameat2 with RENAME_EXCHANGE (one atomic step); elsewhere
  it falls back to two renames.
- `exclusive(folder)`: one writer at a time; `clean_stale` and `scratch_dir` for
  the hidden temporary names a killed run leaves.

Every temporary name is hidden and ends in a random suffix, not the target's
(`.tmp-<name>-<hex>`), so no reader's glob (`*.parquet`) picks it up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

_AT_FDCWD = -100
# Hidden names this module (and callers' scratch space) leave behind only when a
# run is killed: `.tmp-<target>-<hex>`, `.old-<target>-<hex>`.
TMP_PREFIX = ".tmp-"
STALE_PREFIXES = (TMP_PREFIX, ".old-")
_RENAME_EXCHANGE = 2


def _libc_renameat2():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    fn = getattr(ctypes.CDLL(name, use_errno=True), "renameat2", None)
    if fn is not None:
        fn.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False when the platform cannot."""
    fn = _libc_renameat2()
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), f"{a} <-> {b}")
    return True


def fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A hidden temporary name beside `path`: `.tmp-<name>-<random hex>`."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")


def replace_file(tmp: Path, path: Path) -> None:
    """Make the finished file `tmp` durable and move it onto `path`: fsync it,
    rename it over `path` (atomic on one file system), fsync the folder so the
    rename survives a crash."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def atomic_write(path: Path, write: Callable[[Path], T], mode: int | None = None) -> T:
    """Call `write(temp path beside path)`, then `replace_file` it onto `path`;
    returns what `write` returned. The temp file is removed when `write` or the
    rename fails, so the old file stays whole.

    With `mode` (e.g. 0o600 for the API key file) the temp file is created empty
    with that mode before `write` fills it, so the content is never readable by
    others, not even for a moment; without it `write` creates the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        if mode is not None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            try:
                os.fchmod(fd, mode)  # whatever the umask
            finally:
                os.close(fd)
        result = write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)  # in case `write` replaced the file
        replace_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


@contextmanager
def publish_dir(target: Path, staging: Path | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `target` atomically.

    The temporary folder is made in `staging` (default: beside the target), which
    must be on the target's file system. Stage outside a dataset's tree when its
    readers glob: DuckDB's `read_parquet('scores/*/*.parquet')` matches hidden
    folders too (pyarrow and Spark skip names starting with `.` or `_`).
    On an exception the temporary folder is removed and `target` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(staging) if staging is not None else target.parent
    staging.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(staging / target.name)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if target.exists():
            if exchange(tmp, target):
                shutil.rmtree(tmp)  # now holds the previous output
            else:  # pragma: no cover - non-Linux fallback
                old = staging / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old)
        else:
            os.rename(tmp, target)
        _fsync_dir(target.parent)
        if staging != target.parent:
            _fsync_dir(staging)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class Busy(RuntimeError):
    """Another process holds the lock of an output folder."""


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold `folder/.lock` (an advisory flock, released when the process dies)
    for one writer at a time; Busy at once when another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Busy(
                f"{lock}: another run is writing to {folder}; try again when it ends"
            ) from exc
        yield
    finally:
        os.close(fd)


def clean_stale(folder: Path) -> list[Path]:
    """Remove the hidden temporary folders a killed run left in `folder`; call it
    only while holding `exclusive(folder)`, so that none of them is in use."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        if path.name.startswith(STALE_PREFIXES) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.warning("removed %s, left by an interrupted run", path)
    return removed


@contextmanager
def scratch_dir(folder: Path, name: str) -> Iterator[Path]:
    """A hidden working folder in `folder`, removed on exit (and by `clean_stale`
    after a kill): space for intermediate files on the output's disk."""
    path = temp_path(Path(folder) / name)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
