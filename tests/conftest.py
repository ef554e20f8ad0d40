"""Fixtures: small seeded demo data, a config for it, a trained temp registry, a
real server. What they build on is in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.api.servers import (  # noqa: F401 - for the tests
    free_port,
    spawn,
    start_service,
    stop,
    wait_ready,
)
from tests.helpers import Project, Server, run_cli, serving, write_config


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Tests marked `slow` (long property hunts) run only when `-m` names them."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="long property hunt: select it with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.synthetic.demo import generate

    out = tmp_path_factory.mktemp("demo")
    generate(out, customers=1500, seed=7)
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Project:
    """Demo data trained into a temporary MLflow store through the real CLI."""
    root = tmp_path_factory.mktemp("project")
    events, customers = demo_dir / "events.parquet", demo_dir / "customers.parquet"
    config = write_config(root / "propensity.yaml", events, customers)
    project = Project(
        root, config, f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", events, customers
    )
    done = run_cli(["train"], project.env())
    assert done.returncode == 0, done.stderr[-3000:]
    return project


@pytest.fixture(scope="session")
def server(
    trained: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real `bentoml serve` of the service on a free port, serving the champions."""
    with serving(trained.env(), tmp_path_factory.mktemp("server") / "bentoml.log") as s:
        yield s
