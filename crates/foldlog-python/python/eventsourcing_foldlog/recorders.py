"""The recorders of the ``eventsourcing`` persistence contract, on foldlog stores.

How the contract maps onto the engine:

- An originator's events are one foldlog stream, named by the originator id (a ``UUID`` in its canonical
  text form, a ``str`` as it is); an event's metadata ``b"uuid"`` records that its id was a ``UUID``, so ids
  come back with the Python type they were stored with. The originator version is the stream version: a
  new stream starts at whatever version its first event has (aggregates start at 1), and each later event
  must follow its predecessor (a gap is refused with ``IntegrityError``; aggregates never make one).
- A notification id is the event's global position + 1: ids start at 1, are dense, and each insert gets a
  contiguous block of them, in commit order.
- A tracking record is a foldlog consumer position (name = upstream application, position = notification
  id), committed in the same atomic batch as the events it goes with; it must increase.
- Snapshots live in their own store (``FoldlogSnapshotRecorder``): every snapshot is kept, at any versions
  (2 then 4), with its originator version in the metadata.

Every conflict (a version taken, a duplicate within a batch, a tracking id not above the recorded one) is an
``IntegrityError`` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from threading import Event
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import foldlog
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
    WaitInterruptedError,
)

if TYPE_CHECKING:
    from foldlog import Store

_UUID_TAG = b"uuid"
_T = TypeVar("_T")

# A stream's part of an append_batch: (stream, events, expected, first_version).
_Part = tuple[str, list[tuple[str, bytes, bytes]], "int | str", int]


def translate(error: foldlog.FoldlogError) -> PersistenceError:
    """The ``eventsourcing`` exception for a foldlog error (PEP 249 classes)."""
    message = str(error)
    if isinstance(error, foldlog.ConflictError):
        return IntegrityError(message)
    if isinstance(error, (foldlog.InvalidArgumentError, foldlog.TooLargeError)):
        return DataError(message)
    if isinstance(error, foldlog.ClosedError):
        return InterfaceError(message)
    if isinstance(error, foldlog.ReadOnlyError):
        return ProgrammingError(message)
    return OperationalError(message)


def _call(fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except foldlog.FoldlogError as e:
        raise translate(e) from e


def stream_of(originator_id: UUID | str) -> tuple[str, bytes]:
    """The stream of an originator, and the metadata that records the id's type."""
    if isinstance(originator_id, UUID):
        return str(originator_id), _UUID_TAG
    if isinstance(originator_id, str):
        return originator_id, b""
    msg = f"originator ids are UUID or str, not {type(originator_id).__name__}"
    raise DataError(msg)


class _OriginatorIds(dict[str, "UUID | str"]):
    """Turns stream names back into originator ids, each ``UUID`` built once per read: ``ids[stream]``
    when the event's metadata says its id was a UUID, else the stream name itself."""

    def __init__(self, known: UUID | str | None = None) -> None:
        super().__init__()
        if isinstance(known, UUID):
            self[str(known)] = known

    def __missing__(self, stream: str) -> UUID:
        oid = self[stream] = UUID(stream)
        return oid


def _fast_constructor(cls: type[_T], fields: tuple[str, ...]) -> Callable[..., _T]:
    """A faster way to make instances of one of the library's frozen dataclasses (``StoredEvent``,
    ``Notification``), for reads that make thousands: the instance dict is set in one step instead of one
    ``object.__setattr__`` per field. Used only while the class is what this was written for (a dataclass
    with exactly these fields, an instance dict, no ``__post_init__``); otherwise the class itself."""
    import dataclasses

    if (
        not dataclasses.is_dataclass(cls)
        or tuple(f.name for f in dataclasses.fields(cls)) != fields
        or hasattr(cls, "__post_init__")
        or "__slots__" in cls.__dict__
        or any("__slots__" in c.__dict__ for c in cls.__mro__[1:-1])
    ):
        return cls
    new = object.__new__
    set_dict = object.__setattr__

    def make(*values: object) -> _T:
        obj = new(cls)
        set_dict(obj, "__dict__", dict(zip(fields, values)))
        return obj

    return make


_stored_event = _fast_constructor(StoredEvent, ("originator_id", "originator_version", "topic", "state"))
_notification = _fast_constructor(Notification, ("originator_id", "originator_version", "topic", "state", "id"))


class FoldlogRecorder:
    """What every foldlog recorder has: the store it writes to."""

    def __init__(self, store: Store) -> None:
        self.store = store


def _plan_contiguous(store: Store, stored_events: Sequence[StoredEvent]) -> tuple[list[_Part], list[tuple[int, int]]]:
    """Groups events by stream, checks each group is a run of consecutive versions that follows the
    stream's last one (or starts a new stream), and returns the batch's parts with, per input event, its
    (part, offset) so that ids can be returned in input order.
    """
    parts: list[_Part] = []
    where: dict[str, int] = {}
    order: list[tuple[int, int]] = []
    for s in stored_events:
        stream, tag = stream_of(s.originator_id)
        i = where.get(stream)
        if i is None:
            i = where[stream] = len(parts)
            parts.append((stream, [], 0, s.originator_version))
        _, events, _, first = parts[i]
        if s.originator_version != first + len(events):
            msg = (
                f"events of {s.originator_id!r} in one insert must have consecutive versions: "
                f"{s.originator_version} after {first + len(events) - 1}"
            )
            raise IntegrityError(msg)
        order.append((i, len(events)))
        events.append((s.topic, s.state, tag))
    for i, (stream, events, _, first) in enumerate(parts):
        if first < 0:
            msg = f"version {first} of {stream!r} is negative"
            raise IntegrityError(msg)
        last = store.stream_version(stream)
        if last is None:
            parts[i] = (stream, events, "no_stream", first)
        elif first == last + 1:
            parts[i] = (stream, events, last, first)
        elif first <= last:
            msg = f"version {first} of {stream!r} is already recorded (its last version is {last})"
            raise IntegrityError(msg)
        else:
            msg = f"version {first} of {stream!r} would leave a gap after its last version {last}"
            raise IntegrityError(msg)
    return parts, order


def _append(
    store: Store,
    plan: Callable[[], tuple[list[_Part], _T]],
    tracking: Tracking | None,
) -> tuple[list[foldlog.Appended], _T]:
    """Appends what ``plan`` made, atomically with ``tracking``. The plan chose each stream's expected
    version from what it read; if another thread appended to one of them in between, the plan is made again
    (it may now fail with IntegrityError, or succeed if the race left the stream where this insert fits).
    """
    consumer = None if tracking is None else (tracking.application_name, tracking.notification_id)
    parts, extra = plan()
    for _ in range(3):
        try:
            return store.append_batch(parts, consumer), extra
        except foldlog.WrongExpectedVersionError as e:
            again, extra = plan()
            if [p[2] for p in again] == [p[2] for p in parts]:
                raise IntegrityError(str(e)) from e
            parts = again
        except foldlog.FoldlogError as e:
            raise translate(e) from e
    msg = "an insert kept racing with concurrent inserts into the same streams"
    raise IntegrityError(msg)


class FoldlogAggregateRecorder(FoldlogRecorder, AggregateRecorder):
    """Stored events in streams, one per originator."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Writes the events (and ``tracking=``, if given) atomically; returns ``None``."""
        self._insert(stored_events, kwargs.get("tracking"))
        return None

    def _insert(self, stored_events: Sequence[StoredEvent], tracking: Tracking | None) -> list[int]:
        if not stored_events and tracking is None:
            return []
        store = self.store
        done, order = _append(store, lambda: _plan_contiguous(store, stored_events), tracking)
        starts = [a.positions.start + 1 for a in done]
        return [starts[i] + k for i, k in order]

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The originator's events with ``gt < version <= lte``, ascending (or descending), at most
        ``limit``."""
        stream, _ = stream_of(originator_id)
        if (lte is not None and lte < 0) or (limit is not None and limit <= 0):
            return []
        low = None if gt is None or gt < 0 else gt + 1
        if desc:
            events = _call(lambda: self.store.read_stream(stream, lte, low, backward=True, limit=limit))
        else:
            events = _call(lambda: self.store.read_stream(stream, low, lte, limit=limit))
        ids = _OriginatorIds(originator_id)
        return [
            _stored_event(ids[stream] if e.metadata == _UUID_TAG else stream, e.version, e.event_type, e.payload)
            for e in events
        ]


class FoldlogSnapshotRecorder(FoldlogRecorder, AggregateRecorder):
    """Snapshots: every one kept, at any versions, in a store of their own.

    Each originator's snapshots are one foldlog stream; a snapshot's originator version is in its metadata
    (``v=<version>``, then ``;uuid`` for a UUID id). Snapshots are normally taken at increasing versions,
    and then "the latest at or below v" is found by reading the stream backward. One inserted below the
    newest is accepted too (if its version is free); it marks the stream ``;unordered``, and reads of that
    stream sort by version.
    """

    _READ_CHUNK = 32

    @staticmethod
    def _parse(metadata: bytes) -> tuple[int, bool, bool]:
        """(version, is_uuid, unordered) from a snapshot's metadata."""
        fields = metadata.split(b";")
        version = int(fields[0].removeprefix(b"v="))
        return version, b"uuid" in fields[1:], b"unordered" in fields[1:]

    def _versions(self, stream: str) -> list[int]:
        return [self._parse(e.metadata)[0] for e in self.store.read_stream(stream)]

    def _plan(self, stored_events: Sequence[StoredEvent]) -> tuple[list[_Part], None]:
        groups: dict[str, tuple[bytes, list[StoredEvent]]] = {}
        for s in stored_events:
            stream, tag = stream_of(s.originator_id)
            groups.setdefault(stream, (tag, []))[1].append(s)
        parts: list[_Part] = []
        for stream, (tag, snapshots) in groups.items():
            versions = [s.originator_version for s in snapshots]
            if len(set(versions)) < len(versions) or min(versions) < 0:
                msg = f"snapshot versions of {stream!r} repeat or are negative: {versions}"
                raise IntegrityError(msg)
            newest = self.store.read_stream(stream, backward=True, limit=1)
            expected: int | str = "no_stream"
            unordered = versions != sorted(versions)
            if newest:
                expected = newest[0].version
                last, _, was_unordered = self._parse(newest[0].metadata)
                if was_unordered or min(versions) <= last:
                    taken = set(self._versions(stream)).intersection(versions)
                    if taken:
                        msg = f"a snapshot of {stream!r} is already recorded at version {min(taken)}"
                        raise IntegrityError(msg)
                    unordered = True
            suffix = (b";uuid" if tag else b"") + (b";unordered" if unordered else b"")
            events = [(s.topic, s.state, b"v=%d%s" % (s.originator_version, suffix)) for s in snapshots]
            parts.append((stream, events, expected, 0))
        return parts, None

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Records the snapshots atomically; returns ``None``."""
        if stored_events:
            _append(self.store, lambda: self._plan(stored_events), kwargs.get("tracking"))
        return None

    def _scan_backward(self, stream: str) -> Iterator[foldlog.Event]:
        top: int | None = None
        while True:
            chunk = self.store.read_stream(stream, top, backward=True, limit=self._READ_CHUNK)
            yield from chunk
            if len(chunk) < self._READ_CHUNK or chunk[-1].version == 0:
                return
            top = chunk[-1].version - 1

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The originator's snapshots with ``gt < version <= lte``, by version, at most ``limit``."""
        stream, _ = stream_of(originator_id)
        if limit is not None and limit <= 0:
            return []

        def wanted(version: int) -> bool:
            return (gt is None or version > gt) and (lte is None or version <= lte)

        def stored(e: foldlog.Event) -> StoredEvent:
            version, is_uuid, _ = self._parse(e.metadata)
            oid: UUID | str = originator_id
            if is_uuid != isinstance(originator_id, UUID):
                oid = UUID(stream) if is_uuid else stream
            return StoredEvent(oid, version, e.event_type, e.payload)

        def select() -> list[StoredEvent]:
            newest = self.store.read_stream(stream, backward=True, limit=1)
            if not newest:
                return []
            if self._parse(newest[0].metadata)[2]:
                # Unordered: sort them all.
                found = sorted(map(stored, self.store.read_stream(stream)), key=lambda s: s.originator_version)
                found = [s for s in found if wanted(s.originator_version)]
                if desc:
                    found.reverse()
                return found if limit is None else found[:limit]
            if not desc:
                found = [s for s in map(stored, self.store.read_stream(stream)) if wanted(s.originator_version)]
                return found if limit is None else found[:limit]
            out: list[StoredEvent] = []
            for e in self._scan_backward(stream):
                s = stored(e)
                if gt is not None and s.originator_version <= gt:
                    break
                if wanted(s.originator_version):
                    out.append(s)
                    if limit is not None and len(out) == limit:
                        break
            return out

        return _call(select)


class FoldlogApplicationRecorder(FoldlogAggregateRecorder, ApplicationRecorder):
    """Stored events in streams and in the application sequence (the store's global log)."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Writes the events (and ``tracking=``, if given) atomically; returns their notification ids."""
        return self._insert(stored_events, kwargs.get("tracking"))

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Notifications with ids from ``start`` (or after it) to ``stop`` (inclusive), of the given
        topics (all if none), at most ``limit``."""
        first = 1 if start is None else (start if inclusive_of_start else start + 1)
        first = max(first, 1)
        if limit <= 0 or (stop is not None and stop < first):
            return []
        store = self.store
        events = _call(
            lambda: store.read_all(first - 1, None if stop is None else stop - 1, types=topics or None, limit=limit)
        )
        ids = _OriginatorIds()
        return [
            _notification(
                ids[e.stream] if e.metadata == _UUID_TAG else e.stream, e.version, e.event_type, e.payload, e.position + 1
            )
            for e in events
        ]

    def max_notification_id(self) -> int | None:
        """The last notification id, ``None`` if there is none."""
        head = _call(self.store.head)
        return None if head is None else head + 1

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        """Notifications after ``gt``: those recorded, then each new one as it is recorded."""
        return FoldlogSubscription(self, gt=gt, topics=topics)


class FoldlogSubscription(Subscription[FoldlogApplicationRecorder]):
    """A subscription on foldlog's own blocking iterator: no polling thread; ``stop()`` from any thread ends
    an iteration that waits for new events."""

    def __init__(
        self,
        recorder: FoldlogApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        start = 0 if gt is None else max(gt, 0)
        self._events = _call(lambda: recorder.store.subscribe(start, types=list(topics) or None))
        self._ids = _OriginatorIds()

    def stop(self) -> None:
        """Ends the iteration (also one blocked in another thread)."""
        super().stop()
        self._events.stop()

    def __next__(self) -> Notification:
        try:
            e = next(self._events)
        except foldlog.FoldlogError as err:
            raise translate(err) from err
        if len(self._ids) > 10_000:  # a long subscription meets many streams: keep the cache small
            self._ids.clear()
        oid = self._ids[e.stream] if e.metadata == _UUID_TAG else e.stream
        return _notification(oid, e.version, e.event_type, e.payload, e.position + 1)


class FoldlogTrackingRecorder(FoldlogRecorder, TrackingRecorder):
    """Tracking records as foldlog consumer positions: one per upstream application, only increasing."""

    def insert_tracking(self, tracking: Tracking) -> None:
        """Records ``tracking``; ``IntegrityError`` unless its id is above the recorded one."""
        _append(self.store, lambda: ([], None), tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        """The recorded notification id of ``application_name``, ``None`` if there is none."""
        return _call(lambda: self.store.consumer_position(application_name))

    def wait(
        self,
        application_name: str,
        notification_id: int | None,
        timeout: float = 1.0,
        interrupt: Event | None = None,
    ) -> None:
        """Blocks until ``notification_id`` of ``application_name`` is recorded; ``TimeoutError`` after
        ``timeout`` seconds, ``WaitInterruptedError`` once ``interrupt`` is set. Looks every millisecond at
        first, backing off to 50 ms."""
        deadline = monotonic() + timeout
        pause = 0.001
        while not self.has_tracking_id(application_name, notification_id):
            remaining = deadline - monotonic()
            if remaining <= 0:
                msg = (
                    f"Timed out waiting for notification {notification_id} "
                    f"from application '{application_name}' to be processed"
                )
                raise TimeoutError(msg)
            if interrupt is not None:
                if interrupt.wait(min(pause, remaining)):
                    raise WaitInterruptedError
            else:
                sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)


class FoldlogProcessRecorder(FoldlogTrackingRecorder, FoldlogApplicationRecorder, ProcessRecorder):
    """An application recorder whose inserts may carry a tracking record, written in the same batch."""
