//! Sync-every-append latency deep into a segment (issue 12, item 3): p50 and p99 of one 120-byte append
//! with `Durability::Always` after the active segment was filled to 1, 16 and 48 MiB **by the same process**
//! (sequential writes leave large page-cache folios behind), against `write()` + `fdatasync` of one frame at
//! the same depth of a plain file. Not a criterion bench: the quantity is a tail latency at a file offset.
//! Run with `cargo bench --bench sync_depth`; `SYNC_DEPTH_DIR` picks the directory (default: a temp dir under
//! the current one, so the disk is the one being measured, not tmpfs), `SYNC_DEPTH_APPENDS` the samples
//! (default 2,000).

use std::io::Write;
use std::time::Instant;

use foldlog::{Durability, ExpectedVersion, NewEvent, Options, Store};

fn percentile(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1))).copied().unwrap_or(0.0)
}

fn micros(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

fn main() {
    let parent = std::env::var_os("SYNC_DEPTH_DIR").map_or_else(|| std::path::PathBuf::from("."), Into::into);
    let appends: usize =
        std::env::var("SYNC_DEPTH_APPENDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let payload = [7u8; 120];
    println!("depth   foldlog p50  p99 (µs)   write+fdatasync p50  p99 (µs)   ratio p50  p99");
    for depth_mib in [1u64, 16, 48] {
        let scratch = tempfile::tempdir_in(&parent).expect("scratch directory");
        let store =
            Store::open_with(scratch.path().join("store"), Options::default().durability(Durability::Always))
                .expect("open");
        // Fill to the depth in batches of 1,000 (one sync each), in this process.
        let batch = vec![NewEvent::new("E", &payload); 1000];
        for i in 0..depth_mib * 1024 * 1024 / 152 / 1000 {
            store.append(&format!("s{}", i % 100), ExpectedVersion::Any, &batch).expect("fill");
        }
        let mut ours: Vec<f64> = (0..appends)
            .map(|i| {
                let t = Instant::now();
                store.append(&format!("s{}", i % 100), ExpectedVersion::Any, &batch[..1]).expect("append");
                micros(t)
            })
            .collect();
        drop(store);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch.path().join("raw"))
            .expect("raw file");
        let mib = vec![1u8; 1 << 20];
        for _ in 0..depth_mib {
            file.write_all(&mib).expect("fill raw");
        }
        file.sync_data().expect("sync raw");
        let frame = [3u8; 152];
        let mut raw: Vec<f64> = (0..appends)
            .map(|_| {
                let t = Instant::now();
                file.write_all(&frame).expect("write");
                file.sync_data().expect("fdatasync");
                micros(t)
            })
            .collect();
        let (o50, o99) = (percentile(&mut ours, 50), percentile(&mut ours, 99));
        let (r50, r99) = (percentile(&mut raw, 50), percentile(&mut raw, 99));
        println!(
            "{depth_mib:>2} MiB  {o50:>10.0} {o99:>5.0}         {r50:>14.0} {r99:>5.0}           {:>5.2} {:>5.2}",
            o50 / r50,
            o99 / r99
        );
    }
}
