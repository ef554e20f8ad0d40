"""Integration tests that use the session's trained project or its server
(`trained`, `server`) run one after another on one xdist worker, in the group
`integration`: the project is trained once, and each starts real processes that
want the cores; `make test` gives the unit tests the other worker. Every other
module is a group of its own (or names one with `pytest.mark.xdist_group`) and
runs beside them on whichever worker is free."""

from __future__ import annotations

import pytest

# the session fixtures the "integration" group shares
SHARED = frozenset({"trained", "server"})


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0].rsplit("/", 1)[-1][: -len(".py")]


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group marks
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    ours = [
        item
        for item in items
        if "tests/integration/" in item.nodeid
        and not item.get_closest_marker("xdist_group")
    ]
    # a module that asks for the shared project anywhere (fixturenames holds
    # what a test's fixtures ask for too) joins the group that has it
    sharing = {
        _module(item)
        for item in ours
        if SHARED & set(getattr(item, "fixturenames", ()))
    }
    for item in ours:
        module = _module(item)
        group = "integration" if module in sharing else module
        item.add_marker(pytest.mark.xdist_group(group))
