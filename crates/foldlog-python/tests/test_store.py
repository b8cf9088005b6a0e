"""The engine's Python API: ``foldlog.Store`` and what it returns and raises."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import foldlog
from foldlog import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as s:
        yield s


def test_append_and_read_a_stream(store: Store) -> None:
    done = store.append("account-1", [("Opened", b"100"), ("Deposited", b"50", b"teller=7")], "no_stream")
    assert (done.positions, done.versions, done.deduplicated) == (range(0, 2), range(0, 2), False)
    events = store.read_stream("account-1")
    assert [(e.position, e.version, e.event_type, e.payload, e.metadata) for e in events] == [
        (0, 0, "Opened", b"100", b""),
        (1, 1, "Deposited", b"50", b"teller=7"),
    ]
    assert all(e.stream == "account-1" and isinstance(e.payload, bytes) for e in events)
    assert events[0].timestamp_micros > 1_600_000_000_000_000
    assert (events[0].schema_version, events[0].event_id) == (0, None)
    assert (store.head(), store.next_position(), store.stream_version("account-1")) == (1, 2, 1)
    assert store.streams() == ["account-1"]


def test_a_new_stream_starts_at_the_version_asked_for(store: Store) -> None:
    done = store.append("order-9", [("Placed", b"")], "no_stream", first_version=1)
    assert done.versions == range(1, 2)
    store.append("order-9", [("Paid", b"")], 1)
    assert [e.version for e in store.read_stream("order-9")] == [1, 2]


def test_conflicts_write_nothing_and_say_why(store: Store) -> None:
    store.append("s", [("A", b"")], "no_stream")
    with pytest.raises(foldlog.WrongExpectedVersionError) as caught:
        store.append("s", [("B", b"")], "no_stream")
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("s", "no_stream", 0)
    with pytest.raises(foldlog.ConflictError):
        store.append("s", [("B", b"")], 5)
    with pytest.raises(foldlog.ConflictError):
        store.append("t", [("B", b"")], "exists")
    assert store.next_position() == 1


def test_a_batch_is_atomic_with_its_consumer_position(store: Store) -> None:
    done = store.append_batch(
        [("a", [("Debited", b"30")], "no_stream"), ("b", [("Credited", b"30")], "no_stream", 1)],
        consumer=("transfers", 17),
    )
    assert [d.positions for d in done] == [range(0, 1), range(1, 2)]
    assert store.consumer_position("transfers") == 17
    # One failed check fails the whole batch, consumer position included.
    with pytest.raises(foldlog.WrongExpectedVersionError):
        store.append_batch([("c", [("X", b"")]), ("a", [("Y", b"")], "no_stream")], consumer=("transfers", 18))
    assert (store.next_position(), store.consumer_position("transfers")) == (2, 17)
    with pytest.raises(foldlog.ConsumerPositionError) as caught:
        store.append_batch([("c", [("X", b"")])], consumer=("transfers", 17))
    assert (caught.value.name, caught.value.current, caught.value.proposed) == ("transfers", 17, 17)
    store.append_batch([], consumer=("transfers", 20))
    assert store.consumer_positions() == {"transfers": 20}
    assert store.next_position() == 2


def test_read_all_filters_by_type_bounds_and_limit(store: Store) -> None:
    for i, t in enumerate(["Opened", "Deposited", "Withdrawn", "Deposited", "Closed"]):
        store.append("acc", [(t, bytes([i]))])
    assert [e.position for e in store.read_all()] == [0, 1, 2, 3, 4]
    assert [e.position for e in store.read_all(types="Deposited")] == [1, 3]
    assert [e.position for e in store.read_all(types=["Opened", "Closed"])] == [0, 4]
    assert [e.position for e in store.read_all(1, 3)] == [1, 2, 3]
    assert [e.position for e in store.read_all(types={"Deposited", "Withdrawn"}, limit=2)] == [1, 2]
    assert [e.position for e in store.read_all(2, types=["Deposited", "Closed"], limit=1)] == [3]
    assert store.read_all(9) == []


def test_read_stream_both_ways_with_bounds(store: Store) -> None:
    store.append("s", [(f"E{v}", b"") for v in range(1, 8)], "no_stream", first_version=1)
    def versions(**kw: object) -> list[int]:
        return [e.version for e in store.read_stream("s", **kw)]  # type: ignore[arg-type]
    assert versions(from_version=3, to_version=5) == [3, 4, 5]
    assert versions(from_version=3, limit=2) == [3, 4]
    assert versions(backward=True, limit=2) == [7, 6]
    assert versions(from_version=5, to_version=3, backward=True) == [5, 4, 3]
    assert versions(from_version=0) == list(range(1, 8))
    assert store.read_stream("nothing") == []


def test_bytearray_payloads_are_accepted(store: Store) -> None:
    store.append("s", [("T", bytearray(b"abc"), bytearray(b"m"))])
    (e,) = store.read_stream("s")
    assert (e.payload, e.metadata) == (b"abc", b"m")


def test_bad_arguments_are_value_or_type_errors(store: Store) -> None:
    with pytest.raises(foldlog.InvalidArgumentError):
        store.append("", [("T", b"")])
    with pytest.raises(ValueError):
        store.append("s", [("", b"")])
    with pytest.raises(ValueError):
        store.append("s", [("T", b"")], "sometimes")
    with pytest.raises(TypeError):
        store.append("s", [("T", "not bytes")])
    with pytest.raises(TypeError):
        store.append("s", ["T"])
    with pytest.raises(TypeError):
        store.append_batch([("s",)])
    assert store.next_position() == 0


def test_a_second_writer_on_the_same_directory_is_locked_out(tmp_path: Path) -> None:
    with Store(tmp_path) as first:
        with pytest.raises(foldlog.LockedError) as caught:
            Store(tmp_path)
        assert Path(caught.value.path) == tmp_path
        first.append("s", [("T", b"")])


def test_reopen_finds_everything_and_durability_modes(tmp_path: Path) -> None:
    for durability in ("always", "group", "never"):
        with Store(tmp_path / durability, durability=durability) as s:
            assert s.durability == durability
            s.append("s", [("T", b"x")] * 3)
            s.sync()
            assert s.durable_position() == 3
        with Store(tmp_path / durability) as s:
            assert [e.payload for e in s.read_stream("s")] == [b"x"] * 3
    with pytest.raises(ValueError):
        Store(tmp_path / "bad", durability="sometimes")
    with pytest.raises(foldlog.FoldlogError):
        Store(tmp_path / "missing", create=False)


def test_closed_store_raises_closed_error(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(foldlog.ClosedError):
        s.append("s", [("T", b"")])
    with pytest.raises(foldlog.ClosedError):
        s.read_all()
    # The directory is free again.
    with Store(tmp_path) as again:
        assert again.head() is None


def test_read_only_handle_follows_a_writer(tmp_path: Path) -> None:
    with Store(tmp_path) as writer:
        writer.append("s", [("T", b"1")])
        with Store(tmp_path, read_only=True) as reader:
            assert reader.read_only and reader.head() == 0
            with pytest.raises(foldlog.ReadOnlyError):
                reader.append("s", [("T", b"")])
            writer.append("s", [("T", b"2")])
            assert reader.wait_for(0, timeout=5) == 1
            assert [e.payload for e in reader.read_all()] == [b"1", b"2"]


def test_wait_for_times_out_and_wakes(store: Store) -> None:
    started = time.monotonic()
    assert store.wait_for(None, timeout=0.05) is None
    assert time.monotonic() - started >= 0.05
    threading.Timer(0.05, lambda: store.append("s", [("T", b"")])).start()
    assert store.wait_for(None, timeout=10) == 0


def test_subscription_catches_up_then_follows_live_appends(store: Store) -> None:
    store.append("s", [("A", b"0"), ("B", b"1")])
    seen: list[tuple[int, str]] = []
    with store.subscribe(types=["A", "C"], batch_size=1) as sub:
        writer = threading.Timer(0.05, lambda: store.append("s", [("B", b""), ("C", b"")]))
        writer.start()
        for e in sub:
            seen.append((e.position, e.event_type))
            if e.event_type == "C":
                break
        writer.join()
        assert sub.position == 4
    assert seen == [(0, "A"), (3, "C")]


def test_stop_from_another_thread_ends_a_blocked_subscription(store: Store) -> None:
    sub = store.subscribe()
    got: list[foldlog.Event] = []
    reader = threading.Thread(target=lambda: got.extend(sub))
    reader.start()
    store.append("s", [("T", b"")])
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.001)
    started = time.monotonic()
    sub.stop()
    reader.join(timeout=10)
    assert not reader.is_alive() and len(got) == 1
    assert time.monotonic() - started < 1.0
    assert sub.stopped and list(sub) == []


def test_closing_the_store_ends_its_subscriptions(tmp_path: Path) -> None:
    s = Store(tmp_path)
    sub = s.subscribe()
    done = threading.Event()
    reader = threading.Thread(target=lambda: (list(sub), done.set()))
    reader.start()
    time.sleep(0.05)
    s.close()
    assert done.wait(10)


def test_the_gil_is_released_while_waiting(store: Store) -> None:
    """A thread blocked in wait_for leaves the others running: 4 waiters and a Python counting loop."""
    waiters = [threading.Thread(target=store.wait_for, args=(None, 0.5)) for _ in range(4)]
    for w in waiters:
        w.start()
    count, deadline = 0, time.monotonic() + 0.2
    while time.monotonic() < deadline:
        count += 1
    for w in waiters:
        w.join()
    # Held for 0.5 s by a waiter, the GIL would have let this loop run only in the switch intervals.
    assert count > 10_000


def test_threads_append_concurrently_without_losing_anything(store: Store) -> None:
    def work(n: int) -> None:
        for i in range(200):
            store.append(f"thread-{n}", [("T", i.to_bytes(2, "big"))], i - 1 if i else "no_stream")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.next_position() == 1600
    for n in range(8):
        assert [int.from_bytes(e.payload, "big") for e in store.read_stream(f"thread-{n}")] == list(range(200))
