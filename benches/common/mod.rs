//! Helpers shared by the criterion benches: Zipf stream popularity, payloads and filling a store, drawn from
//! the test kit's seeded generator (`foldlog_testkit::Rng`, the one the tests and fuzzers use). Each bench
//! builds its data once per group, in a temporary directory removed on drop.

#![allow(dead_code)] // each bench uses a different subset

use foldlog::{Durability, ExpectedVersion, NewEvent, Options, Store};

use foldlog_testkit::Rng;

/// Stream indexes drawn with Zipf (s = 1) popularity over `streams` streams, precomputed.
pub fn zipf_sequence(len: usize, streams: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let mut cdf = Vec::with_capacity(streams);
    let mut total = 0.0;
    for r in 1..=streams {
        total += 1.0 / r as f64;
        cdf.push(total);
    }
    (0..len)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            cdf.partition_point(|&c| c < u).min(streams - 1) as u32
        })
        .collect()
}

/// `len` bytes, half text and half random, so nothing compresses them away.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|i| if i < len / 2 { b'a' + (i % 26) as u8 } else { rng.next_u64() as u8 }).collect()
}

pub fn stream_name(i: usize) -> String {
    format!("stream-{i:05}")
}

/// Options with only the durability changed.
pub fn options(durability: Durability) -> Options {
    Options::default().durability(durability)
}

/// Appends `events` events of `payload_len` bytes, round-robin over `streams` streams, in batches of
/// `batch` per append call (one stream per call); no sync until the end.
pub fn fill(store: &Store, events: usize, streams: usize, payload_len: usize, batch: usize) {
    let p = payload(payload_len, 7);
    let kinds = ["Deposited", "Withdrawn", "Renamed"];
    let names: Vec<String> = (0..streams).map(stream_name).collect();
    let mut done = 0;
    let mut call = 0usize;
    while done < events {
        let n = batch.min(events - done);
        let list: Vec<NewEvent<'_>> = (0..n).map(|i| NewEvent::new(kinds[(done + i) % 3], &p)).collect();
        store.append(&names[call % streams], ExpectedVersion::Any, &list).expect("append");
        done += n;
        call += 1;
    }
    store.sync().expect("sync");
}
