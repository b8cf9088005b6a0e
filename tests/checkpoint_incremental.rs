//! Goal: a close after a few appends writes the checkpoint by copying the lists that did not change (their
//! bytes do not depend on where they sit) and encoding only those that did, and what it writes is exactly
//! what a rebuild of the index from the log would write; damage in a list it copies is never carried on.
//!
//! Method: real stores in temporary directories. A checkpoint written by a close after appends is compared
//! byte for byte with the one written after the index was rebuilt from the log (checkpoint removed, open,
//! close), and the reads of both with the events appended.

use std::path::Path;

use foldlog::{Batch, CheckpointUse, Durability, ExpectedVersion, NewEvent, Options, Store, StreamAppend};

const CHECKPOINT: &str = "index.ckpt";

fn opts() -> Options {
    Options::default().segment_size_bytes(256 << 10).durability(Durability::Never)
}

/// Appends `events` events round-robin over `streams` streams, with two types and 7 tags, in batches of
/// up to 10 streams.
fn fill(store: &Store, from: u64, events: u64, streams: u64) {
    let names: Vec<String> = (0..streams).map(|i| format!("stream-{i:03}")).collect();
    let payloads: Vec<[u8; 8]> = (from..from + events).map(u64::to_le_bytes).collect();
    let tags: Vec<String> = (0..7).map(|t| format!("tag-{t}")).collect();
    let tags: Vec<[&str; 1]> = tags.iter().map(|t| [t.as_str()]).collect();
    let per_batch = streams.min(10) as usize;
    for chunk in payloads.chunks(per_batch).zip((from..).step_by(per_batch)) {
        let (batch, first) = chunk;
        let evs: Vec<Vec<NewEvent<'_>>> = batch
            .iter()
            .zip(first..)
            .map(|(p, i)| {
                let kind = if i % 3 == 0 { "Opened" } else { "Moved" };
                vec![NewEvent::new(kind, p).tags(&tags[(i % 7) as usize])]
            })
            .collect();
        let parts: Vec<StreamAppend<'_>> = evs
            .iter()
            .zip(first..)
            .map(|(e, i)| StreamAppend::new(&names[(i % streams) as usize], ExpectedVersion::Any, e))
            .collect();
        store.append_batch(&Batch::new(&parts)).unwrap();
    }
}

/// Events as (stream, version, payload).
type Reads = Vec<(String, u64, Vec<u8>)>;

/// Every stream's events, stream by stream.
fn by_stream(store: &Store) -> Reads {
    let mut names = store.streams();
    names.sort();
    let mut out = Vec::new();
    for s in names {
        for e in store.read_stream(&s, 0) {
            let e = e.unwrap();
            out.push((s.clone(), e.stream_version(), e.payload().to_vec()));
        }
    }
    out
}

/// The checkpoint the store would write after rebuilding its index from the log, and its reads then; the
/// directory is left with that checkpoint.
fn rebuilt(dir: &Path) -> (Vec<u8>, Reads) {
    std::fs::remove_file(dir.join(CHECKPOINT)).unwrap();
    let store = Store::open_with(dir, opts()).unwrap();
    assert_eq!(store.recovery_report().checkpoint, CheckpointUse::Missing);
    let reads = by_stream(&store);
    store.close().unwrap();
    (std::fs::read(dir.join(CHECKPOINT)).unwrap(), reads)
}

/// Closes after a few appends (to two of 50 streams, and new ones) write what a rebuild writes, over several
/// rounds of reopen and append, each from the checkpoint the one before wrote.
#[test]
fn a_close_after_a_few_appends_writes_what_a_rebuild_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    fill(&store, 0, 30_000, 50);
    store.close().unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().count() > 4, "several segments");
    let mut next = 30_000;
    for round in 0..3u64 {
        let store = Store::open_with(dir.path(), opts()).unwrap();
        assert_eq!(store.recovery_report().checkpoint, CheckpointUse::Used(next));
        // Two old streams (the batch rotates through the first two), then a new one.
        fill(&store, next, 20, 2);
        let e = [NewEvent::new("Opened", b"new")];
        store.append(&format!("new-{round}"), ExpectedVersion::NoStream, &e).unwrap();
        next += 21;
        let reads = by_stream(&store);
        store.close().unwrap();
        let written = std::fs::read(dir.path().join(CHECKPOINT)).unwrap();
        let (want, rebuilt_reads) = rebuilt(dir.path());
        assert_eq!(rebuilt_reads, reads, "round {round}: the reads");
        assert!(written == want, "round {round}: the checkpoint differs from a rebuild's");
    }
}

/// A list damaged on disk in a stream the appends do not touch (so nothing reads it) is found when the close
/// copies it: the index is rebuilt from the log and the checkpoint written is a rebuild's, not one carrying
/// the damage.
#[test]
fn a_damaged_list_is_not_copied_into_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    fill(&store, 0, 30_000, 50);
    store.close().unwrap();
    let path = dir.path().join(CHECKPOINT);
    let mut bytes = std::fs::read(&path).unwrap();
    // The file's last list is the last stream's ("stream-049"); its last byte is a varint difference.
    let n = bytes.len();
    bytes[n - 1] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();

    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(store.recovery_report().checkpoint, CheckpointUse::Used(30_000), "lists are read lazily");
    fill(&store, 30_000, 20, 2);
    store.close().unwrap();
    let written = std::fs::read(&path).unwrap();

    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(store.recovery_report().checkpoint, CheckpointUse::Used(30_020));
    let reads = by_stream(&store);
    assert_eq!(reads.iter().filter(|r| r.0 == "stream-049").count(), 600);
    assert_eq!(store.recovery_report().checkpoint, CheckpointUse::Used(30_020), "no damage found on reading");
    store.close().unwrap();
    let (want, rebuilt_reads) = rebuilt(dir.path());
    assert_eq!(rebuilt_reads, reads);
    assert!(written == want, "the checkpoint written is a rebuild's");
}

/// A store that wrote a checkpoint in the same session (here by `Store::checkpoint`, as the writer does every
/// `checkpoint_every_bytes`) copies the next one's unchanged lists from it: after fresh appends, and after a
/// reopen, where lists saved by the opened checkpoint and lists written since meet, the close writes what a
/// rebuild writes.
#[test]
fn checkpoints_in_one_session_copy_from_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    fill(&store, 0, 30_000, 50);
    store.checkpoint().unwrap();
    fill(&store, 30_000, 20, 2);
    let reads = by_stream(&store);
    store.close().unwrap();
    let written = std::fs::read(dir.path().join(CHECKPOINT)).unwrap();
    let (want, rebuilt_reads) = rebuilt(dir.path());
    assert_eq!(rebuilt_reads, reads);
    assert!(written == want, "after a checkpoint in the same session");

    let store = Store::open_with(dir.path(), opts()).unwrap();
    fill(&store, 30_020, 4_100, 3);
    store.checkpoint().unwrap();
    fill(&store, 34_120, 20, 2);
    store.checkpoint().unwrap();
    fill(&store, 34_140, 7, 7);
    let reads = by_stream(&store);
    store.close().unwrap();
    let written = std::fs::read(dir.path().join(CHECKPOINT)).unwrap();
    let (want, rebuilt_reads) = rebuilt(dir.path());
    assert_eq!(rebuilt_reads, reads);
    assert!(written == want, "after a reopen and two checkpoints");
}
