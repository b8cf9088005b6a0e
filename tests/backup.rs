//! Backup (issue 10 part 4): a copy of a live store, taken while a writer appends, holds exactly the durable
//! prefix at the moment of the backup, never a torn batch, and opens and verifies clean; a backup of a closed
//! store leaves the source byte-identical.
//!
//! Method: a writer thread appends batches of exactly three events (two streams, sometimes a consumer
//! position) into small segments, so it rolls often, while the main thread takes backups. Afterwards each
//! backup is opened and checked event by event against the source, and its event count must be the durable
//! position its report gave, a multiple of three.

use foldlog_testkit::dir_fingerprint as tree;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foldlog::backup::{backup, BackupOptions};
use foldlog::{Batch, Durability, ExpectedVersion, GroupCommit, NewEvent, Options, Store, StreamAppend};

fn append_three(store: &Store, i: u64) {
    let payload = i.to_le_bytes();
    let a = [NewEvent::new("A", &payload), NewEvent::new("A2", &payload)];
    let b = [NewEvent::new("B", &payload).metadata(b"m")];
    let streams = [
        StreamAppend::new("left", ExpectedVersion::Any, &a),
        StreamAppend::new(if i.is_multiple_of(2) { "right" } else { "other" }, ExpectedVersion::Any, &b),
    ];
    let mut batch = Batch::new(&streams);
    batch.consumer = (i % 7 == 3).then_some(("proj", i));
    store.append_batch(&batch).expect("append");
}

/// Checks a backup against the source: same events at the same positions, exactly `durable` of them.
fn check_backup(source: &Store, dst: &Path, durable: u64) {
    let report = foldlog::verify::verify_dir(dst).expect("verify");
    assert!(report.is_clean(), "{} verifies clean: {report:?}", dst.display());
    let copy = Store::open(dst).expect("the backup opens");
    assert_eq!(copy.next_position(), durable, "exactly the durable prefix");
    assert_eq!(durable % 3, 0, "never part of a batch");
    let mut n = 0;
    for (c, s) in copy.read_all(0).zip(source.read_all(0)) {
        let (c, s) = (c.expect("backup read"), s.expect("source read"));
        assert_eq!(c.to_owned(), s.to_owned(), "event {n}");
        n += 1;
    }
    assert_eq!(n, durable);
}

#[test]
fn backups_of_a_live_store_hold_exactly_its_durable_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let options = Options::default().segment_size_bytes(8192).durability(Durability::Group(
        GroupCommit::default().appends_max(50).bytes_max(1 << 20).delay_max(Duration::from_millis(2)),
    ));
    let store = Arc::new(Store::open_with(tmp.path().join("live"), options).expect("create"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) || i < 300 {
                append_three(&store, i);
                i += 1;
            }
            i
        })
    };
    let mut taken = Vec::new();
    for k in 0..6 {
        std::thread::sleep(Duration::from_millis(15));
        let dst = tmp.path().join(format!("backup-{k}"));
        let options = BackupOptions::default().hard_links(k % 2 == 0);
        let before = store.durable_position();
        let report = store.backup_to_with(&dst, &options).expect("backup while the writer appends");
        let after = store.durable_position();
        assert!(
            (before..=after).contains(&report.durable_position),
            "the durable position at the moment of the backup: {before} <= {} <= {after}",
            report.durable_position
        );
        if !options.hard_links {
            assert_eq!(report.linked, 0, "no links when asked for copies");
        }
        taken.push((dst, report));
    }
    stop.store(true, Ordering::Relaxed);
    let batches = writer.join().expect("writer");
    assert!(batches >= 300);
    assert!(taken.iter().any(|(_, r)| r.linked > 0), "sealed segments were hard-linked: {taken:#?}");
    assert!(taken.windows(2).any(|w| w[0].1.durable_position < w[1].1.durable_position), "the log moved on");
    for (dst, report) in &taken {
        check_backup(&store, dst, report.durable_position);
    }
    // The source keeps writing into its active segment and rolling; the backups do not change.
    let before: Vec<_> = taken.iter().map(|(d, _)| tree(d)).collect();
    // Numbered after the writer's last batch: a consumer position only moves forward, and a fast machine
    // writes more than ten thousand batches in the loop above.
    for i in 0..200 {
        append_three(&store, batches + i);
    }
    store.sync().expect("sync");
    for ((dst, report), before) in taken.iter().zip(before) {
        // Opening a backup writes into it (LOCK, checkpoint), so compare the segment files only.
        let segs = |t: BTreeMap<PathBuf, Option<(usize, u64)>>| -> Vec<(PathBuf, Option<(usize, u64)>)> {
            t.into_iter().filter(|(p, _)| p.extension().is_some_and(|x| x == "seg")).collect()
        };
        // Byte for byte: a hard-linked segment the source wrote into again would show here.
        assert_eq!(segs(tree(dst)), segs(before), "{}", dst.display());
        check_backup(&store, dst, report.durable_position);
    }
}

#[test]
fn a_synced_store_is_backed_up_whole_and_the_backup_can_be_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(
        tmp.path().join("live"),
        Options::default().segment_size_bytes(4096).durability(Durability::Never),
    )
    .expect("create");
    for i in 0..100 {
        append_three(&store, i);
    }
    let unsynced = store.backup_to(tmp.path().join("early")).expect("backup");
    assert_eq!(unsynced.durable_position, store.durable_position(), "only what is durable");
    store.sync().expect("sync");
    let report = store.backup_to(tmp.path().join("b")).expect("backup");
    assert_eq!(report.durable_position, 300);
    check_backup(&store, &tmp.path().join("b"), 300);
    check_backup(&store, &tmp.path().join("early"), unsynced.durable_position);
    // A restored backup is a store like any other: it takes appends and does not disturb the source.
    let restored = Store::open(tmp.path().join("b")).expect("open");
    append_three(&restored, 999);
    assert_eq!(restored.next_position(), 303);
    drop(restored);
    assert_eq!(store.next_position(), 300, "the source did not see the backup's append");
    check_backup(&store, &tmp.path().join("early"), unsynced.durable_position);
}

#[test]
fn an_offline_backup_leaves_the_source_byte_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let store = Store::open_with(&src, Options::default().segment_size_bytes(4096)).expect("create");
    for i in 0..60 {
        append_three(&store, i);
    }
    store.close().expect("close");
    std::fs::write(tmp.path().join("beside.txt"), b"mine").expect("write");
    let before = tree(tmp.path());
    let report = backup(&src, tmp.path().join("copy"), &BackupOptions::default()).expect("backup");
    assert_eq!(report.durable_position, 180);
    let mut after = tree(tmp.path());
    after.retain(|p, _| !p.starts_with("copy"));
    assert_eq!(after, before, "the source (and its neighbours) are untouched");
    let source = Store::open_with(&src, Options::default().read_only(true)).expect("open");
    check_backup(&source, &tmp.path().join("copy"), 180);
    // A live store is backed up beside its writer, up to the writer's durable position: a synced append is
    // in the copy, one not yet synced is not.
    drop(source);
    let live =
        Store::open_with(&src, Options::default().segment_size_bytes(4096).durability(Durability::Never))
            .expect("open");
    append_three(&live, 60);
    live.sync().expect("sync");
    append_three(&live, 61);
    let report =
        backup(&src, tmp.path().join("live"), &BackupOptions::default()).expect("backup of a live store");
    assert_eq!(report.durable_position, 183, "the synced append, not the unsynced one");
    check_backup(&live, &tmp.path().join("live"), 183);
    drop(live);
    // The destination must be new or empty.
    let err = backup(&src, tmp.path().join("copy"), &BackupOptions::default()).expect_err("exists");
    assert!(err.to_string().contains("not empty"), "{err}");
}
