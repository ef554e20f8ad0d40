"""Secrets, read from the environment in this one place and nowhere else.

The config file holds no secret: keys come from environment variables (or, for
the outreach key, a key file the config names). `Secrets` reads them with
pydantic-settings into `SecretStr` fields, so a secret never shows in a repr, a
log line or a traceback's locals; the functions below are what callers ask:

- `outreach_key(config.outreach)`: the control-group key, from
  $PROPENSITY_OUTREACH_KEY, then `outreach.key_file`;
- `pseudonym_key(config.privacy)`: the pseudonym key, from the variable named by
  `privacy.key_env` ($PROPENSITY_PSEUDONYM_KEY by default);
- `api_keys()`: the development API keys of $PROPENSITY_API_KEYS
  (comma-separated plaintext).

Each takes an optional `environ` mapping read instead of the process
environment (tests). Each call reads the environment afresh, so a key set or
rotated while a process runs is seen by its next call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from pydantic import Field, SecretBytes, SecretStr, create_model
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.config.base import MIN_KEY_BYTES, ConfigError
from core.config.privacy import PSEUDONYM_KEY_ENV, PrivacyConfig
from core.config.serving import OutreachConfig

OUTREACH_KEY_ENV = "PROPENSITY_OUTREACH_KEY"
API_KEYS_ENV = "PROPENSITY_API_KEYS"


class Secrets(BaseSettings):
    """The secrets in the environment, each None when its variable is unset."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, populate_by_name=False
    )

    outreach_key: SecretStr | None = Field(None, validation_alias=OUTREACH_KEY_ENV)
    pseudonym_key: SecretStr | None = Field(None, validation_alias=PSEUDONYM_KEY_ENV)
    api_keys: SecretStr | None = Field(None, validation_alias=API_KEYS_ENV)


class _GivenSecrets(Secrets):
    """Secrets read from the values given to the constructor alone (an `environ`
    mapping), never from the process environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@functools.cache
def _secrets_class(pseudonym_env: str, given: bool) -> type[Secrets]:
    """Secrets with the pseudonym key read from `pseudonym_env` (privacy.key_env),
    from the process environment or (`given`) from the constructor's values."""
    base = _GivenSecrets if given else Secrets
    if pseudonym_env == PSEUDONYM_KEY_ENV:
        return base
    return create_model(
        base.__name__,
        __base__=base,
        __module__=__name__,
        pseudonym_key=(SecretStr | None, Field(None, validation_alias=pseudonym_env)),
    )


def read_secrets(
    environ: Mapping[str, str] | None = None, pseudonym_env: str = PSEUDONYM_KEY_ENV
) -> Secrets:
    """The secrets of the process environment, or of `environ` when given (then
    only of it: the process environment is not read)."""
    if environ is None:
        return _secrets_class(pseudonym_env, given=False)()
    cls = _secrets_class(pseudonym_env, given=True)
    names = [field.validation_alias for field in cls.model_fields.values()]
    return cls(**{name: environ[name] for name in names if name in environ})


def _value(secret: SecretStr | None) -> str:
    return "" if secret is None else secret.get_secret_value()


def outreach_key(
    outreach: OutreachConfig, environ: Mapping[str, str] | None = None
) -> SecretBytes:
    """The control-group key: $PROPENSITY_OUTREACH_KEY, then `outreach.key_file`;
    ConfigError when neither is set or the key is shorter than MIN_KEY_BYTES."""
    env = _value(read_secrets(environ).outreach_key)
    if env:
        key, where = env.encode(), f"${OUTREACH_KEY_ENV}"
    elif outreach.key_file is not None:
        if not outreach.key_file.is_file():
            raise ConfigError(f"outreach.key_file: {outreach.key_file} not found")
        key, where = outreach.key_file.read_bytes().strip(), str(outreach.key_file)
    else:
        raise ConfigError(
            f"outreach: no control-group key; set ${OUTREACH_KEY_ENV} or "
            "outreach.key_file (a secret of at least "
            f"{MIN_KEY_BYTES} bytes, e.g. `openssl rand -hex 32`)"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"outreach: the key from {where} is shorter than {MIN_KEY_BYTES} bytes"
        )
    return SecretBytes(key)


def pseudonym_key(
    privacy: PrivacyConfig, environ: Mapping[str, str] | None = None
) -> SecretBytes:
    """The pseudonym key from $`privacy.key_env`, stripped; ConfigError naming the
    variable when it is unset, empty or shorter than MIN_KEY_BYTES."""
    secrets = read_secrets(environ, pseudonym_env=privacy.key_env)
    key = _value(secrets.pseudonym_key).strip().encode()
    if not key:
        raise ConfigError(
            f"privacy.pseudonymise is on but ${privacy.key_env} is not set: export "
            f"a secret of at least {MIN_KEY_BYTES} bytes, e.g. "
            f"`export {privacy.key_env}=$(openssl rand -hex 32)`, and keep it "
            "(another key gives every customer another pseudonym)"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"privacy: the key in ${privacy.key_env} is shorter than "
            f"{MIN_KEY_BYTES} bytes"
        )
    return SecretBytes(key)


def split_api_keys(value: str | None) -> list[SecretStr]:
    """The keys of a comma-separated list, stripped, empty ones skipped."""
    return [SecretStr(k.strip()) for k in (value or "").split(",") if k.strip()]


def api_keys(environ: Mapping[str, str] | None = None) -> list[SecretStr]:
    """The development API keys of $PROPENSITY_API_KEYS, in order; [] when unset."""
    return split_api_keys(_value(read_secrets(environ).api_keys))
