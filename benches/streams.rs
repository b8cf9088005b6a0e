//! Per-stream work: appends with an expected-version check over 10,000 streams of Zipf popularity, and the
//! latency of reading a 100-event stream forward, backward, and just its first or latest event.
//!
//! The read store is built once: 1,000 streams × 100 events of 128 bytes, interleaved round-robin so each
//! stream's events are spread over the log as they would be in a real one. Reads rotate over the streams.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foldlog::{Durability, ExpectedVersion, NewEvent, Store};

const ZIPF_STREAMS: usize = 10_000;
const LOG_BYTES_MAX: u64 = 512 << 20;

fn bench_expected_version(c: &mut Criterion) {
    let mut g = c.benchmark_group("streams");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: 128 });
    let sequence = common::zipf_sequence(1 << 20, ZIPF_STREAMS, 3);
    let names: Vec<String> = (0..ZIPF_STREAMS).map(common::stream_name).collect();
    let payload = common::payload(128, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let open = || Store::open_with(dir.path().join("log"), common::options(Durability::Never)).expect("open");
    let mut store = Some(open());
    let mut next = vec![0u64; ZIPF_STREAMS];
    let mut i = 0usize;
    g.bench_function("append_expected_version_zipf_10k", |b| {
        b.iter_custom(|iters| {
            if store.as_ref().is_some_and(|s| s.stats().frame_bytes > LOG_BYTES_MAX) {
                store = None;
                std::fs::remove_dir_all(dir.path().join("log")).expect("remove log");
                next.iter_mut().for_each(|v| *v = 0);
                store = Some(open());
            }
            let s = store.as_ref().expect("store");
            let started = Instant::now();
            for _ in 0..iters {
                let stream = sequence[i % sequence.len()] as usize;
                i += 1;
                let expected = match next[stream] {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v - 1),
                };
                let r = s.append(&names[stream], expected, &[NewEvent::new("Deposited", &payload)]);
                black_box(r.expect("append"));
                next[stream] += 1;
            }
            started.elapsed()
        })
    });
    g.finish();
}

fn bench_reads(c: &mut Criterion) {
    const STREAMS: usize = 1000;
    const LEN: usize = 100;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), common::options(Durability::Never)).expect("open");
    common::fill(&store, STREAMS * LEN, STREAMS, 128, 1);
    let names: Vec<String> = (0..STREAMS).map(common::stream_name).collect();

    let mut g = c.benchmark_group("read_stream");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let mut i = 0usize;
    let mut next_name = move || {
        i = (i + 1) % STREAMS;
        i
    };
    g.throughput(Throughput::Elements(LEN as u64));
    g.bench_function(BenchmarkId::new("forward", "100_events"), |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for e in store.read_stream(&names[next_name()], 0) {
                bytes += e.expect("event").payload().len();
            }
            black_box(bytes)
        })
    });
    g.bench_function(BenchmarkId::new("backward", "100_events"), |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for e in store.read_stream_backward(&names[next_name()], None) {
                bytes += e.expect("event").payload().len();
            }
            black_box(bytes)
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("forward", "first_event"), |b| {
        b.iter(|| {
            black_box(store.read_stream(&names[next_name()], 0).next().map(|e| e.expect("event").position()))
        })
    });
    g.bench_function(BenchmarkId::new("backward", "latest_event"), |b| {
        b.iter(|| {
            let latest = store.read_stream_backward(&names[next_name()], None).next();
            black_box(latest.map(|e| e.expect("event").position()))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_expected_version, bench_reads);
criterion_main!(benches);
