"""The strict base of every config section, the config's error and its path type.

Every section rejects unknown keys (a typo is an error naming the key, not a
setting silently ignored) and is frozen. A path in the config is a `ConfigPath`:
relative paths resolve against the config file's folder, which `load_config`
passes as the validation context; a model validated without that context (a
config built in code) keeps its paths as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Tag,
    ValidationInfo,
)

# The key of the validation context holding the config file's folder.
BASE_CONTEXT_KEY = "base"
MIN_KEY_BYTES = 16


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid; the message names the key."""


def config_base(info: ValidationInfo) -> Path | None:
    """The config file's folder from the validation context; None without one."""
    context = info.context
    if not isinstance(context, dict):
        return None
    base = context.get(BASE_CONTEXT_KEY)
    return None if base is None else Path(base)


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """`value` taken against the config's folder when relative and a folder is
    known; as given otherwise."""
    base = config_base(info)
    if base is None or value.is_absolute():
        return value
    return base / value


# Every path field of the config is one of these (tests/unit/test_config.py walks
# ProjectConfig and fails on a plain Path), so none resolves against the working
# directory by being forgotten.
ConfigPath = Annotated[Path, AfterValidator(resolve_path)]


class Strict(BaseModel):
    """A config section: unknown keys rejected, frozen.

    Defaults are validated (`validate_default`) and section instances are
    re-validated where they are used (`revalidate_instances`), so a default path
    such as `Path("scores")` and the paths inside a default section resolve
    against the config's folder like the ones the file spells out."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
        revalidate_instances="always",
    )


def path_or(model: type, tag: str, message: str) -> object:
    """A config path, or a mapping read as `model` (tagged `tag`; errors leave the
    "(...)" tags out of the key they name). A URL where a path belongs is refused
    with `message`, which says how to write the mapping."""

    def kind(value: object) -> str:
        return tag if isinstance(value, dict | model) else "(path)"

    def path(value: object) -> object:
        if isinstance(value, str) and "://" in value:
            raise ValueError(message)
        return value

    return Annotated[
        Annotated[ConfigPath, BeforeValidator(path), Tag("(path)")]
        | Annotated[model, Tag(tag)],
        Discriminator(kind),
    ]
