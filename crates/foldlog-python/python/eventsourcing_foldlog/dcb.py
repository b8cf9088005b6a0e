"""The ``eventsourcing`` DCB recorder (dynamic consistency boundaries) on a foldlog store.

How the DCB contract maps onto the engine:

- A ``DCBEvent`` is a foldlog event: its ``type`` the event type, its ``data`` the payload, its ``tags`` the
  event's tags (at most 64, each 1 to 256 bytes). A position is the global position + 1, so positions start
  at 1 as the library's own recorders' do.
- Every DCB event goes in one stream, ``"dcb"``, appended with ``expected="any"``, in a store that holds
  nothing else (``<FOLDLOG_PATH>/<application>/dcb``). The DCB model has no streams: an event's identity is
  its position, and what guards a decision is the append condition, checked by the engine under its writer
  lock against its tag and type indexes. A stream per event type would only repeat the type index and split
  an append of several types into several stream appends; with one stream and a store of its own, an append
  is always the cheapest single-stream batch, and the stream version of an event is simply its position.
- ``read`` answers a query from the tag and type indexes (only matching events are read), ``append`` with a
  condition is the engine's conditional append (a refusal is an ``IntegrityError`` naming the event that
  matched, and writes nothing), and ``subscribe`` is the engine's blocking subscription by query: no polling
  thread, woken by each commit, ended by ``stop()`` from any thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import foldlog
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBReadResponse,
    DCBRecorder,
    DCBSequencedEvent,
    DCBSubscription,
)
from eventsourcing.persistence import IntegrityError, ProgrammingError

from eventsourcing_foldlog.recorders import FoldlogRecorder, _call, translate

if TYPE_CHECKING:
    from foldlog import Store

STREAM = "dcb"
"""The stream every DCB event is appended to."""


def _items(query: DCBQuery | None) -> list[DCBQueryItem] | None:
    """A query as the engine takes it: the items themselves (objects with ``types`` and ``tags``)."""
    return None if query is None else query.items


def _after(after: int | None) -> int | None:
    """A DCB position after which to look (positions from 1), as the foldlog position (from 0) after which
    to look; ``None``: from the first event."""
    return None if after is None or after < 1 else after - 1


def _sequenced(e: foldlog.Event) -> DCBSequencedEvent:
    event = DCBEvent(type=e.event_type, data=e.payload, tags=list(e.tags))
    return DCBSequencedEvent(event=event, position=e.position + 1)


class FoldlogDCBReadResponse(DCBReadResponse):
    """The events of a read, and the head the read covers (``None``: nothing)."""

    def __init__(self, events: Iterator[DCBSequencedEvent], head: int | None) -> None:
        self._events = events
        self._head = head

    @property
    def head(self) -> int | None:
        """Without a limit, the last position in the store when the read was made; with one, the position of
        the last event returned (``None`` if none), as the library's own recorders report it."""
        return self._head

    def __next__(self) -> DCBSequencedEvent:
        return next(self._events)


class FoldlogDCBRecorder(FoldlogRecorder, DCBRecorder):
    """Tagged events in one foldlog stream (``"dcb"``), read by query and appended on condition."""

    PAGE = 1000
    """Events read per call to the engine by a read without a limit (the rest are read as iterated)."""

    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> FoldlogDCBReadResponse:
        """The events matching ``query`` (all if ``None`` or without items) with positions above ``after``,
        oldest first, at most ``limit``."""
        store, items = self.store, _items(query)
        if limit is not None:
            if limit <= 0:
                return FoldlogDCBReadResponse(iter(()), None)
            events, _ = _call(lambda: store.read_query(items, _after(after), limit=limit))
            head = events[-1].position + 1 if events else None
            return FoldlogDCBReadResponse(map(_sequenced, events), head)
        first, head = _call(lambda: store.read_query(items, _after(after), limit=self.PAGE))
        pages = self._pages(store, items, first, head)
        return FoldlogDCBReadResponse(pages, None if head is None else head + 1)

    def _pages(
        self, store: Store, items: list[DCBQueryItem] | None, events: list[foldlog.Event], head: int | None
    ) -> Iterator[DCBSequencedEvent]:
        """The first page's events, then the next pages' as they are iterated, up to ``head`` (the log's
        last position when the read was made: a later event is not part of the read)."""
        while True:
            for e in events:
                if head is None or e.position > head:
                    return
                yield _sequenced(e)
            if len(events) < self.PAGE:
                return
            after = events[-1].position
            events, _ = _call(lambda: store.read_query(items, after, limit=self.PAGE))

    def append(self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None) -> int:
        """Appends ``events`` unless an event matching the condition's query was recorded after its
        position (``IntegrityError``, nothing written); returns the position of the last one."""
        if len(events) == 0:
            msg = "a DCB append needs at least one event"
            raise ProgrammingError(msg)
        new = [(e.type, e.data, None, e.tags) for e in events]
        store = self.store
        try:
            if condition is None:
                done = store.append(STREAM, new)
            else:
                query = _items(condition.fail_if_events_match)
                done = store.append_if(STREAM, new, query, _after(condition.after))
        except foldlog.AppendConditionError as e:
            after = "" if condition is None or condition.after is None else f" after position {condition.after}"
            msg = (
                f"append condition failed: event at position {e.position + 1} (type {e.event_type!r}) "
                f"matches the condition's query{after}"
            )
            raise IntegrityError(msg) from e
        except foldlog.FoldlogError as e:
            raise translate(e) from e
        return done.positions[-1] + 1

    def subscribe(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
    ) -> FoldlogDCBSubscription:
        """The events matching ``query`` with positions above ``after``, then each new match as it is
        committed; blocks at the head until ``stop()``."""
        return FoldlogDCBSubscription(self, query=query, after=after)


class FoldlogDCBSubscription(DCBSubscription[FoldlogDCBRecorder]):
    """A DCB subscription on foldlog's blocking subscription by query: no polling thread; a commit wakes it,
    ``stop()`` from any thread ends an iteration that waits."""

    def __init__(
        self,
        recorder: FoldlogDCBRecorder,
        query: DCBQuery | None = None,
        after: int | None = None,
    ) -> None:
        super().__init__(recorder=recorder, query=query, after=after)
        # Positions above `after` are foldlog positions from `after` on (a DCB position is one more).
        start = 0 if after is None else max(after, 0)
        items = [] if query is None else query.items
        self._events = _call(lambda: recorder.store.subscribe(start, query=items))

    def stop(self) -> None:
        """Ends the iteration (also one blocked in another thread)."""
        super().stop()
        self._events.stop()

    def __next__(self) -> DCBSequencedEvent:
        if self._has_been_stopped:
            raise StopIteration
        try:
            e = next(self._events)
        except foldlog.FoldlogError as err:
            raise translate(err) from err
        return _sequenced(e)
