"""The engine's DCB API from Python: tags on events, reads by query, conditional appends, subscriptions by
query.

Each test writes a few tagged events into a fresh store and checks what the bindings give back against what
the events are: positions, types, tags and the head a read reports, what a refused append leaves behind
(nothing), and that a subscription by query blocks at the head and wakes for a matching commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import foldlog
from foldlog import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as s:
        yield s


def enrolments(store: Store) -> None:
    """Positions 0..4: a course, two enrolments in it, one in another course, an untagged event."""
    store.append("courses", [("CourseDefined", b"2", None, ["course:7"])])
    store.append("enrolments", [("StudentEnrolled", b"", None, ["course:7", "student:1"])])
    store.append("enrolments", [("StudentEnrolled", b"", b"m", ["course:7", "student:2"])])
    store.append("enrolments", [("StudentEnrolled", b"", None, ["course:8", "student:1"])])
    store.append("other", [("Noted", b"")])


def positions(events: list[foldlog.Event]) -> list[int]:
    return [e.position for e in events]


def test_tags_round_trip_through_every_read(store: Store) -> None:
    enrolments(store)
    (defined,) = store.read_stream("courses")
    assert defined.tags == ("course:7",)
    assert [e.tags for e in store.read_stream("enrolments")] == [
        ("course:7", "student:1"),
        ("course:7", "student:2"),
        ("course:8", "student:1"),
    ]
    assert store.read_stream("enrolments")[1].metadata == b"m"
    assert store.read_stream("other")[0].tags == ()
    assert repr(defined).endswith("payload=<1 bytes>, tags=('course:7',))")
    assert "tags" not in repr(store.read_stream("other")[0])
    assert [e.tags for e in store.read_all(types="CourseDefined")] == [("course:7",)]
    with store.subscribe(from_position=4) as sub:
        assert next(sub).tags == ()
    # Tags are kept in the order given, and a batch carries them too.
    store.append_batch([("s", [("T", b"", None, ["b", "a"])])])
    assert store.read_all(5)[0].tags == ("b", "a")


def test_bad_tags_are_refused_and_write_nothing(store: Store) -> None:
    with pytest.raises(TypeError):
        store.append("s", [("T", b"", None, "course:7")])  # a lone str, not a list of them
    with pytest.raises(TypeError):
        store.append("s", [("T", b"", None, [7])])
    with pytest.raises(foldlog.InvalidArgumentError):
        store.append("s", [("T", b"", None, [""])])
    with pytest.raises(foldlog.InvalidArgumentError):
        store.append("s", [("T", b"", None, [f"t{i}" for i in range(65)])])
    with pytest.raises(TypeError):
        store.append("s", [("T", b"", None, ["a"], "extra")])
    assert store.next_position() == 0


def test_read_query_by_type_tags_and_items(store: Store) -> None:
    assert store.read_query() == ([], None)
    enrolments(store)
    events, head = store.read_query()
    assert (positions(events), head) == ([0, 1, 2, 3, 4], 4)
    assert positions(store.read_query([(["StudentEnrolled"], [])])[0]) == [1, 2, 3]
    assert positions(store.read_query([([], ["course:7"])])[0]) == [0, 1, 2]
    assert positions(store.read_query([([], ["course:7", "student:1"])])[0]) == [1]
    assert positions(store.read_query([(["CourseDefined"], ["student:1"])])[0]) == []
    # Items are alternatives; their matches come back once each, in log order.
    either = [([], ["student:1"]), (["CourseDefined", "Noted"], [])]
    assert positions(store.read_query(either)[0]) == [0, 1, 3, 4]
    # An item may be any object with `types` and `tags` (eventsourcing's DCBQueryItem is one).

    @dataclass
    class Item:
        types: list[str] = field(default_factory=list)
        tags: list[str] = field(default_factory=list)

    assert positions(store.read_query([Item(tags=["course:8"])])[0]) == [3]
    assert positions(store.read_query([Item()])[0]) == [0, 1, 2, 3, 4]
    # A tag or type nobody used matches nothing, and the head is still the log's.
    assert store.read_query([([], ["course:9"])]) == ([], 4)
    assert store.read_query([(["Unknown"], [])]) == ([], 4)


def test_read_query_after_and_limit(store: Store) -> None:
    enrolments(store)
    course7 = [([], ["course:7"])]
    assert positions(store.read_query(course7, 0)[0]) == [1, 2]
    assert positions(store.read_query(course7, after=1)[0]) == [2]
    assert store.read_query(course7, after=2) == ([], 4)
    events, head = store.read_query(course7, limit=2)
    # The limit cut the read short: it covered up to its last event (1), the head says where the log was.
    assert (positions(events), head) == ([0, 1], 4)
    assert store.read_query(course7, limit=0) == ([], 4)
    assert store.read_query(course7, after=99) == ([], 4)


def test_bad_queries_are_type_errors(store: Store) -> None:
    with pytest.raises(TypeError):
        store.read_query([("course:7",)])
    with pytest.raises(TypeError):
        store.read_query([([], "course:7")])
    with pytest.raises(TypeError):
        store.read_query(7)
    with pytest.raises(TypeError):
        store.read_query([object()])


def test_a_refused_condition_names_the_event_and_writes_nothing(store: Store) -> None:
    enrolments(store)
    course7 = [(["StudentEnrolled"], ["course:7"])]
    late = [("StudentEnrolled", b"", None, ["course:7", "student:3"])]
    with pytest.raises(foldlog.AppendConditionError) as caught:
        store.append_if("enrolments", late, course7, after=1)
    assert (caught.value.position, caught.value.stream, caught.value.event_type) == (2, "enrolments", "StudentEnrolled")
    assert isinstance(caught.value, foldlog.ConflictError)
    assert store.next_position() == 5
    with pytest.raises(foldlog.AppendConditionError):
        store.append_if("enrolments", late, None)  # no query: any event at all fails it
    # Decided on a read that is still current: accepted.
    _, head = store.read_query(course7)
    done = store.append_if("enrolments", late, course7, head)
    assert done.positions == range(5, 6)
    # In a batch, a refused condition takes the expected versions and the consumer position down with it.
    store.append_batch([], consumer=("enroller", 1))
    with pytest.raises(foldlog.AppendConditionError) as caught:
        store.append_batch(
            [("enrolments", late), ("audit", [("Checked", b"")], "no_stream")],
            consumer=("enroller", 2),
            condition=(course7, 4),
        )
    assert caught.value.position == 5
    assert (store.next_position(), store.consumer_position("enroller"), store.stream_version("audit")) == (6, 1, None)
    store.append_batch([("audit", [("Checked", b"")])], consumer=("enroller", 2), condition=(course7, 5))
    assert (store.next_position(), store.consumer_position("enroller")) == (7, 2)


def test_a_subscription_by_query_wakes_for_a_matching_commit(store: Store) -> None:
    enrolments(store)
    got: list[foldlog.Event] = []
    arrived = threading.Event()
    sub = store.subscribe(query=[([], ["student:1"])], batch_size=1)

    def follow() -> None:
        for e in sub:
            got.append(e)
            if e.tags == ("student:1", "course:9"):
                arrived.set()

    reader = threading.Thread(target=follow)
    reader.start()
    # Catch-up first: the two past events of student 1, then it blocks at the head.
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert positions(got) == [1, 3]
    assert not arrived.wait(0.1)
    store.append("other", [("Noted", b"")])
    store.append("enrolments", [("StudentEnrolled", b"", None, ["student:1", "course:9"])])
    assert arrived.wait(5)
    sub.stop()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert positions(got) == [1, 3, 6]
    assert sub.position == 7


def test_subscribe_takes_types_or_a_query(store: Store) -> None:
    with pytest.raises(ValueError):
        store.subscribe(types=["A"], query=[(["A"], [])])
    store.append("s", [("A", b""), ("B", b"", None, ["x"])])
    with store.subscribe(1, query=[]) as sub:  # an empty query: every event
        assert next(sub).position == 1


def test_tagged_events_are_found_by_query_after_a_reopen(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        enrolments(s)
        s.append_if("enrolments", [("StudentEnrolled", b"!", None, ["course:8", "student:2"])], [([], ["course:8"])], 3)
    with Store(tmp_path) as s:
        events, head = s.read_query([([], ["course:8"])])
        assert (positions(events), head) == ([3, 5], 5)
        assert (events[1].tags, events[1].payload) == (("course:8", "student:2"), b"!")
        with pytest.raises(foldlog.AppendConditionError):
            s.append_if("enrolments", [("StudentEnrolled", b"")], [([], ["student:2"])], 2)
    with Store(tmp_path, read_only=True) as reader:
        assert positions(reader.read_query([([], ["student:2"])])[0]) == [2, 5]
