"""Customer chunks: the same rows as the whole expression, memory limit parsing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from features.columns import CUSTOMER_ID, CUTOFF
from features.definition import FeatureSpec, build_features
from features.sources.chunks import (
    MIN_FLUSH_ROWS,
    chunk_count,
    flush_rows,
    memory_limit_bytes,
    read_chunked,
    write_chunked,
)
from features.sources.load import connect, load
from features.synthetic.demo import generate

SPEC = FeatureSpec(
    role_of={"purchase": "purchase", "support_ticket": "service_request"}
)
CUTOFFS = [datetime(2024, 3, 1), datetime(2024, 4, 1)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    summary = generate(out, customers=300, seed=5, days=150)
    return load(summary.events_path, summary.customers_path, as_of=datetime(2030, 1, 1))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values([CUSTOMER_ID, CUTOFF]).reset_index(drop=True)


def test_chunks_give_exactly_the_rows_of_the_whole(dataset) -> None:
    def build(events):
        return build_features(events, CUTOFFS, SPEC, dataset.customers)

    whole = build(dataset.events).to_pyarrow().to_pandas()
    per_chunk = dataset.rows() // 7 + 1
    assert chunk_count(dataset, per_chunk) == 7
    chunked = read_chunked(dataset, build, events_per_chunk=per_chunk).to_pandas()
    assert len(whole) > 300  # most customers at both cutoffs
    pd.testing.assert_frame_equal(_sorted(chunked), _sorted(whole))


def test_written_parts_hold_the_rows_of_the_whole_in_chunk_order(
    dataset, tmp_path: Path
) -> None:
    """The next chunk's expression is built while the current one runs: the
    parts still come back in chunk order, each its own chunk's customers."""
    built: list[int] = []

    def build(events):
        built.append(len(built))
        return build_features(events, CUTOFFS, SPEC, dataset.customers)

    whole = build(dataset.events).to_pyarrow().to_pandas()
    built.clear()
    per_chunk = dataset.rows() // 5 + 1
    parts = write_chunked(dataset, build, tmp_path / "out", events_per_chunk=per_chunk)
    assert parts == [tmp_path / "out" / f"part-{i}.parquet" for i in range(5)]
    assert built == [0, 1, 2, 3, 4]
    frames = [pd.read_parquet(part) for part in parts]
    assert all(len(f) for f in frames)
    ids = [set(f[CUSTOMER_ID]) for f in frames]
    assert sum(len(i) for i in ids) == len(set().union(*ids))  # disjoint chunks
    pd.testing.assert_frame_equal(_sorted(pd.concat(frames)), _sorted(whole))


def test_a_failing_chunk_stops_the_run_with_its_error(dataset, tmp_path: Path) -> None:
    def build(events):
        if build.calls == 2:
            raise ValueError("chunk 3 cannot be built")
        build.calls += 1
        return build_features(events, CUTOFFS, SPEC, dataset.customers)

    build.calls = 0
    per_chunk = dataset.rows() // 5 + 1
    with pytest.raises(ValueError, match="chunk 3 cannot be built"):
        write_chunked(dataset, build, tmp_path / "out", events_per_chunk=per_chunk)
    # the chunk that was running when the next one failed to build finished
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "part-0.parquet",
        "part-1.parquet",
    ]


def test_one_chunk_under_a_roomy_limit(dataset) -> None:
    assert chunk_count(dataset) == 1


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("1GB", 1e9), ("600MB", 6e8), ("2GiB", 2 * 1024**3)],
)
def test_memory_limit_is_read_in_bytes(
    tmp_path: Path, setting: str, expected: float
) -> None:
    summary = generate(tmp_path, customers=5, seed=1, days=10)
    ds = load(summary.events_path, con=connect(memory_limit=setting))
    # DuckDB reports the limit rounded to a tenth of its unit
    assert memory_limit_bytes(ds) == pytest.approx(expected, rel=1e-3)
    assert chunk_count(ds, events_per_chunk=max(1, ds.rows() // 3)) >= 3


def test_more_cutoffs_make_smaller_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import features.sources.chunks as chunks

    summary = generate(tmp_path, customers=50, seed=2, days=60)
    ds = load(summary.events_path, con=connect(memory_limit="1GB"))
    # pretend a GB's budget holds twice these events
    monkeypatch.setattr(chunks, "EVENTS_PER_GB", 2 * ds.rows())
    assert chunk_count(ds, cutoffs=chunks.CUTOFFS_PER_CHUNK) == 1
    assert chunk_count(ds, cutoffs=3 * chunks.CUTOFFS_PER_CHUNK) == 2


def test_the_split_parts_share_one_buffer_budget() -> None:
    """More chunks, fewer rows held per open part: the split's buffers stay the
    same size whatever the number of chunks, down to a floor."""
    budget = flush_rows(1e9, 1)
    assert flush_rows(1e9, 9) == budget // 9
    assert flush_rows(2e9, 9) == 2 * budget // 9
    assert flush_rows(1e9, 10_000) == MIN_FLUSH_ROWS
