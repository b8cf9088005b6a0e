//! Scavenge (issue 14, items 3 and 4): sealed segments rewritten without the events every read hides.
//!
//! Goal: a scavenge changes no read (stream reads both ways, the global log, stream states and versions,
//! consumer positions) in the store, after a reopen, and in a reader iterating while it runs; it removes
//! exactly the hidden events that are not a stream's last, and its dry run says exactly what it does; a
//! scavenge cut short at any I/O call leaves a store that opens, verifies clean and reads the same; it
//! deletes nothing it did not create. Method: real stores in scratch directories with small segments, random
//! workloads (proptest and seeded loops), failpoints on the real system calls.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use foldlog::{
    Batch, ExpectedVersion, NewEvent, Options, OwnedEvent, ReadAll, Retention, RetentionTarget,
    ScavengeOptions, Store, StreamAppend,
};
use foldlog_testkit::Rng;
use proptest::prelude::*;

const STREAMS: [&str; 6] = ["order-1", "order-2", "session-1", "session-2", "audit", "cart-9"];

fn options() -> Options {
    Options::default().segment_size_bytes(4096)
}

/// The kill test spawns processes, and a child holds the parent's open files from its fork to its exec: a
/// store another test of this binary closes in that window stays locked until the exec, and its reopen
/// fails with `Locked`. So the kill test runs alone (it takes this for writing) and the others beside each
/// other (for reading).
static SPAWNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn beside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    SPAWNING.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One stream as a reader sees it: its versions forward and backward, its state (first visible, last,
/// deleted) and its version.
type StreamView = (Vec<u64>, Vec<u64>, Option<(u64, u64, bool)>, Option<u64>);

/// Everything a reader can see: the global log, each stream both ways with its state, and the consumer.
#[derive(Debug, PartialEq)]
struct Visible {
    all: Vec<OwnedEvent>,
    streams: BTreeMap<String, StreamView>,
    consumer: Option<u64>,
    next_position: u64,
}

fn visible(store: &Store) -> Visible {
    let all = store.read_all(0).map(|e| e.expect("read_all").to_owned()).collect();
    let streams = STREAMS
        .iter()
        .map(|&s| {
            let forward = store.read_stream(s, 0).map(|e| e.expect("read").stream_version()).collect();
            let backward =
                store.read_stream_backward(s, None).map(|e| e.expect("read").stream_version()).collect();
            let state = store.stream_state(s).map(|st| (st.first_visible, st.last_version, st.deleted));
            (s.to_owned(), (forward, backward, state, store.stream_version(s)))
        })
        .collect();
    Visible { all, streams, consumer: store.consumer_position("proj"), next_position: store.next_position() }
}

fn stored(store: &Store) -> u64 {
    store.read_all_with(ReadAll::default().include_hidden(true)).count() as u64
}

/// A random workload: appends of one to four events to random streams (sometimes two streams in a batch
/// with a consumer position), truncations, a deletion, retention rules by count.
fn workload(store: &Store, rng: &mut Rng, steps: usize) {
    let mut consumer = 0;
    for step in 0..steps {
        let s = STREAMS[rng.below(STREAMS.len() as u64) as usize];
        match rng.below(20) {
            0 => {
                if let Some(last) = store.stream_version(s) {
                    let before = rng.below(last + 2);
                    let _ = store.truncate_before(s, ExpectedVersion::Any, before);
                }
            }
            1 if step > steps / 2 => {
                let _ = store.delete_stream(s, ExpectedVersion::Any);
            }
            2 => {
                let target =
                    RetentionTarget::Prefix(if rng.chance(1, 2) { "session-" } else { "order-" }.into());
                let rule = Retention::default().max_count(rng.below(6));
                store.set_retention(&target, rule).expect("rule");
            }
            _ => {
                let n = 1 + rng.below(4) as usize;
                let payloads: Vec<Vec<u8>> =
                    (0..n).map(|i| vec![step as u8 ^ i as u8; 20 + rng.below(200) as usize]).collect();
                let tags = ["t"];
                let events: Vec<NewEvent<'_>> =
                    payloads.iter().map(|p| NewEvent::new("E", p).tags(&tags).metadata(b"m")).collect();
                let other = STREAMS[(rng.below(STREAMS.len() as u64 - 1) as usize
                    + 1
                    + STREAMS.iter().position(|x| *x == s).unwrap_or(0))
                    % STREAMS.len()];
                let one = [NewEvent::new("F", b"other")];
                let appends = [
                    StreamAppend::new(s, ExpectedVersion::Any, &events),
                    StreamAppend::new(other, ExpectedVersion::Any, &one),
                ];
                let two = rng.chance(1, 4);
                let mut batch = Batch::new(if two { &appends[..] } else { &appends[..1] });
                consumer += 1;
                if two {
                    batch = batch.consumer("proj", consumer);
                }
                // A deleted stream refuses appends; that is part of the workload.
                let _ = store.append_batch(&batch);
            }
        }
    }
}

fn check_scavenge(seed: u64, steps: usize) {
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("create");
    let mut rng = Rng::new(seed);
    workload(&store, &mut rng, steps);
    let before = visible(&store);
    let stored_before = stored(&store);
    let plan = store.scavenge(ScavengeOptions::default().dry_run(true)).expect("dry run");
    assert!(plan.dry_run);
    assert_eq!(stored(&store), stored_before, "a dry run writes nothing");
    let done = store.scavenge(ScavengeOptions::default()).expect("scavenge");
    assert_eq!(ScavengeOptions::default().dry_run, done.dry_run);
    assert_eq!(
        (&plan.segments, &plan.streams, plan.events_removed, plan.bytes_before, plan.bytes_after),
        (&done.segments, &done.streams, done.events_removed, done.bytes_before, done.bytes_after),
        "seed {seed}: the dry run said exactly what the scavenge did"
    );
    assert_eq!(stored(&store), stored_before - done.events_removed, "seed {seed}");
    assert_eq!(done.streams.iter().map(|s| s.events_removed).sum::<u64>(), done.events_removed);
    assert_eq!(visible(&store), before, "seed {seed}: no read changed");
    // Nothing hidden is left to remove but anchors; a second scavenge removes nothing.
    assert_eq!(store.scavenge(ScavengeOptions::default()).expect("again").events_removed, 0, "seed {seed}");
    // Appends go on at the right versions.
    for s in STREAMS {
        let expected = store.stream_version(s).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let r = store.append(s, expected, &[NewEvent::new("After", b"a")]);
        assert_eq!(r.is_ok(), !store.stream_state(s).is_some_and(|st| st.deleted), "seed {seed} {s}: {r:?}");
    }
    let after = visible(&store);
    drop(store);
    let report = foldlog::verify::verify_dir(dir.path()).expect("verify");
    assert!(report.is_clean(), "seed {seed}: {report:?}");
    assert!(report.removed_positions >= done.events_removed, "seed {seed}: {report:?}");
    let again = Store::open_with(dir.path(), options()).expect("reopen");
    assert_eq!(visible(&again), after, "seed {seed}: after a reopen");
    let used = again.recovery_report().checkpoint;
    assert!(
        matches!(used, foldlog::CheckpointUse::Used(_)),
        "seed {seed}: the checkpoint after a scavenge: {used}"
    );
    // A checkpoint written from one that holds gaps (it copies the lists that did not change).
    again.append("order-2", ExpectedVersion::Any, &[NewEvent::new("Later", b"l")]).ok();
    let after = visible(&again);
    drop(again);
    let third = Store::open_with(dir.path(), options()).expect("reopen");
    let used = third.recovery_report().checkpoint;
    assert!(matches!(used, foldlog::CheckpointUse::Used(_)), "seed {seed}: the next checkpoint: {used}");
    assert_eq!(visible(&third), after, "seed {seed}: after a second reopen");
    drop(third);
    std::fs::remove_file(dir.path().join("index.ckpt")).expect("the checkpoint");
    let rebuilt = Store::open_with(dir.path(), options()).expect("reopen without a checkpoint");
    assert_eq!(visible(&rebuilt), after, "seed {seed}: after a rebuild from the log");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_dry_run_is_exact_and_no_read_changes(seed in any::<u64>(), steps in 20usize..400) {
        check_scavenge(seed, steps);
    }
}

#[test]
fn a_scavenge_on_a_big_workload() {
    check_scavenge(common::seed(7), 3000);
}

/// Half the streams deleted: the space their events took comes back (the figure the issue asks for).
#[test]
fn deleting_half_the_streams_gives_back_about_half_the_bytes() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), Options::default().segment_size_bytes(1 << 20)).expect("create");
    let payload = [7u8; 120];
    for i in 0..20_000u32 {
        let stream = format!("s-{}", i % 200);
        store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("E", &payload)]).expect("append");
    }
    for i in (0..200).step_by(2) {
        store.delete_stream(&format!("s-{i}"), ExpectedVersion::Any).expect("delete");
    }
    let done = store.scavenge(ScavengeOptions::default()).expect("scavenge");
    eprintln!(
        "50 % of streams deleted: {} events removed, frame bytes {} -> {} ({:.2})",
        done.events_removed,
        done.bytes_before,
        done.bytes_after,
        done.bytes_after as f64 / done.bytes_before.max(1) as f64
    );
    // Sealed segments only (the active one is never rewritten), and each deleted stream's last event stays.
    let sealed: u64 = done.segments.iter().map(|s| s.events).sum();
    assert!(done.events_removed + 100 >= sealed / 2, "{} of {sealed}", done.events_removed);
    assert!(done.bytes_after * 100 < done.bytes_before * 60, "{} -> {}", done.bytes_before, done.bytes_after);
    // Segments of thousands of positions, gaps among them: the next checkpoints copy their offset lists (a
    // gap's positions repeat its offset), and a reopen reads every list back without refusing one.
    for i in 0..2_000u32 {
        let stream = format!("s-{}", 1 + 2 * (i % 100));
        store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("E", &payload)]).expect("append");
    }
    store.checkpoint().expect("a checkpoint copying from the last one");
    let expected: Vec<u64> = store.read_all(0).map(|e| e.expect("read").position()).collect();
    drop(store);
    let store = Store::open_with(dir.path(), Options::default().segment_size_bytes(1 << 20)).expect("reopen");
    let got: Vec<u64> = store.read_all(0).map(|e| e.expect("read").position()).collect();
    assert_eq!(got, expected);
    for p in [0, 5_000, 9_999, 15_000] {
        store.read_all(p).next();
    }
    let used = store.recovery_report().checkpoint;
    assert!(matches!(used, foldlog::CheckpointUse::Used(_)), "{used}");
}

/// Regression (found by `readers_and_a_writer_during_scavenges_see_exactly_the_kept_events` in CI): a stream
/// iterator kept its place as an index into the stream's list, and a scavenge between two of its chunks
/// removed the list's hidden prefix and moved every index, so the iterator ended early without an error. Both
/// directions, an iterator stopped after its first chunk (64 events), a scavenge, then the rest.
#[test]
fn a_stream_read_across_a_scavenge_returns_every_kept_event() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("create");
    for _ in 0..300 {
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", &[7; 40])]).expect("append");
    }
    store.truncate_before("s", ExpectedVersion::Any, 100).expect("truncate");
    // Later events seal the segments that hold the hidden prefix, so the scavenge can rewrite them.
    for _ in 0..100 {
        store.append("t", ExpectedVersion::Any, &[NewEvent::new("E", &[7; 40])]).expect("append");
    }
    let mut forward = store.read_stream("s", 0);
    let mut backward = store.read_stream_backward("s", None);
    let mut got_forward: Vec<u64> =
        forward.by_ref().take(64).map(|e| e.expect("read").stream_version()).collect();
    let mut got_backward: Vec<u64> =
        backward.by_ref().take(64).map(|e| e.expect("read").stream_version()).collect();
    let done = store.scavenge(ScavengeOptions::default()).expect("scavenge");
    assert!(done.events_removed >= 50, "the hidden prefix went: {} events removed", done.events_removed);
    got_forward.extend(forward.map(|e| e.expect("read after the scavenge").stream_version()));
    got_backward.extend(backward.map(|e| e.expect("read after the scavenge").stream_version()));
    assert_eq!(got_forward, (100..300).collect::<Vec<_>>());
    assert_eq!(got_backward, (100..300).rev().collect::<Vec<_>>());
}

/// Readers iterating while a scavenge runs, and a writer appending: every read returns what it would have
/// without the scavenge.
#[test]
fn readers_and_a_writer_during_scavenges_see_exactly_the_kept_events() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open_with(dir.path(), options()).expect("create"));
    let mut rng = Rng::new(common::seed(11));
    workload(&store, &mut rng, 600);
    let frozen = visible(&store);
    // An iterator made before any scavenge, drained after several.
    let mut early = store.read_all(0);
    let first = early.next().map(|e| e.expect("read").to_owned());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            let end = frozen.next_position;
            let expected: Vec<OwnedEvent> = frozen.all.clone();
            let streams = frozen.streams.clone();
            std::thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) {
                    let all: Vec<OwnedEvent> = store
                        .read_all_with(ReadAll::default().to_inclusive(end - 1))
                        .map(|e| e.expect("read_all during a scavenge").to_owned())
                        .collect();
                    assert_eq!(all, expected, "round {rounds}");
                    for (s, (forward, ..)) in &streams {
                        let got: Vec<u64> = store
                            .read_stream(s, 0)
                            .map(|e| e.expect("read_stream during a scavenge").stream_version())
                            .take(forward.len())
                            .collect();
                        assert_eq!(&got, forward, "{s}, round {rounds}");
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store
                    .append("fresh", ExpectedVersion::Any, &[NewEvent::new("N", &[1; 100])])
                    .expect("append");
                n += 1;
            }
            n
        })
    };
    let mut removed = 0;
    for round in 0..6 {
        for s in ["order-1", "session-2", "fresh"] {
            if let Some(last) = store.stream_version(s) {
                let _ = store.truncate_before(s, ExpectedVersion::Any, last.saturating_sub(round));
            }
        }
        removed += store.scavenge(ScavengeOptions::default()).expect("scavenge").events_removed;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    let appended = writer.join().expect("writer");
    assert!(removed > 0 && appended > 0, "removed {removed}, appended {appended}");
    // The early iterator reads on through the old maps: the log as it was when it was made.
    let rest: Vec<u64> = early.map(|e| e.expect("early iterator").position()).collect();
    let mut seen = first.map(|e| vec![e.position]).unwrap_or_default();
    seen.extend(rest);
    let expected: Vec<u64> = frozen.all.iter().map(|e| e.position).collect();
    assert_eq!(seen, expected);
}

/// A scavenge that fails at its Nth I/O call (every call from there on failing, as if the process died
/// there), then the handle dropped as a crash drops it: the store reopens, verifies clean, reads the same
/// and holds no stray file; for every N until the scavenge completes.
#[test]
fn a_scavenge_cut_short_at_any_io_call_leaves_the_store_readable() {
    let _beside = beside_others();
    use foldlog::io::{testing, FaultPlan};
    let template = tempfile::tempdir().expect("tempdir");
    let expected = {
        let store = Store::open_with(template.path(), options()).expect("create");
        workload(&store, &mut Rng::new(common::seed(5)), 250);
        store
            .truncate_before("order-1", ExpectedVersion::Any, store.stream_version("order-1").unwrap_or(0))
            .ok();
        let v = visible(&store);
        store.close().expect("close");
        v
    };
    // How many I/O calls a whole scavenge makes (counted, none failed).
    let calls = {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_files(template.path(), dir.path());
        let store = Store::open_with(dir.path(), options()).expect("open the copy");
        let plan = FaultPlan {
            dir: dir.path().to_path_buf(),
            nth: u64::MAX,
            persistent: true,
            errno: libc_eio(),
            ops: None,
        };
        testing::arm(plan);
        let done = store.scavenge(ScavengeOptions::default()).expect("scavenge");
        assert!(done.events_removed > 0 && done.segments.len() > 3, "{done:?}");
        testing::disarm(dir.path()).0
    };
    let mut completed = false;
    for nth in 1..=calls + 1 {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_files(template.path(), dir.path());
        let store = Store::open_with(dir.path(), options()).expect("open the copy");
        testing::arm(FaultPlan {
            dir: dir.path().to_path_buf(),
            nth,
            persistent: true,
            errno: libc_eio(),
            ops: None,
        });
        let r = store.scavenge(ScavengeOptions::default());
        testing::disarm(dir.path());
        if nth % 2 == 0 {
            store.abandon();
        } else {
            // Closed as usual: a handle whose files changed under it must not write a checkpoint of them.
            drop(store);
        }
        let report = foldlog::verify::verify_dir(dir.path()).expect("verify");
        assert!(report.is_clean(), "failing at call {nth}: {report:?}");
        let again = Store::open_with(dir.path(), options()).expect("reopen");
        assert_eq!(visible(&again), expected, "failing at call {nth}");
        drop(again);
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "failing at call {nth}: {stray:?}");
        if r.is_ok() {
            completed = true;
            break;
        }
    }
    assert!(completed, "the scavenge never got through ({calls} calls)");
}

/// `EIO`, the error a failing disk gives.
fn libc_eio() -> i32 {
    5
}

/// Copies the regular files of `from` (a closed store) into `to`.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// Files foldlog did not create survive a scavenge, whatever their names.
#[test]
fn a_scavenge_leaves_foreign_files_alone() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("create");
    workload(&store, &mut Rng::new(common::seed(3)), 400);
    store.truncate_before("audit", ExpectedVersion::Any, store.stream_version("audit").unwrap_or(0)).ok();
    let foreign = ["notes.txt", "00000000000000000000-0000000000.seg.bak", "x.tmp"];
    for f in foreign {
        std::fs::write(dir.path().join(f), b"mine").expect("write");
    }
    let done = store.scavenge(ScavengeOptions::default()).expect("scavenge");
    assert!(done.events_removed > 0);
    drop(store);
    drop(Store::open_with(dir.path(), options()).expect("reopen"));
    for f in foreign {
        assert_eq!(std::fs::read(dir.path().join(f)).expect(f), b"mine", "{f}");
    }
}

/// The child of the kill test: opens the store named by `FOLDLOG_SCAVENGE_DIR`, says so, and scavenges.
#[test]
fn scavenge_child() {
    let Ok(dir) = std::env::var("FOLDLOG_SCAVENGE_DIR") else { return };
    let store = Store::open_with(&dir, options()).expect("child open");
    common::emit("open");
    let t = std::time::Instant::now();
    let done = store.scavenge(ScavengeOptions::default()).expect("child scavenge");
    common::emit(&format!("done {} {}", done.events_removed, t.elapsed().as_micros()));
}

/// kill -9 at random moments of a scavenge in another process: the store opens, verifies clean and reads
/// exactly as before, whatever the moment.
#[test]
fn kill_9_during_a_scavenge_loses_and_breaks_nothing() {
    let _alone = SPAWNING.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    use std::io::{BufRead, BufReader};
    let scratch = tempfile::tempdir().expect("tempdir");
    let template = scratch.path().join("template");
    let expected = {
        let store = Store::open_with(&template, options()).expect("create");
        workload(&store, &mut Rng::new(common::seed(13)), 3000);
        for s in STREAMS {
            let _ = store.truncate_before(s, ExpectedVersion::Any, store.stream_version(s).unwrap_or(0));
        }
        let v = visible(&store);
        store.close().expect("close");
        v
    };
    let exe = common::private_exe(scratch.path());
    let mut rng = Rng::new(common::seed(17));
    let rounds = common::env_u64("FOLDLOG_SCAVENGE_KILLS", 12);
    let (mut killed, mut finished) = (0, 0);
    // Round 0 runs to its end and measures the scavenge; the others are killed somewhere in that span.
    let mut span = 0;
    for round in 0..rounds {
        let dir = scratch.path().join(format!("r{round}"));
        std::fs::create_dir(&dir).expect("mkdir");
        copy_files(&template, &dir);
        let mut child = common::spawn_retrying(
            common::child_command_of(&exe, "scavenge_child").env("FOLDLOG_SCAVENGE_DIR", &dir),
        )
        .expect("spawn");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // The test harness prints its own lines first.
        assert!(
            lines.by_ref().any(|l| l.is_ok_and(|l| l == "open")),
            "round {round}: the child never opened"
        );
        if round > 0 {
            std::thread::sleep(std::time::Duration::from_micros(rng.below(span + span / 5 + 1)));
            child.kill().expect("SIGKILL");
        }
        let _ = child.wait();
        let done = lines.find_map(|l| l.ok().filter(|l| l.starts_with("done")));
        match done {
            Some(line) if round == 0 => {
                span = line.rsplit(' ').next().and_then(|m| m.parse().ok()).unwrap_or(0)
            }
            Some(_) => finished += 1,
            None if round == 0 => panic!("the measuring round did not finish"),
            None => killed += 1,
        }
        let report = foldlog::verify::verify_dir(&dir).expect("verify");
        assert!(report.is_clean(), "round {round}: {report:?}");
        let store = Store::open_with(&dir, options()).expect("reopen");
        assert_eq!(visible(&store), expected, "round {round}");
        drop(store);
        std::fs::remove_dir_all(&dir).expect("the round's copy");
    }
    eprintln!("kill -9 during a scavenge of {span} us: {killed} killed before the end, {finished} finished");
    assert!(killed > 0, "no kill landed inside a scavenge");
}

/// A truncated aggregate loads from its snapshot; a scavenge keeps the event the snapshot was taken at (the
/// load checks the snapshot against it), so it still does, with the same state.
#[test]
fn a_truncated_aggregate_still_loads_from_its_snapshot_after_a_scavenge() {
    let _beside = beside_others();
    use foldlog::{Repository, Root, SnapshotPolicy};
    use foldlog_bank::Account;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("create");
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(8));
    let mut root = Root::<Account>::new("alice");
    root.execute(|a| a.open("Alice", 100)).expect("open");
    repo.save(&mut root).expect("save");
    for i in 0..40 {
        root.execute(|a| a.deposit(10 + i)).expect("deposit");
        repo.save(&mut root).expect("save");
        // Other streams fill segments, so the account's events spread over sealed ones.
        store
            .append(&format!("noise-{}", i % 3), ExpectedVersion::Any, &[NewEvent::new("N", &[0; 300])])
            .expect("noise");
    }
    let before = repo.get("alice").expect("load");
    let snapshot = before.load_info().snapshot_version.expect("a snapshot");
    store.truncate_before("account-alice", ExpectedVersion::Any, snapshot + 1).expect("truncate");
    let done = store.scavenge(ScavengeOptions::default()).expect("scavenge");
    let removed = done.streams.iter().find(|s| s.stream == "account-alice").map_or(0, |s| s.events_removed);
    assert!(removed > 20, "the account's hidden events were removed: {done:?}");
    let after = repo.get("alice").expect("load after the scavenge");
    assert_eq!((after.version(), after.load_info().snapshot_version), (before.version(), Some(snapshot)));
    assert_eq!(after.state(), before.state());
    drop(store);
    let store = Store::open_with(dir.path(), options()).expect("reopen");
    let again =
        Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(8)).get("alice").expect("load");
    assert_eq!(again.state(), before.state());
}

/// A file in the power-loss model: its bytes as of its last sync, and now.
#[derive(Clone, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
}

/// A small model of a POSIX file system for one directory: inodes, and names as of the last directory sync
/// and now (with the directory operations since, in order).
#[derive(Clone, Default)]
struct Fs {
    inodes: Vec<Inode>,
    durable: BTreeMap<String, usize>,
    current: BTreeMap<String, usize>,
    /// Directory operations since the last directory sync: (name, inode or `None` for a removal).
    pending: Vec<(String, Option<usize>)>,
}

impl Fs {
    fn apply(&mut self, e: &foldlog::io::PersistEvent) {
        use foldlog::io::PersistEvent as P;
        let name = |p: &std::path::Path| p.file_name().expect("a file name").to_string_lossy().into_owned();
        match e {
            P::Create(p) => {
                self.inodes.push(Inode::default());
                let ino = self.inodes.len() - 1;
                self.current.insert(name(p), ino);
                self.pending.push((name(p), Some(ino)));
            }
            P::Allocate(p, len) => {
                let ino = self.current[&name(p)];
                let f = &mut self.inodes[ino].current;
                if f.len() < *len as usize {
                    f.resize(*len as usize, 0);
                }
            }
            P::Write(p, off, bytes) => {
                let ino = self.current[&name(p)];
                let f = &mut self.inodes[ino].current;
                let end = *off as usize + bytes.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[*off as usize..end].copy_from_slice(bytes);
            }
            // The scavenge syncs whole files on its own thread, with nothing written meanwhile: a sync covers
            // every write before it.
            P::SyncStart(..) => {}
            P::SyncFile(p) => {
                let ino = self.current[&name(p)];
                self.inodes[ino].durable = self.inodes[ino].current.clone();
            }
            P::SyncDir(_) => {
                self.durable = self.current.clone();
                self.pending.clear();
            }
            P::Rename(from, to) => {
                let ino = self.current.remove(&name(from)).expect("renamed file exists");
                self.current.insert(name(to), ino);
                self.pending.push((name(from), None));
                self.pending.push((name(to), Some(ino)));
            }
            P::Remove(p) => {
                self.current.remove(&name(p));
                self.pending.push((name(p), None));
            }
        }
    }

    /// The files after a power loss: the names as of the last directory sync plus the first `ops` directory
    /// operations since (a journal commits them in order), each file's synced bytes, or its current ones
    /// with `kept`.
    fn image(&self, ops: usize, kept: bool) -> Vec<(String, Vec<u8>)> {
        let mut names = self.durable.clone();
        for (n, ino) in self.pending.iter().take(ops) {
            match ino {
                Some(i) => names.insert(n.clone(), *i),
                None => names.remove(n),
            };
        }
        names
            .into_iter()
            .map(|(n, i)| {
                let f = &self.inodes[i];
                (n, if kept { f.current.clone() } else { f.durable.clone() })
            })
            .collect()
    }
}

/// Power loss at every point of a scavenge: each image the file system model allows (directory operations
/// since the last directory sync lost in a suffix, unsynced bytes lost or kept) opens, verifies clean and
/// reads exactly as before the scavenge.
#[test]
fn power_loss_at_any_point_of_a_scavenge_leaves_the_store_readable() {
    let _beside = beside_others();
    use foldlog::io::testing;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("create");
    workload(&store, &mut Rng::new(common::seed(19)), 400);
    for s in ["order-1", "session-2", "audit"] {
        let _ = store.truncate_before(s, ExpectedVersion::Any, store.stream_version(s).unwrap_or(0));
    }
    store.sync().expect("sync");
    let expected = visible(&store);
    // Everything before the recording counts as durable: the store synced its log, and the model starts from
    // the files as they are.
    let mut fs = Fs::default();
    for e in std::fs::read_dir(dir.path()).expect("list") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            let bytes = std::fs::read(e.path()).expect("read");
            fs.inodes.push(Inode { durable: bytes.clone(), current: bytes });
            let n = e.file_name().to_string_lossy().into_owned();
            fs.durable.insert(n.clone(), fs.inodes.len() - 1);
            fs.current.insert(n, fs.inodes.len() - 1);
        }
    }
    testing::record(dir.path());
    let done = store.scavenge(ScavengeOptions::default()).expect("scavenge");
    let events = testing::take_recording(dir.path());
    store.abandon();
    assert!(done.events_removed > 0 && events.len() > 10, "{done:?}, {} events", events.len());
    let mut seen = std::collections::HashSet::new();
    let mut images = 0;
    for c in 0..=events.len() {
        if c > 0 {
            fs.apply(&events[c - 1]);
        }
        for ops in 0..=fs.pending.len() {
            for kept in [false, true] {
                let files = fs.image(ops, kept);
                if !seen.insert(hash(&files)) {
                    continue;
                }
                images += 1;
                let img = tempfile::tempdir().expect("tempdir");
                for (n, b) in &files {
                    std::fs::write(img.path().join(n), b).expect("write image file");
                }
                let what =
                    format!("crash point {c} of {}, {ops} directory operations, kept {kept}", events.len());
                let report = foldlog::verify::verify_dir(img.path()).expect("verify");
                assert!(report.is_clean(), "{what}: {report:?}");
                let store = Store::open_with(img.path(), options()).expect(&what);
                assert_eq!(visible(&store), expected, "{what}");
            }
        }
    }
    eprintln!(
        "power loss during a scavenge: {} recorded events, {images} distinct images checked",
        events.len()
    );
}

fn hash(files: &[(String, Vec<u8>)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut h);
    h.finish()
}
