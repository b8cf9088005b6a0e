//! Read-only handles in other processes beside a live writer (docs/operations.md, "Reading a live store"):
//! a reader process follows a writer process event by event across segment rolls and checkpoints, checking
//! every event, every stream version, batch atomicity and consumer positions; reopens land on consistent
//! prefixes; `verify` of the live store is clean; a killed writer leaves the reader on a prefix of what the
//! next writer recovers, and the reader follows that writer too.
//!
//! The workload is a pure function of the batch number, so each process knows what every position must hold
//! without talking to the other: batch `k` appends two events to stream `a{k%4}` and one to `b{k%3}` (three
//! positions, `3k..3k+3`), and every fifth batch moves consumer `proj` to `k + 1`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{child_command, emit, spawn_retrying, ScratchDir};
use foldlog::{Batch, Durability, Error, ExpectedVersion, NewEvent, Options, Store, StreamAppend};

const EVENTS_PER_BATCH: u64 = 3;

fn writer_options() -> Options {
    // Small segments and checkpoints: a roll every few dozen batches, a checkpoint every few rolls, so the
    // reader's opens and refreshes meet both often.
    Options::default().segment_size_bytes(8192).checkpoint_every_bytes(32 << 10).durability(Durability::Never)
}

fn reader_options() -> Options {
    Options::default().read_only(true).create_if_missing(false)
}

/// What position `p` holds: stream, version, type and payload.
fn expected(p: u64) -> (String, u64, &'static str, Vec<u8>) {
    let (k, i) = (p / EVENTS_PER_BATCH, p % EVENTS_PER_BATCH);
    let (stream, version, kind) = match i {
        0 | 1 => (format!("a{}", k % 4), 2 * (k / 4) + i, "A"),
        _ => (format!("b{}", k % 3), k / 3, "B"),
    };
    let mut payload = p.to_le_bytes().to_vec();
    payload.extend_from_slice(&p.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    (stream, version, kind, payload)
}

/// The consumer position after `batches` whole batches.
fn expected_consumer(batches: u64) -> Option<u64> {
    batches.checked_sub(1).map(|last| last / 5 * 5 + 1)
}

fn append_batch(store: &Store, k: u64) -> foldlog::Result<()> {
    let events: Vec<_> = (0..EVENTS_PER_BATCH).map(|i| expected(k * EVENTS_PER_BATCH + i)).collect();
    let a: Vec<NewEvent<'_>> = events[..2].iter().map(|(_, _, t, p)| NewEvent::new(t, p)).collect();
    let b = [NewEvent::new(events[2].2, &events[2].3)];
    let streams = [
        StreamAppend::new(&events[0].0, ExpectedVersion::Any, &a),
        StreamAppend::new(&events[2].0, ExpectedVersion::Any, &b),
    ];
    let mut batch = Batch::new(&streams);
    batch.consumer = k.is_multiple_of(5).then_some(("proj", k + 1));
    store.append_batch(&batch)?;
    Ok(())
}

/// Checks positions `from..store.next_position()` of `store` against the workload; returns the new end.
fn check_new_events(store: &Store, from: u64) -> u64 {
    let end = store.next_position();
    assert!(end.is_multiple_of(EVENTS_PER_BATCH), "a reader sees whole batches only, saw {end} events");
    let mut p = from;
    for event in store.read_all(from).take((end - from) as usize) {
        let event = event.unwrap_or_else(|e| panic!("reading position {p}: {e}"));
        let (stream, version, kind, payload) = expected(p);
        assert_eq!(event.position(), p);
        assert_eq!((event.stream_id(), event.stream_version()), (stream.as_str(), version), "position {p}");
        assert_eq!((event.event_type(), event.payload()), (kind, payload.as_slice()), "position {p}");
        p += 1;
    }
    assert_eq!(p, end, "read_all returned every committed event");
    assert_eq!(store.consumer_position("proj"), expected_consumer(end / EVENTS_PER_BATCH), "at {end}");
    end
}

/// Checks a whole store (a fresh handle) against the workload, including its streams read on their own.
fn check_whole(store: &Store) -> u64 {
    let end = check_new_events(store, 0);
    let batches = end / EVENTS_PER_BATCH;
    for j in 0..4u64 {
        let n = (0..batches).filter(|k| k % 4 == j).count() as u64 * 2;
        assert_eq!(store.read_stream(&format!("a{j}"), 0).count() as u64, n, "stream a{j}");
    }
    end
}

/// The child processes: `write` appends `$LIVE_BATCHES` batches (from the store's current end, so a writer
/// that recovers carries on) and exits; `read` follows until it has seen `$LIVE_EVENTS` events, checking
/// each, reopening now and then, and prints `SEEN n` as it goes.
#[test]
fn live_child() {
    let (Ok(role), Ok(dir)) = (std::env::var("LIVE_ROLE"), std::env::var("LIVE_DIR")) else { return };
    let dir = Path::new(&dir);
    let n = common::env_u64("LIVE_COUNT", 0);
    match role.as_str() {
        "write" => {
            let store = Store::open_with(dir, writer_options()).expect("writer opens");
            let first = store.next_position() / EVENTS_PER_BATCH;
            emit("WRITING");
            for k in first..first + n {
                append_batch(&store, k).expect("append");
                // Paced, so the reader meets the writer mid-segment, mid-roll and mid-checkpoint rather than
                // finding the work done.
                std::thread::sleep(Duration::from_micros(50));
            }
            store.close().expect("close");
            emit("WROTE");
        }
        "read" => follow(dir, n),
        "subscribe" => subscribe(dir, n),
        "durable" => subscribe_durable(dir, n),
        other => panic!("unknown role {other}"),
    }
}

/// A read-only handle on `dir`, waiting (until `deadline`) for the writer process to create the log.
fn open_when_created(dir: &Path, deadline: Instant) -> Store {
    loop {
        match Store::open_with(dir, reader_options()) {
            Ok(s) => return s,
            Err(Error::InvalidDirectory { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("reader open: {e}"),
        }
    }
}

fn follow(dir: &Path, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let store = open_when_created(dir, deadline);
    let mut seen = check_new_events(&store, 0);
    let mut reopened_at = 0;
    while seen < target {
        assert!(Instant::now() < deadline, "reader stuck at {seen} of {target}");
        store.wait_for(seen.checked_sub(1), Duration::from_millis(200));
        store.refresh().expect("refresh");
        seen = check_new_events(&store, seen);
        emit(&format!("SEEN {seen}"));
        if seen >= reopened_at + 300 {
            // An open while the writer rolls and checkpoints lands on a whole, consistent prefix too.
            let fresh = Store::open_with(dir, reader_options()).expect("reopen beside the writer");
            assert!(check_whole(&fresh) >= seen, "a later open sees at least as much");
            reopened_at = seen;
        }
    }
    emit("CAUGHT UP");
}

/// A subscription on a read-only handle to the `B` events only (every third position): each is delivered
/// once, in order, with the right content, and the position moves past the skipped ones.
fn subscribe(dir: &Path, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let store = open_when_created(dir, deadline);
    let mut sub = store.subscribe(0).event_types(["B"]);
    let mut expect = EVENTS_PER_BATCH - 1;
    while sub.position() < target {
        assert!(Instant::now() < deadline, "subscription stuck at {}", sub.position());
        let Some(event) = sub.next_event(Duration::from_millis(200)).expect("next event") else { continue };
        let (stream, version, kind, payload) = expected(expect);
        assert_eq!(event.position(), expect, "every B event once, in order");
        assert_eq!((event.stream_id(), event.stream_version()), (stream.as_str(), version));
        assert_eq!((event.event_type(), event.payload()), (kind, payload.as_slice()));
        expect += EVENTS_PER_BATCH;
    }
    assert_eq!(expect, target + EVENTS_PER_BATCH - 1, "and nothing after the last");
    emit("SUBSCRIBED");
}

/// A durable-only subscription on a read-only handle: first one wait while the writer (the test process) holds
/// events it has not synced, reported as `FIRST none` or `FIRST <position>` with the handle's positions; then,
/// once the test has synced, every event up to `target`, in order.
fn subscribe_durable(dir: &Path, target: u64) {
    let store = Store::open_with(dir, reader_options()).expect("reader open");
    let mut sub = store.subscribe(0).durable_only(true);
    let first = sub.next_event(Duration::from_millis(300)).expect("next event").map(|e| e.position());
    let first = first.map_or_else(|| "none".to_owned(), |p| p.to_string());
    emit(&format!("FIRST {first} next={} durable={}", store.next_position(), store.durable_position()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut expect = 0;
    while expect < target {
        assert!(Instant::now() < deadline, "durable subscription stuck at {expect}");
        let Some(event) = sub.next_event(Duration::from_millis(200)).expect("next event") else { continue };
        assert_eq!(event.position(), expect, "every durable event once, in order");
        assert!(event.position() < store.durable_position(), "delivered only below the durable position");
        expect += 1;
    }
    emit(&format!("DURABLE {expect}"));
}

fn child(role: &str, dir: &Path, count: u64) -> Child {
    spawn_retrying(
        child_command("live_child")
            .env("LIVE_ROLE", role)
            .env("LIVE_DIR", dir)
            .env("LIVE_COUNT", count.to_string()),
    )
    .expect("spawn child")
}

/// Reads the child's output until a line satisfies `done`; panics with the child's stderr if it ends first.
fn wait_for_line(child: &mut Child, lines: &mut impl Iterator<Item = String>, done: impl Fn(&str) -> bool) {
    if lines.any(|l| done(&l)) {
        return;
    }
    let status = child.wait().expect("reap child");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    panic!("child ended ({status}) before the expected line; stderr: {stderr}");
}

/// Waits for a child and says how it ended, with its stderr.
fn outcome(child: Child) -> (bool, String) {
    let out = child.wait_with_output().expect("child output");
    (out.status.success(), format!("{}; stderr: {}", out.status, String::from_utf8_lossy(&out.stderr)))
}

fn lines_of(child: &mut Child) -> impl Iterator<Item = String> {
    BufReader::new(child.stdout.take().expect("stdout")).lines().map_while(Result::ok)
}

fn seen(line: &str) -> Option<u64> {
    line.strip_prefix("SEEN ").and_then(|n| n.parse().ok())
}

#[test]
fn a_reader_process_follows_a_writer_process_event_by_event_across_rolls() {
    let dir = ScratchDir::new("live-follow");
    let batches = common::env_u64("FOLDLOG_LIVE_BATCHES", 3000);
    let reader = child("read", dir.path(), batches * EVENTS_PER_BATCH);
    let mut writer = child("write", dir.path(), batches);
    // Meanwhile this process checks the live store with the file walker, which reads beside the writer too.
    let mut verified = 0;
    while writer.try_wait().expect("poll writer").is_none() {
        if let Ok(report) = foldlog::verify::verify_dir(dir.path()) {
            assert!(report.damage.is_empty(), "verify of a live store found damage: {:?}", report.damage);
            verified += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ok, how) = outcome(writer);
    assert!(ok, "writer: {how}");
    let (ok, how) = outcome(reader);
    assert!(ok, "reader: {how}");
    let store = Store::open_with(dir.path(), reader_options()).expect("open after both");
    assert_eq!(check_whole(&store), batches * EVENTS_PER_BATCH);
    assert!(store.stats().segments > 20, "the writer rolled many times: {}", store.stats().segments);
    eprintln!("verify ran {verified} times beside the writer");
}

#[test]
fn a_killed_writer_leaves_its_reader_on_a_prefix_and_the_next_writer_is_followed_too() {
    let dir = ScratchDir::new("live-kill");
    let mut reader = child("read", dir.path(), u64::MAX);
    let mut reader_lines = lines_of(&mut reader);
    let mut writer = child("write", dir.path(), 1_000_000);
    wait_for_line(&mut reader, &mut reader_lines, |l| seen(l).is_some_and(|n| n >= 3000));
    writer.kill().expect("SIGKILL the writer");
    writer.wait().expect("reap");
    // The reader keeps going on what it has; whatever it saw, the next writer recovers (a process crash
    // loses nothing committed), and the reader follows that writer's appends from there.
    let store = Store::open_with(dir.path(), writer_options()).expect("recover");
    let recovered = check_whole(&store);
    let first = recovered / EVENTS_PER_BATCH;
    for k in first..first + 200 {
        append_batch(&store, k).expect("append after recovery");
    }
    let goal = recovered + 200 * EVENTS_PER_BATCH;
    eprintln!("the killed writer left {recovered} events; the reader follows the next writer to {goal}");
    wait_for_line(&mut reader, &mut reader_lines, |l| seen(l).is_some_and(|n| n >= goal));
    assert!(reader.try_wait().expect("poll reader").is_none(), "the reader is still following");
    reader.kill().expect("stop the reader");
    reader.wait().expect("reap");
    drop(store);
}

#[test]
fn a_subscription_in_another_process_delivers_each_matching_event_once_across_rolls() {
    let dir = ScratchDir::new("live-subscribe");
    let batches = common::env_u64("FOLDLOG_LIVE_BATCHES", 2000);
    let subscriber = child("subscribe", dir.path(), batches * EVENTS_PER_BATCH);
    let writer = child("write", dir.path(), batches);
    let (ok, how) = outcome(writer);
    assert!(ok, "writer: {how}");
    let out = subscriber.wait_with_output().expect("subscriber");
    assert!(out.status.success(), "subscriber: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUBSCRIBED"));
}

/// A zero timeout on a read-only handle looks at the writer's head once: a caller that polls with
/// `next_event(Duration::ZERO)` (the SQLite projector did, and called `refresh` itself first) sees what the
/// writer committed meanwhile without a `refresh` of its own, and `wait_for` with a zero timeout does too. The
/// writer runs in this process, through its own handle, as a writer in another process would.
#[test]
fn a_zero_timeout_on_a_read_only_handle_looks_at_the_writer_once() {
    let dir = ScratchDir::new("live-zero");
    let writer = Store::open_with(dir.path(), writer_options()).expect("writer");
    let reader = Store::open_with(dir.path(), reader_options()).expect("reader beside the writer");
    let mut sub = reader.subscribe(0);
    assert!(sub.next_event(Duration::ZERO).expect("poll").is_none(), "nothing written yet");
    append_batch(&writer, 0).expect("append");
    assert_eq!(reader.next_position(), 0, "nothing has refreshed the reader yet");
    let delivered: Vec<u64> =
        std::iter::from_fn(|| sub.next_event(Duration::ZERO).expect("poll")).map(|e| e.position()).collect();
    assert_eq!(delivered, [0, 1, 2], "one zero-timeout call refreshed, the others read what it indexed");
    assert_eq!(reader.next_position(), EVENTS_PER_BATCH);
    append_batch(&writer, 1).expect("append");
    assert_eq!(reader.wait_for(Some(2), Duration::ZERO), Some(5), "wait_for looks once too");
    let next = sub.next_event(Duration::ZERO).expect("poll").expect("the second batch");
    assert_eq!(next.position(), 3);
}

/// Options for a writer that never syncs by itself: segments large enough that no roll (which syncs) comes
/// in the way.
fn unsynced_writer_options() -> Options {
    writer_options().segment_size_bytes(1 << 20).checkpoint_every_bytes(0)
}

/// A read-only handle's durable position is the writer's, not what it indexed (regression: it used to be the
/// latter, so a projector in another process could count events that a machine crash then takes back, with a
/// writer in `Group` or `Never` mode). Beside a writer with `Durability::Never` the reader's durable position
/// stays where the writer's last sync left it however far the reader indexes, moves when the writer syncs and
/// the reader refreshes, and a durable-only subscription delivers exactly the synced events.
#[test]
fn a_readers_durable_position_is_what_the_writer_synced_not_what_it_indexed() {
    let dir = ScratchDir::new("live-durable");
    let writer = Store::open_with(dir.path(), unsynced_writer_options()).expect("writer");
    append_batch(&writer, 0).expect("append");
    let reader = Store::open_with(dir.path(), reader_options()).expect("reader beside the writer");
    assert_eq!((reader.next_position(), reader.durable_position()), (3, 0), "indexed, but nothing synced");
    writer.sync().expect("sync");
    append_batch(&writer, 1).expect("append");
    append_batch(&writer, 2).expect("append");
    assert_eq!(reader.refresh().expect("refresh"), 9);
    assert_eq!(reader.durable_position(), 3, "the writer synced the first batch only");
    assert_eq!(reader.stats().durable_position, 3);
    let mut durable = reader.subscribe(0).durable_only(true);
    let mut all = reader.subscribe(0);
    let positions = |sub: &mut foldlog::Subscription<'_>, wait: Duration| -> Vec<u64> {
        std::iter::from_fn(|| sub.next_event(wait).expect("next event")).map(|e| e.position()).collect()
    };
    assert_eq!(positions(&mut durable, Duration::from_millis(20)), [0, 1, 2], "the synced events only");
    assert_eq!(positions(&mut all, Duration::ZERO), (0..9).collect::<Vec<_>>(), "every committed event");
    assert_eq!(durable.position(), 3);
    writer.sync().expect("sync");
    assert_eq!(reader.durable_position(), 3, "a reader learns of a sync when it looks");
    assert_eq!(reader.refresh().expect("refresh"), 9);
    assert_eq!(reader.durable_position(), 9, "after the sync and a refresh");
    assert_eq!(positions(&mut durable, Duration::ZERO), (3..9).collect::<Vec<_>>());
    // A wait for a durable event ends with the writer's sync, not with its append.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut durable = reader.subscribe(9).durable_only(true);
            durable.next_event(Duration::from_secs(30)).expect("next event").map(|e| e.position())
        });
        append_batch(&writer, 3).expect("append");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "committed, not durable: still waiting");
        writer.sync().expect("sync");
        assert_eq!(waiter.join().expect("waiter"), Some(9));
    });
    // Closing syncs everything; a handle opened with no writer live calls every valid frame durable.
    writer.close().expect("close");
    assert_eq!(reader.refresh().expect("refresh"), 12);
    assert_eq!(reader.durable_position(), 12);
    let fresh = Store::open_with(dir.path(), reader_options()).expect("reader after the writer");
    assert_eq!(fresh.durable_position(), 12);
}

/// In the writer's own process, a durable-only subscription waits on the writer's syncs: `Group` mode syncs
/// after `appends_max` appends (on the group-commit thread), and the subscription delivers a group's events
/// only when that sync ends.
#[test]
fn a_durable_only_subscription_on_the_writers_handle_delivers_each_group_at_its_sync() {
    let dir = ScratchDir::new("live-durable-group");
    let group = foldlog::GroupCommit::default().appends_max(2).delay_max(Duration::from_secs(3600));
    let writer = Store::open_with(dir.path(), unsynced_writer_options().durability(Durability::Group(group)))
        .expect("writer");
    let mut durable = writer.subscribe(0).durable_only(true);
    append_batch(&writer, 0).expect("append");
    assert!(
        durable.next_event(Duration::from_millis(20)).expect("next event").is_none(),
        "one append of two"
    );
    let reader = Store::open_with(dir.path(), reader_options()).expect("reader beside the writer");
    assert_eq!(reader.durable_position(), 0);
    append_batch(&writer, 1).expect("append");
    // The second append completed the group; its sync runs beside the writer, and the subscription wakes
    // when it ends.
    let delivered: Vec<u64> = (0..6)
        .filter_map(|_| {
            durable.next_event(Duration::from_secs(30)).expect("next event").map(|e| e.position())
        })
        .collect();
    assert_eq!(delivered, (0..6).collect::<Vec<_>>());
    assert_eq!(writer.durable_position(), 6, "the group's sync ended");
    assert!(durable.next_event(Duration::ZERO).expect("next event").is_none(), "nothing past the group");
    assert_eq!(reader.refresh().expect("refresh"), 6);
    assert_eq!(reader.durable_position(), 6, "and readers elsewhere learn of it");
}

/// The same across processes: a durable-only subscriber in another process delivers nothing of what this
/// writer (`Durability::Never`) committed but did not sync, then everything once it syncs.
#[test]
fn a_durable_only_subscriber_in_another_process_waits_for_the_writers_sync() {
    let dir = ScratchDir::new("live-durable-process");
    let writer = Store::open_with(dir.path(), unsynced_writer_options()).expect("writer");
    for k in 0..10 {
        append_batch(&writer, k).expect("append");
    }
    let total = 10 * EVENTS_PER_BATCH;
    let mut subscriber = child("durable", dir.path(), total);
    let mut lines = lines_of(&mut subscriber);
    let Some(first) = lines.find(|l| l.starts_with("FIRST")) else {
        panic!("the subscriber ended first: {}", outcome(subscriber).1)
    };
    assert_eq!(first, format!("FIRST none next={total} durable=0"), "nothing synced, nothing delivered");
    writer.sync().expect("sync");
    wait_for_line(&mut subscriber, &mut lines, |l| l == format!("DURABLE {total}"));
    let (ok, how) = outcome(subscriber);
    assert!(ok, "subscriber: {how}");
}
