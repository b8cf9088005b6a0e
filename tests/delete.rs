//! Deleting and truncating streams (issue 14, item 1).
//!
//! Goal: a truncation hides a stream's events below a version, and a deletion hides all of them and refuses
//! later appends, from every read path (stream reads both ways, the global log, subscriptions, reads by
//! query, the repository), live, after a reopen from the checkpoint, after a rebuild without one, after a
//! crash, in a backup, a salvaged copy, and on a read-only follower in another process; and the
//! optimistic-concurrency checks of both stay exact. Method: real stores in scratch directories, each read
//! path compared with the versions or positions it must return; the follower is this test binary run again
//! as a child process.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use foldlog::{
    Batch, Error, ExpectedVersion, NewEvent, Options, Query, QueryItem, ReadAll, Store, StreamAppend,
    StreamControl,
};

use common::{child_command, emit, spawn_retrying, ScratchDir};

fn versions(store: &Store, stream: &str) -> Vec<u64> {
    store.read_stream(stream, 0).map(|e| e.unwrap().stream_version()).collect()
}

fn versions_backward(store: &Store, stream: &str) -> Vec<u64> {
    store.read_stream_backward(stream, None).map(|e| e.unwrap().stream_version()).collect()
}

fn positions(store: &Store) -> Vec<u64> {
    store.read_all(0).map(|e| e.unwrap().position()).collect()
}

/// Appends `n` events of type `Tick` tagged `t` to `stream`.
fn ticks(store: &Store, stream: &str, n: usize) {
    let tags = ["t"];
    let events: Vec<NewEvent<'_>> = (0..n).map(|_| NewEvent::new("Tick", b"x").tags(&tags)).collect();
    store.append(stream, ExpectedVersion::Any, &events).unwrap();
}

/// Positions 0..5 are `a` v0..v4, 5..8 `b` v0..v2, 8..10 `a` v5..v6.
fn sample(store: &Store) {
    ticks(store, "a", 5);
    ticks(store, "b", 3);
    ticks(store, "a", 2);
}

/// What every read path must show once `a` is truncated before 3 and `b` deleted.
fn assert_hidden(store: &Store) {
    assert_eq!(versions(store, "a"), [3, 4, 5, 6]);
    assert_eq!(
        store.read_stream("a", 1).map(|e| e.unwrap().stream_version()).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    assert_eq!(store.read_stream("a", 5).map(|e| e.unwrap().stream_version()).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(versions_backward(store, "a"), [6, 5, 4, 3]);
    let from_1: Vec<u64> =
        store.read_stream_backward("a", Some(1)).map(|e| e.unwrap().stream_version()).collect();
    assert!(from_1.is_empty(), "backward from a hidden version: nothing");
    assert!(versions(store, "b").is_empty());
    assert!(versions_backward(store, "b").is_empty());
    assert_eq!(positions(store), [3, 4, 8, 9], "positions of visible events are unchanged");
    let limited: Vec<u64> =
        store.read_all_with(ReadAll::default().limit(3)).map(|e| e.unwrap().position()).collect();
    assert_eq!(limited, [3, 4, 8], "hidden events count toward no limit");
    let every: Vec<u64> =
        store.read_all_with(ReadAll::default().include_hidden(true)).map(|e| e.unwrap().position()).collect();
    assert_eq!(every, (0..10).collect::<Vec<_>>(), "tools that copy every frame ask for the hidden ones");
    let by_tag = Query::new([QueryItem::new().tags(["t"])]);
    let read: Vec<u64> = store.read(&by_tag, None, Some(2)).map(|e| e.unwrap().position()).collect();
    assert_eq!(read, [3, 4]);
    let read: Vec<u64> = store.read(&by_tag, Some(4), None).map(|e| e.unwrap().position()).collect();
    assert_eq!(read, [8, 9]);
    let mut sub = store.subscribe(0);
    let mut delivered = Vec::new();
    while let Some(e) = sub.next_event(Duration::ZERO).unwrap() {
        delivered.push(e.position());
    }
    assert_eq!(delivered, [3, 4, 8, 9]);
    assert_eq!(sub.position(), 10, "the subscription moved past the hidden tail");
    // Through the indexes too: a subscription by query, and a type-filtered read or subscription where the
    // type is rare (a `Rare` event is appended at the end of `sample`).
    let mut by_query = store.subscribe(0).query(by_tag.clone());
    let mut delivered = Vec::new();
    while let Some(e) = by_query.next_event(Duration::ZERO).unwrap() {
        delivered.push(e.position());
    }
    assert_eq!((delivered, by_query.position()), (vec![3, 4, 8, 9], 10));
    let ticks: Vec<u64> =
        store.read_all_with(ReadAll::default().event_type("Tick")).map(|e| e.unwrap().position()).collect();
    assert_eq!(ticks, [3, 4, 8, 9]);
    assert_eq!((store.stream_version("a"), store.stream_version("b")), (Some(6), Some(2)));
    let a = store.stream_state("a").unwrap();
    assert_eq!((a.first_version, a.first_visible, a.last_version, a.deleted), (0, 3, 6, false));
    let b = store.stream_state("b").unwrap();
    assert_eq!((b.first_visible, b.last_version, b.deleted), (3, 2, true));
    assert_eq!(store.next_position(), 10);
}

fn truncate_and_delete(store: &Store) {
    store.truncate_before("a", ExpectedVersion::Exact(6), 3).unwrap();
    store.delete_stream("b", ExpectedVersion::Exact(2)).unwrap();
}

#[test]
fn reads_hide_truncated_and_deleted_events_live_and_after_every_kind_of_reopen() {
    let dir = ScratchDir::new("delete-reads");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    truncate_and_delete(&store);
    assert_hidden(&store);
    store.close().unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert!(
        matches!(store.recovery_report().checkpoint, foldlog::CheckpointUse::Used(10)),
        "{:?}",
        store.recovery_report().checkpoint
    );
    assert_hidden(&store);
    drop(store);

    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(store.recovery_report().checkpoint, foldlog::CheckpointUse::Missing));
    assert_hidden(&store);
    drop(store);

    let ro = Store::open_with(dir.path(), Options::default().read_only(true)).unwrap();
    assert_hidden(&ro);
}

#[test]
fn a_crash_after_the_controls_keeps_them() {
    let dir = ScratchDir::new("delete-crash");
    let store = Store::open_with(dir.path(), Options::default().checkpoint_every_bytes(0)).unwrap();
    sample(&store);
    store.checkpoint().unwrap();
    truncate_and_delete(&store);
    store.abandon();
    let store = Store::open(dir.path()).unwrap();
    assert_hidden(&store);
}

#[test]
fn a_deleted_stream_refuses_appends_truncation_and_a_second_delete() {
    let dir = ScratchDir::new("delete-refuses");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    truncate_and_delete(&store);
    let one = [NewEvent::new("Tick", b"")];
    for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(2), ExpectedVersion::NoStream] {
        let r = store.append("b", expected, &one);
        assert!(matches!(&r, Err(Error::StreamDeleted { stream }) if stream == "b"), "{expected:?}: {r:?}");
    }
    let r = store.truncate_before("b", ExpectedVersion::Any, 3);
    assert!(matches!(r, Err(Error::StreamDeleted { .. })), "{r:?}");
    let r = store.delete_stream("b", ExpectedVersion::Exact(2));
    assert!(matches!(r, Err(Error::StreamDeleted { .. })), "{r:?}");
    // A batch with a deleted stream in it writes nothing, not even its other streams.
    let parts = [
        StreamAppend::new("c", ExpectedVersion::NoStream, &one),
        StreamAppend::new("b", ExpectedVersion::Any, &one),
    ];
    assert!(matches!(store.append_batch(&Batch::new(&parts)), Err(Error::StreamDeleted { .. })));
    assert_eq!((store.next_position(), store.stream_version("c")), (10, None));
    // The truncated stream goes on where it was.
    let more = store.append("a", ExpectedVersion::Exact(6), &one).unwrap();
    assert_eq!((more.positions, more.versions), (10..11, 7..8));
    assert_eq!(versions(&store, "a"), [3, 4, 5, 6, 7]);
}

#[test]
fn expected_versions_and_arguments_are_checked_before_anything_is_written() {
    let dir = ScratchDir::new("delete-expected");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    let wrong = store.truncate_before("a", ExpectedVersion::Exact(5), 3);
    assert!(
        matches!(&wrong, Err(Error::WrongExpectedVersion { stream, actual: Some(6), .. }) if stream == "a"),
        "{wrong:?}"
    );
    let wrong = store.delete_stream("b", ExpectedVersion::NoStream);
    assert!(matches!(wrong, Err(Error::WrongExpectedVersion { actual: Some(2), .. })), "{wrong:?}");
    let absent = store.delete_stream("nobody", ExpectedVersion::Any);
    assert!(matches!(&absent, Err(Error::StreamNotFound { stream }) if stream == "nobody"), "{absent:?}");
    let absent = store.truncate_before("nobody", ExpectedVersion::NoStream, 0);
    assert!(matches!(absent, Err(Error::StreamNotFound { .. })), "{absent:?}");
    let past = store.truncate_before("a", ExpectedVersion::Any, 8);
    assert!(matches!(past, Err(Error::InvalidArgument(_))), "{past:?}");
    let before = store.stats().frame_bytes;
    store.truncate_before("a", ExpectedVersion::Exact(6), 7).unwrap();
    assert_eq!(
        store.stats().frame_bytes,
        before + 32,
        "one 32-byte frame (the stream's id is defined already)"
    );
    assert_eq!(versions(&store, "a"), Vec::<u64>::new(), "truncating before last + 1 hides every event");
    assert!(!store.stream_state("a").unwrap().deleted, "but the stream is not deleted");
    // Truncation only moves forward: a lower point changes nothing.
    store.truncate_before("a", ExpectedVersion::StreamExists, 2).unwrap();
    assert_eq!(store.stream_state("a").unwrap().first_visible, 7);
    ticks(&store, "a", 1);
    assert_eq!(versions(&store, "a"), [7]);
    // Streams named twice in one batch, as events and as a control, are refused.
    let one = [NewEvent::new("Tick", b"")];
    let parts = [StreamAppend::new("b", ExpectedVersion::Any, &one)];
    let controls = [StreamControl::delete("b", ExpectedVersion::Any)];
    let twice = store.append_batch(&Batch::new(&parts).controls(&controls));
    assert!(matches!(twice, Err(Error::InvalidArgument(_))), "{twice:?}");
}

#[test]
fn a_batch_deletes_and_appends_atomically_and_a_failed_check_writes_nothing() {
    let dir = ScratchDir::new("delete-batch");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    let placed = [NewEvent::new("Placed", b"")];
    let order = [StreamAppend::new("order", ExpectedVersion::NoStream, &placed)];
    // The second control's check fails: nothing of the batch is written.
    let controls = [
        StreamControl::delete("b", ExpectedVersion::Exact(2)),
        StreamControl::truncate_before("a", ExpectedVersion::Exact(0), 1),
    ];
    let r = store.append_batch(&Batch::new(&order).controls(&controls));
    assert!(matches!(r, Err(Error::WrongExpectedVersion { .. })), "{r:?}");
    assert_eq!((store.next_position(), store.stream_state("b").unwrap().deleted), (10, false));
    let controls = [
        StreamControl::delete("b", ExpectedVersion::Exact(2)),
        StreamControl::truncate_before("a", ExpectedVersion::Exact(6), 3),
    ];
    let done = store.append_batch(&Batch::new(&order).controls(&controls).consumer("p", 9)).unwrap();
    assert_eq!(done.len(), 1, "one result per appended stream");
    assert_eq!(done[0].positions, 10..11);
    assert_eq!(positions(&store), [3, 4, 8, 9, 10]);
    assert_eq!(store.consumer_position("p"), Some(9));
    store.close().unwrap();
    let report = foldlog::verify::verify_dir(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.events, report.control_frames), (11, 2));
}

#[test]
fn retried_appends_are_still_recognised_after_a_truncation() {
    let dir = ScratchDir::new("delete-retry");
    let store = Store::open(dir.path()).unwrap();
    let events = [NewEvent::new("Tick", b"1").event_id(1), NewEvent::new("Tick", b"2").event_id(2)];
    let first = store.append("a", ExpectedVersion::NoStream, &events).unwrap();
    store.truncate_before("a", ExpectedVersion::Exact(1), 2).unwrap();
    let again = store.append("a", ExpectedVersion::NoStream, &events).unwrap();
    assert!(again.deduplicated);
    assert_eq!((again.positions, again.versions), (first.positions, first.versions));
    store.delete_stream("a", ExpectedVersion::Exact(1)).unwrap();
    let again = store.append("a", ExpectedVersion::NoStream, &events).unwrap();
    assert!(again.deduplicated, "the events were appended, before the deletion");
    // A retried batch with a control is the original only if the control is in force too.
    let three = [NewEvent::new("Tick", b"3").event_id(3)];
    let parts = [StreamAppend::new("c", ExpectedVersion::NoStream, &three)];
    ticks(&store, "d", 2);
    let truncate = [StreamControl::truncate_before("d", ExpectedVersion::Exact(1), 1)];
    let batch = Batch::new(&parts).controls(&truncate);
    let first = store.append_batch(&batch).unwrap();
    let again = store.append_batch(&batch).unwrap();
    assert!(again[0].deduplicated);
    assert_eq!(again[0].positions, first[0].positions);
    let further = [StreamControl::truncate_before("d", ExpectedVersion::Any, 2)];
    let other = store.append_batch(&Batch::new(&parts).controls(&further));
    assert!(matches!(other, Err(Error::DuplicateEventId { id: 3, .. })), "{other:?}");
    assert_eq!(store.stream_state("d").unwrap().first_visible, 1, "nothing of it was written");
}

#[test]
fn backup_and_salvage_carry_the_controls() {
    let dir = ScratchDir::new("delete-copies");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    truncate_and_delete(&store);
    let copies = ScratchDir::new("delete-copies-out");
    let backup = copies.path().join("backup");
    // A backup copies what is durable.
    store.sync().unwrap();
    store.backup_to(&backup).unwrap();
    store.close().unwrap();
    assert_hidden(&Store::open(&backup).unwrap());

    let salvaged = copies.path().join("salvaged");
    let report =
        foldlog::salvage::salvage(dir.path(), &salvaged, &foldlog::salvage::SalvageOptions::default())
            .unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.stream_controls, 2);
    assert_hidden(&Store::open(&salvaged).unwrap());
}

#[test]
fn a_read_only_handle_in_this_process_sees_controls_on_refresh() {
    let dir = ScratchDir::new("delete-follow");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    let ro = Store::open_with(dir.path(), Options::default().read_only(true)).unwrap();
    assert_eq!(versions(&ro, "a").len(), 7);
    // A subscription made before the truncation, still following.
    let mut sub = ro.subscribe(10);
    truncate_and_delete(&store);
    assert_eq!(versions(&ro, "a").len(), 7, "not before a refresh");
    ro.refresh().unwrap();
    assert_hidden(&ro);
    ticks(&store, "a", 1);
    let e = sub.next_event(Duration::from_secs(5)).unwrap().expect("the new event");
    assert_eq!((e.stream_id(), e.stream_version()), ("a", 7));
}

/// The follower process: opens `DELETE_DIR` read-only, says `READY`, refreshes until stream `b` is deleted
/// and prints what its reads return.
#[test]
fn follower_child() {
    let Ok(dir) = std::env::var("DELETE_DIR") else { return };
    let ro = Store::open_with(&dir, Options::default().read_only(true)).expect("reader opens");
    emit("READY");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ro.stream_state("b").is_some_and(|s| s.deleted) {
        assert!(Instant::now() < deadline, "the deletion never arrived");
        ro.wait_for(ro.head(), Duration::from_millis(20));
        ro.refresh().expect("refresh");
    }
    assert_hidden(&ro);
    emit(&format!("SEEN {:?} {:?}", versions(&ro, "a"), positions(&ro)));
}

#[test]
fn a_follower_in_another_process_sees_the_truncation_and_the_deletion() {
    let dir = ScratchDir::new("delete-process");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    store.sync().unwrap();
    let mut child = spawn_retrying(child_command("follower_child").env("DELETE_DIR", dir.path())).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    assert!(lines.any(|l| l == "READY"), "the follower did not start");
    truncate_and_delete(&store);
    let seen = lines.find(|l| l.starts_with("SEEN"));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "follower failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(seen.as_deref(), Some("SEEN [3, 4, 5, 6] [3, 4, 8, 9]"));
}

#[test]
fn a_checkpoint_of_the_layout_before_stream_controls_is_refused_and_rebuilt() {
    let dir = ScratchDir::new("delete-old-checkpoint");
    let store = Store::open(dir.path()).unwrap();
    sample(&store);
    truncate_and_delete(&store);
    store.close().unwrap();
    // What a build before the stream-control section wrote: version 3 (the version is at bytes 8..12).
    let path = dir.path().join("index.ckpt");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    foldlog::testing::fix_checkpoint_header_crc(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.recovery_report().checkpoint,
        foldlog::CheckpointUse::Rebuilt(foldlog::CheckpointRefusal::Version { found: 3 })
    );
    assert_hidden(&store);
}

mod repository {
    use super::*;
    use foldlog::{Repository, RepositoryError, Root, SnapshotPolicy};
    use foldlog_bank::Account;

    fn saved_account(store: &Store, snapshots: bool) -> u64 {
        let repo = if snapshots {
            Repository::<Account>::with_snapshots(store, SnapshotPolicy::every(4))
        } else {
            Repository::<Account>::new(store)
        };
        let mut root = Root::<Account>::new("alice");
        root.execute(|a| a.open("Alice", 100)).unwrap();
        repo.save(&mut root).unwrap();
        for i in 0..5 {
            root.execute(|a| a.deposit(10 + i)).unwrap();
            repo.save(&mut root).unwrap();
        }
        root.version()
    }

    #[test]
    fn a_truncated_aggregate_loads_from_a_snapshot_at_or_after_the_truncation_or_says_why_not() {
        let dir = ScratchDir::new("delete-repo");
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(saved_account(&store, true), 6, "a snapshot at version 4");
        let with = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(4));
        let before = with.get("alice").unwrap();
        store.truncate_before("account-alice", ExpectedVersion::Exact(6), 5).unwrap();
        let after = with.get("alice").unwrap();
        assert_eq!((after.version(), after.load_info().snapshot_version), (6, Some(4)));
        assert_eq!(after.state(), before.state());
        // Without snapshots, or before the snapshot: the events it needs are hidden.
        let without = Repository::<Account>::new(&store);
        for r in [
            without.get("alice").map(|_| ()),
            with.get_at("alice", 3).map(|_| ()),
            with.history("alice", |_, _| {}).map(|_| ()),
        ] {
            assert!(
                matches!(&r, Err(RepositoryError::Truncated { first_visible: 5, stream, .. }) if stream == "account-alice"),
                "{r:?}"
            );
        }
        let as_of = with.get_as_of("alice", 0);
        assert!(matches!(as_of, Err(RepositoryError::Truncated { .. })), "not NotYetAt: {as_of:?}");
        // A truncation past the snapshot leaves nothing to stand in for the hidden events.
        store.truncate_before("account-alice", ExpectedVersion::Exact(6), 6).unwrap();
        assert!(matches!(with.get("alice"), Err(RepositoryError::Truncated { first_visible: 6, .. })));
        // Saving goes on at the next version all the same.
        let mut root = Root::<Account>::new("bob");
        root.execute(|a| a.open("Bob", 5)).unwrap();
        without.save(&mut root).unwrap();
    }

    #[test]
    fn a_deleted_aggregate_is_neither_loaded_nor_saved() {
        let dir = ScratchDir::new("delete-repo-deleted");
        let store = Store::open(dir.path()).unwrap();
        saved_account(&store, false);
        let repo = Repository::<Account>::new(&store);
        let mut root = repo.get("alice").unwrap();
        store.delete_stream("account-alice", ExpectedVersion::Exact(6)).unwrap();
        assert!(matches!(repo.get("alice"), Err(RepositoryError::Deleted { .. })));
        assert!(matches!(repo.get_as_of("alice", i64::MAX), Err(RepositoryError::Deleted { .. })));
        root.execute(|a| a.deposit(1)).unwrap();
        let saved = repo.save(&mut root);
        assert!(matches!(saved, Err(RepositoryError::Store(Error::StreamDeleted { .. }))), "{saved:?}");
        let mut again = Root::<Account>::new("alice");
        again.execute(|a| a.open("Alice", 1)).unwrap();
        assert!(matches!(repo.save(&mut again), Err(RepositoryError::Store(Error::StreamDeleted { .. }))));
    }
}
