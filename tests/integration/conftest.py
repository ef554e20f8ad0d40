"""Integration tests run one after another on one xdist worker (they share the
session's trained project and server, and each starts real processes that want the
cores); `make test` gives the unit tests the other worker. A module that shares
nothing with the others names its own group (`pytest.mark.xdist_group`) and runs
beside them, on the unit tests' worker once those are done."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group marks
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid and not item.get_closest_marker(
            "xdist_group"
        ):
            item.add_marker(pytest.mark.xdist_group("integration"))
