//! Three nats-server processes in a cluster (loopback routes), the log with replicas = 3, several writers
//! racing on shared streams with expected versions, and the stream's leader killed with SIGKILL mid-run and
//! restarted. Afterwards: every acknowledged event present exactly once, versions gap-free per stream, and
//! every conflict a writer was told of real (someone else's event holds the version it expected to write).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use foldlog::{ExpectedVersion, NewEvent};
use foldlog_jetstream::testing::{nats_server_missing, NatsServer};
use foldlog_jetstream::{Backend, Error, JetStreamOptions, JetStreamStore};

const WRITERS: u64 = 4;
const STREAMS: u64 = 3;
const MIN_APPENDS: u64 = 40;

fn connect(url: &str) -> JetStreamStore {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The cluster elects its JetStream meta leader a moment after the processes start.
        match JetStreamStore::connect(JetStreamOptions::new(url).log("cluster").replicas(3)) {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the cluster did not become ready in 60 s: {e}"),
        }
    }
}

/// What a writer was told.
#[derive(Default)]
struct Outcomes {
    /// (stream, version) -> the event id acknowledged there.
    acked: HashMap<(String, u64), u128>,
    /// (stream, the version the writer expected to follow, its event id) for every conflict reported.
    conflicts: Vec<(String, Option<u64>, u128)>,
    /// Calls that failed without an answer (a node down, a leader election): outcome unknown, retried.
    unknown: u64,
}

#[test]
fn three_nodes_one_killed_loses_nothing() {
    if let Some(why) = nats_server_missing() {
        panic!("this test needs nats-server (`.ci/run` installs it): {why}");
    }
    let mut cluster = NatsServer::cluster(3);
    let url = cluster.url();
    let admin = connect(&url);
    let outcomes = Mutex::new(Outcomes::default());
    let killing = AtomicBool::new(true);
    let appended = AtomicU64::new(0);
    let mut killed = String::new();
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (url, outcomes, killing, appended) = (&url, &outcomes, &killing, &appended);
            s.spawn(move || {
                let store = connect(url);
                let mut k = 0u64;
                while k < MIN_APPENDS || killing.load(Ordering::Acquire) {
                    let stream = format!("account-{}", (w + k) % STREAMS);
                    let id = u128::from(w) << 64 | u128::from(k);
                    let payload = id.to_le_bytes();
                    let event = [NewEvent::new("Deposited", &payload).event_id(id)];
                    // Read, decide, append; the same event id on every attempt, so an attempt whose answer was
                    // lost is recognised when it is tried again.
                    loop {
                        let seen = match store.stream_version(&stream) {
                            Ok(v) => v,
                            Err(_) => {
                                outcomes.lock().unwrap().unknown += 1;
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        };
                        let expected = seen.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        match store.append(&stream, expected, &event) {
                            Ok(a) => {
                                let mut o = outcomes.lock().unwrap();
                                let before = o.acked.insert((stream.clone(), a.versions.start), id);
                                assert!(
                                    before.is_none_or(|b| b == id),
                                    "two acknowledgements for {stream} v{}: {before:x?} and {id:x} ({a:?}, expected {expected:?})",
                                    a.versions.start
                                );
                                appended.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(e) if e.is_wrong_expected_version() => {
                                outcomes.lock().unwrap().conflicts.push((stream.clone(), seen, id));
                            }
                            Err(Error::JetStream { .. }) => {
                                outcomes.lock().unwrap().unknown += 1;
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            Err(e) => panic!("writer {w}: {e}"),
                        }
                    }
                    k += 1;
                }
            });
        }
        // Let the writers get going, then kill the node leading the stream, keep writing on two nodes, and
        // bring it back; the writers stop only after it rejoined and some more appends went through.
        while appended.load(Ordering::Relaxed) < 40 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let leader = admin.stream_leader().unwrap().expect("a replicated stream has a leader");
        let index: usize = leader.trim_start_matches("node-").parse().expect("node names are node-<i>");
        cluster.nodes[index].kill();
        killed = leader;
        let at_kill = appended.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(60);
        while appended.load(Ordering::Relaxed) < at_kill + 40 {
            assert!(Instant::now() < deadline, "no appends with one node of three down");
            std::thread::sleep(Duration::from_millis(20));
        }
        cluster.nodes[index].restart();
        let at_restart = appended.load(Ordering::Relaxed);
        while appended.load(Ordering::Relaxed) < at_restart + 40 {
            assert!(Instant::now() < deadline, "no appends after the node came back");
            std::thread::sleep(Duration::from_millis(20));
        }
        killing.store(false, Ordering::Release);
    });

    let outcomes = outcomes.into_inner().unwrap();
    let check = connect(&url);
    let mut events_total = 0;
    let mut seen_ids = HashMap::new();
    let mut streams: HashMap<String, Vec<foldlog::OwnedEvent>> = HashMap::new();
    for s in 0..STREAMS {
        let stream = format!("account-{s}");
        let events = check.read_stream(&stream, 0, None).unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.stream_version, i as u64, "{stream}: versions gap-free");
            let id = e.event_id.expect("every event has an id");
            assert!(seen_ids.insert(id, (stream.clone(), e.stream_version)).is_none(), "id {id:x} twice");
        }
        events_total += events.len();
        streams.insert(stream, events);
    }
    for ((stream, version), id) in &outcomes.acked {
        assert_eq!(
            seen_ids.get(id),
            Some(&(stream.clone(), *version)),
            "acknowledged event {id:x} where it was acked"
        );
    }
    assert_eq!(events_total, outcomes.acked.len(), "nothing stored that was not acknowledged");
    for (stream, expected, id) in &outcomes.conflicts {
        let taken = expected.map_or(0, |v| v + 1) as usize;
        let holder = streams[stream].get(taken).and_then(|e| e.event_id);
        assert!(holder.is_some_and(|h| h != *id), "conflict on {stream} after {expected:?} was invented");
    }
    println!(
        "cluster kill test: 3 nodes, replicas 3, {killed} (the stream leader) killed with SIGKILL and restarted; \
         {WRITERS} writers, {} acknowledged appends, {} real conflicts, {} calls with unknown outcome retried; \
         every acknowledged event exactly once, versions gap-free in {STREAMS} streams",
        outcomes.acked.len(),
        outcomes.conflicts.len(),
        outcomes.unknown
    );
}
