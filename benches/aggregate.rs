//! Aggregate loads: what a fold costs per event, zero-copy against deserialize-then-apply, and what a snapshot
//! saves.
//!
//! Method: real stores in temp directories, written once per setup through the repository (so payloads sit
//! where the repository puts them), then read from the page cache. Groups:
//! - `fold_10k`: one account with 10,000 events, loaded by full fold. `read_stream` alone (the log's own cost:
//!   index lookup, CRC and envelope check per event) is the floor; `zero_copy` adds the payload check in place
//!   and `apply`; `deserialize_then_apply` deserializes each event into an owned value first.
//! - `load`: full fold against snapshot + a 100-event tail, for histories of 1,000, 10,000 and 100,000 events.
//!   The snapshot load should not grow with the history.
//!
//! Run: `cargo bench --bench aggregate -- --warm-up-time 1 --measurement-time 3`.

use foldlog_bank as demo_bank;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use demo_bank::{Account, AccountEvent};
use foldlog::{Aggregate, Deserialized, Durability, Options, Repository, Root, SnapshotPolicy, Store};

/// The same account, folded from owned (deserialized) events.
#[derive(Default)]
struct OwnedAccount {
    balance: i64,
    transactions: u64,
}

impl Aggregate for OwnedAccount {
    const NAME: &'static str = Account::NAME;
    type Event = AccountEvent;
    type Codec = Deserialized;

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Opened { deposit, .. } => self.balance = deposit as i64,
            AccountEvent::Deposited { amount } | AccountEvent::FeeRefunded { amount } => {
                self.balance += amount as i64
            }
            AccountEvent::Withdrawn { amount } | AccountEvent::FeeCharged { amount, .. } => {
                self.balance -= amount as i64
            }
        }
        self.transactions += 1;
    }
}

fn options() -> Options {
    Options::default().durability(Durability::Never)
}

/// Writes account `id` with `events` events (1,000 per save), snapshots it at `events - tail`, then adds the
/// tail.
fn write_account(store: &Store, id: &str, events: u64, tail: u64) {
    let repo = Repository::<Account>::with_snapshots(store, SnapshotPolicy::every(0));
    let mut root = Root::<Account>::new(id);
    root.execute(|a| a.open("Bench", 1_000_000)).unwrap();
    for i in 1..events {
        if i % 3 == 0 {
            root.execute(|a| a.withdraw(7)).unwrap();
        } else {
            root.execute(|a| a.deposit(5)).unwrap();
        }
        if i % 1000 == 999 || i == events - tail - 1 {
            repo.save(&mut root).unwrap();
        }
        if i == events - tail - 1 {
            repo.snapshot(&root).unwrap();
        }
    }
    repo.save(&mut root).unwrap();
    assert_eq!(root.version(), events);
}

fn fold_rate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    write_account(&store, "acme", 10_000, 100);
    let zero = Repository::<Account>::new(&store);
    let owned = Repository::<OwnedAccount>::new(&store);
    assert_eq!(zero.get("acme").unwrap().balance, owned.get("acme").unwrap().balance);
    assert_eq!(zero.get("acme").unwrap().load_info().events_copied, 0);

    let mut g = c.benchmark_group("fold_10k");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("read_stream", |b| {
        b.iter(|| store.read_stream("account-acme", 0).map(|e| e.unwrap().payload().len()).sum::<usize>())
    });
    g.bench_function("zero_copy", |b| b.iter(|| black_box(zero.get("acme").unwrap().balance)));
    g.bench_function("deserialize_then_apply", |b| b.iter(|| black_box(owned.get("acme").unwrap().balance)));
    g.finish();
}

fn load(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut g = c.benchmark_group("load");
    for events in [1_000u64, 10_000, 100_000] {
        let id = format!("acme{events}");
        write_account(&store, &id, events, 100);
        let full = Repository::<Account>::new(&store);
        let snap = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(0));
        let loaded = snap.get(&id).unwrap();
        assert_eq!(loaded.load_info().snapshot_version, Some(events - 100));
        assert_eq!(loaded.state(), full.get(&id).unwrap().state());
        g.throughput(Throughput::Elements(events));
        g.bench_with_input(BenchmarkId::new("full_fold", events), &id, |b, id| {
            b.iter(|| black_box(full.get(id).unwrap().balance))
        });
        g.bench_with_input(BenchmarkId::new("snapshot_plus_100", events), &id, |b, id| {
            b.iter(|| black_box(snap.get(id).unwrap().balance))
        });
    }
    g.finish();
}

criterion_group!(benches, fold_rate, load);
criterion_main!(benches);
