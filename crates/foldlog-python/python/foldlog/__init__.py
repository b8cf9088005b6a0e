"""foldlog: an embedded event store.

A ``Store`` is a directory holding an append-only log of events, each in a stream (one per aggregate), with
optimistic concurrency, atomic multi-stream appends, consumer positions committed with the events, and crash
recovery that never loses an acknowledged event nor invents one. It runs in your process; calls release the
GIL while they do I/O, sync or wait, so threads scale.

>>> import foldlog, tempfile
>>> with foldlog.Store(tempfile.mkdtemp()) as store:
...     done = store.append("account-1", [("Opened", b"100")], expected="no_stream")
...     [e.event_type for e in store.read_stream("account-1")]
['Opened']
"""

from __future__ import annotations

from typing import Literal

from foldlog._native import FORMAT_VERSION, STREAM_VERSION_MAX, Appended, Event, Store, Subscription
from foldlog.errors import (
    AppendConditionError,
    ClosedError,
    ConflictError,
    ConsumerPositionError,
    CorruptError,
    DuplicateEventIdError,
    FoldlogError,
    InvalidArgumentError,
    InvalidDirectoryError,
    LockedError,
    PoisonedError,
    ReadOnlyError,
    StorageError,
    TooLargeError,
    UnsupportedVersionError,
    WrongExpectedVersionError,
)

ANY: Literal["any"] = "any"
"""``expected=ANY``: append whatever the stream's version."""
NO_STREAM: Literal["no_stream"] = "no_stream"
"""``expected=NO_STREAM``: the stream must not exist yet."""
STREAM_EXISTS: Literal["exists"] = "exists"
"""``expected=STREAM_EXISTS``: the stream must have at least one event."""

__all__ = [
    "ANY",
    "FORMAT_VERSION",
    "NO_STREAM",
    "STREAM_EXISTS",
    "STREAM_VERSION_MAX",
    "AppendConditionError",
    "Appended",
    "ClosedError",
    "ConflictError",
    "ConsumerPositionError",
    "CorruptError",
    "DuplicateEventIdError",
    "Event",
    "FoldlogError",
    "InvalidArgumentError",
    "InvalidDirectoryError",
    "LockedError",
    "PoisonedError",
    "ReadOnlyError",
    "StorageError",
    "Store",
    "Subscription",
    "TooLargeError",
    "UnsupportedVersionError",
    "WrongExpectedVersionError",
]
