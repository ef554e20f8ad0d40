"""Outputs are published whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.atomic import publish_dir


def test_new_folder_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "as_of=2024-01-01"
    with publish_dir(target) as tmp:
        (tmp / "part-0.parquet").write_text("new")
        assert not target.exists()
    assert (target / "part-0.parquet").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_rerun_replaces_the_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with publish_dir(target) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with publish_dir(target) as tmp:
        (tmp / "a").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert (target / "a").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_leaves_previous_output_intact(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with publish_dir(target) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), publish_dir(target) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (target / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
