"""Privacy at ingestion: keyed pseudonyms for customer ids and the suppression list.

With `privacy.pseudonymise` on, every customer id is replaced where it is read
(the DuckDB views of features.sources.load) by HMAC-SHA256(key, id) as 64 lowercase hex
digits, so feature tables, training sets, scores, the online store, MLflow and
logs only ever hold pseudonyms. The key is a secret from the environment
($PROPENSITY_PSEUDONYM_KEY by default), never from a file in the project: without
it, anything that reads customer ids refuses to run. The API hashes the ids a
marketing system sends with the same key and answers with the ids it was sent.

The pseudonym is deterministic (the same id and key give the same pseudonym on
every run and machine, so models, scores and the online store line up) and cannot
be reversed or recomputed without the key. Rotating the key changes every
pseudonym: re-pseudonymise (score again), retrain, and re-suppress (README:
Privacy).

The suppression list holds the stored form of every forgotten customer (the
pseudonym when pseudonymisation is on, never the raw id then): the loader drops
their events, attributes and terms, so no later training, scoring or outreach
sees them again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.config import PrivacyConfig
from core.config.secrets import pseudonym_key

PSEUDONYM_HEX_DIGITS = 64
_BLOCK = 64  # SHA-256's block size in bytes: HMAC pads the key to it


@dataclass(frozen=True)
class Pseudonymiser:
    """Maps a raw customer id to what is stored: its pseudonym when a key is
    set, the id itself otherwise (pseudonymisation off)."""

    # never in a repr: the key is a secret
    key: bytes | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def one(self, customer_id: str) -> str:
        if self.key is None:
            return customer_id
        return hmac.new(self.key, customer_id.encode(), hashlib.sha256).hexdigest()

    def many(self, customer_ids: Iterable[str]) -> list[str]:
        return [self.one(c) for c in customer_ids]

    def sql(self, text: str) -> str:
        """A DuckDB expression of the stored form of the VARCHAR expression
        `text`: HMAC-SHA256 spelled out with sha256 (RFC 2104), equal to `one`."""
        if self.key is None:
            return text
        key = self.key
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        inner = bytes(b ^ 0x36 for b in key).hex()
        outer = bytes(b ^ 0x5C for b in key).hex()
        return (
            f"sha256(unhex('{outer}') || "
            f"unhex(sha256(unhex('{inner}') || encode({text}))))"
        )


def pseudonymiser(
    config: PrivacyConfig, environ: Mapping[str, str] | None = None
) -> Pseudonymiser:
    """The pseudonymiser the config asks for; ConfigError naming the variable
    when pseudonymisation is on and its key is missing or short (the key is read
    by core.config.secrets; `environ` replaces the process environment)."""
    if not config.pseudonymise:
        return Pseudonymiser()
    return Pseudonymiser(pseudonym_key(config, environ).get_secret_value())


def suppression_path(config: PrivacyConfig) -> Path:
    return config.dir / "suppressed.txt"


def erasure_log_path(config: PrivacyConfig) -> Path:
    return config.dir / "erasures.jsonl"


def parse_ids(text: str) -> frozenset[str]:
    """The ids in a list file (suppression list, opt-outs, ids to forget): one
    per line, blank lines and `#` lines skipped."""
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def read_suppressed(path: Path) -> frozenset[str]:
    """The stored ids in a suppression file; empty when it does not exist."""
    return parse_ids(path.read_text()) if path.exists() else frozenset()


def suppressed(config: PrivacyConfig) -> frozenset[str]:
    """Every forgotten customer, in stored form."""
    return read_suppressed(suppression_path(config))
