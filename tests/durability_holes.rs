//! Issue 9: the durability holes an outside campaign found through the public API, one regression test per
//! item, each named after it, on real files. Every `regression_*` test here fails on 8722bae (run there with
//! the names adapted); the two `item_*` tests check the operator's way out and that large batches still find
//! duplicates, which 8722bae also passed (slowly).

use std::path::{Path, PathBuf};

use foldlog::{
    Batch, Corruption, Durability, Error, ExpectedVersion, FrameFault, NewEvent, Options, Recovery, Store,
    StreamAppend,
};
use foldlog_testkit::{fix_frame_crc, parse_segment_file_name, segment_files, segment_frames};

fn opts(segment: u64, durability: Durability) -> Options {
    Options::default().segment_size_bytes(segment).durability(durability)
}

/// Every file of a directory with its bytes, to prove an open changed nothing.
fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.ends_with("LOCK"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

fn consumer_only(store: &Store, name: &str, position: u64) -> foldlog::Result<()> {
    store.append_batch(&Batch::new(&[]).consumer(name, position)).map(|_| ())
}

fn event(store: &Store, stream: &str, payload: &[u8]) {
    store.append(stream, ExpectedVersion::Any, &[NewEvent::new("E", payload)]).unwrap();
}

/// Rolls twice from segments that hold only consumer frames (each such segment's base equals the next
/// segment's): events until one rolls into segment 1, consumer-only batches until one rolls into segment 2,
/// more until one rolls into segment 3, then events of growing size until one rolls again. Returns the last
/// consumer position.
fn consumer_only_segment_then_roll(store: &Store) -> u64 {
    let rolled = |before: usize| store.stats().segments > before;
    let before = store.stats().segments;
    while !rolled(before) {
        event(store, "a", &[7; 40]);
    }
    let mut p = 0;
    for _ in 0..2 {
        let before = store.stats().segments;
        while !rolled(before) {
            p += 1;
            consumer_only(store, "projector", p).unwrap();
        }
    }
    let before = store.stats().segments;
    let mut big = 0usize;
    while !rolled(before) {
        big += 256;
        event(store, "b", &vec![9; big]);
    }
    p
}

/// Item 1: a roll from a segment that holds only consumer frames created the next segment under the same
/// name (same base) and renamed it over the live one, losing the consumer frames in it.
#[test]
fn regression_1_a_roll_never_replaces_a_live_segment() {
    for durability in [Durability::Always, Durability::Never] {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(4096, durability);
        let store = Store::open_with(dir.path(), o.clone()).unwrap();
        let p = consumer_only_segment_then_roll(&store);
        let (segments, events) = (store.stats().segments, store.next_position());
        store.close().unwrap();
        let files = segment_files(dir.path());
        assert_eq!(files.len(), segments, "{durability:?}: every segment created is still a file");
        let bases: Vec<u64> = files
            .iter()
            .map(|f| parse_segment_file_name(f.file_name().unwrap().to_str().unwrap()).unwrap().base)
            .collect();
        assert!(bases.windows(2).any(|w| w[0] == w[1]), "two segments share a base: {bases:?}");
        let store = Store::open_with(dir.path(), o).unwrap();
        assert_eq!(store.consumer_position("projector"), Some(p), "{durability:?}");
        assert_eq!(store.next_position(), events);
        assert_eq!(store.read_all(0).filter(|e| e.is_ok()).count() as u64, events);
    }
}

/// Item 1, crash variant: a checkpoint taken while the consumer-only segment was last, then a crash (the
/// store abandoned, as a `kill -9` leaves it) after the second roll.
#[test]
fn regression_1_a_checkpoint_taken_on_a_consumer_only_segment_survives_a_crash() {
    for durability in [Durability::Always, Durability::Never] {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(4096, durability).checkpoint_every_bytes(0);
        let store = Store::open_with(dir.path(), o.clone()).unwrap();
        let mut segments = store.stats().segments;
        while store.stats().segments == segments {
            event(&store, "a", &[7; 40]);
        }
        segments = store.stats().segments;
        let mut p = 0;
        while store.stats().segments == segments {
            p += 1;
            consumer_only(&store, "projector", p).unwrap();
        }
        // The new last segment holds consumer frames only: fill it to about 2.5 KiB, checkpoint it, then an
        // event that fits only a new segment rolls from it.
        for _ in 0..36 {
            p += 1;
            consumer_only(&store, "projector", p).unwrap();
        }
        assert_eq!(store.stats().segments, segments + 1, "still in the consumer-only segment");
        store.checkpoint().unwrap();
        event(&store, "b", &[1; 3000]);
        assert_eq!(store.stats().segments, segments + 2, "the event rolled");
        let events = store.next_position();
        store.sync().unwrap();
        store.abandon();
        let store = Store::open_with(dir.path(), o).unwrap();
        assert_eq!(store.next_position(), events, "{durability:?}: every acknowledged event");
        assert_eq!(store.read_all(0).filter(|e| e.is_ok()).count() as u64, events);
        assert_eq!(store.consumer_position("projector"), Some(p));
    }
}

fn sixty_events(dir: &Path) -> Options {
    let o = opts(4096, Durability::Always);
    let store = Store::open_with(dir, o.clone()).unwrap();
    for i in 0..60u32 {
        event(&store, "s", &i.to_le_bytes().repeat(40));
    }
    store.close().unwrap();
    o
}

/// Every way to open must refuse, name a file, and change nothing on disk.
fn assert_refused_and_untouched(dir: &Path, o: &Options, what: &str) {
    let before = snapshot_dir(dir);
    for read_only in [false, true] {
        match Store::open_with(dir, o.clone().read_only(read_only)) {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("{what} (read-only {read_only}): {other:?}"),
        }
    }
    assert_eq!(snapshot_dir(dir), before, "{what}: open changed files (evidence destroyed)");
}

/// Item 2: a truncated or deleted last segment opened as a silently shorter log, and the open removed the
/// truncated file and the checkpoint that proved more events durable.
#[test]
fn regression_2_a_lost_last_segment_is_corruption_not_a_cut() {
    for damage in ["truncate to 40 bytes", "delete", "delete, and the checkpoint too"] {
        let dir = tempfile::tempdir().unwrap();
        let o = sixty_events(dir.path());
        let files = segment_files(dir.path());
        assert!(files.len() >= 3, "several segments");
        let last = files.last().unwrap();
        match damage {
            "truncate to 40 bytes" => {
                std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(40).unwrap()
            }
            "delete" => std::fs::remove_file(last).unwrap(),
            _ => {
                std::fs::remove_file(last).unwrap();
                std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
            }
        }
        assert_refused_and_untouched(dir.path(), &o, damage);
    }
}

/// Item 2, one segment: deleting the only segment made open start an empty log over the checkpoint.
#[test]
fn regression_2_a_lost_only_segment_does_not_start_a_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, Durability::Always);
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    event(&store, "s", b"one");
    store.close().unwrap();
    std::fs::remove_file(&segment_files(dir.path())[0]).unwrap();
    assert_refused_and_untouched(dir.path(), &o, "the only segment deleted");
    assert!(segment_files(dir.path()).is_empty(), "no new log was started");
}

/// Item 2, the operator's way out: `TruncateCorruption` accepts a lost last segment, says so, and the log
/// goes on (the next roll reuses the lost segment's number, which no file has).
#[test]
fn item_2_truncate_corruption_accepts_a_lost_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let o = sixty_events(dir.path());
    let files = segment_files(dir.path());
    std::fs::remove_file(files.last().unwrap()).unwrap();
    let o = o.recovery(Recovery::TruncateCorruption);
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    let kept = store.next_position();
    assert!(kept < 60 && kept > 0, "{kept}");
    for _ in 0..30 {
        event(&store, "s", &[3; 100]);
    }
    store.close().unwrap();
    let store = Store::open_with(dir.path(), o.recovery(Recovery::Strict)).unwrap();
    assert_eq!(store.next_position(), kept + 30);
}

/// A segment's frames as (offset, length) and its bytes.
fn frames_of(path: &Path) -> (Vec<u8>, Vec<(usize, usize)>) {
    let bytes = std::fs::read(path).unwrap();
    let frames = segment_frames(&bytes);
    (bytes, frames)
}

/// Items 3 and 4 share a log: a sealed segment whose last frame is a consumer-only batch.
fn sealed_segment_ending_in_a_consumer_frame(dir: &Path) -> (Options, PathBuf, u64) {
    let o = opts(4096, Durability::Always).checkpoint_every_bytes(0);
    let store = Store::open_with(dir, o.clone()).unwrap();
    let mut p = 0;
    while store.stats().segments < 3 {
        event(&store, "s", &[5; 64]);
        p += 1;
        consumer_only(&store, "projector", p).unwrap();
    }
    store.abandon();
    // No checkpoint: open must walk the sealed segments itself.
    let _ = std::fs::remove_file(dir.join("index.ckpt"));
    let sealed = segment_files(dir)[0].clone();
    let (_, frames) = frames_of(&sealed);
    let store = Store::open_with(dir, o.clone()).unwrap();
    let p_all = store.consumer_position("projector").unwrap();
    drop(store);
    // The clean close wrote a checkpoint, which would cover the sealed segments (their frames are then
    // checked when read, not at open).
    std::fs::remove_file(dir.join("index.ckpt")).unwrap();
    assert!(!frames.is_empty());
    (o, sealed, p_all)
}

/// Item 3: a zeroed length byte in the last frame of a sealed segment ended it early, and the consumer
/// position went back, because the walk was never compared with the segment's durable end.
#[test]
fn regression_3_a_zeroed_length_ends_a_sealed_segment_early_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (o, sealed, _) = sealed_segment_ending_in_a_consumer_frame(dir.path());
    let (mut bytes, frames) = frames_of(&sealed);
    let &(last, _) = frames.last().unwrap();
    bytes[last + 4..last + 8].fill(0);
    std::fs::write(&sealed, &bytes).unwrap();
    match Store::open_with(dir.path(), o) {
        Err(Error::Corrupt { path, kind, .. }) => {
            assert_eq!(path, sealed);
            assert!(matches!(kind, Corruption::SealedEnd { .. }), "{kind}");
        }
        other => panic!("{other:?}"),
    }
}

/// Item 4: one flipped bit in never-written space (preallocated zeros past a sealed segment's end) refused
/// the whole store.
#[test]
fn regression_4_a_bit_past_a_sealed_segments_end_is_not_the_logs_business() {
    let dir = tempfile::tempdir().unwrap();
    let (o, sealed, p) = sealed_segment_ending_in_a_consumer_frame(dir.path());
    let (mut bytes, frames) = frames_of(&sealed);
    let &(last, len) = frames.last().unwrap();
    let end = last + len;
    assert!(bytes[end..].iter().all(|&b| b == 0), "nothing past the end yet");
    bytes[end + 5] ^= 0x10;
    std::fs::write(&sealed, &bytes).unwrap();
    for read_only in [false, true] {
        let store = Store::open_with(dir.path(), o.clone().read_only(read_only)).unwrap();
        assert!(store.read_all(0).all(|e| e.is_ok()), "read_all reads past nothing it should not");
        assert_eq!(store.consumer_position("projector"), Some(p));
    }
}

/// Item 5: versions near `u64::MAX` were accepted; the append panicked after its events were synced and the
/// store never opened again (or, without overflow checks, versions wrapped to 0 on disk).
#[test]
fn regression_5_versions_near_the_limit_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, Durability::Always);
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    event(&store, "before", b"x");
    let e = [NewEvent::new("E", b"1"), NewEvent::new("E", b"2")];
    let max = foldlog::STREAM_VERSION_MAX;
    let cases: [(&str, u64, &[NewEvent<'_>]); 4] = [
        ("u64::MAX", u64::MAX, &e[..1]),
        ("MAX-1 with two", u64::MAX - 1, &e),
        ("limit+1", max + 1, &e[..1]),
        ("limit with two", max, &e),
    ];
    for (what, first_version, events) in cases {
        let s = StreamAppend::new("edge", ExpectedVersion::NoStream, events).first_version(first_version);
        let r = store.append_batch(&Batch::new(&[s]));
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: {r:?}");
        assert_eq!(store.next_position(), 1, "{what}: nothing written");
    }
    // The largest version itself is fine; the stream is then full.
    let s = StreamAppend::new("edge", ExpectedVersion::NoStream, &e[..1]).first_version(max);
    store.append_batch(&Batch::new(&[s])).unwrap();
    assert_eq!(store.stream_version("edge"), Some(max));
    let r = store.append("edge", ExpectedVersion::Any, &e[..1]);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "past the limit: {r:?}");
    store.close().unwrap();
    let store = Store::open_with(dir.path(), o).unwrap();
    assert_eq!(store.stream_version("edge"), Some(max));
    assert_eq!(store.read_stream("edge", 0).count(), 1);
}

/// Item 5, on disk: a version past the limit in a frame (CRC recomputed, as a forger would) is corruption at
/// open, never a panic.
#[test]
fn regression_5_a_version_past_the_limit_on_disk_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, Durability::Always);
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    let e = [NewEvent::new("E", b"1")];
    let max = foldlog::STREAM_VERSION_MAX;
    let s = StreamAppend::new("edge", ExpectedVersion::NoStream, &e).first_version(max);
    store.append_batch(&Batch::new(&[s])).unwrap();
    store.close().unwrap();
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let seg = &segment_files(dir.path())[0];
    let (mut bytes, frames) = frames_of(seg);
    // Frames: the stream's name (its base version at bytes 16..24), the type's name, the event (its version
    // as a u32 delta above the base at bytes 24..28).
    let ((def, _), (event, _)) = (frames[0], frames[2]);
    assert_eq!(u64::from_le_bytes(bytes[def + 16..def + 24].try_into().unwrap()), max);
    for delta in [1u32, u32::MAX] {
        bytes[event + 24..event + 28].copy_from_slice(&delta.to_le_bytes());
        assert!(fix_frame_crc(&mut bytes, event));
        std::fs::write(seg, &bytes).unwrap();
        match Store::open_with(dir.path(), o.clone()) {
            Err(Error::Corrupt { kind, .. }) => assert!(
                matches!(kind, Corruption::Frame { fault: FrameFault::VersionPastMax { .. }, .. }),
                "{kind}"
            ),
            other => panic!("delta {delta}: {other:?}"),
        }
    }
    // A base version past the limit in the stream's definition: the definition itself is refused (the walk
    // meets it before the event that refers to it).
    bytes[event + 24..event + 28].copy_from_slice(&0u32.to_le_bytes());
    assert!(fix_frame_crc(&mut bytes, event));
    for forged in [max + 1, u64::MAX] {
        bytes[def + 16..def + 24].copy_from_slice(&forged.to_le_bytes());
        assert!(fix_frame_crc(&mut bytes, def));
        std::fs::write(seg, &bytes).unwrap();
        match Store::open_with(dir.path(), o.clone()) {
            Err(Error::Corrupt { kind, offset, .. }) => assert!(
                offset == def as u64 && matches!(kind, Corruption::Frame { fault: FrameFault::Body, .. }),
                "{kind} at {offset}"
            ),
            other => panic!("base {forged}: {other:?}"),
        }
    }
}

/// Item 6: `read_stream_backward(s, Some(u64::MAX))` overflowed (or returned nothing).
#[test]
fn regression_6_read_backward_from_u64_max_reads_the_whole_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts(1 << 20, Durability::Never)).unwrap();
    for i in 0..5u8 {
        event(&store, "s", &[i]);
    }
    let back: Vec<u64> =
        store.read_stream_backward("s", Some(u64::MAX)).map(|e| e.unwrap().stream_version()).collect();
    assert_eq!(back, [4, 3, 2, 1, 0]);
}

/// Item 7: reopened with bigger segments, a batch that fits a new segment was refused as too large, because
/// the empty last segment kept its old small capacity.
#[test]
fn regression_7_reopened_with_bigger_segments_a_fitting_batch_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    Store::open_with(dir.path(), opts(8192, Durability::Never)).unwrap().close().unwrap();
    let store = Store::open_with(dir.path(), opts(1 << 20, Durability::Never)).unwrap();
    let big = vec![1u8; 10_000];
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", &big)]).unwrap();
    store.close().unwrap();
    let store = Store::open_with(dir.path(), opts(1 << 20, Durability::Never)).unwrap();
    assert_eq!(store.read_stream("s", 0).next().unwrap().unwrap().payload(), &big[..]);
}

/// Item 10: a retried batch that carries a consumer position was never recognised as a retry
/// (`DuplicateEventId`, as for a real collision), so an exactly-once projection could not tell them apart.
#[test]
fn regression_10_a_retried_batch_with_a_consumer_position_is_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts(1 << 20, Durability::Never)).unwrap();
    let events = [NewEvent::new("E", b"a").event_id(1)];
    let s = [StreamAppend::new("s", ExpectedVersion::Any, &events)];
    let batch = Batch::new(&s).consumer("projector", 7);
    let first = store.append_batch(&batch).unwrap();
    assert!(!first[0].deduplicated);
    let again = store.append_batch(&batch).unwrap();
    assert!(again[0].deduplicated, "a retry");
    assert_eq!(
        (again[0].positions.clone(), again[0].versions.clone()),
        (first[0].positions.clone(), first[0].versions.clone())
    );
    assert_eq!(store.next_position(), 1);
    // The same id with a consumer position the original batch did not set is a collision.
    let other = Batch::new(&s).consumer("projector", 8);
    assert!(matches!(store.append_batch(&other), Err(Error::DuplicateEventId { .. })));
}

/// Item 10: validation compared every id and stream with every other (100,000 ids took seconds). Large
/// batches now go through a hash set; this checks that duplicates are still found anywhere in them (the
/// speed is in `benches/append.rs`).
#[test]
fn item_10_large_batches_still_find_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts(64 << 20, Durability::Never)).unwrap();
    let n = 100_000u128;
    let mut events: Vec<NewEvent<'_>> = (0..n).map(|i| NewEvent::new("E", b"").event_id(i)).collect();
    events.last_mut().unwrap().event_id = Some(n / 2);
    let s = [StreamAppend::new("s", ExpectedVersion::Any, &events)];
    let r = store.append_batch(&Batch::new(&s));
    assert!(matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("appears twice")), "{r:?}");
    events.last_mut().unwrap().event_id = Some(n);
    let s = [StreamAppend::new("s", ExpectedVersion::Any, &events)];
    store.append_batch(&Batch::new(&s)).unwrap();
    assert_eq!(store.next_position(), n as u64);
    let names: Vec<String> = (0..20_000).map(|i| format!("s{i}")).chain(["s7".to_owned()]).collect();
    let one = [NewEvent::new("E", b"")];
    let streams: Vec<StreamAppend<'_>> =
        names.iter().map(|n| StreamAppend::new(n, ExpectedVersion::Any, &one)).collect();
    let r = store.append_batch(&Batch::new(&streams));
    assert!(matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("\"s7\" appears twice")), "{r:?}");
}

/// Item 10: a consumer frame copied over another frame (a misdirected write) was accepted, though
/// docs/durability.md says misdirected writes are detected. Since format 3 every frame's CRC covers the
/// segment number and offset it was written at, so the copy fails its check.
#[test]
fn regression_10_a_misdirected_consumer_frame_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, Durability::Always).checkpoint_every_bytes(0);
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    event(&store, "s", b"x");
    for p in 1..=3 {
        consumer_only(&store, "projector", p).unwrap();
    }
    store.abandon();
    let _ = std::fs::remove_file(dir.path().join("index.ckpt"));
    let seg = &segment_files(dir.path())[0];
    let (mut bytes, frames) = frames_of(seg);
    // Frames: the stream's and the type's names, the event, the consumer's name, three consumer frames.
    let (a, len_a) = frames[4];
    let (c, len_c) = frames[6];
    assert_eq!(len_a, len_c, "consumer frames of one name have one length");
    assert!([a, c].iter().all(|&f| bytes[f + 8] & 7 == 2), "two consumer frames");
    // The frame that set position 1 copied over the one that set 3: without the check, the consumer would
    // silently go back to 1.
    let copy = bytes[a..a + len_a].to_vec();
    bytes[c..c + len_c].copy_from_slice(&copy);
    std::fs::write(seg, &bytes).unwrap();
    match Store::open_with(dir.path(), o) {
        Err(Error::Corrupt { kind, .. }) => {
            assert!(matches!(kind, Corruption::Frame { fault: FrameFault::Checksum, .. }), "{kind}")
        }
        other => panic!("{other:?}"),
    }
}

/// Item 8 (verify) meets items 2 and 10: `verify_dir` walks every frame of every segment without opening the
/// store, and reports what open refuses: a lost last segment (the SEALED slot of the one before), a gap in the
/// segment numbers, and a misdirected consumer frame.
#[test]
fn verify_reports_lost_segments_and_misdirected_consumer_frames() {
    let problems = |dir: &Path| -> Vec<Corruption> {
        let report = foldlog::verify::verify_dir(dir).unwrap();
        assert!(!report.is_clean(), "{report:?}");
        report.damage.iter().map(|d| d.problem.clone()).collect()
    };
    let dir = tempfile::tempdir().unwrap();
    sixty_events(dir.path());
    let files = segment_files(dir.path());
    std::fs::remove_file(files.last().unwrap()).unwrap();
    let p = problems(dir.path());
    assert!(p.iter().any(|p| matches!(p, Corruption::SuccessorMissing { .. })), "{p:?}");

    let dir = tempfile::tempdir().unwrap();
    sixty_events(dir.path());
    std::fs::remove_file(&segment_files(dir.path())[1]).unwrap();
    let p = problems(dir.path());
    assert!(p.iter().any(|p| matches!(p, Corruption::SegmentNumber { found: 2, expected: 1 })), "{p:?}");

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts(1 << 20, Durability::Always)).unwrap();
    event(&store, "s", b"x");
    for p in 1..=3 {
        consumer_only(&store, "projector", p).unwrap();
    }
    store.close().unwrap();
    let seg = &segment_files(dir.path())[0];
    let (mut bytes, frames) = frames_of(seg);
    let ((a, len), (c, _)) = (frames[4], frames[6]);
    let copy = bytes[a..a + len].to_vec();
    bytes[c..c + len].copy_from_slice(&copy);
    std::fs::write(seg, &bytes).unwrap();
    let p = problems(dir.path());
    assert!(p.iter().any(|p| matches!(p, Corruption::Frame { fault: FrameFault::Checksum, .. })), "{p:?}");
}
