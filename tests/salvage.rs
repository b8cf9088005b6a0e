//! Salvage (issue 10 part 4): a store with damage in its first, a middle or its last segment, in its index
//! checkpoint or in its snapshots gives up every intact event to a new store, and the report names exactly
//! the positions and streams that were lost.
//!
//! Method: a store with several small segments, streams starting at versions 0, 1 and 7, binary payloads,
//! metadata, event ids, multi-stream batches and consumer positions is written and read back as the
//! reference. One event frame is damaged (a flipped body byte fails its CRC); the expected result is the
//! reference minus that event and, by the prefix rule, every later event of its stream. The new store must
//! hold exactly that, in order, with every field kept, open and verify clean, and the source must be
//! byte-identical afterwards.

use foldlog_testkit::{dir_fingerprint as tree, segment_files};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use foldlog::salvage::{salvage, SalvageOptions, SalvageReport};
use foldlog::{Batch, Corruption, ExpectedVersion, NewEvent, Options, Recovery, Store, StreamAppend};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    position: u64,
    stream: String,
    version: u64,
    ty: String,
    schema: u32,
    ts: i64,
    id: Option<u128>,
    metadata: Vec<u8>,
    payload: Vec<u8>,
}

fn read_all(store: &Store) -> Vec<Ev> {
    store
        .read_all(0)
        .map(|e| {
            let e = e.expect("read");
            Ev {
                position: e.position(),
                stream: e.stream_id().to_owned(),
                version: e.stream_version(),
                ty: e.event_type().to_owned(),
                schema: e.schema_version(),
                ts: e.timestamp_micros(),
                id: e.event_id(),
                metadata: e.metadata().to_vec(),
                payload: e.payload().to_vec(),
            }
        })
        .collect()
}

const STREAMS: [(&str, u64); 4] = [("alpha", 0), ("beta", 1), ("gamma", 7), ("delta-with-a-longer-name", 0)];

/// A closed store of about 240 events over several 4 KiB segments; consumer `proj` advances every 10th
/// batch. Returns the events as read back.
fn build(dir: &Path) -> Vec<Ev> {
    let store = Store::open_with(dir, Options::default().segment_size_bytes(4096)).expect("create");
    let mut seed = 7u64;
    for round in 0..80u64 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let a = (round % 4) as usize;
        let b = (a + 1 + (round / 4 % 3) as usize) % 4;
        let picks: Vec<usize> = if round % 3 == 0 { vec![a, b] } else { vec![a] };
        let payloads: Vec<Vec<u8>> = (0..4)
            .map(|i| (0..(seed >> (i * 8)) % 90 + 1).map(|j| (j as u8) ^ (seed as u8)).collect())
            .collect();
        let metadata = format!("corr-{round}").into_bytes();
        let events: Vec<Vec<NewEvent<'_>>> = picks
            .iter()
            .enumerate()
            .map(|(k, _)| {
                (0..2)
                    .map(|i| {
                        NewEvent::new(if i == 0 { "Opened\u{e9}" } else { "Moved" }, &payloads[k * 2 + i])
                            .metadata(if i == 0 { &metadata } else { &[] })
                            .event_id(
                                (round % 2 == 0).then_some(u128::from(round) << 64 | (k * 2 + i) as u128),
                            )
                            .schema_version((round % 5) as u32)
                    })
                    .collect()
            })
            .collect();
        let appends: Vec<StreamAppend<'_>> = picks
            .iter()
            .zip(&events)
            .map(|(&s, ev)| {
                StreamAppend::new(STREAMS[s].0, ExpectedVersion::Any, ev).first_version(STREAMS[s].1)
            })
            .collect();
        let consumer = (round % 10 == 9).then(|| ("proj", store.next_position().saturating_sub(1)));
        let mut batch = Batch::new(&appends);
        batch.consumer = consumer;
        store.append_batch(&batch).expect("append");
    }
    store.close().expect("close");
    let store = Store::open_with(dir, Options::default().read_only(true)).expect("reopen");
    let events = read_all(&store);
    assert!(store.stats().segments >= 5, "several segments: {}", store.stats().segments);
    events
}

/// (offset, kind, commit) of every frame of a segment file.
fn frames_of(seg: &[u8]) -> Vec<(usize, u8, bool)> {
    let mut out = Vec::new();
    let mut at = 128;
    // docs/format.md, "Frames": the length (before padding) at 4..8; byte 8 holds the kind (bits 0..3)
    // and the COMMIT flag (bit 3); frames start at multiples of 8.
    while at + 16 <= seg.len() {
        let len = u32::from_le_bytes(seg[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        out.push((at, seg[at + 8] & 7, seg[at + 8] & 8 != 0));
        at += len.div_ceil(8) * 8;
    }
    out
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset] ^= 0x55;
    std::fs::write(path, bytes).expect("write");
}

/// Damages the `nth` event frame of segment `seg` (negative: from the end); returns its position and the
/// positions of every event of its batch (a batch is copied whole or not at all).
fn damage_event(dir: &Path, seg: usize, nth: isize) -> (u64, Vec<u64>) {
    let path = &segment_files(dir)[seg];
    let base: u64 = path.file_name().and_then(|n| n.to_str()).expect("name")[..20].parse().expect("base");
    let frames = frames_of(&std::fs::read(path).expect("read"));
    // (offset, position, batch number) of every event frame.
    let mut events = Vec::new();
    let mut batch = 0;
    for (off, kind, commit) in frames {
        if kind == 1 {
            events.push((off, base + events.len() as u64, batch));
        }
        batch += usize::from(commit);
    }
    let i = if nth < 0 { events.len() - nth.unsigned_abs() } else { nth as usize };
    flip(path, events[i].0 + 16 + 3);
    let whole = events.iter().filter(|e| e.2 == events[i].2).map(|e| e.1).collect();
    (events[i].1, whole)
}

/// The reference minus `lost` positions, each stream cut at its first lost version once it has a copied
/// event (a stream whose first events were lost starts at its first surviving version: nothing records
/// where it began).
fn expected(reference: &[Ev], lost: &[u64]) -> Vec<Ev> {
    // Per stream: true once cut; false while copying.
    let mut state: HashMap<&str, bool> = HashMap::new();
    reference
        .iter()
        .filter(|e| {
            let stream = e.stream.as_str();
            let kept = !lost.contains(&e.position) && state.get(stream) != Some(&true);
            match (kept, state.get(stream)) {
                (true, _) => {
                    state.insert(stream, false);
                }
                (false, Some(_)) => {
                    state.insert(stream, true);
                }
                (false, None) => {}
            }
            kept
        })
        .cloned()
        .collect()
}

/// Positions of the reference not in `kept`, as ranges.
fn ranges_missing(reference: &[Ev], kept: &[Ev]) -> Vec<Range<u64>> {
    let kept: std::collections::HashSet<u64> = kept.iter().map(|e| e.position).collect();
    let mut out: Vec<Range<u64>> = Vec::new();
    for e in reference.iter().filter(|e| !kept.contains(&e.position)) {
        match out.last_mut() {
            Some(r) if r.end == e.position => r.end += 1,
            _ => out.push(e.position..e.position + 1),
        }
    }
    out
}

/// Salvages `src` and checks the new store against `want` and the report against the reference.
fn salvage_and_check(src: &Path, reference: &[Ev], want: &[Ev]) -> SalvageReport {
    let before = tree(src);
    let dst = src.with_file_name("salvaged");
    let report = salvage(src, &dst, &SalvageOptions::default()).expect("salvage");
    assert_eq!(tree(src), before, "the source was changed");
    assert!(foldlog::verify::verify_dir(&dst).expect("verify").is_clean(), "the new store verifies clean");
    let store = Store::open(&dst).expect("the new store opens");
    let got = read_all(&store);
    assert_eq!(got.len(), want.len(), "events copied");
    for (new, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.position, new as u64, "positions are dense");
        assert_eq!(report.new_position(w.position), Some(new as u64), "the mapping of {}", w.position);
        assert_eq!(Ev { position: w.position, ..g.clone() }, *w, "every field kept");
    }
    assert_eq!(report.events_copied, want.len() as u64);
    assert_eq!(report.lost, ranges_missing(reference, want), "exactly the lost positions");
    assert_eq!(report.source_end, reference.len() as u64);
    report
}

fn fresh() -> (tempfile::TempDir, PathBuf, Vec<Ev>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let reference = build(&src);
    (tmp, src, reference)
}

#[test]
fn an_intact_store_is_copied_whole_with_the_same_positions() {
    let (_tmp, src, reference) = fresh();
    let report = salvage_and_check(&src, &reference, &reference);
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(report.mapping.len(), 1, "one run: old = new");
    assert!(report.streams_cut.is_empty());
    let store = Store::open(src.with_file_name("salvaged")).expect("open");
    let source = Store::open_with(&src, Options::default().read_only(true)).expect("open");
    assert_eq!(store.consumer_position("proj"), source.consumer_position("proj"));
    assert!(store.consumer_position("proj").is_some());
}

#[test]
fn damage_in_the_first_a_middle_and_the_last_segment() {
    for (which, seg, nth) in
        [("first", 0usize, 1isize), ("middle", usize::MAX, 2), ("last", usize::MAX - 1, 1)]
    {
        let (_tmp, src, reference) = fresh();
        let n = segment_files(&src).len();
        let seg = match seg {
            usize::MAX => n / 2,
            s if s == usize::MAX - 1 => n - 1,
            s => s,
        };
        let (lost, batch) = damage_event(&src, seg, nth);
        // The reason for salvage: the damaged store does not open, even for an operator (or, with the damage
        // under the checkpoint, its reads fail).
        let opened =
            Store::open_with(&src, Options::default().read_only(true).recovery(Recovery::TruncateCorruption));
        if let Ok(store) = opened {
            assert!(store.read_all(0).any(|e| e.is_err()), "{which}: the damaged store reads whole");
        }
        let victim = reference[lost as usize].clone();
        let want = expected(&reference, &batch);
        let report = salvage_and_check(&src, &reference, &want);
        assert!(!report.is_complete(), "{which}");
        assert!(!report.damage.is_empty(), "{which}: the damage is reported");
        let batch_range = batch[0]..batch[batch.len() - 1] + 1;
        assert_eq!(report.lost_to_damage(), vec![batch_range], "{which}: what went with the damage");
        // Every stream that lost an event after one of its events was copied is cut, and named with its
        // first missing version and the intact events left out.
        let kept: std::collections::HashSet<u64> = want.iter().map(|e| e.position).collect();
        let mut cut_streams: Vec<&str> = Vec::new();
        for e in &reference {
            let had_before = want.iter().any(|o| o.stream == e.stream && o.position < e.position);
            if batch.contains(&e.position) && had_before && !cut_streams.contains(&e.stream.as_str()) {
                cut_streams.push(&e.stream);
            }
        }
        cut_streams.sort_unstable();
        let named: Vec<&str> = report.streams_cut.iter().map(|c| c.stream.as_str()).collect();
        assert_eq!(named, cut_streams, "{which}: the streams cut");
        for cut in &report.streams_cut {
            let first = reference
                .iter()
                .find(|e| e.stream == cut.stream && batch.contains(&e.position))
                .expect("a cut stream lost an event");
            assert_eq!(cut.missing_version, first.version, "{which}: the first missing version is named");
            let dropped: Vec<u64> = reference
                .iter()
                .filter(|e| {
                    e.stream == cut.stream && e.position > first.position && !batch.contains(&e.position)
                })
                .map(|e| e.position)
                .collect();
            assert_eq!(cut.dropped_positions, dropped, "{which}: its later events are listed");
            assert!(dropped.iter().all(|p| !kept.contains(p)));
        }
        // Every stream whose first copied event comes after an uncopied position, at a version above 1, is
        // named as possibly having lost its start (gamma starts at 7 by design, so it is named whenever a loss
        // precedes it).
        let mut late: Vec<(String, u64)> = Vec::new();
        for (k, e) in want.iter().enumerate() {
            let first = !want[..k].iter().any(|o| o.stream == e.stream);
            if first && e.position > k as u64 && e.version > 1 {
                late.push((e.stream.clone(), e.version));
            }
        }
        assert_eq!(report.streams_starting_late, late, "{which}");
        assert!(
            want.iter().all(|e| e.position != victim.position),
            "{which}: the damaged event is not copied"
        );
    }
}

#[test]
fn the_last_event_of_the_log_damaged_is_counted_by_the_durable_slot() {
    let (_tmp, src, reference) = fresh();
    let n = segment_files(&src).len();
    let (lost, batch) = damage_event(&src, n - 1, -1);
    assert_eq!(lost, reference.len() as u64 - 1);
    let report = salvage_and_check(&src, &reference, &expected(&reference, &batch));
    assert_eq!(report.lost, vec![batch[0]..lost + 1]);
    assert!(!report.end_uncertain, "the segment's durable slot counts the events up to its end");
}

#[test]
fn a_damaged_checkpoint_or_snapshot_loses_nothing() {
    let (_tmp, src, reference) = fresh();
    let ckpt = src.join("index.ckpt");
    assert!(ckpt.is_file(), "close wrote a checkpoint");
    for offset in [3, 40, 100] {
        flip(&ckpt, offset);
    }
    let snap_dir = src.join("snapshots").join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&snap_dir).expect("mkdir");
    std::fs::write(snap_dir.join("00000000000000000003.snap"), b"FOLDSNP\0 and then garbage").expect("write");
    let report = salvage_and_check(&src, &reference, &reference);
    assert!(report.is_complete(), "{report:#?}");
    assert!(report.snapshots_skipped, "the report says snapshots were not copied");
    let dst = src.with_file_name("salvaged");
    assert!(!dst.join("snapshots").exists(), "snapshots are derived data and not copied");
}

#[test]
fn a_damaged_consumer_frame_leaves_its_previous_position() {
    let (_tmp, src, reference) = fresh();
    let source = Store::open_with(&src, Options::default().read_only(true)).expect("open");
    let latest = source.consumer_position("proj").expect("a consumer");
    drop(source);
    // The last consumer frame of the log.
    let (seg, at) = segment_files(&src)
        .into_iter()
        .flat_map(|p| {
            let frames = frames_of(&std::fs::read(&p).expect("read"));
            frames.into_iter().filter(|f| f.1 == 2).map(move |f| (p.clone(), f.0))
        })
        .last()
        .expect("consumer frames");
    flip(&seg, at + 16 + 2);
    let dst = src.with_file_name("salvaged");
    let report = salvage(&src, &dst, &SalvageOptions::default()).expect("salvage");
    let carried = report.consumers.iter().find(|c| c.name == "proj").expect("carried");
    assert!(carried.old_position < latest, "an earlier intact position: {carried:?} vs {latest}");
    let store = Store::open(&dst).expect("open");
    assert_eq!(store.consumer_position("proj"), carried.new_position);
    // The batch that held the damaged consumer frame lost its events too (a batch is whole or nothing).
    assert!(report.lost_count() >= 1, "{:?}", report.lost);
    let _ = reference;
}

#[test]
fn the_destination_must_be_new_or_empty_and_nothing_else_is_touched() {
    let (tmp, src, reference) = fresh();
    let dst = tmp.path().join("taken");
    std::fs::create_dir(&dst).expect("mkdir");
    std::fs::write(dst.join("notes.txt"), b"mine").expect("write");
    std::fs::write(tmp.path().join("beside.txt"), b"also mine").expect("write");
    let err = salvage(&src, &dst, &SalvageOptions::default()).expect_err("a non-empty destination");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(std::fs::read(dst.join("notes.txt")).expect("kept"), b"mine");
    // An empty directory is fine, and no temporary directory is left beside it.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let report = salvage(&src, &empty, &SalvageOptions::default()).expect("salvage into an empty directory");
    assert_eq!(report.events_copied, reference.len() as u64);
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["beside.txt", "empty", "src", "taken"]);
    // A source with a writer: read beside it, as far as the writer had committed; the source is untouched.
    let live = Store::open(&src).expect("open");
    let report =
        salvage(&src, tmp.path().join("live"), &SalvageOptions::default()).expect("salvage a live store");
    assert_eq!(report.events_copied, reference.len() as u64);
    assert_eq!(
        Store::open(tmp.path().join("live")).expect("copy opens").next_position(),
        live.next_position()
    );
    drop(live);
    // A source that is not a store: an error, and no destination appears.
    let err = salvage(tmp.path().join("taken"), tmp.path().join("new"), &SalvageOptions::default());
    assert!(matches!(err, Err(foldlog::Error::InvalidDirectory { .. })), "{err:?}");
    assert!(!tmp.path().join("new").exists());
}

/// Regression: a store with a small id window legitimately reuses an event id once it forgot it. A new store
/// built with a window of its own refused (or silently merged) the second use, so salvage and import copy
/// with no window, and the new store's first open remembers ids as its own options say.
#[test]
fn event_ids_reused_after_the_window_forgot_them_are_copied_and_imported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let store = Store::open_with(&src, Options::default().event_ids_remembered(2)).expect("create");
    for i in 0..6u8 {
        let payload = [i];
        let event = NewEvent::new("E", &payload).event_id(u128::from(i % 3));
        let a = store.append("s", ExpectedVersion::Any, &[event]).expect("append");
        assert!(!a.deduplicated, "the window of 2 had forgotten id {}", i % 3);
    }
    store.close().expect("close");
    let source = Store::open_with(&src, Options::default().read_only(true)).expect("open");
    let reference = read_all(&source);
    let report = salvage(&src, tmp.path().join("salvaged"), &SalvageOptions::default()).expect("salvage");
    assert!(report.is_complete(), "{report:#?}");
    let records: Vec<Result<(u64, foldlog::import::Record), String>> = source
        .read_all(0)
        .enumerate()
        .map(|(i, e)| Ok((i as u64 + 1, foldlog::import::Record::Event(e.expect("read").to_owned()))))
        .collect();
    foldlog::import::import(tmp.path().join("imported"), records).expect("import");
    for dst in ["salvaged", "imported"] {
        let store = Store::open(tmp.path().join(dst)).expect("open");
        assert_eq!(read_all(&store), reference, "{dst}");
        // The last use of id 2 is remembered again by this open: a retry of it is recognised.
        let retry = NewEvent::new("E", &[5]).event_id(2);
        let a = store.append("s", ExpectedVersion::Any, &[retry]).expect("retry");
        assert!(a.deduplicated, "{dst}: the new store's own id window is built at open");
    }
}

/// A segment of another log put in a store's place (a restore gone wrong) is skipped whole: none of its
/// frames, valid as they are, enters the copy, and the positions it hid are reported lost.
#[test]
fn a_segment_of_another_log_is_not_copied() {
    let (tmp, src, reference) = fresh();
    let other = tmp.path().join("other");
    build(&other);
    let (ours, theirs) = (segment_files(&src), segment_files(&other));
    let i = ours.len() / 2;
    let base = |p: &Path| -> u64 {
        p.file_name().and_then(|n| n.to_str()).expect("name")[..20].parse().expect("base")
    };
    let hidden: Vec<u64> = (base(&ours[i])..base(&ours[i + 1])).collect();
    std::fs::copy(&theirs[i], &ours[i]).expect("put the other log's segment in place");
    let report = salvage_and_check(&src, &reference, &expected(&reference, &hidden));
    assert!(report.damage.iter().any(|d| d.problem == Corruption::ForeignSegment), "{:#?}", report.damage);
}

/// A torn tail (a batch a crash left half-written, never promised durable) is reported, not counted lost.
#[test]
fn a_torn_tail_is_not_a_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let store =
        Store::open_with(&src, Options::default().durability(foldlog::Durability::Never)).expect("create");
    for i in 0..10u8 {
        let payload = [i; 40];
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", &payload)]).expect("append");
    }
    store.abandon(); // as kill -9: nothing synced
    let seg = segment_files(&src).pop().expect("a segment");
    let (last, _, _) = *frames_of(&std::fs::read(&seg).expect("read")).last().expect("frames");
    flip(&seg, last + 20);
    let report = salvage(&src, tmp.path().join("dst"), &SalvageOptions::default()).expect("salvage");
    assert!(report.torn_tail.is_some(), "{report:#?}");
    assert_eq!(report.events_copied, 9);
    assert!(report.is_complete(), "a torn tail was never promised durable: {report:#?}");
}
