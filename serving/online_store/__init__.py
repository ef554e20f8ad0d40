"""The online store: one interface (serving.online_store.base), two
implementations (`sqlite`, the default file; `postgres`, a table)."""

from serving.online_store.base import (
    Found,
    OnlineStore,
    StoreError,
    StoreMeta,
    StoreReader,
    StoreWriter,
    configured_as_of,
    open_reader,
    open_writer,
)

__all__ = [
    "Found",
    "OnlineStore",
    "StoreError",
    "StoreMeta",
    "StoreReader",
    "StoreWriter",
    "configured_as_of",
    "open_reader",
    "open_writer",
]
