"""Type stubs of the extension module (src/*.rs); ``foldlog`` re-exports everything here."""

from collections.abc import Iterable, Iterator, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, final

from typing_extensions import Self, TypeAlias

FORMAT_VERSION: int
STREAM_VERSION_MAX: int

Durability: TypeAlias = Literal["always", "group", "never"]
Expected: TypeAlias = int | Literal["any", "no_stream", "exists"]
NewEvent: TypeAlias = (
    tuple[str, bytes] | tuple[str, bytes, bytes] | tuple[str, bytes, bytes | None, Sequence[str]]
)
"""``(event_type, payload)``, ``(event_type, payload, metadata)`` or ``(event_type, payload, metadata, tags)``
(metadata may then be ``None``; at most 64 tags of 1 to 256 bytes); ``bytearray`` is accepted (copied)."""
StreamAppend: TypeAlias = (
    tuple[str, Sequence[NewEvent]]
    | tuple[str, Sequence[NewEvent], Expected]
    | tuple[str, Sequence[NewEvent], Expected, int]
)
"""``(stream, events[, expected[, first_version]])``, one stream's part of ``Store.append_batch``."""
Types: TypeAlias = str | Iterable[str] | None

class _QueryItemLike(Protocol):
    """Any object with ``types`` and ``tags`` (such as ``eventsourcing``'s ``DCBQueryItem``)."""

    @property
    def types(self) -> Iterable[str]: ...
    @property
    def tags(self) -> Iterable[str]: ...

QueryItem: TypeAlias = tuple[Iterable[str], Iterable[str]] | _QueryItemLike
"""``(types, tags)``: the events whose type is one of ``types`` (any type if empty) and that carry every one of
``tags``. Neither may be a lone ``str``."""
Query: TypeAlias = Iterable[QueryItem] | None
"""The events matching any of the items; ``None`` or no items: every event."""
@final
class Event:
    """One stored event (read-only)."""

    @property
    def position(self) -> int:
        """Global position in the log (0-based, dense)."""
    @property
    def stream(self) -> str:
        """The stream the event belongs to."""
    @property
    def version(self) -> int:
        """Version within its stream."""
    @property
    def event_type(self) -> str:
        """The event's type name."""
    @property
    def payload(self) -> bytes:
        """The event's bytes."""
    @property
    def metadata(self) -> bytes:
        """Application metadata (may be empty)."""
    @property
    def schema_version(self) -> int:
        """Schema version of the event type."""
    @property
    def timestamp_micros(self) -> int:
        """Append time, microseconds since the Unix epoch."""
    @property
    def event_id(self) -> int | None:
        """The caller-chosen 128-bit id, if any."""
    @property
    def tags(self) -> tuple[str, ...]:
        """The event's tags, in the order they were appended (empty if none)."""

@final
class Appended:
    """What one stream's append produced."""

    @property
    def positions(self) -> range:
        """Global positions of the events (contiguous; empty if there were none)."""
    @property
    def versions(self) -> range:
        """Stream versions of the events."""
    @property
    def deduplicated(self) -> bool:
        """True if this was a retry recognised by event ids, and nothing was written."""

@final
class Subscription(Iterator[Event]):
    """A blocking iterator over a store's log; see ``Store.subscribe``."""

    def __iter__(self) -> Self: ...
    def __next__(self) -> Event:
        """The next event; blocks (GIL released) until there is one. ``StopIteration`` after ``stop()``
        or the store's close."""
    def stop(self) -> None:
        """Ends the iteration, from any thread; a blocked ``__next__`` returns within ~20 ms."""
    @property
    def stopped(self) -> bool:
        """True once stopped (or the store was closed)."""
    @property
    def position(self) -> int:
        """The position to resume from: every event before it was returned or filtered out."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool: ...

@final
class Store:
    """An open foldlog store: a directory holding an append-only log of events in streams.

    One writer handle per directory (a second one, in any process, raises ``LockedError``); any number
    of ``read_only=True`` handles beside it, in any process. Share one handle between threads: calls
    release the GIL while they do I/O, sync or wait. Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        durability: Durability = "group",
        read_only: bool = False,
        create: bool = True,
        segment_size: int | None = None,
    ) -> None:
        """Opens (or creates, if ``create``) the store in ``path``.

        ``durability``: ``"always"`` syncs before ``append`` returns; ``"group"`` (the default) syncs within
        10 ms or 1,000 appends (``durable_position()`` says how far); ``"never"`` leaves it to the OS and
        ``sync()``. Every mode survives a crash of the process once ``append`` returned.
        """
    def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected | None = None, *, first_version: int = 0
    ) -> Appended:
        """Appends ``events`` to ``stream`` if its last version matches ``expected`` (default ``"any"``); a new
        stream starts at ``first_version``. ``WrongExpectedVersionError`` (nothing written) otherwise."""
    def append_if(self, stream: str, events: Sequence[NewEvent], query: Query, after: int | None = None) -> Appended:
        """Appends ``events`` to ``stream`` (whatever its version) if no event matching ``query`` was stored
        after position ``after`` (anywhere, if ``None``), checked under the writer lock; otherwise writes
        nothing and raises ``AppendConditionError`` naming the first such event. The usual ``after`` is the
        head of the ``read_query`` the decision was made on."""
    def append_batch(
        self,
        streams: Iterable[StreamAppend],
        consumer: tuple[str, int] | None = None,
        *,
        condition: tuple[Query, int | None] | None = None,
    ) -> list[Appended]:
        """Appends several streams' events, each with its own check, and optionally a consumer's new
        position (which must exceed its recorded one), atomically: all of it, also across a crash, or none.
        ``append_batch([], consumer=(name, position))`` records a position alone. ``condition=(query, after)``
        adds the check of ``append_if``."""
    def read_stream(
        self,
        stream: str,
        from_version: int | None = None,
        to_version: int | None = None,
        *,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[Event]:
        """Events of ``stream`` from ``from_version`` (default: the first, or the last when ``backward``) to
        ``to_version`` (inclusive, in the direction of reading), at most ``limit``."""
    def read_all(
        self, from_position: int = 0, to_position: int | None = None, *, types: Types = None, limit: int | None = None
    ) -> list[Event]:
        """Events of the whole log in commit order from ``from_position`` to ``to_position`` (inclusive),
        only those of ``types`` if given (one name or several), at most ``limit`` matches. Page through a long
        log with ``from_position=last.position + 1``."""
    def read_query(
        self, query: Query = None, after: int | None = None, *, limit: int | None = None
    ) -> tuple[list[Event], int | None]:
        """``(events, head)``: the events matching ``query`` after position ``after`` (from the first if
        ``None``), oldest first, at most ``limit``, read through the tag and type indexes; and the log's last
        position when the read was made (``None`` if empty). The read covers every position up to ``head``,
        unless ``limit`` cut it short: it then covers up to its last event."""
    def subscribe(
        self, from_position: int = 0, *, types: Types = None, query: Query = None, batch_size: int = 512
    ) -> Subscription:
        """Every event from ``from_position``, then each new one as it is committed, until ``stop()`` or
        ``close()``; only those of ``types``, or only those matching ``query`` (not both), if given; reads
        ``batch_size`` events at a time."""
    def wait_for(self, after: int | None = None, timeout: float | None = None) -> int | None:
        """Blocks until a position beyond ``after`` (any if ``None``) is committed, or ``timeout`` seconds
        pass (forever if ``None``). Returns the head then, ``None`` on timeout."""
    def head(self) -> int | None:
        """Highest committed position, ``None`` for an empty log."""
    def next_position(self) -> int:
        """The position the next event will get (the number of events)."""
    def durable_position(self) -> int:
        """Events below this position survive power loss. On a read-only handle beside a live writer: what
        that writer has synced, as far as this handle has read (``refresh()`` moves it)."""
    def stream_version(self, stream: str) -> int | None:
        """Last version of ``stream``, ``None`` if it has no events."""
    def streams(self) -> list[str]:
        """All stream ids, sorted."""
    def consumer_position(self, name: str) -> int | None:
        """A consumer's recorded position, ``None`` if it has none."""
    def consumer_positions(self) -> dict[str, int]:
        """Every consumer with its recorded position."""
    def sync(self) -> None:
        """Makes everything appended so far durable."""
    def refresh(self) -> int:
        """Catches a read-only handle up with the writer (in any process); returns the next position."""
    def close(self) -> None:
        """Syncs, marks the log cleanly closed and releases the directory; later calls raise
        ``ClosedError`` and subscriptions end. Closing twice is harmless."""
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> Path: ...
    @property
    def durability(self) -> Durability: ...
    @property
    def read_only(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool: ...
