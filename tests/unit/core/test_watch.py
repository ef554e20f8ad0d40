"""core.watch.WatchedFile: parsed once per change of the file, the caller's say
on a missing file, nothing kept from a failed parse, one parse at a time."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from core.atomic import atomic_write
from core.watch import WatchedFile


def counting(path: Path) -> tuple[WatchedFile[str], list[str]]:
    parsed: list[str] = []

    def parse(p: Path) -> str:
        text = p.read_text()
        if text == "bad":
            raise ValueError("bad content")
        parsed.append(text)
        return text

    return WatchedFile(path, parse, lambda p, exc: "<missing>"), parsed


def test_parsed_again_only_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("one")
    watched, parsed = counting(path)
    assert watched.get() == watched.get() == "one" and parsed == ["one"]
    atomic_write(path, lambda tmp: tmp.write_text("two"))  # a new inode
    assert watched.get() == "two"
    path.write_text("six")  # in place, same size: the mtime tells
    os.utime(path, ns=(1, 1))
    assert watched.get() == "six" and parsed == ["one", "two", "six"]


def test_missing_is_the_callers_and_a_failed_parse_keeps_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "list.txt"
    watched, parsed = counting(path)
    assert watched.get() == "<missing>" and watched.value == "<missing>"
    path.write_text("bad")
    for _ in range(2):  # tried again on each call, not kept
        with pytest.raises(ValueError, match="bad content"):
            watched.get()
    assert watched.value == "<missing>"
    path.write_text("good")
    assert watched.get() == "good" and parsed == ["good"]


def test_threads_see_whole_values_and_parse_once(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("x" * 1000)
    watched, parsed = counting(path)
    seen: list[str] = []
    threads = [
        threading.Thread(target=lambda: seen.extend(watched.get() for _ in range(50)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["x" * 1000] * 200 and len(parsed) == 1
