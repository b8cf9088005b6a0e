//! The cost of going distributed: the same workloads through the `Backend` trait on the embedded store and on
//! JetStream at replicas 1 (one node) and 3 (three nodes), all on loopback in one run.
//! `cargo run --release -p foldlog-jetstream --example numbers` (needs nats-server; about a minute).
//! Prints a Markdown table (docs/benchmarks.md, "JetStream").

use std::time::{Duration, Instant};

use foldlog::{Durability, ExpectedVersion, NewEvent, Options, ReadAll, Store};
use foldlog_jetstream::testing::NatsServer;
use foldlog_jetstream::{Backend, JetStreamOptions, JetStreamStore};

const ONE_BY_ONE: u64 = 2_000;
const BATCHES: u64 = 100;
const BATCH: usize = 100;
const STREAMS: u64 = 100;
const PAYLOAD: [u8; 100] = [7; 100];

struct Row {
    backend: String,
    append_one: Duration,
    append_batched: Duration,
    read_stream: Duration,
    replay: Duration,
    replayed: usize,
}

fn run(name: &str, b: &dyn Backend) -> Row {
    // One event per call with an exact expected version, over 100 streams (an aggregate's save).
    let mut versions = vec![None; STREAMS as usize];
    let t = Instant::now();
    for i in 0..ONE_BY_ONE {
        let s = (i % STREAMS) as usize;
        let expected = versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let a = b.append(&format!("account-{s}"), expected, &[NewEvent::new("Deposited", &PAYLOAD)]).unwrap();
        versions[s] = Some(a.versions.end - 1);
    }
    let append_one = t.elapsed() / ONE_BY_ONE as u32;
    // 100 events per call, one stream per call (an import, a bulk command).
    let events = vec![NewEvent::new("Imported", &PAYLOAD); BATCH];
    let t = Instant::now();
    for i in 0..BATCHES {
        b.append(&format!("bulk-{i}"), ExpectedVersion::NoStream, &events).unwrap();
    }
    let append_batched = t.elapsed() / (BATCHES as u32 * BATCH as u32);
    // Load one aggregate: a stream of 20 events written one per call.
    let t = Instant::now();
    for s in 0..STREAMS {
        assert_eq!(b.read_stream(&format!("account-{s}"), 0, None).unwrap().len(), 20);
    }
    let read_stream = t.elapsed() / STREAMS as u32;
    // Replay the whole log (a read model rebuilt from scratch).
    let t = Instant::now();
    let replayed = b.read_all(&ReadAll::default()).unwrap().len();
    let replay = t.elapsed();
    Row { backend: name.to_owned(), append_one, append_batched, read_stream, replay, replayed }
}

fn connect(url: &str, replicas: usize) -> JetStreamStore {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match JetStreamStore::connect(JetStreamOptions::new(url).log("numbers").replicas(replicas)) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the server: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn main() {
    let mut rows = Vec::new();
    for (name, durability) in [
        ("embedded, Durability::Always", Durability::Always),
        ("embedded, Durability::Never", Durability::Never),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
        rows.push(run(name, &store));
    }
    {
        let server = NatsServer::single();
        rows.push(run("JetStream, replicas 1", &connect(&server.url(), 1)));
    }
    {
        let cluster = NatsServer::cluster(3);
        rows.push(run("JetStream, replicas 3 (3 nodes)", &connect(&cluster.url(), 3)));
    }
    println!("| backend | append, 1 event per call (expected version) | append, 100 per call, per event | read a 20-event stream | replay, per event |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} µs | {:.2} µs | {:.1} µs | {:.2} µs ({} events) |",
            r.backend,
            r.append_one.as_secs_f64() * 1e6,
            r.append_batched.as_secs_f64() * 1e6,
            r.read_stream.as_secs_f64() * 1e6,
            r.replay.as_secs_f64() * 1e6 / r.replayed as f64,
            r.replayed
        );
    }
}
