//! Golden fixtures: small stores of the current on-disk format, written once and committed under
//! `tests/fixtures/v<FORMAT_VERSION>/`, so that a change of the bytes without a format version bump fails here.
//!
//! Two checks. `fixtures_open_as_recorded` opens each committed store (a copy, so nothing is written to the
//! fixtures) and checks every event, stream, consumer and outcome against the script that wrote it.
//! `fixtures_match_what_this_code_writes` runs the same script with the current code and compares the files
//! byte for byte, with the fields that are random or clock-dependent by nature masked (log id, creation time,
//! event timestamps, and the CRCs over them): an encoder change shows up even when the decoder still reads old
//! bytes.
//!
//! The stores:
//! - `clean`: three segments of 4 KiB, events in three streams with metadata, ids, tags and schema versions,
//!   a consumer made and deleted, a consumer-only batch, a clean close (checkpoint and CLEAN slot);
//! - `torn-tail`: `clean` plus two batches appended without a sync, the second one's frame cut (its CRC does
//!   not match);
//! - `bad-crc-sealed`: `clean` with one byte of a sealed segment's first event changed and no checkpoint;
//! - `stale-checkpoint`: a checkpoint taken after the first 20 events, and 30 more events after it;
//! - `snapshot`: a bank account saved through a repository with a snapshot every 5 events;
//! - `controls` (added to format 3 with the stream-control frame, issue 14): events in three streams, one
//!   truncated, one deleted in a batch that also appends, a clean close.
//!
//! Write them anew (only when the format version changes, on purpose, in the same commit):
//! `FOLDLOG_WRITE_FIXTURES=1 cargo test --release --test fixtures write_fixtures`.
//!
//! The fixtures of earlier format versions stay committed (`tests/fixtures/v2/`): `older_formats_are_refused`
//! proves this code refuses them by name instead of misreading them.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents are written euros_cents: 100_00 is 100.00"
)]

use foldlog_bank as demo_bank;

use std::path::{Path, PathBuf};

use demo_bank::Account;
use foldlog::{
    Batch, CheckpointUse, Durability, Error, ExpectedVersion, NewEvent, Options, Recovery, Repository, Root,
    SnapshotPolicy, Store, StreamAppend, StreamControl, FORMAT_VERSION,
};
use foldlog_testkit::{parse_segment_file_name, segment_files as segments, segment_frames};

const KINDS: [&str; 5] = ["clean", "torn-tail", "bad-crc-sealed", "stale-checkpoint", "snapshot"];
/// The stores of this format: [`KINDS`] (which format 2 had too) and the one with stream-control frames.
const KINDS_NOW: [&str; 6] =
    ["clean", "torn-tail", "bad-crc-sealed", "stale-checkpoint", "snapshot", "controls"];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("v{FORMAT_VERSION}"))
}

fn options() -> Options {
    Options::default().segment_size_bytes(4096).durability(Durability::Always).checkpoint_every_bytes(0)
}

/// One event of the script: stream, type, payload, metadata, id, schema version, tags.
struct Planned {
    stream: String,
    event_type: &'static str,
    payload: Vec<u8>,
    metadata: Vec<u8>,
    id: Option<u128>,
    schema: u32,
    tags: Vec<String>,
}

fn planned(i: u64) -> Planned {
    let stream = ["account-1", "account-2", "a-stream-id-longer-than-eight-bytes"][(i % 3) as usize];
    Planned {
        stream: stream.to_owned(),
        event_type: ["Opened", "Deposited", "Withdrawn"][(i % 3) as usize],
        payload: format!("event {i} payload").into_bytes().repeat(1 + (i % 4) as usize),
        metadata: if i.is_multiple_of(2) { format!("corr-{i}").into_bytes() } else { Vec::new() },
        id: (!i.is_multiple_of(5)).then_some(0xF00D_0000 + u128::from(i)),
        schema: (i % 3) as u32,
        tags: match i % 4 {
            1 => vec![format!("student:{}", i % 5), "course:7".to_owned()],
            3 => vec![format!("student:{}", i % 5)],
            _ => Vec::new(),
        },
    }
}

fn append_planned(store: &Store, from: u64, to: u64) {
    for i in from..to {
        let p = planned(i);
        let tags: Vec<&str> = p.tags.iter().map(String::as_str).collect();
        let e = [NewEvent::new(p.event_type, &p.payload)
            .metadata(&p.metadata)
            .event_id(p.id)
            .schema_version(p.schema)
            .tags(&tags)];
        let first = u64::from(p.stream.ends_with("-2"));
        let s = [StreamAppend::new(&p.stream, ExpectedVersion::Any, &e).first_version(first)];
        // Below 90: the clean store ends with a consumer-only batch at 1000, which the torn tail must not undercut.
        let consumer = (i % 7 == 6 && i < 90).then_some(("projector", i));
        let mut batch = Batch::new(&s);
        batch.consumer = consumer;
        store.append_batch(&batch).expect("append");
    }
}

/// The clean store: 90 events over three 4 KiB segments, then a consumer-only batch.
fn write_clean(dir: &Path) {
    let store = Store::open_with(dir, options()).unwrap();
    append_planned(&store, 0, 90);
    store.reset_consumer("reporter", 5).unwrap();
    assert!(store.delete_consumer("reporter").unwrap());
    store.append_batch(&Batch::new(&[]).consumer("projector", 1000)).unwrap();
    store.close().unwrap();
}

/// The store with stream controls: 39 scripted events, `account-1` truncated before version 4, then
/// `account-2` deleted in a batch that appends the 40th event (to `account-1`), a clean close.
fn write_controls(dir: &Path) {
    let store = Store::open_with(dir, options()).unwrap();
    append_planned(&store, 0, 39);
    store.truncate_before("account-1", ExpectedVersion::Exact(12), 4).unwrap();
    let p = planned(39);
    let e = [NewEvent::new(p.event_type, &p.payload)
        .metadata(&p.metadata)
        .event_id(p.id)
        .schema_version(p.schema)];
    let s = [StreamAppend::new(&p.stream, ExpectedVersion::Exact(12), &e)];
    let delete = [StreamControl::delete("account-2", ExpectedVersion::Exact(13))];
    store.append_batch(&Batch::new(&s).controls(&delete)).unwrap();
    store.close().unwrap();
}

fn write_kind(kind: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    match kind {
        "clean" => write_clean(dir),
        "torn-tail" => {
            write_clean(dir);
            let store = Store::open_with(dir, options().durability(Durability::Never)).unwrap();
            append_planned(&store, 90, 92);
            store.abandon();
            let last = segments(dir).pop().unwrap();
            let mut bytes = std::fs::read(&last).unwrap();
            let &(off, _) = segment_frames(&bytes).last().unwrap();
            bytes[off] ^= 0xFF;
            std::fs::write(&last, bytes).unwrap();
        }
        "bad-crc-sealed" => {
            write_clean(dir);
            std::fs::remove_file(dir.join("index.ckpt")).unwrap();
            let first = &segments(dir)[0];
            let mut bytes = std::fs::read(first).unwrap();
            let (off, len) = segment_frames(&bytes)[0];
            bytes[off + len - 20] ^= 0x01;
            std::fs::write(first, bytes).unwrap();
        }
        "stale-checkpoint" => {
            let store = Store::open_with(dir, options()).unwrap();
            append_planned(&store, 0, 20);
            store.checkpoint().unwrap();
            append_planned(&store, 20, 50);
            store.abandon();
        }
        "snapshot" => {
            let store = Store::open_with(dir, options()).unwrap();
            let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(5));
            let mut root = Root::<Account>::new("alice");
            root.execute(|a| a.open("Alice", 100_00)).unwrap();
            repo.save(&mut root).unwrap();
            for i in 0..11 {
                root.execute(|a| a.deposit(1_00 + i)).unwrap();
                repo.save(&mut root).unwrap();
            }
            store.close().unwrap();
        }
        "controls" => write_controls(dir),
        other => panic!("unknown fixture {other}"),
    }
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

#[test]
fn write_fixtures() {
    if std::env::var_os("FOLDLOG_WRITE_FIXTURES").is_none() {
        return;
    }
    for kind in KINDS_NOW {
        let dir = fixtures_dir().join(kind);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        write_kind(kind, &dir);
    }
}

/// Copies a fixture to a temp dir (so a writable open cannot touch the committed files).
fn copy_fixture(kind: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixtures_dir().join(kind), tmp.path());
    tmp
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every event of `store` against the script: position, stream, version, type, payload, metadata, id, schema.
fn check_events(store: &Store, n: u64) {
    let mut versions: std::collections::HashMap<String, u64> = Default::default();
    let mut count = 0;
    for (i, e) in store.read_all(0).enumerate() {
        let e = e.unwrap();
        let p = planned(i as u64);
        let first = u64::from(p.stream.ends_with("-2"));
        let v = versions.entry(p.stream.clone()).or_insert(first);
        assert_eq!(e.position(), i as u64);
        assert_eq!((e.stream_id(), e.stream_version()), (p.stream.as_str(), *v), "position {i}");
        assert_eq!(e.event_type(), p.event_type);
        assert_eq!(e.payload(), &p.payload[..]);
        assert_eq!(e.metadata(), &p.metadata[..]);
        assert_eq!(e.event_id(), p.id);
        assert_eq!(e.schema_version(), p.schema);
        assert_eq!(e.tags().collect::<Vec<_>>(), p.tags, "position {i}");
        assert!(
            e.timestamp_micros() > 1_700_000_000_000_000,
            "a timestamp from when the fixture was written"
        );
        *v += 1;
        count += 1;
    }
    assert_eq!(count, n);
    for (stream, next) in versions {
        assert_eq!(store.stream_version(&stream), Some(next - 1));
    }
}

#[test]
fn older_formats_are_refused() {
    let v2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2");
    for kind in KINDS {
        let tmp = tempfile::tempdir().unwrap();
        copy_tree(&v2.join(kind), tmp.path());
        for read_only in [true, false] {
            match Store::open_with(tmp.path(), options().read_only(read_only)) {
                Err(Error::UnsupportedVersion { found: 2, supported, .. }) => {
                    assert_eq!(supported, FORMAT_VERSION)
                }
                other => panic!("{kind}, read-only {read_only}: {other:?}"),
            }
        }
        let report = foldlog::verify::verify_dir(tmp.path());
        assert!(matches!(report, Err(Error::UnsupportedVersion { found: 2, .. })), "{kind}: {report:?}");
    }
}

#[test]
fn fixtures_open_as_recorded() {
    let ro = |dir: &Path| Store::open_with(dir, options().read_only(true));

    let clean = copy_fixture("clean");
    let store = ro(clean.path()).unwrap();
    check_events(&store, 90);
    assert_eq!(store.consumer_positions(), [("projector".to_owned(), 1000)], "reporter was deleted");
    assert_eq!(store.recovery_report().checkpoint, CheckpointUse::Used(90));
    assert!(store.recovery_report().clean);
    assert_eq!(store.stats().segments, segments(clean.path()).len());
    assert!(segments(clean.path()).len() >= 3);
    drop(store);
    assert!(foldlog::verify::verify_dir(clean.path()).unwrap().is_clean());

    let torn = copy_fixture("torn-tail");
    let store = Store::open_with(torn.path(), options()).unwrap();
    // Two single-event batches were appended without a sync; the second one's frame is cut.
    check_events(&store, 91);
    assert!(store.recovery_report().torn_tail.is_some(), "the cut batch is a torn tail");
    drop(store);

    let bad = copy_fixture("bad-crc-sealed");
    let first = segments(bad.path())[0].clone();
    for recovery in [Recovery::Strict, Recovery::TruncateCorruption] {
        match Store::open_with(bad.path(), options().recovery(recovery)) {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert_eq!(path, first);
                assert_eq!(offset, 128, "the first frame");
            }
            other => panic!("{other:?}"),
        }
    }

    let stale = copy_fixture("stale-checkpoint");
    let store = ro(stale.path()).unwrap();
    assert_eq!(store.recovery_report().checkpoint, CheckpointUse::Used(20));
    check_events(&store, 50);
    drop(store);

    let snap = copy_fixture("snapshot");
    let store = ro(snap.path()).unwrap();
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(5));
    let alice = repo.get("alice").unwrap();
    assert_eq!(alice.version(), 12);
    assert_eq!(alice.load_info().snapshot_version, Some(10), "loaded from the committed snapshot");
    assert_eq!(alice.load_info().events_folded, 2);
    let full = Repository::<Account>::new(&store).get("alice").unwrap();
    assert_eq!(alice.state(), full.state());
    drop(store);

    let controls = copy_fixture("controls");
    check_controls(&ro(controls.path()).unwrap(), CheckpointUse::Used(40));
    std::fs::remove_file(controls.path().join("index.ckpt")).unwrap();
    check_controls(&ro(controls.path()).unwrap(), CheckpointUse::Missing);
    let report = foldlog::verify::verify_dir(controls.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.events, report.control_frames), (40, 2));
}

/// The `controls` store: the scripted events, less `account-1` below version 4 and all of `account-2`.
fn check_controls(store: &Store, checkpoint: CheckpointUse) {
    assert_eq!(store.recovery_report().checkpoint, checkpoint);
    let hidden = |i: u64| {
        let p = planned(i);
        (p.stream == "account-1" && i / 3 < 4) || p.stream == "account-2"
    };
    let expected: Vec<u64> = (0..40).filter(|&i| !hidden(i)).collect();
    let got: Vec<u64> = store.read_all(0).map(|e| e.unwrap().position()).collect();
    assert_eq!(got, expected);
    let a1: Vec<u64> = store.read_stream("account-1", 0).map(|e| e.unwrap().stream_version()).collect();
    assert_eq!(a1, (4..14).collect::<Vec<_>>());
    assert_eq!(store.read_stream("account-2", 0).count(), 0);
    let a2 = store.stream_state("account-2").unwrap();
    assert_eq!((a2.first_version, a2.last_version, a2.first_visible, a2.deleted), (1, 13, 14, true));
    assert_eq!(store.stream_version("a-stream-id-longer-than-eight-bytes"), Some(12));
    // Each visible event as the script wrote it.
    for e in store.read_all(0) {
        let e = e.unwrap();
        let p = planned(e.position());
        assert_eq!(
            (e.stream_id(), e.event_type(), e.payload()),
            (p.stream.as_str(), p.event_type, &p.payload[..])
        );
    }
}

/// Masks what is random or clock-dependent in a file, by kind: segment headers (log id, creation time, header
/// CRC), event frames (timestamp, frame CRC), checkpoints (log id, CRCs), snapshots (timestamp, CRC).
fn masked(name: &str, mut bytes: Vec<u8>) -> Vec<u8> {
    if parse_segment_file_name(name).is_some() {
        bytes[16..32].fill(0);
        bytes[48..56].fill(0);
        bytes[60..64].fill(0);
        // Walk by the length fields alone (a torn frame's CRC does not match, and it is masked all the same).
        // docs/format.md, "Frames": length at 4..8, kind in the low bits of byte 8, an event's i56 timestamp
        // at 9..16, frames at multiples of 8.
        let mut off = 128;
        while off + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
            if len < 9 || off + len > bytes.len() {
                break;
            }
            if bytes[off + 8] & 7 == 1 && len >= 32 {
                bytes[off + 9..off + 16].fill(0);
            }
            bytes[off..off + 4].fill(0);
            off += len.div_ceil(8) * 8;
        }
    } else if name == "index.ckpt" {
        bytes[16..32].fill(0);
        bytes[64..68].fill(0);
        bytes[76..80].fill(0);
    } else if name.ends_with(".snap") {
        bytes[32..40].fill(0);
        let n = bytes.len();
        bytes[n - 4..].fill(0);
    }
    bytes
}

/// Every file under `dir` by relative path (snapshot directories included), masked.
fn masked_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "LOCK" {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.push((rel, masked(&name, std::fs::read(&path).unwrap())));
        }
    }
    out.sort();
    out
}

#[test]
fn fixtures_match_what_this_code_writes() {
    for kind in KINDS_NOW {
        let fresh = tempfile::tempdir().unwrap();
        write_kind(kind, fresh.path());
        let want = masked_tree(&fixtures_dir().join(kind));
        let got = masked_tree(fresh.path());
        let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want), "{kind}: the files written");
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            let first = g.iter().zip(w).position(|(a, b)| a != b);
            assert!(
                g.len() == w.len() && first.is_none(),
                "{kind}/{name}: bytes differ from the committed fixture (first at {first:?}, lengths {} and {}); \
                 a format change needs a FORMAT_VERSION bump and new fixtures",
                g.len(),
                w.len()
            );
        }
    }
}
