"""The privacy section: pseudonyms, the suppression list's folder, retention."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.config.base import ConfigPath, Strict

PSEUDONYM_KEY_ENV = "PROPENSITY_PSEUDONYM_KEY"


class PrivacyConfig(Strict):
    """What the project keeps about people (features.sources.privacy, README: Privacy).

    `pseudonymise` replaces customer ids by HMAC-SHA256 pseudonyms where they are
    read; the key comes from the environment variable `key_env`, never from a
    file (`core.config.secrets.pseudonym_key` reads it). `dir` holds the
    suppression list and the erasure log of `propensity forget`. `retention_days`
    deletes score outputs and training snapshots written more than that many
    days ago, after each scoring and training run."""

    pseudonymise: bool = False
    key_env: str = Field(PSEUDONYM_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    dir: ConfigPath = Path("privacy")
    retention_days: int | None = Field(None, ge=1)
