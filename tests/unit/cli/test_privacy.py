"""The privacy commands: pseudonym, forget, retention."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features.sources.privacy import Pseudonymiser
from tests.helpers import (
    PRIVACY_KEY,
    age_path,
    privacy_project,
    score_file,
)


def test_cli_pseudonym_forget_and_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cli.main import main

    monkeypatch.setenv("PROPENSITY_PSEUDONYM_KEY", PRIVACY_KEY.decode())
    config = privacy_project(
        tmp_path, privacy={"pseudonymise": True, "retention_days": 7}
    )
    args = ["--config", str(config)]
    assert main([*args, "pseudonym", "A", "B"]) == 0
    p = Pseudonymiser(PRIVACY_KEY)
    assert capsys.readouterr().out == f"A\t{p.one('A')}\nB\t{p.one('B')}\n"

    night = score_file(
        tmp_path / "scores" / "as_of=2025-06-01", [p.one("A"), p.one("B")]
    )
    ids = tmp_path / "ids.txt"
    ids.write_text("# to forget\nA\n\n")
    assert main([*args, "forget", "--file", str(ids)]) == 0
    assert "forgot 1 customer(s): 1 row(s) removed" in capsys.readouterr().out
    assert pq.read_table(night)["customer_id"].to_pylist() == [p.one("B")]
    assert main([*args, "forget"]) == 2
    assert "give --customer-id ID or --file PATH" in capsys.readouterr().err

    age_path(night.parent, 8)
    assert main([*args, "retention"]) == 0
    assert "1 output(s) older than 7 days deleted" in capsys.readouterr().out
    assert not night.parent.exists()
