"""The `propensity` CLI: `features list` prints the catalogue without reading the
events; `ui` on a tracking server points at it; every subcommand has a help; bad
values exit 2 naming the option; exit codes keep their numbers."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.main import main, propensity
from core.exitcodes import ExitCode, describe
from tests.helpers import write_config


def test_features_list_needs_only_the_customers(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    customers = tmp_path / "customers.parquet"
    pd.DataFrame({"customer_id": ["a"], "plan": ["pro"], "age": [3.0]}).to_parquet(
        customers
    )
    config = write_config(tmp_path / "p.yaml", tmp_path / "no_events_here", customers)
    assert main(["--config", str(config), "features", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "role"]
    assert any(line.startswith("purchase_count_30d ") for line in lines)
    assert "customer attribute plan (categorical)" in out
    names = [line.split()[0] for line in lines[1 : lines.index("")]]
    assert names[-2:] == ["plan", "age"] and len(set(names)) == len(names)
    assert lines[-1].startswith(f"{len(names)} features, feature-set version")


def test_ui_on_a_tracking_server_prints_its_url(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlflow ui` cannot open an http store: the server's own UI is the answer."""
    config = write_config(tmp_path / "p.yaml", tmp_path / "events", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"started {args}")

    monkeypatch.setattr("cli.serve.subprocess.call", no_subprocess)
    assert main(["--config", str(config), "ui"]) == 0
    assert "MLflow UI: http://mlflow.internal:5000" in capsys.readouterr().out


def test_engine_flags_parse_and_refuse_an_unknown_engine(
    capsys: pytest.CaptureFixture,
) -> None:
    ctx = propensity.make_context(
        "propensity", ["--engine", "spark", "--spark-master", "local[2]", "score"]
    )
    assert (ctx.params["engine"], ctx.params["spark_master"]) == ("spark", "local[2]")
    assert propensity.make_context("propensity", ["train"]).params["engine"] is None
    assert main(["--engine", "dask", "train"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Invalid value for '--engine': 'dask' is not one of" in err


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


COMMANDS = _commands(propensity)


def test_the_command_tree_is_the_documented_one() -> None:
    """Tests, the Makefile and the README call these: none may disappear."""
    assert {" ".join(c) for c in COMMANDS} == {
        "demo-data",
        "import",
        "init",
        "check",
        "features",
        "features list",
        "train",
        "tune",
        "runs",
        "runs compare",
        "runs history",
        "promote",
        "rollback",
        "score",
        "score status",
        "outcomes",
        "ingest",
        "serve",
        "bento",
        "api-key",
        "api-key new",
        "api-key list",
        "api-key revoke",
        "ui",
        "console",
        "forget",
        "retention",
        "pseudonym",
        "campaigns",
        "campaigns list",
        "campaigns report",
        "uplift",
        "uplift train",
        "uplift report",
    }


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=" ".join)
def test_every_subcommand_has_a_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(propensity, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: propensity {' '.join(command)}".rstrip() in result.output
    short = CliRunner().invoke(propensity, [*command, "-h"])
    assert short.exit_code == 0 and short.output == result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo-data", "--customers", "0"], "'--customers': 0 is not in the range"),
        (["demo-data", "--customers", "many"], "'--customers': 'many' is not a valid"),
        (["demo-data", "--start", "2024-02-30"], "'--start': '2024-02-30' does not"),
        (["score", "--as-of", "2024-13-01"], "'--as-of': '2024-13-01' does not match"),
        (["runs", "--limit", "0"], "'--limit': 0 is not in the range x>=1"),
        (["runs", "history", "churn", "--at", "soon"], "'--at': expected YYYY-MM-DD"),
        (["promote", "loyalty", "3"], "'{churn|purchase|service_request}'"),
        (["serve", "--port", "70000"], "'--port': 70000 is not in the range"),
        (["import", "cdnow"], "Missing argument 'SOURCE'"),
        (["api-key", "new"], "Missing option '--name'"),
        (["pseudonym"], "Missing argument 'CUSTOMER_ID...'"),
        (["score", "--as-of"], "Option '--as-of' requires an argument"),
        (["bench"], "No such command 'bench'"),
        ([], "Usage: propensity"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(args) == ExitCode.USAGE == 2
    assert message in capsys.readouterr().err


def test_a_date_and_a_moment_parse_as_before() -> None:
    score = propensity.commands["score"]
    as_of = score.make_context("score", ["--as-of", "2024-03-01"]).params["as_of"]
    assert as_of.isoformat() == "2024-03-01T00:00:00"
    history = propensity.commands["runs"].commands["history"]  # type: ignore[attr-defined]
    at = history.make_context(
        "history", ["churn", "--at", "2024-03-01T10:30+02:00"]
    ).params["at"]
    assert at.isoformat() == "2024-03-01T10:30:00+02:00"


def test_score_status_without_a_run_exits_6(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_config(tmp_path / "p.yaml", tmp_path / "events", None)
    assert main(["--config", str(config), "score", "status"]) == ExitCode.NO_RUN
    assert "no scoring run recorded under" in capsys.readouterr().out


def test_a_bad_config_exits_2_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert main(["--config", str(missing), "features", "list"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere.yaml" in err


def test_exit_codes_keep_their_numbers() -> None:
    """Schedulers and the Makefile branch on these numbers: never renumber."""
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "FAILED": 1,
        "USAGE": 2,
        "DRIFT_ALERT": 3,
        "SINK_FAILED": 4,
        "RUNNING": 5,
        "NO_RUN": 6,
        "TARGET_SKIPPED": 7,
        "OUTCOME_ALERT": 8,
        "SCORED_TOO_FEW": 9,
        "STORE_FAILED": 10,
        "TRACKING_FAILED": 11,
    }
    table = describe()
    assert list(table) == sorted(ExitCode)
    for code, text in table.items():
        assert text and "\n" not in text and text == code.__doc__, code
    assert str(ExitCode.DRIFT_ALERT) == "3"  # as the status file and tags record it
