"""The plain way of `batch.check` (serving.ingest.batch._plain): a batch every
event of which is plainly valid is read in Python, without the contract's
DuckDB queries. Checked here against the contract's own way (`_contract`) on
random batches of plain, odd and bad values: whenever the plain way takes a
batch its rows are the contract's, to the value and type; a batch the
contract refuses never takes it; and the usual batch does take it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.sources.contract import ContractError
from features.sources.load import connect
from serving.ingest import batch
from tests.strategies import _COMMON, examples

AS_OF = datetime(2026, 1, 1, 12, 0, 0, 654321)
PLAIN = settings(max_examples=examples(300), derandomize=True, database=None, **_COMMON)


@pytest.fixture(scope="module")
def con():
    backend = connect(threads=1)
    yield backend.con
    backend.disconnect()


def _time(draw, odd: bool) -> str:
    edge = draw(st.sampled_from(["any", "any", "as_of", "earliest"]))
    if edge == "as_of":  # around the future's edge, to the second
        when = AS_OF + timedelta(seconds=draw(st.integers(-2, 2)))
    elif edge == "earliest":
        when = datetime(1970, 1, 1) + timedelta(seconds=draw(st.integers(-2, 2)))
    else:
        when = datetime(2000, 1, 1) + timedelta(
            seconds=draw(st.integers(0, 26 * 365 * 86400))
        )
    form = draw(st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]))
    text = when.strftime(form)
    digits = draw(st.integers(0, 7 if odd else 6))
    if digits:
        text += "." + "".join(
            draw(
                st.lists(
                    st.sampled_from("0123456789"), min_size=digits, max_size=digits
                )
            )
        )
    text += draw(st.sampled_from(["", "", "Z", "+00:00", "+05:30", "-03:45", "+14:00"]))
    if not odd:
        return text
    return draw(st.sampled_from([f" {text}", text[:10], "soon", "2025-02-30 10:00:00"]))


PLAIN_NUMBERS = st.one_of(
    st.none(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["12.5", "-0.25", "7", "", "0.1", "123456789012345.5"]),
)
ODD_NUMBERS = st.one_of(
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([" 3", "1e5", "ten", "1_000", "0x10", "nan", "+1", "1."]),
    st.booleans(),
)
PLAIN_TEXTS = st.sampled_from(["c1", "c2", "C 2", 42, 0])
ODD_TEXTS = st.sampled_from([" c3", "c4 ", "", "\t", True, None, 1.5])
PLAIN_IDS = st.sampled_from(["e1", "e2", "", None, 17])
ODD_IDS = st.sampled_from([" e3", False, 1.5, "\n"])


@st.composite
def events(draw) -> list[dict]:
    """1-4 events, each plain (what `_plain` takes) but one in eight odd in one
    field or more (what the contract alone may read or refuse)."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        odd = draw(st.integers(0, 7)) == 0

        def pick(plain, other, odd=odd):
            return draw(other if odd and draw(st.booleans()) else plain)

        event = {
            "customer_id": pick(PLAIN_TEXTS, ODD_TEXTS),
            "event_time": _time(draw, odd and draw(st.booleans())),
            "event_type": pick(st.sampled_from(["login", "buy"]), ODD_TEXTS),
        }
        for key, plain, other in (
            ("amount", PLAIN_NUMBERS, ODD_NUMBERS),
            ("quantity", PLAIN_NUMBERS, ODD_NUMBERS),
            ("event_id", PLAIN_IDS, ODD_IDS),
        ):
            if draw(st.booleans()):
                event[key] = pick(plain, other)
        if odd and draw(st.integers(0, 4)) == 0:
            del event["customer_id"]
        out.append(event)
    return out


def _same(a: tuple, b: tuple) -> bool:
    return all(
        type(x) is type(y)
        and (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)))
        for x, y in zip(a, b, strict=True)
    )


@PLAIN
@given(events())
def test_the_plain_way_gives_the_contracts_rows_or_leaves_the_batch_to_it(con, batch_):
    ids = [f"s/{i}" for i in range(len(batch_))]
    plain = batch._plain(batch_, AS_OF, ids)
    try:
        rows = batch._contract(con, batch_, "POST /events", AS_OF, ids, False).rows
    except ContractError:
        rows = None
    if plain is None:
        return
    assert rows is not None, (
        f"the plain way took a batch the contract refuses: {batch_}"
    )
    assert len(plain) == len(rows)
    for p, c in zip(plain, rows, strict=True):
        assert _same(p, c), (batch_, p, c)


def test_the_usual_batch_takes_the_plain_way_and_reads_as_the_contract(con):
    now = datetime.now(UTC).replace(tzinfo=None)
    usual = [
        {
            "customer_id": "c1",
            "event_time": "2025-12-01 10:04:00",
            "event_type": "purchase",
            "amount": 12.5,
            "event_id": "a-1",
        },
        {
            "customer_id": 77,
            "event_time": "2025-12-01T09:04:00.250+01:00",
            "event_type": "login",
            "quantity": "3",
        },
        {"customer_id": "c2", "event_time": "2025-12-01T10:05:59Z", "event_type": "x"},
    ]
    plain = batch._plain(usual, now, None)
    assert plain is not None
    assert [r[:5] for r in plain] == [
        ("c1", datetime(2025, 12, 1, 10, 4), "purchase", 12.5, None),
        ("77", datetime(2025, 12, 1, 8, 4), "login", None, 3.0),
        ("c2", datetime(2025, 12, 1, 10, 5, 59), "x", None, None),
    ]
    assert plain[0][5] == "a-1" and plain[1][5].startswith("i-")
    contract = batch._contract(con, usual, "POST /events", now, None, False).rows
    assert [r[:5] for r in contract] == [r[:5] for r in plain]
    checked = batch.check(con, usual, "POST /events", max_events=10)
    assert [r[:5] for r in checked.rows] == [r[:5] for r in plain]


def test_a_bad_batch_is_still_refused_by_the_contract_naming_row_and_field(con):
    bad = [
        {"customer_id": "c1", "event_time": "2025-12-01 10:04:00", "event_type": "x"},
        {"customer_id": "c1", "event_time": "soon", "event_type": "x"},
    ]
    assert batch._plain(bad, AS_OF, None) is None
    with pytest.raises(ContractError) as refused:
        batch.check(con, bad, "POST /events", max_events=10, as_of=AS_OF)
    assert "event_time" in str(refused.value) and "rows 2" in str(refused.value)


def test_check_plain_answers_the_usual_batch_without_a_connection_and_leaves_others():
    """The event loop's way (`check_plain`, no DuckDB): the usual batch's rows,
    None for a batch the contract must read, and the size limit as `check`."""
    usual = [
        {"customer_id": "c1", "event_time": "2025-12-01 10:04:00", "event_type": "x"},
        {"customer_id": "c2", "event_time": "2025-12-01T10:05:59Z", "event_type": "y"},
    ]
    checked = batch.check_plain(usual, "POST /events", max_events=10)
    assert checked is not None and checked.problems == []
    assert [r[:3] for r in checked.rows] == [
        ("c1", datetime(2025, 12, 1, 10, 4), "x"),
        ("c2", datetime(2025, 12, 1, 10, 5, 59), "y"),
    ]
    odd = [{**usual[0], "customer_id": " c1"}]  # the contract trims it
    assert batch.check_plain(odd, "POST /events", max_events=10) is None
    future = [{**usual[0], "event_time": "2999-01-01 00:00:00"}]  # refused
    assert batch.check_plain(future, "POST /events", max_events=10) is None
    with pytest.raises(batch.TooMany, match="3 events in one batch; at most 2"):
        batch.check_plain(usual + usual[:1], "POST /events", max_events=2)
