//! Subscription delivery throughput (issue 13: ≥ 10 M events/s per subscriber from the map, with 1 and with
//! 8 subscribers at once, and ≥ 0.9 × the writer's rate while it appends).
//!
//! `catch_up`: subscribers drain a log of 1,000,000 events of 128 bytes already committed. `live`: one
//! subscriber follows a writer appending 200,000 events in batches of 100 without syncs; the time is until
//! the subscriber has seen the last one, next to the writer alone (`writer_alone`), so the ratio of the two
//! rows is the subscriber's share of the writer's rate.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use foldlog::{Durability, ExpectedVersion, NewEvent, Store};

const EVENTS: u64 = 1_000_000;
const LIVE_EVENTS: u64 = 200_000;
const PAYLOAD: usize = 128;

/// Drains the subscription from 0 until it has seen `total` events; returns the payload bytes (kept alive).
fn drain(store: &Store, total: u64) -> usize {
    let mut sub = store.subscribe(0);
    let mut bytes = 0;
    while sub.position() < total {
        if let Some(e) = sub.next_event(Duration::from_secs(10)).expect("read") {
            bytes += e.payload().len();
        }
    }
    bytes
}

fn append_batches(store: &Store, events: u64, payload: &[u8]) {
    let batch: Vec<NewEvent<'_>> = (0..100).map(|_| NewEvent::new("Deposited", payload)).collect();
    for i in 0..events / 100 {
        store
            .append(&common::stream_name((i % 1000) as usize), ExpectedVersion::Any, &batch)
            .expect("append");
    }
}

fn bench_catch_up(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), common::options(Durability::Never)).expect("open");
    append_batches(&store, EVENTS, &common::payload(PAYLOAD, 5));
    store.sync().expect("sync");
    let mut g = c.benchmark_group("subscribe");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_secs(1));
    for subscribers in [1u64, 8] {
        g.throughput(Throughput::Elements(EVENTS * subscribers));
        g.bench_function(format!("catch_up_1M_x{subscribers}"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    let handles: Vec<_> =
                        (0..subscribers).map(|_| s.spawn(|| drain(&store, EVENTS))).collect();
                    handles.into_iter().map(|h| black_box(h.join().expect("subscriber"))).sum::<usize>()
                })
            });
        });
    }
    g.finish();
}

/// The time `run` takes on each of `iters` new, empty stores (made outside the clock).
fn time_on_fresh_stores(iters: u64, mut run: impl FnMut(&Store)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_with(dir.path(), common::options(Durability::Never)).expect("open");
        let start = Instant::now();
        run(&store);
        total += start.elapsed();
    }
    total
}

fn bench_live(c: &mut Criterion) {
    let payload = common::payload(PAYLOAD, 5);
    let mut g = c.benchmark_group("subscribe");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(LIVE_EVENTS));
    g.bench_function("writer_alone_200k", |b| {
        b.iter_custom(|iters| {
            time_on_fresh_stores(iters, |store| append_batches(store, LIVE_EVENTS, &payload))
        });
    });
    g.bench_function("live_200k_writer_to_subscriber", |b| {
        b.iter_custom(|iters| {
            time_on_fresh_stores(iters, |store| {
                std::thread::scope(|s| {
                    let subscriber = s.spawn(|| drain(store, LIVE_EVENTS));
                    append_batches(store, LIVE_EVENTS, &payload);
                    black_box(subscriber.join().expect("subscriber"));
                });
            })
        });
    });
    g.finish();
}

criterion_group!(benches, bench_catch_up, bench_live);
criterion_main!(benches);
