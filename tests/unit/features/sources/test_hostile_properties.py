"""Property: the loader loads a broken CSV or refuses it with a ContractError
naming the file; never another exception (tests/strategies.py broken_csvs)."""

from __future__ import annotations

import math
import tempfile
from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from features.sources.contract import ContractError
from features.sources.load import connect, load
from tests.strategies import broken_csvs, broken_customer_csvs, examples

AS_OF = datetime(2025, 1, 1)


@given(data=broken_csvs())
@settings(
    max_examples=examples(120),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_a_broken_csv_loads_or_is_refused_naming_the_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.csv"
        path.write_bytes(data)
        try:
            ds = load(path, as_of=AS_OF, con=connect(threads=1))
        except ContractError as exc:
            assert exc.problems
            assert all(p.file == path for p in exc.problems), str(exc)
            return
        frame = ds.events.to_pandas()  # the views read what validation passed
        assert len(frame) == ds.rows()
        assert frame.customer_id.str.strip().ne("").all()
        assert frame.event_time.notna().all()
        assert (frame.event_time >= datetime(1970, 1, 1)).all()
        assert (frame.event_time <= AS_OF).all()
        for column in ("amount", "quantity"):
            values = frame[column].dropna()
            assert all(math.isfinite(v) for v in values), column


@given(data=broken_customer_csvs())
@settings(
    max_examples=examples(40),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_a_broken_customers_csv_loads_or_is_refused_naming_it(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.csv"
        events.write_text("customer_id,event_time,event_type\nc1,2024-01-01,login\n")
        customers = Path(tmp) / "customers.csv"
        customers.write_bytes(data)
        try:
            ds = load(events, customers, as_of=AS_OF, con=connect(threads=1))
        except ContractError as exc:
            assert all(p.file == customers for p in exc.problems), str(exc)
            return
        frame = ds.customers.to_pandas()  # the view reads every row
        assert frame.customer_id.is_unique
