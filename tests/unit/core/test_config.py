"""The config: typed, unknown keys rejected by name, env overrides the URI, every
path resolved against the config's folder, secrets read in one place."""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Annotated, get_args, get_origin

import pytest
from pydantic import AfterValidator, BaseModel, Field

from core.config import (
    API_KEYS_ENV,
    OUTREACH_KEY_ENV,
    PSEUDONYM_KEY_ENV,
    ConfigError,
    ConfigPath,
    CutoffsConfig,
    DatabaseSource,
    DataConfig,
    EventSource,
    OutreachConfig,
    PrivacyConfig,
    ProjectConfig,
    Strict,
    TrainingConfig,
    load_config,
    resolve_path,
)
from core.config.secrets import api_keys, outreach_key, pseudonym_key, read_secrets
from features.sources.privacy import pseudonymiser
from tests.helpers import ROOT

BASE = """
data: {events: data/events.parquet}
training: {cutoffs: {start: 2024-01-01, freq: MS}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "propensity.yaml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.data.events == tmp_path / "data" / "events.parquet"
    assert config.targets.churn.horizon_days == 30
    assert config.features.windows_days == [7, 30, 90, 180, 365]
    assert config.features.trend_days == [30, 90]
    assert config.features.amount_roles == ["purchase"]
    assert config.model_name("churn") == "churn"


def test_targets_lists_the_targets_trained_and_served(tmp_path: Path) -> None:
    """No `targets:` key: all three; a `targets:` mapping: those it lists (null
    is off); none listed is refused; lookback_days for the event targets only."""
    assert load_config(write(tmp_path, BASE)).targets.listed() == (
        "churn",
        "purchase",
        "service_request",
    )
    text = BASE + "targets: {service_request: {}, purchase: {lookback_days: 90}}\n"
    targets = load_config(write(tmp_path, text)).targets
    assert targets.listed() == ("purchase", "service_request")  # canonical order
    assert targets.churn is None and targets.purchase.lookback_days == 90
    assert targets.churn_settings.horizon_days == 30  # the features' default
    with pytest.raises(ValueError, match="'churn' is not configured"):
        targets.horizon("churn")
    text = BASE + "targets: {churn: null, purchase: {}}\n"
    assert load_config(write(tmp_path, text)).targets.listed() == ("purchase",)
    with pytest.raises(ConfigError, match="targets: .*list at least one target"):
        load_config(write(tmp_path, BASE + "targets: {}\n"))
    with pytest.raises(ConfigError, match=r"targets\.churn\.lookback_days: unknown"):
        load_config(write(tmp_path, BASE + "targets: {churn: {lookback_days: 9}}\n"))
    with pytest.raises(ConfigError, match=r"targets\.purchase\.lookback_days"):
        load_config(write(tmp_path, BASE + "targets: {purchase: {lookback_days: 0}}\n"))


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"targets\.churn\.horizon: unknown key"):
        load_config(write(tmp_path, BASE + "targets: {churn: {horizon: 30}}\n"))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"targets\.purchase\.horizon_days"):
        load_config(
            write(tmp_path, BASE + "targets: {purchase: {horizon_days: soon}}\n")
        )


def test_event_type_in_two_roles_is_rejected(tmp_path: Path) -> None:
    text = BASE + "roles: {purchase: [order], cancel: [order]}\n"
    with pytest.raises(
        ConfigError, match="'order' is mapped to both 'purchase' and 'cancel'"
    ):
        load_config(write(tmp_path, text))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/propensity.yaml")


def test_cutoffs_range_and_list(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    cutoffs = config.training.cutoffs.resolve(datetime(2024, 3, 15))
    assert cutoffs == [datetime(2024, 1, 1), datetime(2024, 2, 1), datetime(2024, 3, 1)]
    text = BASE.replace(
        "{start: 2024-01-01, freq: MS}", "{dates: [2024-02-01, 2024-01-01]}"
    )
    listed = load_config(write(tmp_path, text)).training.cutoffs.resolve(
        datetime(2025, 1, 1)
    )
    assert listed == [datetime(2024, 1, 1), datetime(2024, 2, 1)]


def test_tracking_uri_default_config_and_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config(write(tmp_path, BASE))
    assert (
        config.tracking_uri(tmp_path)
        == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert config.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_engine_limits_reach_duckdb(tmp_path: Path) -> None:
    from features.sources.load import connect

    text = BASE + "engine: {memory_limit: 512MB, threads: 1}\n"
    engine = load_config(write(tmp_path, text)).engine
    con = connect(engine.memory_limit, engine.threads).con
    limit, threads = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads')"
    ).fetchall()[0]
    assert threads == 1 and limit.startswith(("488", "512"))
    with pytest.raises(ConfigError, match="engine.memory_limit"):
        load_config(write(tmp_path, BASE + "engine: {memory_limit: lots}\n"))


def data_config(tmp_path: Path, events: str) -> Path:
    return write(tmp_path, BASE.replace("{events: data/events.parquet}", events))


def test_database_sources_and_relative_duckdb_file(tmp_path: Path) -> None:
    text = (
        "{events: {uri: 'postgresql://db.internal:5432/shop', table: sales.events},"
        " customers: {uri: 'duckdb:crm.duckdb', query: 'SELECT * FROM people'}}"
    )
    data = load_config(data_config(tmp_path, text)).data
    assert data.events.table == "sales.events"
    assert str(data.events) == "postgresql://db.internal:5432/shop, table sales.events"
    assert data.customers.duckdb_path == tmp_path / "crm.duckdb"
    assert data.customers.query == "SELECT * FROM people"


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://etl:s3cret@db:5432/shop",
        "postgresql://db:5432/shop?password=s3cret",
    ],
)
def test_a_password_in_the_uri_is_rejected(tmp_path: Path, uri: str) -> None:
    path = data_config(tmp_path, f"{{events: {{uri: '{uri}', table: events}}}}")
    with pytest.raises(ConfigError, match=r"data\.events\.uri: .*PGPASSWORD") as info:
        load_config(path)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ("{uri: 'mysql://db/shop', table: events}", r"data\.events\.uri: .*'mysql'"),
        ("{uri: 'duckdb:w.duckdb'}", r"data\.events: .*either table or query"),
        ("{uri: 'duckdb:w.duckdb', table: 'x; DROP'}", r"data\.events\.table: "),
        ("'postgresql://db/shop'", r"data\.events: .*mapping: \{uri: \.\.\."),
    ],
)
def test_bad_database_sources_are_named(
    tmp_path: Path, events: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(data_config(tmp_path, f"{{events: {events}}}"))


def test_explain_and_outreach_defaults_and_bounds(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.explain.top_k == 3 and config.explain.non_actionable == []
    assert config.outreach.control_share == pytest.approx(0.10)
    assert config.outreach.contact_cost == 0.0
    with pytest.raises(ConfigError, match=r"outreach\.control_share"):
        load_config(write(tmp_path, BASE + "outreach: {control_share: 0.6}\n"))
    with pytest.raises(ConfigError, match=r"outreach\.contact_cost"):
        load_config(write(tmp_path, BASE + "outreach: {contact_cost: -1}\n"))
    with pytest.raises(ConfigError, match=r"outreach\.key: unknown key"):
        load_config(write(tmp_path, BASE + "outreach: {key: abc}\n"))


def test_outreach_key_env_then_relative_file_else_refused(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("PROPENSITY_OUTREACH_KEY", raising=False)
    with pytest.raises(ConfigError, match="PROPENSITY_OUTREACH_KEY"):
        outreach_key(load_config(write(tmp_path, BASE)).outreach)
    (tmp_path / "outreach.key").write_text("f" * 64 + "\n")
    config = load_config(write(tmp_path, BASE + "outreach: {key_file: outreach.key}\n"))
    assert config.outreach.key_file == tmp_path / "outreach.key"
    assert outreach_key(config.outreach).get_secret_value() == b"f" * 64
    monkeypatch.setenv("PROPENSITY_OUTREACH_KEY", "e" * 32)
    assert outreach_key(config.outreach).get_secret_value() == b"e" * 32
    monkeypatch.setenv("PROPENSITY_OUTREACH_KEY", "short")
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        outreach_key(config.outreach)


def test_outreach_contact_policy_paths_and_cap(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE)).outreach
    assert config.opt_out_file is None and config.frequency_cap is None
    assert config.require_consent is False
    assert config.contact_log == tmp_path / "contacts" / "contacts.sqlite"
    policy = (
        "outreach: {opt_out_file: lists/opt-out.txt, require_consent: true,"
        " frequency_cap: {max_contacts: 2, per_days: 30}, contact_log: /tmp/c.db}\n"
    )
    config = load_config(write(tmp_path, BASE + policy)).outreach
    assert config.opt_out_file == tmp_path / "lists" / "opt-out.txt"
    assert config.contact_log == Path("/tmp/c.db")
    assert (config.frequency_cap.max_contacts, config.frequency_cap.per_days) == (
        2,
        30,
    )
    for bad, key in [
        ("{max_contacts: 0, per_days: 30}", "max_contacts"),
        ("{max_contacts: 1, per_days: 0}", "per_days"),
        ("{max_contacts: 1}", "per_days"),
    ]:
        text = BASE + f"outreach: {{frequency_cap: {bad}}}\n"
        with pytest.raises(ConfigError, match=rf"outreach\.frequency_cap\.{key}"):
            load_config(write(tmp_path, text))


def test_scoring_sink_drift_and_reason_method(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.scoring.postgres is None and config.scoring.reason_method == "path"
    assert (config.scoring.drift.warn, config.scoring.drift.alert) == (0.1, 0.25)
    sink = BASE + (
        "scoring: {postgres: {uri: 'postgresql://db:5432/shop', table: mk.scores},"
        " drift: {alert: 0.5, ignore: [tenure_days]}}\n"
    )
    config = load_config(write(tmp_path, sink))
    assert config.scoring.postgres.table == "mk.scores"
    assert config.scoring.drift.ignore == ["tenure_days"]


@pytest.mark.parametrize(
    ("scoring", "named"),
    [
        ("{postgres: {uri: 'postgresql://u:pw@db/x', table: s}}", "credentials"),
        ("{postgres: {uri: 'duckdb:x.duckdb', table: s}}", "unknown scheme"),
        ("{postgres: {uri: 'postgresql://db/x', table: 'a b'}}", "not a table name"),
        ("{drift: {warn: 0.3, alert: 0.2}}", "below warn"),
        ("{reason_method: fast}", r"scoring\.reason_method"),
    ],
)
def test_bad_scoring_settings_are_named(
    tmp_path: Path, scoring: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(write(tmp_path, BASE + f"scoring: {scoring}\n"))


def test_engine_kind_and_spark_settings(tmp_path: Path) -> None:
    text = BASE + (
        "engine: {kind: spark, spark: {master: 'local[2]', "
        "conf: {spark.sql.shuffle.partitions: '8'}}}\n"
    )
    engine = load_config(write(tmp_path, text)).engine
    assert engine.kind == "spark" and engine.spark.master == "local[2]"
    assert engine.spark.conf == {"spark.sql.shuffle.partitions": "8"}
    assert load_config(write(tmp_path, BASE)).engine.kind == "duckdb"
    with pytest.raises(ConfigError, match="engine.kind"):
        load_config(write(tmp_path, BASE + "engine: {kind: dask}\n"))
    with pytest.raises(ConfigError, match="engine.spark.masters: unknown key"):
        load_config(write(tmp_path, BASE + "engine: {spark: {masters: x}}\n"))


def test_trend_features_are_off_by_default_and_need_the_behaviour_group(
    tmp_path: Path,
) -> None:
    features = load_config(write(tmp_path, BASE)).features
    assert features.behaviour and not features.trends
    on = load_config(write(tmp_path, BASE + "features: {trends: true}\n"))
    assert on.features.trends
    with pytest.raises(ConfigError, match="features: .*trends: true needs behaviour"):
        load_config(
            write(tmp_path, BASE + "features: {trends: true, behaviour: false}\n")
        )


def test_fairness_defaults_and_demo_settings(tmp_path: Path) -> None:
    fairness = load_config(write(tmp_path, BASE)).fairness
    assert fairness.segments == [] and fairness.bands == {}
    assert fairness.threshold is None and fairness.min_segment_size == 50
    demo = load_config(ROOT / "propensity.yaml")
    assert demo.fairness.segments == ["region", "plan", "age"]
    assert demo.fairness.bands == {"age": [18, 30, 45, 60]}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{segments: [plan, plan]}", r"fairness: .*segments has duplicates"),
        ("{segments: [plan], bands: {age: [30]}}", r"bands for .*\['age'\]"),
        ("{segments: [age], bands: {age: [60, 30]}}", r"bands.age must be"),
        ("{segments: [age], bands: {age: []}}", r"bands.age must be"),
        ("{segments: [age], bands: {age: [.nan]}}", r"bands.age must be"),
        ("{threshold: 1.5}", r"fairness\.threshold"),
        ("{min_segment_size: 0}", r"fairness\.min_segment_size"),
        ("{segment: [plan]}", r"fairness\.segment: unknown key"),
    ],
)
def test_bad_fairness_settings_are_named(
    tmp_path: Path, block: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASE + f"fairness: {block}\n"))


# --- paths: one annotated type, resolved against the config's folder ---------------


def _path_fields(
    annotation: object, metadata: list[object], where: str
) -> Iterator[tuple[str, bool]]:
    """(field, uses ConfigPath) for every Path reachable from a field's type:
    through Annotated, unions (Optional), containers and nested models."""
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        yield from _path_fields(base, [*metadata, *extra], where)
    elif isinstance(annotation, type) and issubclass(annotation, PurePath):
        yield (
            where,
            any(
                isinstance(m, AfterValidator) and m.func is resolve_path
                for m in metadata
            ),
        )
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            yield from _path_fields(field.annotation, field.metadata, f"{where}.{name}")
    else:
        for arg in get_args(annotation):
            yield from _path_fields(arg, [], where)


def path_fields(model: type[BaseModel]) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        for where, ok in _path_fields(field.annotation, field.metadata, name):
            found[where] = found.get(where, True) and ok
    return found


def test_every_path_field_uses_the_config_path_type() -> None:
    """A new Path field that is a plain Path would resolve against the working
    directory: it must be a ConfigPath (core.config.base)."""
    found = path_fields(ProjectConfig)
    plain = sorted(where for where, ok in found.items() if not ok)
    assert not plain, f"Path fields not typed ConfigPath: {plain}"
    assert {
        "data.events",
        "data.customers",
        "data.subscriptions",
        "training.snapshot_dir",
        "scoring.output",
        "online_store.path",
        "api.keys_file",
        "outreach.key_file",
        "outreach.opt_out_file",
        "outreach.contact_log",
        "privacy.dir",
    } <= set(found)


def test_the_path_field_walk_finds_a_plain_path() -> None:
    class Inner(Strict):
        deep: list[Path | None] = Field(default_factory=list)

    class Outer(Strict):
        fine: ConfigPath | None = None
        inner: Inner | None = None

    assert path_fields(Outer) == {"fine": True, "inner.deep": False}


def _path_values(value: object, where: str) -> Iterator[tuple[str, Path]]:
    """(field, path) for every path in a validated config, a DuckDB source's file
    included."""
    if isinstance(value, PurePath):
        yield where, Path(value)
    elif isinstance(value, DatabaseSource):
        if value.scheme == "duckdb":
            yield where, value.duckdb_path
    elif isinstance(value, EventSource):  # a path, or a database's table or query
        yield from _path_values(value.source, f"{where}.path" if value.path else where)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _path_values(getattr(value, name), f"{where}.{name}".strip("."))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _path_values(item, where)


EVERY_PATH = """
data:
  events:
    - data/events.parquet
    - {path: data/tickets, event_type: ticket}
    - {uri: 'duckdb:db/web.duckdb', table: logins, event_type: login}
  customers: {uri: 'duckdb:db/crm.duckdb', table: people}
  subscriptions: data/subscriptions
training: {cutoffs: {start: 2024-01-01}, snapshot_dir: snapshots}
scoring: {output: out/scores}
online_store: {path: online/store.sqlite}
api: {keys_file: secrets/api-keys.txt}
outreach:
  key_file: secrets/outreach.key
  opt_out_file: lists/opt-out.txt
  contact_log: contacts/log.sqlite
privacy: {dir: private}
"""


@pytest.mark.parametrize("text", [EVERY_PATH, BASE], ids=["given", "defaults"])
def test_every_loaded_path_is_absolute_under_the_config_folder(
    tmp_path: Path, text: str
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    config = load_config(write(folder, text))
    paths = dict(_path_values(config, ""))
    for where, path in paths.items():
        assert path.is_absolute(), f"{where}: {path} is relative"
        assert path.is_relative_to(folder.resolve()), f"{where}: {path}"
    if text is EVERY_PATH:
        # every Path field was given, the DuckDB file too
        assert set(path_fields(ProjectConfig)) <= set(paths)
        assert config.data.customers.duckdb_path == folder / "db" / "crm.duckdb"
        assert config.outreach.opt_out_file == folder / "lists" / "opt-out.txt"


def test_absolute_paths_stay_and_a_config_in_code_keeps_paths_as_given(
    tmp_path: Path,
) -> None:
    text = BASE + "scoring: {output: /srv/scores}\n"
    assert load_config(write(tmp_path, text)).scoring.output == Path("/srv/scores")
    config = ProjectConfig(
        data=DataConfig(events=Path("events.parquet")),
        training=TrainingConfig(cutoffs=CutoffsConfig(start=date(2024, 1, 1))),
        outreach=OutreachConfig(key_file=Path("k.key")),
    )
    assert config.data.events == Path("events.parquet")
    assert config.outreach.key_file == Path("k.key")
    assert config.scoring.output == Path("scores")
    assert config.outreach.contact_log == Path("contacts/contacts.sqlite")


def test_a_config_in_code_resolves_with_a_base_context(tmp_path: Path) -> None:
    """Sections built in code and defaults alike resolve when validated with the
    config folder as context, as load_config does."""
    raw = {
        "data": {"events": "e.parquet"},
        "training": {"cutoffs": {"start": "2024-01-01"}},
        "privacy": PrivacyConfig(dir=Path("p")),
    }
    config = ProjectConfig.model_validate(raw, context={"base": tmp_path})
    assert config.data.events == tmp_path / "e.parquet"
    assert config.privacy.dir == tmp_path / "p"
    assert config.online_store.path == tmp_path / "online" / "store.sqlite"


# --- secrets: read from the environment in core.config.secrets only ----------------

SECRET = "s3cret-value-0123456789abcdef"


def test_secrets_never_show_in_repr_str_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(OUTREACH_KEY_ENV, SECRET)
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, SECRET)
    monkeypatch.setenv(API_KEYS_ENV, f"{SECRET},other-{SECRET}")
    found = read_secrets()
    assert found.outreach_key.get_secret_value() == SECRET
    assert found.pseudonym_key.get_secret_value() == SECRET
    outreach = outreach_key(OutreachConfig())
    pseudonym = pseudonym_key(PrivacyConfig())
    keys = api_keys()
    assert (
        outreach.get_secret_value() == pseudonym.get_secret_value() == SECRET.encode()
    )
    assert [k.get_secret_value() for k in keys] == [SECRET, f"other-{SECRET}"]
    on = PrivacyConfig(pseudonymise=True)
    shown = [found, outreach, pseudonym, keys, pseudonymiser(on)]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger(__name__).info("secrets: %s %r", shown, shown)
    for text in [repr(shown), str(shown), found.model_dump_json(), caplog.text]:
        assert SECRET not in text and SECRET.encode().hex() not in text


def test_secrets_come_from_a_given_mapping_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEYS_ENV, "from-the-process")
    assert [k.get_secret_value() for k in api_keys()] == ["from-the-process"]
    assert api_keys({}) == [] and api_keys({API_KEYS_ENV: " , "}) == []
    assert [k.get_secret_value() for k in api_keys({API_KEYS_ENV: " a, ,b "})] == [
        "a",
        "b",
    ]


def test_the_pseudonym_key_variable_is_configurable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "the-default-variable-key")
    monkeypatch.setenv("SHOP_PK", SECRET)
    custom = PrivacyConfig(pseudonymise=True, key_env="SHOP_PK")
    assert pseudonym_key(custom).get_secret_value() == SECRET.encode()
    assert pseudonym_key(PrivacyConfig()).get_secret_value() == (
        b"the-default-variable-key"
    )
    monkeypatch.setenv("SHOP_PK", f"  {SECRET}\n")
    assert pseudonym_key(custom).get_secret_value() == SECRET.encode()
    monkeypatch.delenv("SHOP_PK")
    with pytest.raises(ConfigError, match=r"\$SHOP_PK is not set"):
        pseudonym_key(custom)


SECRET_NAMES = (
    "PROPENSITY_OUTREACH_KEY",
    "PROPENSITY_PSEUDONYM_KEY",
    "PROPENSITY_API_KEYS",
    "OUTREACH_KEY_ENV",
    "PSEUDONYM_KEY_ENV",
    "API_KEYS_ENV",
    "KEYS_ENV",
    "key_env",
)


def _reads_environment(node: ast.AST) -> bool:
    """os.environ[...], os.environ.get(...), os.getenv(...), environ.get(...)."""
    target = node.value if isinstance(node, ast.Subscript) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "getenv":
            return True
        target = node.func.value if node.func.attr == "get" else None
    text = ast.unparse(target) if target is not None else ""
    return text in ("os.environ", "environ")


def test_no_module_but_secrets_reads_a_secret_variable() -> None:
    root = ROOT
    readers = []
    for package in ("core", "features", "model", "training", "serving", "cli"):
        for path in sorted((root / package).rglob("*.py")):
            if path == root / "core" / "config" / "secrets.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if _reads_environment(node) and any(
                    name in ast.unparse(node) for name in SECRET_NAMES
                ):
                    readers.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not readers, f"secret variables read outside core.config.secrets: {readers}"


def test_min_scored_ratio_is_a_share(tmp_path: Path) -> None:
    """scoring.min_scored_ratio: 0.5 by default, 0 to 1 (0: only none fails)."""
    assert load_config(write(tmp_path, BASE)).scoring.min_scored_ratio == 0.5
    text = BASE + "scoring: {min_scored_ratio: 0}\n"
    assert load_config(write(tmp_path, text)).scoring.min_scored_ratio == 0
    for bad in ("1.5", "-0.1", "half"):
        text = BASE + f"scoring: {{min_scored_ratio: {bad}}}\n"
        with pytest.raises(ConfigError, match=r"scoring\.min_scored_ratio"):
            load_config(write(tmp_path, text))
