//! Subscriptions (issue 13, item 1): every committed event from a position on, exactly once and in order,
//! across the switch from catch-up to live, whatever the writer does meanwhile; filters that still move the
//! position; stopping from another thread; an idle timeout; damage reported, never delivered.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use foldlog::{Batch, Durability, Error, EventRef, ExpectedVersion, NewEvent, Options, Store, StreamAppend};

const TYPES: [&str; 3] = ["Opened", "Moved", "Closed"];

fn options() -> Options {
    // Small segments: the writer rolls every few hundred events while subscribers read.
    Options::default().segment_size_bytes(16 << 10).durability(Durability::Never)
}

/// A random filter: a subset of types, maybe a stream prefix, maybe a predicate on the payload.
#[derive(Clone, Debug)]
struct Spec {
    from: u64,
    types: Vec<&'static str>,
    prefix: Option<&'static str>,
    even_payload_only: bool,
}

impl Spec {
    fn random(rng: &mut Rng, from: u64) -> Spec {
        let types = TYPES.iter().copied().filter(|_| rng.chance(1, 2)).collect();
        let prefix = match rng.below(3) {
            0 => Some("account-"),
            1 => Some("order-"),
            _ => None,
        };
        Spec { from, types, prefix, even_payload_only: rng.chance(1, 3) }
    }

    fn matches(&self, e: &EventRef<'_>) -> bool {
        (self.types.is_empty() || self.types.contains(&e.event_type()))
            && self.prefix.is_none_or(|p| e.stream_id().starts_with(p))
            && (!self.even_payload_only || e.payload().first().is_some_and(|b| b % 2 == 0))
    }
}

/// Appends `total` events in random batches over seven account and five order streams, one or two streams
/// per batch, with a consumer position now and then.
fn write(store: &Store, total: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut written = 0u64;
    while written < total {
        let n = (1 + rng.below(8)).min(total - written);
        let payloads: Vec<Vec<u8>> =
            (0..n).map(|i| vec![((written + i) % 256) as u8; 1 + (i as usize % 40)]).collect();
        let events: Vec<NewEvent<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| NewEvent::new(TYPES[(written as usize + i) % 3], p))
            .collect();
        let split = if n > 1 && rng.chance(1, 2) { rng.below(n - 1) as usize + 1 } else { n as usize };
        let a = format!("account-{}", rng.below(7));
        let o = format!("order-{}", rng.below(5));
        let mut streams = vec![StreamAppend::new(&a, ExpectedVersion::Any, &events[..split])];
        if split < events.len() {
            streams.push(StreamAppend::new(&o, ExpectedVersion::Any, &events[split..]));
        }
        let mut batch = Batch::new(&streams);
        if rng.chance(1, 10) {
            batch = batch.consumer("writer", store.next_position() + n);
        }
        store.append_batch(&batch).expect("append");
        written += n;
        if rng.chance(1, 50) {
            std::thread::yield_now();
        }
    }
}

#[test]
fn subscribers_started_anywhere_see_every_matching_event_once_in_order() {
    let seed = common::seed(0x5eb5);
    let total = common::env_u64("FOLDLOG_SUB_EVENTS", 30_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("open");
    let mut rng = Rng::new(seed);
    // Some history first, so that early subscribers catch up before they go live.
    write(&store, 2_000, seed ^ 1);
    let specs: Vec<Spec> = (0..8)
        .map(|_| {
            let from = rng.below(3_000);
            Spec::random(&mut rng, from)
        })
        .collect();
    let delivered: Vec<Vec<u64>> = std::thread::scope(|s| {
        let subscribers: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let store = &store;
                s.spawn(move || {
                    // Started at different moments of the writer's run.
                    std::thread::sleep(Duration::from_micros(300 * i as u64));
                    let mut sub = store.subscribe(spec.from).event_types(spec.types.clone());
                    if let Some(p) = spec.prefix {
                        sub = sub.stream_prefix(p);
                    }
                    if spec.even_payload_only {
                        sub = sub.filter(|e| e.payload().first().is_some_and(|b| b % 2 == 0));
                    }
                    let mut seen = Vec::new();
                    let mut progress = (sub.position(), std::time::Instant::now());
                    while sub.position() < 2_000 + total {
                        if let Some(e) = sub.next_event(Duration::from_millis(50)).expect("next event") {
                            assert!(spec.matches(&e), "{spec:?} delivered {}", e.event_type());
                            seen.push(e.position());
                        }
                        // A writer that failed ends the test instead of leaving it waiting.
                        if sub.position() != progress.0 {
                            progress = (sub.position(), std::time::Instant::now());
                        }
                        assert!(
                            progress.1.elapsed() < Duration::from_secs(30),
                            "{spec:?} stuck at {}",
                            progress.0
                        );
                    }
                    seen
                })
            })
            .collect();
        write(&store, total, seed ^ 2);
        subscribers.into_iter().map(|h| h.join().expect("subscriber")).collect()
    });
    for (spec, seen) in specs.iter().zip(&delivered) {
        let expected: Vec<u64> = store
            .read_all(spec.from)
            .map(|e| e.expect("read"))
            .filter(|e| spec.matches(e))
            .map(|e| e.position())
            .collect();
        assert!(!expected.is_empty(), "{spec:?} matches something");
        assert_eq!(seen, &expected, "{spec:?}: exactly the matching events, once each, in order");
    }
    assert!(store.stats().segments > 10, "the writer rolled during the run");
}

#[test]
fn a_stopper_ends_a_waiting_subscription_and_an_idle_timeout_ends_the_iterator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("open");
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", b"1")]).expect("append");
    let ended = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut sub = store.subscribe(0);
        let stopper = sub.stopper();
        let ended = &ended;
        let reader = s.spawn(move || {
            let got: Vec<u64> = sub.by_ref().map(|e| e.expect("event").position()).collect();
            ended.store(true, Ordering::Release);
            (got, sub.position())
        });
        // The iterator delivered position 0 and now waits; nothing else ends it.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!ended.load(Ordering::Acquire), "a subscription without a timeout waits");
        stopper.stop();
        let (got, position) = reader.join().expect("reader");
        assert_eq!((got, position), (vec![0], 1));
    });
    let idle: Vec<u64> = store
        .subscribe(0)
        .idle_timeout(Duration::from_millis(20))
        .map(|e| e.expect("event").position())
        .collect();
    assert_eq!(idle, [0], "the idle timeout ends the iterator once nothing more comes");
    let stopper = {
        let sub = store.subscribe(0);
        Arc::new(sub.stopper())
    };
    stopper.stop(); // Stopping a dropped subscription is harmless.
}

#[test]
fn a_damaged_frame_is_an_error_never_an_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options()).expect("open");
    for i in 0..10u8 {
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", &[i; 32])]).expect("append");
    }
    store.close().expect("close");
    // Flip a payload byte of the sixth event after open trusted nothing yet: reads check the CRC.
    let store = Store::open_with(dir.path(), options().crc_every_read(true)).expect("reopen");
    let offset = {
        let mut sub = store.subscribe(0);
        (0..5).for_each(|_| drop(sub.next_event(Duration::ZERO)));
        sub.position()
    };
    assert_eq!(offset, 5);
    let seg = common::segment_files(dir.path())[0].clone();
    let bytes = std::fs::read(&seg).expect("read segment");
    let sixth = bytes.windows(32).position(|w| w == [5u8; 32]).expect("the sixth payload");
    common::flip(&seg, sixth as u64);
    let mut sub = store.subscribe(0);
    let mut delivered = Vec::new();
    let err = loop {
        match sub.next_event(Duration::ZERO) {
            Ok(Some(e)) => delivered.push(e.position()),
            Ok(None) => panic!("the damage was never reported"),
            Err(e) => break e,
        }
    };
    assert_eq!(delivered, [0, 1, 2, 3, 4]);
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(sub.position(), 5, "the position stays before the damaged event");
}
