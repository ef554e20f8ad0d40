"""Fuzzing the real server from its own OpenAPI spec (schemathesis): no input,
valid or not, gets a 5xx, and every rejection is a 4xx that names the problem.

Bounded: FUZZ_EXAMPLES per operation (default 25) in `make test`;
`FUZZ_EXAMPLES=500 pytest tests/integration/test_fuzz.py` hunts longer.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from core.config import load_config
from serving.online_store.sqlite import stored_as_of
from tests.helpers import Project, Server, auth, run_cli

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


ENDPOINTS = ["/predict", "/predict_by_id", "/explain", "/outreach", "/metadata"]


@pytest.fixture(scope="module")
def api_schema(server: Server, trained: Project):
    # predict_by_id needs the online store the nightly job writes
    if stored_as_of(load_config(trained.config).online_store.path) is None:
        done = run_cli(["score"], trained.env())
        assert done.returncode == 0, done.stderr[-2000:]
    return schemathesis.openapi.from_url(f"{server.url}/docs.json")


# schemathesis' own pytest integration (`from_fixture`) breaks on pytest 9, so
# each operation's strategy runs under a plain hypothesis `given`
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_5xx_and_rejections_name_the_problem(
    api_schema, server: Server, path: str, mode: GenerationMode
) -> None:
    operations = [
        op.ok() for op in api_schema.get_all_operations() if op.ok().path == path
    ]
    assert operations, f"{path} is not in the service's OpenAPI spec"

    @given(case=operations[0].as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case) -> None:
        response = case.call(base_url=server.url, headers=auth(), timeout=60)
        assert response.status_code < 500, (
            f"{case.method} {case.path} {case.body!r:.300} -> "
            f"{response.status_code}: {response.text[:500]}"
        )
        if response.status_code >= 400:
            body = response.json()
            assert isinstance(body, dict), (case.body, response.text[:500])
            problem = body.get("detail") or body.get("error")
            assert problem, f"{path} {response.status_code} gave no reason: {body}"

    fuzz()
