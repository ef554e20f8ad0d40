"""Integration tests run one after another on one xdist worker (they share the
session's trained project and server, and each starts real processes that want the
cores); `make test` gives the unit tests the other worker."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("integration"))
