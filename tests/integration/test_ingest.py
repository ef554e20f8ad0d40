"""The Redis Stream consumer (serving.ingest.stream) against the real Redis at
127.0.0.1:6379: entries are acknowledged only after the live rows include them;
a consumer killed between the update and the acknowledgement, restarted under
its name, loses nothing and counts nothing twice (the rows equal those of one
clean pass over the same events)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.config import load_config
from serving.ingest.live import Ingester
from serving.ingest.log import EventLog
from serving.online_store import open_reader
from serving.online_store.live import LiveRows, live_path
from tests.helpers import ingest_project

pytestmark = pytest.mark.integration

redis = pytest.importorskip("redis")


class Killed(Exception):
    """The consumer dies between the update and the acknowledgement."""


@pytest.fixture
def client():
    r = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        r.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is unreachable at 127.0.0.1:6379: {exc}")
    yield r
    r.close()


def entries(n: int) -> list[dict]:
    kinds = ["login", "purchase", "support_ticket", "cancel"]
    return [
        {
            "customer_id": f"c{i % 9}",
            "event_time": f"2025-06-0{1 + i % 3} {10 + i % 12}:00:00",
            "event_type": kinds[i % 4],
            "amount": str(i % 7 + 1),
        }
        for i in range(n)
    ]


def streamed(client, stream: str, sent: list[dict], project: Path):
    """`sent` put on `stream`; the config of a fresh ingest project in
    `project`, reading 20 entries at a time."""
    for e in sent:
        client.xadd(stream, e)
    config = load_config(ingest_project(project))
    return config.model_copy(
        update={"ingest": config.ingest.model_copy(update={"read_count": 20})}
    )


def live_rows(config) -> dict:
    rows = LiveRows(live_path(config.online_store.path))
    meta = open_reader(config.online_store).meta()
    return {
        c: (f.as_of, f.record, sorted(f.scored))
        for c, f in rows.lookup(meta, [f"c{i}" for i in range(9)]).items()
    }


def test_a_killed_consumer_restarted_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, client
) -> None:
    from serving.ingest.stream import Consumer

    stream = f"test-ingest-{uuid.uuid4().hex[:8]}"
    sent = entries(50) + [
        {"customer_id": "c1", "event_time": "later", "event_type": "x"}
    ]
    try:
        config = streamed(client, stream, sent, tmp_path / "p")

        def kill(ids):
            raise Killed(ids)

        first = Consumer(config, stream=stream, consumer="a")
        with pytest.raises(Killed):
            first.step()  # its pending entries: none yet
            first.step(before_ack=kill)
        log = EventLog(config.ingest.log)
        assert log.count() == 20  # applied, not acknowledged
        assert client.xpending(stream, config.ingest.group)["pending"] == 20

        again = Consumer(config, stream=stream, consumer="a", ingester=Ingester(config))
        totals = again.run(idle_exit_s=0.5)
        assert totals.duplicates == 20  # the pending 20 again: dropped by the log
        assert totals.rejected == 1 and totals.acked == 51
        assert log.count() == 50
        assert client.xpending(stream, config.ingest.group)["pending"] == 0
        assert client.xlen(stream + ":rejected") == 1
        crashed = live_rows(config)

        # one clean pass over the same events, in a fresh project
        clean = load_config(ingest_project(tmp_path / "q"))
        Ingester(clean).ingest(sent[:50], "clean")
        assert crashed == live_rows(clean) and len(crashed) == 9
    finally:
        client.delete(stream, stream + ":rejected")


def test_a_pipelined_consumer_killed_mid_run_loses_nothing(
    tmp_path: Path, client
) -> None:
    """`run` hands the next reads to the ingester before the earlier ones are
    acknowledged: killed at its second acknowledgement, only the first read
    is acknowledged, every other entry read stays pending, and a restart ends
    with the rows of one clean pass."""
    from serving.ingest.stream import IN_FLIGHT, Consumer

    stream = f"test-ingest-{uuid.uuid4().hex[:8]}"
    sent = entries(120)
    try:
        config = streamed(client, stream, sent, tmp_path / "p")
        acked: list[list] = []

        def kill_at_second(ids):
            if acked:
                raise Killed(ids)
            acked.append(ids)

        first = Consumer(config, stream=stream, consumer="a")
        with pytest.raises(Killed):
            first.run(idle_exit_s=0.5, before_ack=kill_at_second)
        first.ingester.drain()  # its threads die with it in a real crash
        pending = client.xpending(stream, config.ingest.group)["pending"]
        assert len(acked) == 1 and len(acked[0]) == 20
        # the reads in flight when it died were read, not acknowledged
        assert 20 <= pending <= 20 * IN_FLIGHT

        again = Consumer(config, stream=stream, consumer="a", ingester=Ingester(config))
        totals = again.run(idle_exit_s=0.5)
        assert totals.acked == 100
        log = EventLog(config.ingest.log)
        assert log.count() == 120
        assert client.xpending(stream, config.ingest.group)["pending"] == 0
        crashed = live_rows(config)

        clean = load_config(ingest_project(tmp_path / "q"))
        Ingester(clean).ingest(sent, "clean")
        assert crashed == live_rows(clean) and len(crashed) == 9
    finally:
        client.delete(stream, stream + ":rejected")


def test_the_refresh_process_gives_the_rows_of_a_thread_and_comes_back_when_killed(
    tmp_path: Path,
) -> None:
    """`ingest.refresh: process` (the API's default): the same rows as a refresh
    in a thread; a refresh process killed between two batches is started again."""
    sent = entries(40)
    config = load_config(ingest_project(tmp_path / "p"))
    ingester = Ingester(config, refresh="process")
    first = ingester.ingest(sent[:20], "first")
    assert first.customers == 9 and first.as_of is not None
    child = ingester._child._process
    child.kill()
    child.join(30)
    second = ingester.ingest(sent[20:], "second")
    assert second.accepted == 20 and ingester._child._process is not child
    in_process = live_rows(config)

    clean = load_config(ingest_project(tmp_path / "q"))
    Ingester(clean).ingest(sent, "clean")
    assert in_process == live_rows(clean) and len(in_process) == 9
