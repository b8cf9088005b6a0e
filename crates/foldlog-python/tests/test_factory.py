"""eventsourcing_foldlog beyond the library's test cases: settings, shared handles, and the recorder
behaviours the cases do not reach (gaps, snapshots inserted out of order, ids in input order)."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, StoredEvent
from eventsourcing.utils import Environment

from eventsourcing_foldlog import Factory


def factory(path: Path, name: str = "App", **settings: str) -> Factory:
    return Factory(Environment(name, {"FOLDLOG_PATH": str(path), **settings}))


def test_settings_and_the_application_name_prefix(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="FOLDLOG_PATH"):
        Factory(Environment("App", {}))
    with pytest.raises(OSError, match="FOLDLOG_DURABILITY"):
        factory(tmp_path, FOLDLOG_DURABILITY="sometimes")
    env = {"FOLDLOG_PATH": str(tmp_path / "shared"), "BANK_FOLDLOG_PATH": str(tmp_path / "bank")}
    bank, other = Factory(Environment("Bank", env)), Factory(Environment("Other", env))
    assert (bank.directory, other.directory) == (tmp_path / "bank" / "Bank", tmp_path / "shared" / "Other")
    always = factory(tmp_path, FOLDLOG_DURABILITY="Always")
    recorder = always.application_recorder()
    assert recorder.store.durability == "always"
    assert recorder.store.path == tmp_path / "App" / "events"
    always.close()
    with pytest.raises(OperationalError):
        factory(tmp_path / "missing", CREATE_TABLE="false").application_recorder()


def test_one_handle_per_path_shared_and_closed_by_the_last_factory(tmp_path: Path) -> None:
    first, second = factory(tmp_path), factory(tmp_path)
    a, b = first.application_recorder(), second.process_recorder()
    assert a.store is b.store
    a.insert_events([StoredEvent(uuid4(), 1, "t", b"")])
    first.close()
    assert not b.store.closed and b.max_notification_id() == 1
    second.close()
    assert b.store.closed
    with pytest.raises(InterfaceError):
        b.max_notification_id()
    third = factory(tmp_path)
    assert third.application_recorder().max_notification_id() == 1
    third.close()


def test_gaps_are_refused_and_ids_come_back_in_input_order(tmp_path: Path) -> None:
    f = factory(tmp_path)
    recorder = f.application_recorder()
    x, y = uuid4(), "account-y"
    ids = recorder.insert_events(
        [StoredEvent(x, 1, "t", b"x1"), StoredEvent(y, 1, "t", b"y1"), StoredEvent(x, 2, "t", b"x2")]
    )
    assert ids == [1, 3, 2]  # x's events are one contiguous block, then y's
    assert [n.originator_id for n in recorder.select_notifications(1, 10)] == [x, x, y]
    with pytest.raises(IntegrityError, match="gap"):
        recorder.insert_events([StoredEvent(x, 5, "t", b"")])
    with pytest.raises(IntegrityError):
        recorder.insert_events([StoredEvent(y, 2, "t", b""), StoredEvent(y, 4, "t", b"")])
    assert recorder.max_notification_id() == 3
    f.close()


def test_snapshots_at_any_versions_in_any_order(tmp_path: Path) -> None:
    f = factory(tmp_path)
    snapshots = f.aggregate_recorder("snapshots")
    oid = uuid4()
    for version in (2, 4, 40):
        snapshots.insert_events([StoredEvent(oid, version, "snap", b"%d" % version)])
    assert [s.originator_version for s in snapshots.select_events(oid, lte=39, desc=True, limit=1)] == [4]
    snapshots.insert_events([StoredEvent(oid, 3, "snap", b"3")])  # below the newest: accepted
    with pytest.raises(IntegrityError):
        snapshots.insert_events([StoredEvent(oid, 4, "snap", b"again")])
    assert [s.originator_version for s in snapshots.select_events(oid)] == [2, 3, 4, 40]
    assert [s.originator_version for s in snapshots.select_events(oid, lte=3, desc=True, limit=1)] == [3]
    assert [s.state for s in snapshots.select_events(oid, gt=2, lte=4)] == [b"3", b"4"]
    assert all(s.originator_id == oid for s in snapshots.select_events(oid))
    # Snapshots stay out of the application sequence.
    assert f.application_recorder().max_notification_id() is None
    f.close()


def test_many_snapshots_latest_at_or_below(tmp_path: Path) -> None:
    f = factory(tmp_path)
    snapshots = f.aggregate_recorder("snapshots")
    oid = "counter-1"
    for version in range(10, 1010, 10):
        snapshots.insert_events([StoredEvent(oid, version, "snap", b"")])
    latest = snapshots.select_events(oid, lte=555, desc=True, limit=1)
    assert [(s.originator_id, s.originator_version) for s in latest] == [("counter-1", 550)]
    assert [s.originator_version for s in snapshots.select_events(oid, gt=970, desc=True)] == [1000, 990, 980]
    f.close()
