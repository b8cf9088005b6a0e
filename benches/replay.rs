//! Replay: the whole log in global order (every frame CRC- and archive-checked, events borrowed from the
//! map), and every stream one after another through the stream index.
//!
//! Built once: 1,000,000 events of 128 bytes over 10,000 streams with Zipf popularity.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use foldlog::{Durability, ExpectedVersion, NewEvent, Store};

const EVENTS: usize = 1_000_000;
const STREAMS: usize = 10_000;
const PAYLOAD: usize = 128;

fn bench_replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), common::options(Durability::Never)).expect("open");
    let names: Vec<String> = (0..STREAMS).map(common::stream_name).collect();
    let payload = common::payload(PAYLOAD, 5);
    for (i, s) in common::zipf_sequence(EVENTS, STREAMS, 9).into_iter().enumerate() {
        let kind = ["Deposited", "Withdrawn", "Renamed"][i % 3];
        store
            .append(&names[s as usize], ExpectedVersion::Any, &[NewEvent::new(kind, &payload)])
            .expect("append");
    }
    store.sync().expect("sync");
    let live: Vec<&String> = names.iter().filter(|n| store.stream_version(n).is_some()).collect();

    let mut g = c.benchmark_group("replay");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::ElementsAndBytes { elements: EVENTS as u64, bytes: (EVENTS * PAYLOAD) as u64 });
    g.bench_function("global_validated_1M", |b| {
        b.iter(|| {
            let (mut n, mut bytes) = (0u64, 0usize);
            for e in store.read_all(0) {
                bytes += e.expect("event").payload().len();
                n += 1;
            }
            assert_eq!(n, EVENTS as u64, "replay must see every event");
            black_box(bytes)
        })
    });
    g.bench_function("per_stream_all_1M", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for name in &live {
                for e in store.read_stream(name, 0) {
                    bytes += e.expect("event").payload().len();
                }
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
