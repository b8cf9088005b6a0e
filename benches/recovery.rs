//! Open (recovery) time versus log size: 100,000 and 1,000,000 events (and 10,000,000 with
//! `FOLDLOG_BENCH_LARGE=1`), with a fresh index checkpoint, a stale one (written at half the log), and none;
//! the time to open a log whose last batch was torn by a crash; and the time to close after a reopen and
//! 1,000 appends of one event to as many streams (`close`), which writes a checkpoint.
//!
//! Each size is built once (128-byte payloads, 10,000 streams, batches of 100). Before every measured open
//! the directory is put back in the state under test (checkpoint copied in or removed, torn segment image
//! written back), untimed; the store is dropped after the clock stops.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use foldlog::{Durability, ExpectedVersion, NewEvent, Store};

const CHECKPOINT: &str = "index.ckpt";

fn sizes() -> Vec<usize> {
    let mut v = vec![100_000, 1_000_000];
    if std::env::var_os("FOLDLOG_BENCH_LARGE").is_some_and(|v| v == "1") {
        v.push(10_000_000);
    }
    v
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

/// A built log plus saved copies of its checkpoints and of a torn last segment.
struct Fixture {
    _tmp: tempfile::TempDir,
    log: PathBuf,
    fresh: Vec<u8>,
    stale: Vec<u8>,
    /// The last segment with a torn final batch, and the checkpoint written just before that batch.
    torn_segment: (PathBuf, Vec<u8>),
    before_torn: Vec<u8>,
}

fn build(events: usize) -> Fixture {
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = tmp.path().join("log");
    let store = Store::open_with(&log, common::options(Durability::Never)).expect("open");
    common::fill(&store, events / 2, 10_000, 128, 100);
    store.checkpoint().expect("checkpoint");
    let stale = std::fs::read(log.join(CHECKPOINT)).expect("read checkpoint");
    common::fill(&store, events - events / 2, 10_000, 128, 100);
    store.close().expect("close");
    let before_torn = std::fs::read(log.join(CHECKPOINT)).expect("read checkpoint");

    // A crash image: a batch appended but never synced, its last segment copied while the store is still
    // open (what kill -9 leaves in the page cache), then one byte of the batch flipped so its CRC fails.
    let store = Store::open_with(&log, common::options(Durability::Never)).expect("open");
    let marker = [0xA5u8; 256];
    let batch: Vec<NewEvent<'_>> = (0..20).map(|_| NewEvent::new("Torn", &marker)).collect();
    store.append("torn-stream", ExpectedVersion::Any, &batch).expect("append");
    let seg = last_segment(&log);
    let mut image = std::fs::read(&seg).expect("read segment");
    store.close().expect("close");
    let fresh = std::fs::read(log.join(CHECKPOINT)).expect("read checkpoint");
    let at = image.windows(marker.len()).rposition(|w| w == marker).expect("marker in the image");
    image[at + 100] ^= 0xFF;
    Fixture { _tmp: tmp, log, fresh, stale, torn_segment: (seg, image), before_torn }
}

/// Puts `bytes` back over the start of `path` in place (no truncation: the file keeps its blocks).
fn overwrite(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open segment");
    f.write_all_at(bytes, 0).expect("write segment image");
}

/// Times `iters` opens, each after `prepare` (untimed); the store is dropped untimed.
fn time_opens(log: &Path, iters: u64, mut prepare: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        prepare();
        let started = Instant::now();
        let store = Store::open_with(log, common::options(Durability::Never)).expect("open");
        total += started.elapsed();
        drop(store);
    }
    total
}

fn bench_recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for events in sizes() {
        let f = build(events);
        let put_checkpoint = |bytes: Option<&[u8]>| match bytes {
            Some(b) => std::fs::write(f.log.join(CHECKPOINT), b).expect("write checkpoint"),
            None => {
                let _ = std::fs::remove_file(f.log.join(CHECKPOINT));
            }
        };
        g.throughput(Throughput::Elements(events as u64));
        for (name, ckpt) in [
            ("fresh_checkpoint", Some(&f.fresh[..])),
            ("stale_checkpoint", Some(&f.stale[..])),
            ("no_checkpoint", None),
        ] {
            g.bench_function(BenchmarkId::new(name, events), |b| {
                b.iter_custom(|iters| time_opens(&f.log, iters, || put_checkpoint(ckpt)))
            });
        }
        // Sanity check, not a timing: the torn image really is recovered as a torn tail.
        overwrite(&f.torn_segment.0, &f.torn_segment.1);
        put_checkpoint(Some(&f.before_torn));
        let store = Store::open_with(&f.log, common::options(Durability::Never)).expect("open torn");
        assert!(store.recovery_report().torn_tail.is_some(), "the crash image must have a torn tail");
        drop(store);
        g.bench_function(BenchmarkId::new("torn_tail", events), |b| {
            b.iter_custom(|iters| {
                time_opens(&f.log, iters, || {
                    overwrite(&f.torn_segment.0, &f.torn_segment.1);
                    put_checkpoint(Some(&f.before_torn));
                })
            })
        });
    }
    g.finish();
}

/// Times `iters` closes, each after an untimed open and 1,000 appends of one event to streams spread over the
/// 10,000 (the checkpoint the close writes copies the lists that did not change from the one it opened).
fn time_closes(log: &Path, iters: u64) -> Duration {
    let payload = common::payload(128, 9);
    let names: Vec<String> = (0..1000).map(|i| common::stream_name(i * 7 % 10_000)).collect();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let store = Store::open_with(log, common::options(Durability::Never)).expect("open");
        for name in &names {
            store.append(name, ExpectedVersion::Any, &[NewEvent::new("Renamed", &payload)]).expect("append");
        }
        let started = Instant::now();
        store.close().expect("close");
        total += started.elapsed();
    }
    total
}

fn bench_close(c: &mut Criterion) {
    let mut g = c.benchmark_group("close");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for events in sizes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let log = tmp.path().join("log");
        let store = Store::open_with(&log, common::options(Durability::Never)).expect("open");
        common::fill(&store, events, 10_000, 128, 100);
        store.close().expect("close");
        g.bench_function(BenchmarkId::new("after_1000_appends", events), |b| {
            b.iter_custom(|iters| time_closes(&log, iters))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_recovery, bench_close);
criterion_main!(benches);
