//! Append throughput: payload 32 / 128 / 1,024 / 16,384 bytes × batch 1 / 10 / 100 / 1,000 events per call ×
//! durability never / group commit (the default bounds) / every append.
//!
//! One store per benchmark, opened once. Appends go round-robin over 1,000 streams with
//! `ExpectedVersion::Any` (the version-checked path is `benches/streams.rs`). When the log passes 512 MiB the
//! store is dropped and recreated between measurements, untimed, so a run never fills the disk.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use foldlog::{Durability, ExpectedVersion, GroupCommit, NewEvent, Store};

const PAYLOADS: [usize; 4] = [32, 128, 1024, 16_384];
const BATCHES: [usize; 4] = [1, 10, 100, 1000];
const STREAMS: usize = 1000;
const LOG_BYTES_MAX: u64 = 512 << 20;

fn bench_append(c: &mut Criterion) {
    let modes = [
        ("never", Durability::Never),
        ("group", Durability::Group(GroupCommit::default())),
        ("always", Durability::Always),
    ];
    let names: Vec<String> = (0..STREAMS).map(common::stream_name).collect();
    for (mode_name, durability) in modes {
        let mut g = c.benchmark_group(format!("append/{mode_name}"));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_millis(1500));
        for payload_len in PAYLOADS {
            let payload = common::payload(payload_len, 1);
            for batch in BATCHES {
                g.throughput(Throughput::ElementsAndBytes {
                    elements: batch as u64,
                    bytes: (batch * payload_len) as u64,
                });
                let events: Vec<NewEvent<'_>> =
                    (0..batch).map(|_| NewEvent::new("Deposited", &payload)).collect();
                let dir = tempfile::tempdir().expect("temp dir");
                let open =
                    || Store::open_with(dir.path().join("log"), common::options(durability)).expect("open");
                let mut store = Some(open());
                let mut call = 0usize;
                let id = BenchmarkId::new(format!("payload_{payload_len}"), format!("batch_{batch}"));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        if store.as_ref().is_some_and(|s| s.stats().frame_bytes > LOG_BYTES_MAX) {
                            store = None;
                            std::fs::remove_dir_all(dir.path().join("log")).expect("remove log");
                            store = Some(open());
                        }
                        let s = store.as_ref().expect("store");
                        let started = Instant::now();
                        for _ in 0..iters {
                            call += 1;
                            let r = s.append(&names[call % STREAMS], ExpectedVersion::Any, &events);
                            black_box(r.expect("append"));
                        }
                        started.elapsed()
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
