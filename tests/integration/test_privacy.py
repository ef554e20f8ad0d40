"""Privacy end to end through the CLI and a real `bentoml serve`: the whole
pipeline on demo data with pseudonymisation on, then a scan of every file it
wrote for any raw customer id; `forget` in every place; the key's absence.

The scan reads what a byte search would miss: Parquet columns (pages are
compressed) and SQLite tables (MLflow's store, the online store) as text; every
other file as bytes. Its positive control is the input itself, which holds the
raw ids.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from core.config import PSEUDONYM_KEY_ENV, load_config
from features.sources.load import load_project
from features.sources.privacy import Pseudonymiser
from serving.api.auth import SCOPES, add_key
from serving.online_store import open_reader
from serving.outreach.contact_log import ContactLog
from tests.helpers import (
    NEEDS,
    Project,
    Server,
    auth,
    records,
    run_cli,
    serving,
    write_config,
)

pytestmark = pytest.mark.integration

KEY = "pseudonym-test-key-5d2c9e71a4b8f036"
RAW_ID = re.compile(rb"C\d{7}")


@dataclass(frozen=True)
class Private:
    project: Project
    env: dict[str, str]
    raw_ids: frozenset[str]
    logs: Path
    # an API key per scope, from the project's key file
    keys: dict[str, str]

    @property
    def root(self) -> Path:
        return self.project.root

    def stored(self, raw: str) -> str:
        return Pseudonymiser(KEY.encode()).one(raw)


def _text_of(path: Path) -> Iterator[bytes]:
    """What a file holds, decoded where bytes would hide it."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        for column in table.columns:
            yield "\n".join(map(str, column.to_pylist())).encode()
        return
    head = path.read_bytes()[:16]
    if head.startswith(b"SQLite format 3"):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            yield "\n".join(db.iterdump()).encode()
        finally:
            db.close()
        return
    yield path.read_bytes()


def raw_ids_in(root: Path, raw_ids: frozenset[str]) -> dict[str, set[str]]:
    """Every file under `root` holding a raw id, with the ids found."""
    found: dict[str, set[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for blob in _text_of(path):
            hits = {m.decode() for m in RAW_ID.findall(blob)} & raw_ids
            if hits:
                found.setdefault(str(path.relative_to(root)), set()).update(hits)
    return found


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Private:
    """Demo data trained and scored with pseudonymisation on, through the CLI,
    with every log written under the project folder."""
    root = tmp_path_factory.mktemp("private")
    events, customers = demo_dir / "events.parquet", demo_dir / "customers.parquet"
    config = write_config(
        root / "propensity.yaml",
        events,
        customers,
        privacy={"pseudonymise": True},
        api={"keys_file": "api-keys.txt"},
        training={
            "cutoffs": {"start": "2025-03-01", "freq": "MS"},
            "lightgbm": {"num_boost_round": 60, "num_leaves": 15},
            "snapshot_dir": "snapshots",
        },
    )
    project = Project(
        root, config, f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", events, customers
    )
    env = {**project.env(), PSEUDONYM_KEY_ENV: KEY}
    keys = {
        s: add_key(root / "api-keys.txt", f"only-{s}", frozenset({s})) for s in SCOPES
    }
    logs = root / "logs"
    logs.mkdir()
    for step in (["train"], ["--verbose", "score"]):
        done = run_cli(step, env)
        (logs / f"{step[-1]}.log").write_text(done.stdout + done.stderr)
        assert done.returncode in (0, 3), done.stderr[-3000:]
    raw = pq.read_table(customers, columns=["customer_id"])["customer_id"]
    return Private(project, env, frozenset(raw.to_pylist()), logs, keys)


@pytest.fixture(scope="module")
def private_server(private: Private) -> Iterator[Server]:
    with serving(private.env, private.logs / "bentoml.log") as server:
        yield server


def test_the_scan_finds_raw_ids_where_they_are(private: Private, tmp_path: Path):
    """The positive control: the scanner sees ids in compressed Parquet and in
    SQLite, so an empty scan below means something."""
    db = sqlite3.connect(tmp_path / "x.sqlite")
    db.execute("CREATE TABLE t (id TEXT)")
    db.execute("INSERT INTO t VALUES ('C0000007')")
    db.commit()
    db.close()
    (tmp_path / "in.parquet").write_bytes(private.project.events.read_bytes())
    found = raw_ids_in(tmp_path, private.raw_ids)
    assert found["x.sqlite"] == {"C0000007"}
    assert len(found["in.parquet"]) > 1000


def test_everything_stored_holds_pseudonyms_and_the_api_answers_raw_ids(
    private: Private, private_server: Server
) -> None:
    config = load_config(private.project.config)
    scores = sorted(Path(config.scoring.output).glob("as_of=*/*.parquet"))
    stored = set(pq.read_table(scores[0])["customer_id"].to_pylist())
    assert stored and all(re.fullmatch(r"[0-9a-f]{64}", s) for s in stored)

    raw = sorted(private.raw_ids)
    by_stored = {private.stored(r): r for r in raw}
    scored_raw = sorted(by_stored[s] for s in stored)[:5]
    ids = [*scored_raw, "C9999999"]
    r = httpx.post(
        f"{private_server.url}/predict_by_id",
        json={"customer_ids": ids},
        headers=auth(private.keys["score"]),
    )
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [p["customer_id"] for p in got] == ids
    assert [p["status"] for p in got] == ["ok"] * 5 + ["not_found"]
    # a confirmed campaign: the contact log keeps pseudonyms too
    # feature rows from the raw log (the config's own features), sent by raw id
    found = records(private.project, 20)[0]
    body = [{**r, "customer_id": raw[i]} for i, r in enumerate(found)]
    campaign = {
        "campaign_id": "privacy-scan",
        "target": "churn",
        "budget": 10,
        "customers": body,
        "mode": "confirm",
    }
    r = httpx.post(
        f"{private_server.url}/outreach",
        json=campaign,
        headers=auth(private.keys["outreach"]),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert {s["customer_id"] for s in r.json()["selected"]} <= set(raw[:20])
    logged = ContactLog(private.root / "contacts" / "contacts.sqlite").contacts()
    assert {c.customer for c in logged} <= {private.stored(x) for x in raw[:20]}
    assert len(logged) == len(r.json()["selected"]) > 0

    leaks = raw_ids_in(private.root, private.raw_ids)
    assert leaks == {}, {k: sorted(v)[:3] for k, v in leaks.items()}
    # MLflow input examples carry no identifier at all, not even a pseudonym
    examples = list((private.root / "mlruns").rglob("input_example.json"))
    assert len(examples) >= 3
    for path in examples:
        text = path.read_text()
        assert "customer_id" not in text and not re.search(r"[0-9a-f]{64}", text)
    # the scan covered MLflow's store and artifacts, the scores, the online
    # store, the snapshot and the logs
    written = {p.relative_to(private.root).parts[0] for p in private.root.rglob("*")}
    assert {"mlruns", "scores", "online", "snapshots", "logs", "contacts"} <= written


def test_forget_removes_a_customer_everywhere_and_later_runs_leave_it_out(
    private: Private, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(private.project.config)
    output = Path(config.scoring.output)
    reader = open_reader(config.online_store)
    first = next(output.glob("as_of=*/*.parquet"))
    store_ids = set(pq.read_table(first)["customer_id"].to_pylist())
    raw = next(r for r in sorted(private.raw_ids) if private.stored(r) in store_ids)
    pseudonym = private.stored(raw)
    assert reader.lookup([pseudonym])

    done = run_cli(["forget", "--customer-id", raw], private.env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "forgot 1 customer(s)" in done.stdout

    assert reader.lookup([pseudonym]) == {}
    for folder in (output, private.root / "snapshots"):
        for path in folder.rglob("*.parquet"):
            assert pseudonym not in set(pq.read_table(path)["customer_id"].to_pylist())
    suppressed = (config.privacy.dir / "suppressed.txt").read_text()
    assert pseudonym in suppressed.split()
    entries = [
        json.loads(line)
        for line in (config.privacy.dir / "erasures.jsonl").read_text().splitlines()
    ]
    assert entries[-1]["customer"] == pseudonym
    places = entries[-1]["removed"]
    assert any("store.sqlite" in p for p in places)
    assert any("snapshots" in p for p in places)
    assert any("scores" in p for p in places)
    assert raw not in json.dumps(entries)

    # every later load leaves the customer out (training and scoring both load so)
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY)
    ds = load_project(config)
    left = ds.events.filter(ds.events.customer_id == pseudonym).count().to_pyarrow()
    assert left.as_py() == 0
    assert ds.events.count().to_pyarrow().as_py() > 0
    again = run_cli(["score", "--as-of", "2025-12-01"], private.env)
    assert again.returncode in (0, 3), again.stderr[-3000:]
    fresh = output / "as_of=2025-12-01" / "part-0.parquet"
    assert pseudonym not in set(pq.read_table(fresh)["customer_id"].to_pylist())
    leaks = raw_ids_in(private.root, private.raw_ids)
    assert leaks == {}, {k: sorted(v)[:3] for k, v in leaks.items()}


def test_without_the_key_nothing_runs_and_the_error_names_it(
    private: Private,
) -> None:
    env = {k: v for k, v in private.env.items() if k != PSEUDONYM_KEY_ENV}
    for step in (["score"], ["forget", "--customer-id", "C0000001"]):
        done = run_cli(step, env)
        assert done.returncode == 2, (step, done.stderr[-2000:])
        assert f"${PSEUDONYM_KEY_ENV} is not set" in done.stderr


def test_every_endpoint_with_every_scope_over_http(
    private: Private, private_server: Server
) -> None:
    """A key lacking the endpoint's scope gets 403; one holding it gets past the
    guard (an empty body then fails validation: nothing is run)."""
    for path, needed in NEEDS.items():
        for scope, key in private.keys.items():
            r = httpx.post(f"{private_server.url}{path}", json={}, headers=auth(key))
            if scope == needed:
                assert r.status_code not in (401, 403), (path, scope, r.text)
            else:
                assert r.status_code == 403, (path, scope, r.text)
                assert f"lacks the '{needed}' scope" in r.json()["error"]


def test_forget_over_the_api_needs_admin_and_takes_effect_at_once(
    private: Private, private_server: Server
) -> None:
    url = private_server.url
    config = load_config(private.project.config)
    first = next(Path(config.scoring.output).glob("as_of=*/*.parquet"))
    stored = set(pq.read_table(first)["customer_id"].to_pylist())
    raw = next(
        r for r in sorted(private.raw_ids, reverse=True) if private.stored(r) in stored
    )
    body = {"customer_ids": [raw]}
    ok = httpx.post(
        f"{url}/predict_by_id", json=body, headers=auth(private.keys["score"])
    )
    assert ok.json()["found"] == 1
    denied = httpx.post(f"{url}/forget", json=body, headers=auth(private.keys["score"]))
    assert denied.status_code == 403

    done = httpx.post(
        f"{url}/forget", json=body, headers=auth(private.keys["admin"]), timeout=60
    )
    assert done.status_code == 200, done.text
    assert done.json()["forgotten"] == 1 and done.json()["rows_removed"] >= 2
    gone = httpx.post(
        f"{url}/predict_by_id", json=body, headers=auth(private.keys["score"])
    )
    assert gone.json()["predictions"][0]["status"] == "not_found"
    suppressed = (config.privacy.dir / "suppressed.txt").read_text().split()
    assert private.stored(raw) in suppressed and raw not in suppressed


def test_ingested_events_move_predict_by_id_and_are_stored_as_pseudonyms(
    private: Private, private_server: Server
) -> None:
    """POST /events (ingest scope) for a scored customer, sent by raw id:
    predict_by_id changes and its as_of becomes the newest event's time; a bad
    event is a 422 naming row and field and applies nothing; the event log and
    the live rows hold pseudonyms only."""
    url, keys = private_server.url, private.keys
    config = load_config(private.project.config)
    first = next(Path(config.scoring.output).glob("as_of=*/*.parquet"))
    table = pq.read_table(first).to_pandas()
    table = table[table["churn"].notna()]
    stored = set(table["customer_id"])
    raw = next(r for r in sorted(private.raw_ids) if private.stored(r) in stored)
    as_of = first.parent.name.split("=")[1]
    body = {"customer_ids": [raw]}
    before = httpx.post(f"{url}/predict_by_id", json=body, headers=auth(keys["score"]))
    assert before.json()["predictions"][0]["as_of"] == as_of
    events = [
        {
            "customer_id": raw,
            "event_time": f"{as_of} 10:0{i}:00",
            "event_type": kind,
            "event_id": f"test-{i}",
        }
        for i, kind in enumerate(["support_ticket"] * 6 + ["cancel"])
    ]
    sent = httpx.post(
        f"{url}/events",
        json={"events": events},
        headers=auth(keys["ingest"]),
        timeout=60,
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["accepted"] == 7 and sent.json()["customers"] == 1
    after = httpx.post(f"{url}/predict_by_id", json=body, headers=auth(keys["score"]))
    got = after.json()["predictions"][0]
    assert got["customer_id"] == raw and got["as_of"] == f"{as_of}T10:06:00"
    assert got["probabilities"] != before.json()["predictions"][0]["probabilities"]
    # resent: nothing changes
    again = httpx.post(
        f"{url}/events",
        json={"events": events},
        headers=auth(keys["ingest"]),
        timeout=60,
    )
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 7
    # a bad event: 422 naming row and field, nothing applied
    bad = [events[0] | {"event_id": "new-1"}, events[1] | {"event_time": "soon"}]
    refused = httpx.post(
        f"{url}/events", json={"events": bad}, headers=auth(keys["ingest"]), timeout=60
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()["problems"][0]
    assert problem["field"] == "event_time" and problem["rows"] == [2]
    too_many = httpx.post(
        f"{url}/events",
        json={"events": events * 1500},
        headers=auth(keys["ingest"]),
        timeout=60,
    )
    assert too_many.status_code == 413, too_many.text
    denied = httpx.post(
        f"{url}/events", json={"events": events}, headers=auth(keys["score"])
    )
    assert denied.status_code == 403
    leaks = raw_ids_in(private.root / "ingest", private.raw_ids)
    leaks |= raw_ids_in(private.root / "online", private.raw_ids)
    assert leaks == {}, leaks
    assert (private.root / "ingest" / "events.sqlite").exists()
