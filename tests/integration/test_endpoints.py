"""`explain`, `outreach` and `metadata`, in-process through the service's ASGI app.

The app is built once for this module (BentoML's Prometheus metrics refuse a second
`to_asgi()` in one process); the outreach key is read per request, so tests set or
remove $PROPENSITY_OUTREACH_KEY with monkeypatch. The contact-policy tests swap the
running instance's config (and pseudonymiser) for one with their own policy, contact
log and privacy folder (the `policy` fixture).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import bentoml
import numpy as np
import pandas as pd
import pytest
import yaml
from starlette.testclient import TestClient

from core.config import OUTREACH_KEY_ENV, FrequencyCap, ProjectConfig, load_config
from features.columns import TARGETS, population_column
from features.definition import FeatureSpec, catalogue
from features.sources.privacy import pseudonymiser, suppression_path
from serving.online_store import StoreMeta
from serving.online_store.sqlite import SqliteStoreWriter
from serving.outreach.contact_log import ContactLog
from serving.scoring import Champions
from tests.helpers import Project, auth, records

if TYPE_CHECKING:
    from serving.api.service import Propensity

pytestmark = pytest.mark.integration

OUTREACH_KEY = "outreach-test-key-0123456789abcdef"
TARGET = "churn"


@pytest.fixture(scope="module")
def body(trained: Project) -> list[dict]:
    return records(trained, 60)[0]


@pytest.fixture(scope="module")
def champions(trained: Project) -> Champions:
    return Champions.load(load_config(trained.config), trained.tracking_uri)


@pytest.fixture(scope="module")
def excluded(body: list[dict], champions: Champions) -> str:
    """The feature most often the top churn reason: configured non-actionable."""
    found = champions.explain_records([c["features"] for c in body], 1)[TARGET]
    return Counter(r[0].feature for r in found if r).most_common(1)[0][0]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The in-process service's folder: its config and its online store."""
    return tmp_path_factory.mktemp("endpoints")


@pytest.fixture
def store(root: Path) -> Path:
    return root / "online" / "store.sqlite"


@pytest.fixture(scope="module")
def client(trained: Project, excluded: str, root: Path) -> Iterator[TestClient]:
    """The service in-process, on the trained project with `excluded` set as
    non-actionable; the environment is the project's only during start-up."""
    config = yaml.safe_load(trained.config.read_text())
    config["explain"] = {"non_actionable": [excluded], "top_k": 3}
    path = root / "propensity.yaml"
    config["online_store"] = {"path": str(root / "online" / "store.sqlite")}
    path.write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**trained.env(), "PROPENSITY_CONFIG": str(path)}.items():
            mp.setenv(name, value)
        from serving.api.service import Propensity

        test_client = TestClient(Propensity.to_asgi(), headers=auth())
        test_client.__enter__()  # start-up: the service loads the champions
    try:
        yield test_client
    finally:
        test_client.__exit__(None, None, None)


def descriptions(trained: Project) -> dict[str, str]:
    spec = FeatureSpec.from_config(load_config(trained.config))
    return {f.name: f.description for f in catalogue(spec).features}


# --- predict_by_id ---------------------------------------------------------------


def write_store(
    path: Path,
    frame: pd.DataFrame,
    champions: Champions,
    as_of: str,
    outside: dict[str, list[int]] | None = None,
) -> None:
    """The online store as the nightly job writes it, for these customers;
    `outside`: per target, rows its population does not hold (no score)."""
    flags = {population_column(t) for t in TARGETS}
    features = [c for c in frame.columns if c not in ("customer_id", "cutoff", *flags)]
    categorical = champions.categorical | {
        c for c in features if not pd.api.types.is_numeric_dtype(frame[c])
    }
    meta = StoreMeta(
        as_of=as_of,
        feature_set_version=champions.feature_set_version,
        written_at=datetime.now().isoformat(),
        run_id=None,
        features=tuple(features),
        categorical=frozenset(categorical),
        model_versions=champions.versions,
    )
    scores = champions.predict_frame(frame)
    for target, rows in (outside or {}).items():
        scores[target][rows] = np.nan
    with SqliteStoreWriter(path, meta) as writer:
        writer.append(frame, scores, datetime.now())


def by_id(client: TestClient, ids: list[str]) -> dict:
    response = client.post("/predict_by_id", json={"customer_ids": ids})
    assert response.status_code == 200, response.text
    return response.json()


def test_predict_by_id_scores_the_stored_features_and_flags_unknown_ids(
    client: TestClient, trained: Project, champions: Champions, store: Path
) -> None:
    _, frame = records(trained, 80)
    write_store(store, frame, champions, "2025-11-15")
    ids = [frame.customer_id[3], "nobody", frame.customer_id[0], frame.customer_id[3]]
    data = by_id(client, ids)
    assert [p["customer_id"] for p in data["predictions"]] == ids
    assert [p["status"] for p in data["predictions"]] == ["ok", "not_found", "ok", "ok"]
    assert (data["found"], data["not_found"]) == (3, 1)
    missing = data["predictions"][1]
    assert missing["probabilities"] is None and missing["as_of"] is None
    expected = champions.predict_frame(frame)
    for p, row in zip(data["predictions"], [3, None, 0, 3], strict=True):
        if row is None:
            continue
        assert p["as_of"] == "2025-11-15"
        assert p["model_versions"] == champions.versions
        for target in TARGETS:
            assert p["probabilities"][target] == expected[target][row]
        assert p["not_in_population"] == []
    # issue 18: a customer outside churn's population (already churned) gets
    # the other targets' probabilities only, and is told which are missing
    write_store(store, frame, champions, "2025-11-15", outside={"churn": [3]})
    churned, other = by_id(client, [frame.customer_id[3], frame.customer_id[0]])[
        "predictions"
    ]
    assert churned["status"] == "ok" and churned["not_in_population"] == ["churn"]
    assert set(churned["probabilities"]) == {"purchase", "service_request"}
    assert churned["probabilities"]["purchase"] == expected["purchase"][3]
    assert set(other["probabilities"]) == set(TARGETS)


def test_predict_by_id_picks_up_a_new_store_without_a_restart(
    client: TestClient, trained: Project, champions: Champions, store: Path
) -> None:
    _, frame = records(trained, 20)
    write_store(store, frame, champions, "2025-11-15")
    cid = frame.customer_id[5]
    before = by_id(client, [cid])["predictions"][0]
    changed = frame.copy()
    numeric = [
        c
        for c in changed.columns
        if c not in ("customer_id", "cutoff")
        and pd.api.types.is_numeric_dtype(changed[c])
    ]
    changed[numeric] = changed[numeric] * 3 + 7
    write_store(store, changed, champions, "2025-11-16")
    after = by_id(client, [cid])["predictions"][0]
    assert after["as_of"] == "2025-11-16" and before["as_of"] == "2025-11-15"
    expected = champions.predict_frame(changed)
    for target in TARGETS:
        assert after["probabilities"][target] == expected[target][5]
    assert after["probabilities"] != before["probabilities"]


def test_predict_by_id_bad_requests_and_a_missing_store(
    client: TestClient, store: Path
) -> None:
    for bad, where in [
        ({"customer_ids": []}, ["customer_ids"]),
        ({"customer_ids": [""]}, ["customer_ids", 0]),
        ({"customer_ids": ["x" * 257]}, ["customer_ids", 0]),
        ({"customer_ids": ["a"] * 10_001}, ["customer_ids"]),
        ({"customer_ids": ["a", 1]}, ["customer_ids", 1]),
        ({}, ["customer_ids"]),
    ]:
        response = client.post("/predict_by_id", json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["detail"][0]["loc"] == where, response.text
    assert (
        client.post(
            "/predict_by_id",
            json={"customer_ids": ["a"]},
            headers={"Authorization": ""},
        ).status_code
        == 401
    )
    store.unlink(missing_ok=True)
    response = client.post("/predict_by_id", json={"customer_ids": ["a"]})
    assert response.status_code == 503
    assert "no online store at" in response.text
    assert "propensity score" in response.text


# --- explain ---------------------------------------------------------------------


def test_explain_gives_k_positive_sorted_reasons_as_in_process(
    client: TestClient,
    body: list[dict],
    champions: Champions,
    excluded: str,
    trained: Project,
) -> None:
    r = client.post("/explain", json={"customers": body, "target": TARGET, "k": 4})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["target"] == TARGET
    assert data["model_version"] == champions.versions[TARGET]
    got = data["explanations"]
    assert [e["customer_id"] for e in got] == [c["customer_id"] for c in body]
    feats = [c["features"] for c in body]
    probs = champions.predict_records(feats)[TARGET]
    np.testing.assert_allclose([e["probability"] for e in got], probs, atol=1e-12)
    expected = champions.explain_records(
        feats, 4, {excluded}, descriptions=descriptions(trained)
    )[TARGET]
    assert any(len(e["reasons"]) == 4 for e in got)
    for e, want in zip(got, expected, strict=True):
        contrib = [x["contribution"] for x in e["reasons"]]
        assert len(contrib) <= 4 and all(c > 0 for c in contrib)
        assert contrib == sorted(contrib, reverse=True)
        assert [x["feature"] for x in e["reasons"]] == [w.feature for w in want]
        assert [x["phrase"] for x in e["reasons"]] == [w.phrase for w in want]
        np.testing.assert_allclose(contrib, [w.contribution for w in want])


def test_explain_leaves_out_non_actionable_features(
    client: TestClient, body: list[dict], champions: Champions, excluded: str
) -> None:
    # without the exclusion it is the top reason for some customers
    unrestricted = champions.explain_records([c["features"] for c in body], 3)
    assert any(excluded in [x.feature for x in rs] for rs in unrestricted[TARGET])
    r = client.post("/explain", json={"customers": body, "target": TARGET})
    assert r.status_code == 200, r.text
    got = r.json()["explanations"]
    assert all(len(e["reasons"]) <= 3 for e in got)  # config top_k
    assert any(len(e["reasons"]) == 3 for e in got)
    assert all(x["feature"] != excluded for e in got for x in e["reasons"])


def test_explain_bad_requests_are_400_naming_the_field(
    client: TestClient, body: list[dict]
) -> None:
    r = client.post("/explain", json={"customers": body[:2], "target": "upsell"})
    assert r.status_code == 400 and "target" in r.text
    for k in (0, 21):
        r = client.post(
            "/explain", json={"customers": body[:1], "target": TARGET, "k": k}
        )
        assert r.status_code == 400 and "k" in r.text, k
    unknown = {"features": {**body[0]["features"], "shoe_size": 42}}
    r = client.post("/explain", json={"customers": [unknown], "target": TARGET})
    assert r.status_code == 400
    assert "customers[0].features.shoe_size: unknown feature" in r.text
    r = client.post("/explain", json={"customers": [], "target": TARGET})
    assert r.status_code == 400 and "customers" in r.text


def test_explain_needs_an_api_key(client: TestClient, body: list[dict]) -> None:
    r = client.post(
        "/explain",
        json={"customers": body[:1], "target": TARGET},
        headers={"Authorization": ""},
    )
    assert r.status_code == 401


# --- outreach --------------------------------------------------------------------


def campaign(body: list[dict]) -> dict:
    """A campaign over `body`, each customer with its own conversion value."""
    customers = [{**c, "value": 10.0 + i % 7} for i, c in enumerate(body)]
    return {"campaign_id": "spring-2026", "target": TARGET, "customers": customers}


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OUTREACH_KEY_ENV, OUTREACH_KEY)


def test_outreach_budget_ranks_and_holds_out_a_stable_control(
    client: TestClient, body: list[dict], keyed: None
) -> None:
    request = {**campaign(body), "budget": 40, "control_share": 0.5}
    first = client.post("/outreach", json=request)
    assert first.status_code == 200, first.text
    data = first.json()
    rows = data["selected"]
    assert 0 < len(rows) <= 40
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    ev = [r["expected_value"] for r in rows]
    assert ev == sorted(ev, reverse=True) and all(v > 0 for v in ev)
    counts = data["counts"]
    assert counts["eligible"] == len(body) and counts["selected"] == len(rows)
    held_out = sum(r["group"] == "control" for r in rows)
    assert counts["held_out"] == held_out and 0 < held_out < len(rows)
    assert any("held out as control" in note for note in data["reasons"])
    for r in rows:
        contrib = [x["contribution"] for x in r["reasons"]]
        assert len(contrib) <= 3 and contrib == sorted(contrib, reverse=True)
    # the same request again: the same ranking and the same control assignment
    again = client.post("/outreach", json=request)
    assert again.json()["selected"] == rows
    # shuffled input, same draw per customer
    shuffled = {**request, "customers": request["customers"][::-1]}
    groups = {r["customer_id"]: r["group"] for r in rows}
    got = client.post("/outreach", json=shuffled).json()["selected"]
    assert {r["customer_id"]: r["group"] for r in got} == groups


def test_outreach_threshold_and_contact_cost(
    client: TestClient, body: list[dict], keyed: None
) -> None:
    r = client.post(
        "/outreach",
        json={**campaign(body), "threshold": 0.0, "contact_cost": 1e6},
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["selected"] == []
    assert data["counts"]["dropped_non_positive"] == len(body)
    assert any("dropped" in note for note in data["reasons"])


def test_outreach_bad_requests_are_400_naming_the_field(
    client: TestClient, body: list[dict], keyed: None
) -> None:
    base = campaign(body[:3])
    cases = {
        "budget, threshold": {**base},
        "budget": {**base, "budget": 0},
        "threshold": {**base, "threshold": 1.5},
        "control_share": {**base, "budget": 2, "control_share": 0.6},
        "campaign_id": {**base, "budget": 2, "campaign_id": "bad\x1fid"},
        "target": {**base, "budget": 2, "target": "upsell"},
        "customer_ids: duplicates": {
            **base,
            "budget": 2,
            "customers": [base["customers"][0]] * 2,
        },
    }
    for field, request in cases.items():
        r = client.post("/outreach", json=request)
        assert r.status_code == 400 and field in r.text, (field, r.text)
    both = {**base, "budget": 2, "threshold": 0.5}
    assert client.post("/outreach", json=both).status_code == 400
    long_id = {**base, "budget": 2, "campaign_id": "x" * 101}
    assert client.post("/outreach", json=long_id).status_code == 400
    missing = {k: v for k, v in body[0]["features"].items() if k != "tenure_days"}
    request = {
        **base,
        "budget": 2,
        "customers": [{"customer_id": "a", "features": missing}],
    }
    r = client.post("/outreach", json=request)
    assert r.status_code == 400 and "customers[0].features.tenure_days" in r.text


def test_outreach_without_a_key_is_503_saying_how_to_set_it(
    client: TestClient, body: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(OUTREACH_KEY_ENV, raising=False)
    r = client.post("/outreach", json={**campaign(body[:3]), "budget": 2})
    assert r.status_code == 503, r.text
    assert OUTREACH_KEY_ENV in r.text and "key_file" in r.text


# --- outreach: the contact policy and the contact log ------------------------------

PSEUDONYM_KEY = "pseudonym-test-key-0123456789abcdef"
NO_EXCLUSIONS = {"opted_out": 0, "no_consent": 0, "forgotten": 0, "frequency_cap": 0}


@pytest.fixture
def service(client: TestClient) -> Propensity:
    """The running service instance, whose config a test may swap for its own."""
    return bentoml.get_current_service()


@pytest.fixture
def policy(
    service: Propensity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keyed: None,
) -> Callable[..., ProjectConfig]:
    """Give the service a contact policy for this test: outreach settings over a
    contact log and a privacy folder of its own, pseudonymisation on or off (its
    key from the environment, as at start-up)."""

    def apply(pseudonymise: bool = False, **outreach: object) -> ProjectConfig:
        config = service.config
        privacy = config.privacy.model_copy(
            update={"pseudonymise": pseudonymise, "dir": tmp_path / "privacy"}
        )
        settings = config.outreach.model_copy(
            update={"contact_log": tmp_path / "contacts.sqlite", **outreach}
        )
        changed = config.model_copy(update={"outreach": settings, "privacy": privacy})
        monkeypatch.setenv(privacy.key_env, PSEUDONYM_KEY)
        monkeypatch.setattr(service, "config", changed)
        monkeypatch.setattr(service, "pseudonyms", pseudonymiser(privacy))
        return changed

    return apply


def hashed(customer_id: str) -> str:
    return hmac.new(
        PSEUDONYM_KEY.encode(), customer_id.encode(), hashlib.sha256
    ).hexdigest()


def plan(client: TestClient, request: dict, status: int = 200) -> dict:
    response = client.post("/outreach", json=request)
    assert response.status_code == status, response.text
    return response.json()


def test_outreach_dry_run_writes_nothing_and_confirm_logs_pseudonyms(
    client: TestClient, body: list[dict], policy: Callable[..., ProjectConfig]
) -> None:
    config = policy(
        pseudonymise=True, frequency_cap=FrequencyCap(max_contacts=2, per_days=30)
    )
    log = ContactLog(config.outreach.contact_log)
    request = {**campaign(body), "budget": 20, "control_share": 0.5}
    dry = plan(client, request)
    assert (dry["mode"], dry["confirmed_at"]) == ("dry_run", None)
    assert dry["counts"]["excluded"] == NO_EXCLUSIONS
    assert not log.path.exists()
    confirmed = plan(client, {**request, "mode": "confirm"})
    assert confirmed["mode"] == "confirm"
    assert confirmed["selected"] == dry["selected"]
    rows = log.contacts()
    assert confirmed["confirmed_at"] == rows[0].confirmed_at
    assert {(r.customer, r.group) for r in rows} == {
        (hashed(r["customer_id"]), r["group"]) for r in dry["selected"]
    }
    assert {r.group for r in rows} == {"treatment", "control"}
    assert {(r.campaign_id, r.target) for r in rows} == {("spring-2026", TARGET)}
    # the raw ids appear nowhere in the log's files
    stored = b"".join(p.read_bytes() for p in log.path.parent.glob("contacts.sqlite*"))
    assert all(c["customer_id"].encode() not in stored for c in body)
    # a dry run after the confirm reads the log but still writes nothing
    again = plan(client, request)
    assert again["counts"]["excluded"]["frequency_cap"] == 0  # 1 contact, cap 2
    assert len(log.contacts()) == len(rows)


def test_campaign_report_reads_out_a_confirmed_campaign(
    client: TestClient, body: list[dict], policy: Callable[..., ProjectConfig]
) -> None:
    """A campaign confirmed now (pseudonyms in the log) read out at once:
    every selected customer counted in their group, the readout immature for
    the whole horizon; an unknown campaign is 404."""
    policy(pseudonymise=True)
    request = {**campaign(body), "budget": 40, "control_share": 0.5, "mode": "confirm"}
    confirmed = plan(client, request)
    response = client.post("/campaign_report", json={"campaign_id": "spring-2026"})
    assert response.status_code == 200, response.text
    found = response.json()
    groups = Counter(r["group"] for r in confirmed["selected"])
    for group in ("treatment", "control"):
        assert found["groups"][group]["customers"] == groups[group]
    assert found["target"] == TARGET and not found["mature"]
    assert found["days_remaining"] in (30, 31)  # the churn horizon, from now
    assert len(found["deciles"]) == 10  # scores at selection were logged
    assert found["sample_ratio"]["expected_control_share"] == 0.5
    missing = client.post("/campaign_report", json={"campaign_id": "autumn"})
    assert missing.status_code == 404 and "'autumn'" in missing.json()["error"]


def test_outreach_confirming_a_campaign_twice_is_409_naming_it(
    client: TestClient, body: list[dict], policy: Callable[..., ProjectConfig]
) -> None:
    config = policy()
    request = {**campaign(body), "budget": 10, "mode": "confirm"}
    first = plan(client, request)
    refused = plan(client, {**request, "budget": 30}, status=409)
    assert refused["campaign_id"] == "spring-2026"
    assert refused["confirmed_at"] == first["confirmed_at"]
    assert (
        "spring-2026" in refused["error"] and first["confirmed_at"] in refused["error"]
    )
    rows = ContactLog(config.outreach.contact_log).contacts()
    assert sorted(r.customer for r in rows) == sorted(
        r["customer_id"] for r in first["selected"]
    )


def test_outreach_frequency_cap_excludes_before_ranking(
    client: TestClient, body: list[dict], policy: Callable[..., ProjectConfig]
) -> None:
    policy(frequency_cap=FrequencyCap(max_contacts=1, per_days=30))
    first = plan(client, {**campaign(body), "budget": 15, "mode": "confirm"})
    contacted = {r["customer_id"] for r in first["selected"]}
    assert len(contacted) == 15
    second = {**campaign(body), "campaign_id": "summer-2026", "budget": 15}
    data = plan(client, second)
    counts = data["counts"]
    assert counts["excluded"] == {**NO_EXCLUSIONS, "frequency_cap": 15}
    assert counts["eligible"] == len(body) - 15
    # the budget fills with customers still allowed
    assert counts["selected"] == 15
    assert not contacted & {r["customer_id"] for r in data["selected"]}
    assert any(
        note.startswith("15 customer(s) excluded") and "frequency_cap" in note
        for note in data["reasons"]
    )
    # under a cap of 2 one contact leaves them eligible
    policy(frequency_cap=FrequencyCap(max_contacts=2, per_days=30))
    assert plan(client, second)["counts"]["excluded"] == NO_EXCLUSIONS


def test_outreach_opt_outs_and_consent(
    client: TestClient,
    body: list[dict],
    policy: Callable[..., ProjectConfig],
    tmp_path: Path,
) -> None:
    opt_out = tmp_path / "opt-out.txt"
    ids = [c["customer_id"] for c in body]
    opt_out.write_text(f"# from the CRM\n{ids[0]}\n{ids[1]}\nnot-sent\n")
    policy(opt_out_file=opt_out)
    request = campaign(body)
    request["customers"][2]["consent"] = False
    request["customers"][3]["consent"] = True
    request["customers"][0]["consent"] = True  # the opt-out file wins
    request = {**request, "budget": len(body)}
    data = plan(client, request)
    assert data["counts"]["excluded"] == {**NO_EXCLUSIONS, "opted_out": 3}
    assert data["counts"]["eligible"] == len(body) - 3
    chosen = {r["customer_id"] for r in data["selected"]}
    assert not chosen & set(ids[:3]) and ids[3] in chosen
    # consent required: only customers 3 (consent: true) and 0 (opted out) sent it
    policy(opt_out_file=opt_out, require_consent=True)
    data = plan(client, request)
    assert data["counts"]["excluded"] == {
        **NO_EXCLUSIONS,
        "opted_out": 3,
        "no_consent": len(body) - 4,
    }
    assert [r["customer_id"] for r in data["selected"]] == [ids[3]]
    # the file is re-read when it changes
    opt_out.write_text(f"{ids[3]}\n")
    os.utime(opt_out, ns=(1, 1))
    data = plan(client, request)
    assert data["counts"]["excluded"] == {
        **NO_EXCLUSIONS,
        "opted_out": 2,  # 2 by consent: false, 3 by the file
        "no_consent": len(body) - 3,
    }
    assert [r["customer_id"] for r in data["selected"]] == [ids[0]]
    # a configured file that is gone: refused, not ignored
    opt_out.unlink()
    response = client.post("/outreach", json=request)
    assert response.status_code == 503 and "opt_out_file" in response.text


def test_outreach_leaves_out_forgotten_customers_by_their_pseudonym(
    client: TestClient, body: list[dict], policy: Callable[..., ProjectConfig]
) -> None:
    config = policy(pseudonymise=True)
    ids = [c["customer_id"] for c in body]
    suppression = suppression_path(config.privacy)
    suppression.parent.mkdir(parents=True)
    # a raw id on the list matches nobody: the list holds stored forms
    forgotten = [hashed(ids[5]), hashed(ids[9]), ids[11]]
    suppression.write_text("# propensity forget\n" + "\n".join(forgotten) + "\n")
    data = plan(client, {**campaign(body), "budget": len(body)})
    assert data["counts"]["excluded"] == {**NO_EXCLUSIONS, "forgotten": 2}
    chosen = {r["customer_id"] for r in data["selected"]}
    assert ids[5] not in chosen and ids[9] not in chosen and ids[11] in chosen
    assert any(n.startswith("2 customer(s) excluded") for n in data["reasons"])
    # everyone excluded: nothing scored, nothing selected, still an answer
    suppression.write_text("\n".join(hashed(c) for c in ids) + "\n")
    data = plan(client, {**campaign(body), "budget": 5, "mode": "confirm"})
    assert data["selected"] == [] and data["counts"]["eligible"] == 0
    assert data["counts"]["excluded"]["forgotten"] == len(body)
    assert ContactLog(config.outreach.contact_log).contacts() == []


# --- metadata ----------------------------------------------------------------------


def test_metadata_lists_the_champions_as_registered(
    client: TestClient, trained: Project, champions: Champions
) -> None:
    r = client.post("/metadata")
    assert r.status_code == 200, r.text
    models = r.json()["models"]
    assert set(models) == set(champions.models)
    known = descriptions(trained)
    for target, model in champions.models.items():
        info = models[target]
        assert info["name"] == model.name and info["version"] == model.version
        assert info["aliases"] == ["champion"]
        assert info["trained_at"] == model.metadata["trained_at"]
        assert info["feature_set_version"] == model.metadata["feature_set_version"]
        assert info["calibration"] == model.metadata["calibration"]["method"]
        assert info["horizon_days"] == model.metadata["horizon_days"]
        population = "active_not_churned" if target == "churn" else "seen"
        assert info["population"] == model.metadata["population"] == population
        means = info["backtest_means"]
        assert means["roc_auc"] == model.metadata["metrics"]["backtest_roc_auc_mean"]
        assert means["log_loss"] > 0 and "roc_auc_std" not in means
        features = info["features"]
        assert [f["name"] for f in features] == list(model.encoding.features)
        for f in features:
            assert f["description"] == known.get(f["name"])
        assert any(f["description"] for f in features)
    assert client.post("/metadata", json={}).status_code == 200


def test_new_endpoints_are_in_the_docs(client: TestClient) -> None:
    paths = client.get("/docs.json").json()["paths"]
    for path in (
        "/predict_by_id",
        "/explain",
        "/outreach",
        "/campaign_report",
        "/metadata",
    ):
        assert path in paths, sorted(paths)
    # /docs leads to the Swagger page, with no key
    page = client.get("/docs", headers={"Authorization": ""})
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert page.url.path == "/"


# --- limits ------------------------------------------------------------------------


def test_nan_and_infinity_count_as_missing(
    client: TestClient, body: list[dict]
) -> None:
    """NaN, Infinity and -Infinity (JSON extensions) score like null."""
    numeric = next(k for k, v in body[0]["features"].items() if isinstance(v, float))
    scored = {}
    for token in ["null", "NaN", "Infinity", "-Infinity"]:
        record = {**body[0]["features"], numeric: "@@"}
        text = json.dumps({"customers": [{"features": record}]})
        response = client.post(
            "/predict",
            content=text.replace('"@@"', token),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, (token, response.text)
        scored[token] = response.json()["predictions"][0]["probabilities"]
    assert scored["NaN"] == scored["null"]
    assert scored["Infinity"] == scored["null"] == scored["-Infinity"]


def test_oversized_bodies_and_strings_are_refused(
    client: TestClient, body: list[dict], champions: Champions
) -> None:
    huge = {"customers": [{"features": {"x": "y" * 1000}}] * 70_000}
    response = client.post("/predict", json=huge)
    assert response.status_code == 413
    assert "api.max_request_mb" in response.json()["error"]
    categorical = sorted(champions.categorical)
    if not categorical:
        pytest.skip("the champions read no categorical feature to send a long one")
    record = {**body[0]["features"], categorical[0]: "z" * 257}
    response = client.post("/predict", json={"customers": [{"features": record}]})
    assert response.status_code == 400
    assert "at most 256 characters" in response.text
    assert categorical[0] in response.text
