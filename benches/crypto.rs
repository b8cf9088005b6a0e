//! Encrypted streams against plain ones: what decrypting costs a fold (issue 14, item 5). Encrypted streams are
//! not zero-copy: every event is copied out of the map and decrypted (XChaCha20-Poly1305) before the codec sees
//! it.
//!
//! Method: real stores in temp directories, written once per setup (plain streams straight through the store
//! or a plain repository, encrypted ones through a `Vault`), then read from the page cache. Groups, each with
//! 10,000 events in one stream and throughput in events:
//! - `aggregate_fold`: the bank's `Account` (`ZeroCopy` codec, payloads of 24–40 bytes) loaded by full fold,
//!   through `Repository::new` and through `Repository::with_vault`.
//! - `stream_read_<n>b`: a stream of `n`-byte payloads (64, 1,024) read to the end; the plain read sums
//!   `payload().len()` over borrowed events (the zero-copy floor), `owned` copies each into an `OwnedEvent`
//!   (what the vault hands out, without the cipher), `vault` decrypts each.
//!
//! Run: `cargo bench --bench crypto -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use foldlog::{Durability, ExpectedVersion, NewEvent, Options, Repository, Root, Store, Vault};
use foldlog_bank::Account;

const EVENTS: u64 = 10_000;

fn options() -> Options {
    Options::default().durability(Durability::Never)
}

/// Writes account `id` with `EVENTS` events, 1,000 per save, through `repo`.
fn write_account(repo: &Repository<'_, Account>, id: &str) {
    let mut root = Root::<Account>::new(id);
    root.execute(|a| a.open("Bench", 1_000_000)).unwrap();
    for i in 1..EVENTS {
        if i % 3 == 0 {
            root.execute(|a| a.withdraw(7)).unwrap();
        } else {
            root.execute(|a| a.deposit(5)).unwrap();
        }
        if i % 1000 == 999 {
            repo.save(&mut root).unwrap();
        }
    }
    repo.save(&mut root).unwrap();
    assert_eq!(root.version(), EVENTS);
}

fn aggregate_fold(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let vault = Vault::open(&store).unwrap();
    let plain = Repository::<Account>::new(&store);
    let sealed = Repository::<Account>::with_vault(&vault);
    write_account(&plain, "plain");
    write_account(&sealed, "sealed");
    assert_eq!(plain.get("plain").unwrap().balance, sealed.get("sealed").unwrap().balance);
    let mut g = c.benchmark_group("aggregate_fold");
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("plain", |b| b.iter(|| black_box(plain.get("plain").unwrap().balance)));
    g.bench_function("vault", |b| b.iter(|| black_box(sealed.get("sealed").unwrap().balance)));
    g.finish();
}

fn stream_read(c: &mut Criterion) {
    for size in [64usize, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap();
        let vault = Vault::open(&store).unwrap();
        let payload = vec![0x5a; size];
        let batch: Vec<NewEvent<'_>> = (0..1000).map(|_| NewEvent::new("Measured", &payload)).collect();
        for _ in 0..EVENTS / 1000 {
            store.append("plain", ExpectedVersion::Any, &batch).unwrap();
            vault.append("sealed", ExpectedVersion::Any, &batch).unwrap();
        }
        let mut g = c.benchmark_group(format!("stream_read_{size}b"));
        g.throughput(Throughput::Elements(EVENTS));
        g.bench_function("plain", |b| {
            b.iter(|| store.read_stream("plain", 0).map(|e| e.unwrap().payload().len()).sum::<usize>())
        });
        g.bench_function("owned", |b| {
            b.iter(|| {
                store.read_stream("plain", 0).map(|e| e.unwrap().to_owned().payload.len()).sum::<usize>()
            })
        });
        g.bench_function("vault", |b| {
            b.iter(|| vault.read_stream("sealed", 0).map(|e| e.unwrap().payload.len()).sum::<usize>())
        });
        g.finish();
    }
}

criterion_group!(benches, aggregate_fold, stream_read);
criterion_main!(benches);
