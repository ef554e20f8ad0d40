"""A hostile or broken config file: refused with a ConfigError naming the file
(and the line or key), never another exception, never a memory blow-up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.config import ConfigError, load_config
from core.config.project import MAX_CONFIG_BYTES

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "propensity.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    message = refused(write(tmp_path, BILLION_LAUGHS))
    assert time.monotonic() - started < 2
    assert "anchors and aliases" in message and "line 1" in message


def test_an_alias_to_a_real_value_is_refused_naming_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data:\n  events: events.csv\nserving_dates: &d 2024-01-01\nx: *d\n",
    )
    assert "line 3" in refused(path)


def test_a_merge_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &b {format: csv}\ndata:\n  <<: *b\n")
    assert "anchors and aliases" in refused(path)


def test_an_oversized_config_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * MAX_CONFIG_BYTES + "\n")
    assert "expected a config of at most" in refused(path)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "data: " + "[" * 20_000 + "]" * 20_000 + "\n")
    refused(path)


def test_non_utf8_bytes_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"data:\n  events: caf\xe9.csv\n")
    assert "not UTF-8" in refused(path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("api:\n  max_request_mb: lots\n", "api.max_request_mb"),
        ("data:\n  events: [1, 2]\n", "data.events"),
        ("outreach:\n  contact_log: {uri: 5}\n", "outreach.contact_log"),
        ("data: [1, 2]\n", "data"),
        ("targets: .nan\n", "targets"),
    ],
)
def test_wrong_types_are_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in refused(write(tmp_path, text))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_is_refused(
    tmp_path: Path, text: str
) -> None:
    assert "mapping" in refused(write(tmp_path, text))
