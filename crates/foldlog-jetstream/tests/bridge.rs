//! The bridge killed (SIGKILL) again and again while an embedded writer appends: the JetStream log ends up
//! holding every event of the embedded store exactly once, with the same streams, versions and contents.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use foldlog::{Batch, ExpectedVersion, NewEvent, Store, StreamAppend};
use foldlog_jetstream::testing::{nats_server_missing, NatsServer};
use foldlog_jetstream::{Backend, JetStreamOptions, JetStreamStore};

fn spawn_bridge(dir: &std::path::Path, url: &str, stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_foldlog-bridge"))
        .arg(dir)
        .arg(url)
        .args(["--log", "bridged"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start foldlog-bridge")
}

/// A small deterministic generator, so a failing run can be repeated.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn killed_at_any_point_the_bridge_neither_loses_nor_duplicates() {
    if let Some(why) = nats_server_missing() {
        panic!("this test needs nats-server (`.ci/run` installs it): {why}");
    }
    let server = NatsServer::single();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writing = AtomicBool::new(true);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut kills, mut kills_while_writing) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut w = Rng(7);
            for i in 0..1500u64 {
                let payload = i.to_le_bytes();
                let (a, b) = (format!("acct-{}", w.below(13)), format!("order-{}", w.below(5)));
                let id = (i % 3 == 0).then_some(u128::from(i) + 1);
                let one = [NewEvent::new("Deposited", &payload).event_id(id).metadata(b"m")];
                let two = [NewEvent::new("Placed", &payload), NewEvent::new("Priced", &payload)];
                if i % 10 == 0 {
                    // A transfer-like batch across two streams: atomic in the source, per event on JetStream.
                    let streams = [
                        StreamAppend::new(&a, ExpectedVersion::Any, &one),
                        StreamAppend::new(&b, ExpectedVersion::Any, &two),
                    ];
                    store.append_batch(&Batch::new(&streams)).unwrap();
                } else if i % 2 == 0 {
                    store.append(&a, ExpectedVersion::Any, &one).unwrap();
                } else {
                    store.append(&b, ExpectedVersion::Any, &two).unwrap();
                }
                if i % 25 == 0 {
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
            writing.store(false, Ordering::Release);
        });
        // Kill the bridge at random moments (before it connected, mid-catch-up, mid-publish) while the writer
        // runs, and a few more times after it stopped.
        while writing.load(Ordering::Acquire) || kills < 25 {
            let mut bridge = spawn_bridge(dir.path(), &server.url(), Stdio::null());
            std::thread::sleep(Duration::from_millis(20 + rng.below(280)));
            let was_writing = writing.load(Ordering::Acquire);
            bridge.kill().unwrap();
            bridge.wait().unwrap();
            kills += 1;
            kills_while_writing += u32::from(was_writing);
        }
    });
    // A last run to the end: it must catch up, and then hold still.
    let total = store.next_position();
    let target = JetStreamStore::connect(JetStreamOptions::new(server.url()).log("bridged")).unwrap();
    // Its messages go to the test output, to explain a failure.
    let mut bridge = spawn_bridge(dir.path(), &server.url(), Stdio::inherit());
    let deadline = Instant::now() + Duration::from_secs(120);
    while target.read_all(&foldlog::ReadAll::default()).unwrap().len() < total as usize {
        assert!(Instant::now() < deadline, "the bridge did not catch up within 120 s");
        assert!(bridge.try_wait().unwrap().is_none(), "the bridge stopped (its error is above)");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    bridge.kill().unwrap();
    bridge.wait().unwrap();

    let published = target.read_all(&foldlog::ReadAll::default()).unwrap();
    assert_eq!(published.len() as u64, total, "every event exactly once (count)");
    let mut streams = 0;
    for stream in store.streams() {
        let source: Vec<_> = store.read_stream(&stream, 0).map(|e| e.unwrap().to_owned()).collect();
        let copied = target.read_stream(&stream, 0, None).unwrap();
        assert_eq!(copied.len(), source.len(), "{stream}");
        for (s, c) in source.iter().zip(&copied) {
            let key = |e: &foldlog::OwnedEvent| {
                (
                    e.stream_id.clone(),
                    e.stream_version,
                    e.event_type.clone(),
                    e.payload.clone(),
                    e.metadata.clone(),
                    e.event_id,
                    e.timestamp_micros,
                )
            };
            assert_eq!(key(s), key(c));
        }
        streams += 1;
    }
    let position = target.consumer_position("foldlog-bridge-bridged").unwrap();
    assert_eq!(position, Some(total), "the saved position is the source's end");
    assert!(
        kills_while_writing >= 5,
        "the loop must kill the bridge while the writer runs: {kills_while_writing}"
    );
    println!(
        "bridge kill loop: {kills} kills (SIGKILL; {kills_while_writing} while the writer ran), {total} events in \
         {streams} streams, each on JetStream exactly once"
    );
}
