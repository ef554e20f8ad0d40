"""The online store's interface, shared by its two implementations.

The online store holds each customer's latest features and nightly scores, by
id: the nightly job writes it whole (a `StoreWriter`: append chunks, then commit,
which swaps the new contents in at once, or abort), the API's `predict_by_id`
reads it (a `StoreReader`: `lookup(ids)` and `meta()`), and `propensity forget`
deletes customers from it (`OnlineStore.delete`). Two implementations:

- `serving.online_store.sqlite`: one SQLite file, built beside the old one and
  renamed over it (the default, `online_store.path`);
- `serving.online_store.postgres`: a Postgres table, built as `<table>__new` and
  renamed into place (`online_store.postgres`), for services on several machines.

A row holds a customer in some scored target's population; the score of a target
whose population does not hold the customer is NULL, and `Found.scored` names the
targets that do (predict_by_id answers only those).

`open_reader` and `open_writer` pick the configured one. The rows' layout (meta
keys, column order, value types) is defined here, so both hold the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import pandas as pd

from core.config import OnlineStoreConfig
from features.columns import CUSTOMER_ID, TARGETS

FORMAT = "1"


def score_column(target: str) -> str:
    """The column of a target's nightly score."""
    return f"score_{target}"


class StoreError(RuntimeError):
    """The online store is missing or unusable; the message says which and why."""


@dataclass(frozen=True)
class StoreMeta:
    """What a store's contents are: their as-of date, feature set, features (in
    order; which are categorical) and the model versions that scored them."""

    as_of: str
    feature_set_version: str
    written_at: str
    run_id: str | None
    features: tuple[str, ...]
    categorical: frozenset[str]
    model_versions: Mapping[str, str]

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets scored (a score column each), in canonical order."""
        return tuple(t for t in TARGETS if t in self.model_versions)

    def to_rows(self) -> list[tuple[str, str]]:
        return [
            ("format", FORMAT),
            ("as_of", self.as_of),
            ("feature_set_version", self.feature_set_version),
            ("written_at", self.written_at),
            ("run_id", self.run_id or ""),
            ("features", json.dumps(list(self.features))),
            ("categorical", json.dumps(sorted(self.categorical))),
            ("model_versions", json.dumps(dict(self.model_versions))),
        ]

    @classmethod
    def from_rows(cls, rows: Mapping[str, str], where: Path | str) -> StoreMeta:
        if rows.get("format") != FORMAT:
            raise StoreError(
                f"{where}: online store format {rows.get('format')!r}, expected "
                f"{FORMAT!r}: rewrite it with `propensity score`"
            )
        return cls(
            as_of=rows["as_of"],
            feature_set_version=rows["feature_set_version"],
            written_at=rows["written_at"],
            run_id=rows["run_id"] or None,
            features=tuple(json.loads(rows["features"])),
            categorical=frozenset(json.loads(rows["categorical"])),
            model_versions=json.loads(rows["model_versions"]),
        )


@dataclass(frozen=True)
class Found:
    """One customer's row: the as-of date, the features as a record, the
    targets whose population held the customer then (a nightly score each) and
    those nightly scores."""

    as_of: str
    record: dict[str, object]
    scored: frozenset[str] = frozenset(TARGETS)
    scores: Mapping[str, float] = field(default_factory=dict)


# -- the interface ------------------------------------------------------------


class StoreWriter(Protocol):
    """What the nightly job feeds: chunks, then commit (swap in) or abort. As a
    context manager it commits on success and aborts on an error."""

    def append(
        self, frame: pd.DataFrame, scores: Mapping[str, np.ndarray], scored_at: datetime
    ) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type, exc, tb) -> None: ...


class StoreReader(Protocol):
    """What the API reads: rows by customer id, and the store's meta."""

    def lookup(self, ids: Sequence[str]) -> dict[str, Found]: ...

    def meta(self) -> StoreMeta: ...


class OnlineStore(StoreReader, Protocol):
    """The store at its place (a file or a table): read it, or delete from it."""

    @property
    def place(self) -> str:
        """Where the store is, as the erasure log names it."""
        ...

    def delete(self, ids: Sequence[str]) -> dict[str, int]:
        """Remove the rows of `ids` so that nothing of them is left (SQLite: no
        freed page keeps them); the rows removed per id, ids without a row left
        out (at most 1 each: the id is the key). No store: nothing removed."""
        ...


class WriterContext:
    """As a context manager, a writer commits on success and aborts on an error."""

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


# -- the rows -----------------------------------------------------------------


def rows(
    meta: StoreMeta,
    frame: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    scored_at: datetime,
) -> Iterator[tuple]:
    """A chunk's rows in the store's column order: id, as_of, the features, the
    scores of the store's targets (NULL where the target's population does not
    hold the customer: NaN in `scores`), scored_at."""
    columns: list[Iterable] = [
        frame[CUSTOMER_ID].astype(str).tolist(),
        [meta.as_of] * len(frame),
    ]
    for name in meta.features:
        columns.append(column_values(frame[name], name in meta.categorical))
    for target in meta.targets:
        values = np.asarray(scores[target], dtype=np.float64).tolist()
        columns.append([None if v != v else v for v in values])  # NaN -> NULL
    columns.append([scored_at.isoformat()] * len(frame))
    return zip(*columns, strict=True)


def column_values(column: pd.Series, categorical: bool) -> list:
    """Python values both stores keep exactly: None for missing, str for
    categories (as `Encoding.to_matrix` reads them), float otherwise."""
    if categorical:
        values = column.astype("string")
        return [None if v is pd.NA else str(v) for v in values]
    numbers = pd.to_numeric(column, errors="raise").astype("float64").to_numpy()
    return [None if v != v else v for v in numbers.tolist()]  # NaN -> NULL


# -- the configured store -----------------------------------------------------


def open_writer(config: OnlineStoreConfig, meta: StoreMeta) -> StoreWriter:
    """A writer of the configured store: the Postgres table, else the file."""
    if config.postgres is None:
        from serving.online_store.sqlite import SqliteStoreWriter

        return SqliteStoreWriter(config.path, meta)
    from serving.online_store.postgres import PostgresStoreWriter

    return PostgresStoreWriter(config.postgres, meta)


def open_reader(config: OnlineStoreConfig, required: Sequence[str] = ()) -> OnlineStore:
    """The configured store, to read (it connects at the first lookup) or to
    delete from; lookups fail when it lacks one of the `required` features."""
    if config.postgres is None:
        from serving.online_store.sqlite import SqliteStore

        return SqliteStore(config.path, required)
    from serving.online_store.postgres import PostgresStore

    return PostgresStore(config.postgres, required)


def configured_as_of(config: OnlineStoreConfig) -> str | None:
    """The as-of date the configured store holds, None when it holds none."""
    if config.postgres is None:
        from serving.online_store.sqlite import stored_as_of

        return stored_as_of(config.path)
    from serving.online_store.postgres import stored_meta

    meta = stored_meta(config.postgres)
    return None if meta is None else meta.as_of
