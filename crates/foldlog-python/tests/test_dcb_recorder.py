"""eventsourcing_foldlog's DCB recorder beyond the library's test case: how it is found and where it writes,
what a refusal says, reads longer than one page, and ending a subscription that waits.

Each test opens a factory on a fresh directory; the events are checked both through the recorder and, where
it matters, through the engine (``foldlog.Store``) underneath.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem, DCBSequencedEvent
from eventsourcing.dcb.persistence import DCBInfrastructureFactory
from eventsourcing.persistence import DataError, InfrastructureFactory, IntegrityError, ProgrammingError
from eventsourcing.utils import Environment

import foldlog
from eventsourcing_foldlog import Factory, FoldlogDCBRecorder
from eventsourcing_foldlog.dcb import STREAM


def factory(path: Path, name: str = "App") -> Factory:
    return Factory(Environment(name, {"FOLDLOG_PATH": str(path)}))


def tagged(tag: str, type_: str = "T") -> DCBEvent:
    return DCBEvent(type=type_, data=tag.encode(), tags=[tag])


def test_one_module_serves_both_kinds_of_application(tmp_path: Path) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing_foldlog", "FOLDLOG_PATH": str(tmp_path)}
    dcb = DCBInfrastructureFactory.construct(Environment("Courses", env))
    classic = InfrastructureFactory.construct(Environment("Bank", env))
    assert type(dcb) is Factory and type(classic) is Factory
    recorder = dcb.dcb_recorder()
    assert isinstance(recorder, FoldlogDCBRecorder)
    assert recorder.store.path == tmp_path / "Courses" / "dcb"
    dcb.close()
    classic.close()


def test_events_go_in_one_stream_with_positions_from_one(tmp_path: Path) -> None:
    f = factory(tmp_path)
    recorder = f.dcb_recorder()
    assert recorder.append([tagged("a", "A"), tagged("b", "B")]) == 2
    assert recorder.append([tagged("c", "C")]) == 3
    store = recorder.store
    assert store.streams() == [STREAM]
    assert [(e.position, e.version, e.event_type, e.tags) for e in store.read_stream(STREAM)] == [
        (0, 0, "A", ("a",)),
        (1, 1, "B", ("b",)),
        (2, 2, "C", ("c",)),
    ]
    f.close()
    # Reopened: the events, their tags and the positions are all there.
    again = factory(tmp_path)
    read = again.dcb_recorder().read(DCBQuery([DCBQueryItem(tags=["b"])]))
    assert list(read) == [DCBSequencedEvent(event=DCBEvent(type="B", data=b"b", tags=["b"]), position=2)]
    assert read.head == 3
    again.close()


def test_a_refused_append_names_the_event_and_writes_nothing(tmp_path: Path) -> None:
    f = factory(tmp_path)
    recorder = f.dcb_recorder()
    recorder.append([tagged("course:1", "Defined"), tagged("course:2", "Defined")])
    condition = DCBAppendCondition(DCBQuery([DCBQueryItem(types=["Defined"], tags=["course:2"])]), after=1)
    with pytest.raises(IntegrityError, match="position 2 .*'Defined'.* after position 1"):
        recorder.append([tagged("course:2", "Enrolled")], condition)
    assert recorder.store.next_position() == 2
    assert recorder.append([tagged("course:2", "Enrolled")], DCBAppendCondition(condition.fail_if_events_match, 2)) == 3
    with pytest.raises(ProgrammingError):
        recorder.append([])
    with pytest.raises(DataError):
        recorder.append([DCBEvent(type="T", data=b"", tags=[""])])
    assert recorder.store.next_position() == 3
    f.close()


def test_a_long_read_is_paged_and_stops_at_its_head(tmp_path: Path) -> None:
    f = factory(tmp_path)
    recorder = f.dcb_recorder()
    recorder.PAGE = 3  # type: ignore[misc]  # small pages, to cross several
    recorder.append([tagged("odd" if i % 2 else "even") for i in range(10)])
    read = recorder.read(DCBQuery([DCBQueryItem(tags=["even"])]), after=2)
    first = next(read)
    # Events appended while the read is iterated are after its head: not part of it.
    recorder.append([tagged("even") for _ in range(5)])
    rest = list(read)
    assert [first.position] + [e.position for e in rest] == [3, 5, 7, 9]
    assert read.head == 10
    everything = recorder.read()
    assert [e.position for e in everything] == list(range(1, 16))
    assert everything.head == 15
    limited = recorder.read(DCBQuery([DCBQueryItem(tags=["odd"])]), limit=2)
    assert ([e.position for e in limited], limited.head) == ([2, 4], 4)
    f.close()


def test_stop_ends_a_waiting_subscription(tmp_path: Path) -> None:
    f = factory(tmp_path)
    recorder = f.dcb_recorder()
    recorder.append([tagged("x"), tagged("y")])
    got: list[int] = []
    with recorder.subscribe(DCBQuery([DCBQueryItem(tags=["y"])])) as subscription:
        reader = threading.Thread(target=lambda: got.extend(e.position for e in subscription))
        reader.start()
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.001)
        started = time.monotonic()
        subscription.stop()
        reader.join(timeout=10)
        assert not reader.is_alive() and time.monotonic() - started < 1.0
    assert got == [2]
    # After a close of the store, a subscription ends too.
    waiting = recorder.subscribe(after=2)
    ended = threading.Event()
    threading.Thread(target=lambda: (list(waiting), ended.set())).start()
    f.close()
    assert ended.wait(10)
    with pytest.raises(foldlog.ClosedError):
        recorder.store.head()
