"""Column mapping (data.columns) and several event sources (a list in data.events):
each source validated in its own names, then mapped and combined into one log that
gives the same features as the one pre-combined file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from core.config import (
    ColumnsConfig,
    ConfigError,
    DatabaseSource,
    EventSource,
    load_config,
)
from core.config.data import CUSTOMER_NAMES, EVENT_NAMES, SUBSCRIPTION_NAMES
from features import columns as contract
from features.columns import (
    BILLING_PERIOD_DAYS,
    CUSTOMER_ID,
    EVENT_COLUMNS,
    EVENT_TIME,
    EVENT_TYPE,
    PLAN,
    PRICE,
    SIGNUP_TIME,
    SUBSCRIPTION_COLUMNS,
)
from features.definition import FeatureSpec, build_features
from features.sources.contract import ContractError
from features.sources.load import load
from features.sources.privacy import Pseudonymiser
from features.synthetic.demo import DemoSummary, generate
from tests.helpers import PRIVACY_KEY

AS_OF = datetime(2030, 1, 1)
ORDER = [CUSTOMER_ID, EVENT_TIME, EVENT_TYPE]
TIME = pd.Timestamp("2024-03-01 10:00")


def events_of(ds) -> pd.DataFrame:
    return ds.events.to_pandas().sort_values(ORDER).reset_index(drop=True)


def problems_of(*args, **kwargs) -> list:
    with pytest.raises(ContractError) as info:
        load(*args, as_of=AS_OF, **kwargs)
    return info.value.problems


def test_the_config_names_are_the_contract_names() -> None:
    assert set(EVENT_NAMES) == set(EVENT_COLUMNS)
    assert set(CUSTOMER_NAMES) == {CUSTOMER_ID, SIGNUP_TIME}
    assert set(SUBSCRIPTION_NAMES) == {
        *SUBSCRIPTION_COLUMNS,
        contract.MRR,
        contract.BILLING_PERIOD_MONTHS,
    }


# -- config --


def _config(tmp_path: Path, data: str) -> Path:
    path = tmp_path / "propensity.yaml"
    path.write_text(f"data:\n{data}training: {{cutoffs: {{start: 2024-01-01}}}}\n")
    return path


def test_unknown_contract_names_are_refused_with_the_valid_ones(
    tmp_path: Path,
) -> None:
    path = _config(
        tmp_path,
        "  events: e.csv\n"
        "  columns: {events: {customer: household_id}, "
        "subscriptions: {product: product}}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "data.columns.events: Value error, unknown contract column(s) " in message
    assert "['customer']; expected some of ['customer_id', 'event_time'" in message
    assert "data.columns.subscriptions" in message and "'billing_period_months'" in (
        message
    )


def test_a_list_of_sources_in_the_config(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "  events:\n"
        "    - purchases.csv\n"
        "    - {path: tickets.parquet, event_type: ticket, "
        "columns: {event_time: opened_at}}\n"
        "    - {uri: 'duckdb:w.duckdb', table: logins, event_type: login}\n"
        "  columns: {events: {customer_id: household_id, event_time: day}}\n"
        "  base_plans: [basic, pro]\n",
    )
    data = load_config(path).data
    first, second, third = data.event_sources()
    assert first.path == tmp_path / "purchases.csv" and first.event_type is None
    assert first.columns == {CUSTOMER_ID: "household_id", EVENT_TIME: "day"}
    # the source's own mapping overrides the shared one
    assert second.columns == {CUSTOMER_ID: "household_id", EVENT_TIME: "opened_at"}
    assert second.event_type == "ticket"
    assert third.source == DatabaseSource(
        uri=f"duckdb:{tmp_path / 'w.duckdb'}", table="logins"
    )
    assert data.base_plans == ["basic", "pro"]


@pytest.mark.parametrize(
    ("entry", "wanted"),
    [
        ("{event_type: buy}", "data.events.0: Value error, give either path or uri"),
        (
            "{path: p.csv, event_type: buy, columns: {event_type: kind}}",
            "give event_type (a constant) or columns.event_type, not both",
        ),
        ("{path: p.csv, table: t}", "table and query go with uri"),
        ("{path: p.csv, colums: {}}", "data.events.0.colums: unknown key"),
    ],
)
def test_bad_source_entries_name_the_key(
    tmp_path: Path, entry: str, wanted: str
) -> None:
    with pytest.raises(ConfigError, match=r"(?s)" + _escape(wanted)):
        load_config(_config(tmp_path, f"  events: [{entry}]\n"))


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_single_source_configs_read_as_before(tmp_path: Path) -> None:
    data = load_config(_config(tmp_path, "  events: events.csv\n")).data
    assert data.events == tmp_path / "events.csv"
    (only,) = data.event_sources()
    assert only.path == tmp_path / "events.csv" and only.columns == {}
    data = load_config(
        _config(tmp_path, "  events: {uri: 'duckdb:w.duckdb', table: ev}\n")
    ).data
    assert isinstance(data.events, DatabaseSource)
    # one mapping with a constant event type is one source with that setting
    data = load_config(
        _config(tmp_path, "  events: {path: buys.csv, event_type: purchase}\n")
    ).data
    (only,) = data.event_sources()
    assert (only.path, only.event_type) == (tmp_path / "buys.csv", "purchase")


# -- mapping, one table at a time --


def test_events_columns_are_mapped(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(
        "household_id,day,kind,sales_value,customer_id\n"
        "h1,2024-03-01 10:00:00,purchase,3.5,store9\n"
        "h2,2024-03-02 11:00:00,login,,store9\n"
    )
    columns = ColumnsConfig(
        events={
            CUSTOMER_ID: "household_id",
            EVENT_TIME: "day",
            EVENT_TYPE: "kind",
            "amount": "sales_value",
        }
    )
    got = events_of(load(path, as_of=AS_OF, columns=columns))
    assert list(got.columns) == list(EVENT_COLUMNS)
    # the mapped column wins over the source's own `customer_id` (a store)
    assert got[CUSTOMER_ID].tolist() == ["h1", "h2"]
    assert got[EVENT_TIME].tolist() == [TIME, pd.Timestamp("2024-03-02 11:00")]
    assert got["amount"].isna().tolist() == [False, True]
    assert got["amount"][0] == 3.5


def test_a_mapped_column_missing_names_the_file_and_a_close_match(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("household_id,day,kind\nh1,2024-03-01,purchase\n")
    close = ColumnsConfig(events={CUSTOMER_ID: "houshold_id", EVENT_TYPE: "kind"})
    (problem,) = problems_of(path, columns=close)
    assert problem.file == path and problem.column == "houshold_id"
    assert "mapped to customer_id is missing" in problem.expected
    assert problem.expected.endswith("did you mean 'household_id'?")
    assert str(path) in str(ContractError([problem]))
    # a distant name gets no suggestion, and event_time (unmapped) is missing too
    far = ColumnsConfig(events={CUSTOMER_ID: "store_id", EVENT_TYPE: "kind"})
    (problem,) = problems_of(path, columns=far)
    assert problem.column == "store_id" and "did you mean" not in problem.expected


def test_an_unmapped_missing_column_says_where_to_map_it(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("household_id,event_time,event_type\nh1,2024-03-01,buy\n")
    (problem,) = problems_of(path)
    assert problem.column == CUSTOMER_ID
    assert "data.columns.events.customer_id" in problem.expected


def test_a_bad_value_in_a_mapped_column_names_the_source_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("hh,day,kind\nh1,2024-03-01,buy\nh2,soon,buy\n")
    columns = ColumnsConfig(
        events={CUSTOMER_ID: "hh", EVENT_TIME: "day", EVENT_TYPE: "kind"}
    )
    (problem,) = problems_of(path, columns=columns)
    assert (problem.column, problem.rows) == ("day", (2,))


def test_a_constant_event_type(tmp_path: Path) -> None:
    path = tmp_path / "purchases.csv"
    path.write_text("customer_id,event_time,amount\nc1,2024-03-01 10:00,5\n")
    got = events_of(load(EventSource(path=path, event_type="purchase"), as_of=AS_OF))
    assert got[EVENT_TYPE].tolist() == ["purchase"]
    # without it, event_type is missing
    (problem,) = problems_of(path)
    assert problem.column == EVENT_TYPE


def test_customers_columns_are_mapped(tmp_path: Path) -> None:
    events = tmp_path / "e.csv"
    events.write_text("customer_id,event_time,event_type\nh1,2024-03-01,buy\n")
    people = tmp_path / "households.csv"
    people.write_text("household_key,joined,region\nh1,2023-01-01,north\n")
    columns = ColumnsConfig(
        customers={CUSTOMER_ID: "household_key", SIGNUP_TIME: "joined"}
    )
    ds = load(events, people, as_of=AS_OF, columns=columns)
    frame = ds.customers.to_pandas()
    assert set(frame.columns) == {CUSTOMER_ID, SIGNUP_TIME, "region"}
    assert frame[CUSTOMER_ID].tolist() == ["h1"]
    wrong = ColumnsConfig(customers={CUSTOMER_ID: "household"})
    (problem,) = problems_of(events, people, columns=wrong)
    assert problem.file == people and problem.column == "household"
    assert "did you mean 'household_key'?" in problem.expected


def test_subscriptions_columns_are_mapped(tmp_path: Path) -> None:
    events = tmp_path / "e.csv"
    events.write_text("customer_id,event_time,event_type\na1,2024-03-01,login\n")
    subs = tmp_path / "billing.csv"
    subs.write_text(
        "account_id,product,start_date,end_date,mrr,bill_period_months\n"
        "a1,pro,2024-01-01,2024-07-01,50,6\n"
    )
    columns = ColumnsConfig(
        subscriptions={
            CUSTOMER_ID: "account_id",
            PLAN: "product",
            "start_time": "start_date",
            "end_time": "end_date",
            "mrr": "mrr",
            "billing_period_months": "bill_period_months",
        }
    )
    frame = load(events, subscriptions=subs, as_of=AS_OF, columns=columns)
    frame = frame.subscriptions.to_pandas()
    assert list(frame.columns) == list(SUBSCRIPTION_COLUMNS)
    assert frame[[CUSTOMER_ID, PLAN, PRICE, BILLING_PERIOD_DAYS]].values.tolist() == [
        ["a1", "pro", 50.0, 183.0]
    ]
    wrong = ColumnsConfig(subscriptions={**columns.subscriptions, PLAN: "prodct"})
    (problem,) = problems_of(events, subscriptions=subs, columns=wrong)
    assert problem.file == subs and problem.column == "prodct"
    assert "did you mean 'product'?" in problem.expected


# -- several sources --


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate(tmp_path_factory.mktemp("demo"), customers=60, seed=5, days=120)


def _split(demo: DemoSummary, folder: Path) -> tuple[Path, Path]:
    """The demo's events as two exports: purchases as CSV without an event type
    (other names), everything else as Parquet (other names again)."""
    frame = pd.read_parquet(demo.events_path)
    buys = frame[frame[EVENT_TYPE] == "purchase"]
    rest = frame[frame[EVENT_TYPE] != "purchase"]
    purchases = folder / "purchases.csv"
    buys.drop(columns=[EVENT_TYPE]).rename(
        columns={CUSTOMER_ID: "household_id", EVENT_TIME: "day", "amount": "sales"}
    ).to_csv(purchases, index=False)
    other = folder / "activity.parquet"
    rest.rename(columns={CUSTOMER_ID: "user", EVENT_TIME: "ts"}).to_parquet(other)
    return purchases, other


def _two_sources(purchases: Path, other: Path) -> list[EventSource]:
    return [
        EventSource(
            path=purchases,
            event_type="purchase",
            columns={CUSTOMER_ID: "household_id", EVENT_TIME: "day", "amount": "sales"},
        ),
        EventSource(path=other, columns={CUSTOMER_ID: "user", EVENT_TIME: "ts"}),
    ]


def test_two_sources_give_the_features_of_the_combined_file(
    tmp_path: Path, demo: DemoSummary
) -> None:
    purchases, other = _split(demo, tmp_path)
    combined = load(demo.events_path, as_of=AS_OF)
    ds = load(_two_sources(purchases, other), as_of=AS_OF)
    assert ds.events_files == [purchases, other]
    assert ds.fingerprint() == combined.fingerprint()
    pd.testing.assert_frame_equal(events_of(ds), events_of(combined))
    spec = FeatureSpec(
        role_of={"purchase": "purchase", "support_ticket": "service_request"}
    )
    cutoffs = [datetime(2024, 3, 1), datetime(2024, 4, 1)]

    def features(d) -> pd.DataFrame:
        table = build_features(d.events, cutoffs, spec).to_pandas()
        return table.sort_values([CUSTOMER_ID, "cutoff"]).reset_index(drop=True)

    got, want = features(ds), features(combined)
    assert len(got) > 50 and got["purchase_count_30d"].sum() > 0
    pd.testing.assert_frame_equal(got, want)


def test_pseudonyms_are_the_same_across_sources(
    tmp_path: Path, demo: DemoSummary
) -> None:
    purchases, other = _split(demo, tmp_path)
    p = Pseudonymiser(PRIVACY_KEY)
    ds = load(_two_sources(purchases, other), as_of=AS_OF, pseudonyms=p)
    combined = load(demo.events_path, as_of=AS_OF, pseudonyms=p)
    pd.testing.assert_frame_equal(events_of(ds), events_of(combined))
    ids = set(ds.events.to_pandas()[CUSTOMER_ID])
    raw = set(pd.read_parquet(demo.events_path)[CUSTOMER_ID])
    assert ids == set(p.many(sorted(raw)))
    # a customer with purchases and other events has one pseudonym in both
    bought = set(pd.read_csv(purchases)["household_id"].astype(str))
    both = sorted(bought & set(pd.read_parquet(other)["user"]))
    assert both and p.one(both[0]) in ids


def test_suppression_and_types_read_apply_to_every_source(
    tmp_path: Path, demo: DemoSummary
) -> None:
    purchases, other = _split(demo, tmp_path)
    gone = sorted(set(pd.read_csv(purchases)["household_id"].astype(str)))[0]
    ds = load(
        _two_sources(purchases, other),
        as_of=AS_OF,
        suppressed=frozenset({gone}),
        event_types=["purchase", "login"],
    )
    frame = ds.events.to_pandas()
    assert gone not in set(frame[CUSTOMER_ID])
    assert set(frame[EVENT_TYPE]) == {"purchase", "login"}


def test_a_database_source_in_the_list(tmp_path: Path, demo: DemoSummary) -> None:
    purchases, other = _split(demo, tmp_path)
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"CREATE TABLE activity AS FROM read_parquet('{other}')")
    sources = _two_sources(purchases, other)
    sources[1] = EventSource(
        uri=f"duckdb:{warehouse}",
        table="activity",
        columns={CUSTOMER_ID: "user", EVENT_TIME: "ts"},
    )
    ds = load(sources, as_of=AS_OF)
    combined = load(demo.events_path, as_of=AS_OF)
    pd.testing.assert_frame_equal(events_of(ds), events_of(combined))
    assert ds.events_files == [purchases]


def test_each_source_problem_names_its_source(
    tmp_path: Path, demo: DemoSummary
) -> None:
    purchases, other = _split(demo, tmp_path)
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "CREATE TABLE tickets AS FROM (VALUES ('c1', '2024-01-01'), "
            "('c2', 'later')) t(who, opened)"
        )
    sources = [
        EventSource(path=purchases, event_type="purchase"),  # unmapped
        EventSource(
            uri=f"duckdb:{warehouse}",
            table="tickets",
            event_type="support_ticket",
            columns={CUSTOMER_ID: "who", EVENT_TIME: "opened"},
        ),
    ]
    problems = problems_of(sources)
    by_source = {(str(p.file), p.column, p.rows) for p in problems}
    assert (str(purchases), CUSTOMER_ID, ()) in by_source
    assert (str(purchases), EVENT_TIME, ()) in by_source
    assert (f"duckdb:{warehouse}, table tickets", "opened", (2,)) in by_source


def test_features_list_reads_mapped_customers(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cli.main import main
    from tests.helpers import write_config

    people = tmp_path / "households.csv"
    people.write_text("household_key,tier\nh1,gold\n")
    config = write_config(
        tmp_path / "p.yaml",
        tmp_path / "unused",
        people,
        data={"columns": {"customers": {CUSTOMER_ID: "household_key"}}},
        fairness={"segments": [], "bands": {}},
    )
    assert main(["--config", str(config), "features", "list"]) == 0
    assert "customer attribute tier (categorical)" in capsys.readouterr().out
