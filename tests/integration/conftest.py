"""Integration tests run one after another on one xdist worker (they share the
session's trained project and server, and each starts real processes that want the
cores); `make test` gives the unit tests the other worker. A module that shares
nothing with the others names its own group (`pytest.mark.xdist_group`), or is
listed in STANDALONE, and runs beside them on whichever worker is free."""

from __future__ import annotations

import pytest

# modules that use neither the session's trained project nor its server: each is
# a group of its own, so the scheduler can give it to whichever worker is free
STANDALONE = frozenset(
    {
        "test_bgnbd_cdnow",
        "test_campaigns",
        "test_cli",
        "test_contact_log_postgres",
        "test_demo_campaign",
        "test_forget_postgres",
        "test_ingest",
        "test_init",
        "test_locks",
        "test_privacy",  # its own project, trained with pseudonyms
        "test_real_data",
        "test_subscriptions",  # and benchmarks/test_subscriptions: one group
        "test_team_mode",  # the demo data, trained into its own tracking server
        "test_tune",
        # benchmarks/: the harness and small runs of the benchmarks
        "test_batch",
        "test_harness",
        "test_quality",
    }
)


# the session fixtures the "integration" group shares
SHARED = frozenset({"trained", "server"})


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group marks
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid and not item.get_closest_marker(
            "xdist_group"
        ):
            module = item.nodeid.split("::")[0].rsplit("/", 1)[-1][: -len(".py")]
            group = module if module in STANDALONE else "integration"
            shared = SHARED & set(getattr(item, "fixturenames", ()))
            if group != "integration" and shared:
                # it would build the session's project again on another worker
                raise pytest.UsageError(
                    f"{item.nodeid} uses {', '.join(sorted(shared))}: take "
                    f"{module} out of STANDALONE (tests/integration/conftest.py)"
                )
            item.add_marker(pytest.mark.xdist_group(group))
