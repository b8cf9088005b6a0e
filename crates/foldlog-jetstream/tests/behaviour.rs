//! The behaviour that defines foldlog's semantics, one set of test functions run against both backends: the
//! embedded store in a temporary directory and JetStream on a nats-server started for the test (loopback, a
//! free port, JetStream in a temporary directory, killed when the test ends).
//!
//! Positions are compared only as the trait promises (increasing in commit order, a read from a position
//! starts there), never as numbers: the embedded store's are dense, JetStream's come from sequences.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foldlog::{Batch, Error as StoreError, ExpectedVersion, NewEvent, OwnedEvent, ReadAll, StreamAppend};
use foldlog_jetstream::testing::{nats_server_missing, NatsServer};
use foldlog_jetstream::{Backend, Error, EventSubscription, FoundSnapshot, JetStreamOptions, JetStreamStore};

fn wrong_version(r: Result<impl std::fmt::Debug, Error>) -> Option<u64> {
    match r {
        Err(Error::Store(StoreError::WrongExpectedVersion { actual, .. })) => actual,
        other => panic!("expected a wrong-expected-version error, got {other:?}"),
    }
}

fn types(events: &[OwnedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

fn expected_versions(b: &dyn Backend) {
    let two = [NewEvent::new("Opened", b"100"), NewEvent::new("Deposited", b"50")];
    let a = b.append("account-1", ExpectedVersion::NoStream, &two).unwrap();
    assert_eq!((a.versions.clone(), a.positions.end - a.positions.start, a.deduplicated), (0..2, 2, false));
    assert_eq!(b.stream_version("account-1").unwrap(), Some(1));
    assert_eq!(wrong_version(b.append("account-1", ExpectedVersion::NoStream, &two)), Some(1));
    let next =
        b.append("account-1", ExpectedVersion::Exact(1), &[NewEvent::new("Withdrawn", b"20")]).unwrap();
    assert_eq!(next.versions, 2..3);
    assert!(next.positions.start >= a.positions.end, "positions grow: {a:?} then {next:?}");
    assert_eq!(wrong_version(b.append("account-1", ExpectedVersion::Exact(1), &two)), Some(2));
    assert_eq!(wrong_version(b.append("account-2", ExpectedVersion::StreamExists, &two)), None);
    assert_eq!(wrong_version(b.append("account-2", ExpectedVersion::Exact(0), &two)), None);
    assert_eq!(b.append("account-1", ExpectedVersion::StreamExists, &two).unwrap().versions, 3..5);
    assert_eq!(b.append("account-2", ExpectedVersion::Any, &two).unwrap().versions, 0..2);
    assert_eq!(b.append("account-2", ExpectedVersion::Any, &two).unwrap().versions, 2..4);
    // A failed check wrote nothing.
    assert_eq!(b.read_stream("account-1", 0, None).unwrap().len(), 5);
    assert_eq!(b.stream_version("nobody").unwrap(), None);
}

fn idempotent_retries(b: &dyn Backend) {
    let events =
        [NewEvent::new("Opened", b"100").event_id(0xa1), NewEvent::new("Deposited", b"5").event_id(0xa2)];
    let first = b.append("account-1", ExpectedVersion::NoStream, &events).unwrap();
    // The acknowledgement was lost; the caller retries exactly the same append.
    let retry = b.append("account-1", ExpectedVersion::NoStream, &events).unwrap();
    assert!(retry.deduplicated);
    assert_eq!((retry.positions.clone(), retry.versions.clone()), (first.positions.clone(), first.versions));
    // Still recognised after the stream moved on (the expected version alone would now fail).
    b.append("account-1", ExpectedVersion::Exact(1), &[NewEvent::new("Deposited", b"7")]).unwrap();
    assert!(b.append("account-1", ExpectedVersion::NoStream, &events).unwrap().deduplicated);
    assert_eq!(b.read_stream("account-1", 0, None).unwrap().len(), 3, "no retry wrote anything");
    // The same id on a different event is refused, and writes nothing.
    let reused =
        [NewEvent::new("Opened", b"999").event_id(0xa1), NewEvent::new("Deposited", b"5").event_id(0xa2)];
    match b.append("account-1", ExpectedVersion::Any, &reused) {
        Err(Error::Store(StoreError::DuplicateEventId { id, .. })) => assert_eq!(id, 0xa1),
        other => panic!("expected a duplicate event id, got {other:?}"),
    }
    assert_eq!(b.read_stream("account-1", 0, None).unwrap().len(), 3);
    // Ids come back with the events.
    let ids: Vec<_> = b.read_stream("account-1", 0, None).unwrap().iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [Some(0xa1), Some(0xa2), None]);
}

fn stream_reads(b: &dyn Backend) {
    for (i, t) in ["A", "B", "C", "D", "E"].iter().enumerate() {
        let e = NewEvent::new(t, t.as_bytes())
            .metadata(b"corr=1")
            .schema_version(3)
            .timestamp_micros(1_000 + i as i64);
        b.append("s", ExpectedVersion::Any, &[e]).unwrap();
    }
    b.append("other", ExpectedVersion::Any, &[NewEvent::new("X", b"x")]).unwrap();
    b.append("s", ExpectedVersion::Exact(4), &[NewEvent::new("F", b"F"), NewEvent::new("G", b"G")]).unwrap();
    let all = b.read_stream("s", 0, None).unwrap();
    assert_eq!(types(&all), ["A", "B", "C", "D", "E", "F", "G"]);
    assert_eq!(all.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let a = &all[0];
    assert_eq!(
        (a.stream_id.as_str(), a.payload.as_slice(), a.metadata.as_slice()),
        ("s", &b"A"[..], &b"corr=1"[..])
    );
    assert_eq!((a.schema_version, a.timestamp_micros), (3, 1_000));
    assert_eq!(types(&b.read_stream("s", 3, None).unwrap()), ["D", "E", "F", "G"]);
    assert_eq!(types(&b.read_stream("s", 5, Some(1)).unwrap()), ["F"]);
    assert_eq!(types(&b.read_stream("s", 2, Some(2)).unwrap()), ["C", "D"]);
    assert!(b.read_stream("s", 7, None).unwrap().is_empty());
    assert!(b.read_stream("missing", 0, None).unwrap().is_empty());
    assert_eq!(types(&b.read_stream_backward("s", None, None).unwrap()), ["G", "F", "E", "D", "C", "B", "A"]);
    assert_eq!(types(&b.read_stream_backward("s", None, Some(3)).unwrap()), ["G", "F", "E"]);
    assert_eq!(types(&b.read_stream_backward("s", Some(5), Some(2)).unwrap()), ["F", "E"]);
    assert_eq!(types(&b.read_stream_backward("s", Some(1), None).unwrap()), ["B", "A"]);
    assert!(b.read_stream_backward("missing", None, None).unwrap().is_empty());
}

fn global_reads(b: &dyn Backend) {
    b.append("a", ExpectedVersion::Any, &[NewEvent::new("Opened", b"1")]).unwrap();
    b.append("b", ExpectedVersion::Any, &[NewEvent::new("Opened", b"2"), NewEvent::new("Renamed", b"3")])
        .unwrap();
    b.append("a", ExpectedVersion::Any, &[NewEvent::new("Closed", b"4")]).unwrap();
    let all = b.read_all(&ReadAll::default()).unwrap();
    let order: Vec<_> = all.iter().map(|e| (e.stream_id.as_str(), e.event_type.as_str())).collect();
    assert_eq!(order, [("a", "Opened"), ("b", "Opened"), ("b", "Renamed"), ("a", "Closed")]);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let opened = b.read_all(&ReadAll::default().event_type("Opened")).unwrap();
    assert_eq!(opened.iter().map(|e| e.payload.as_slice()).collect::<Vec<_>>(), [b"1", b"2"]);
    // From a position in the middle of a batch, with a limit, up to a position.
    assert_eq!(types(&b.read_all(&ReadAll::default().from(all[2].position)).unwrap()), ["Renamed", "Closed"]);
    assert_eq!(types(&b.read_all(&ReadAll::default().from(all[1].position).limit(1)).unwrap()), ["Opened"]);
    assert_eq!(
        types(&b.read_all(&ReadAll::default().to_inclusive(all[1].position)).unwrap()),
        ["Opened", "Opened"]
    );
    assert!(b.read_all(&ReadAll::default().from(b.next_position().unwrap())).unwrap().is_empty());
}

fn subscription_exactly_once(b: &dyn Backend) {
    for i in 0..3u8 {
        b.append(&format!("s-{}", i % 2), ExpectedVersion::Any, &[NewEvent::new("Old", &[i])]).unwrap();
    }
    let mut sub = b.subscribe(0).unwrap();
    let mut seen = Vec::new();
    while let Some(e) = sub.next_event(Duration::from_millis(500)).unwrap() {
        seen.push(e);
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(types(&seen), ["Old", "Old", "Old"], "caught up from the log");
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..5u8 {
                std::thread::sleep(Duration::from_millis(20));
                let (x, y) = ([i], [i + 100]);
                let batch = [NewEvent::new("New", &x), NewEvent::new("New", &y)];
                b.append(&format!("s-{}", i % 2), ExpectedVersion::Any, &batch).unwrap();
            }
        });
        while seen.len() < 13 {
            let e = sub.next_event(Duration::from_secs(5)).unwrap().expect("a live event within 5 s");
            seen.push(e);
        }
    });
    assert!(sub.next_event(Duration::from_millis(200)).unwrap().is_none(), "nothing past the 13 appended");
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "in order, no duplicate");
    assert_eq!(seen, b.read_all(&ReadAll::default()).unwrap(), "exactly the log, field by field");
    // Resume from a saved position in the middle of a batch: exactly the rest.
    let mut resumed = b.subscribe(seen[4].position).unwrap();
    let mut rest = Vec::new();
    while let Some(e) = resumed.next_event(Duration::from_millis(300)).unwrap() {
        rest.push(e);
    }
    assert_eq!(rest, seen[4..]);
    // A subscription from the head sees only what comes next.
    let mut live = b.subscribe(b.next_position().unwrap()).unwrap();
    assert!(live.next_event(Duration::from_millis(100)).unwrap().is_none());
    b.append("s-9", ExpectedVersion::NoStream, &[NewEvent::new("Later", b"")]).unwrap();
    let later = live.next_event(Duration::from_secs(5)).unwrap().expect("live event");
    assert_eq!((later.stream_id.as_str(), later.event_type.as_str()), ("s-9", "Later"));
    assert!(live.position() > later.position);
}

fn consumer_positions(b: &dyn Backend) {
    assert_eq!(b.consumer_position("projector").unwrap(), None);
    let a = b.append("s", ExpectedVersion::Any, &[NewEvent::new("A", b""), NewEvent::new("B", b"")]).unwrap();
    b.save_consumer_position("projector", a.positions.end).unwrap();
    assert_eq!(b.consumer_position("projector").unwrap(), Some(a.positions.end));
    match b.save_consumer_position("projector", a.positions.start) {
        Err(Error::Store(StoreError::ConsumerPositionNotAdvanced { current, proposed, .. })) => {
            assert_eq!((current, proposed), (a.positions.end, a.positions.start));
        }
        other => panic!("expected a refused position, got {other:?}"),
    }
    b.append_batch(&Batch::default().consumer("projector", a.positions.end + 1)).unwrap();
    assert_eq!(b.consumer_position("projector").unwrap(), Some(a.positions.end + 1));
    // Names that are not subject tokens stay apart.
    b.save_consumer_position("read model.v2", 3).unwrap();
    b.save_consumer_position("read model=2Ev2", 4).unwrap();
    assert_eq!(b.consumer_position("read model.v2").unwrap(), Some(3));
    assert_eq!(b.consumer_position("read model=2Ev2").unwrap(), Some(4));
}

fn odd_stream_ids(b: &dyn Backend) {
    let ids = ["a.b", "a=2Eb", "a b", "a.>", "*", "konto-ÄÖ"];
    for (i, id) in ids.iter().enumerate() {
        b.append(id, ExpectedVersion::NoStream, &[NewEvent::new("E", &[i as u8])]).unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let events = b.read_stream(id, 0, None).unwrap();
        assert_eq!(events.len(), 1, "{id:?} is its own stream");
        assert_eq!((events[0].stream_id.as_str(), events[0].payload.as_slice()), (*id, &[i as u8][..]));
    }
    assert!(matches!(
        b.append("", ExpectedVersion::Any, &[NewEvent::new("E", b"")]),
        Err(Error::Store(StoreError::InvalidArgument(_)))
    ));
}

/// Either the backend writes both streams atomically or it refuses the batch as unsupported: never a part.
fn multi_stream_batch_is_atomic_or_refused(b: &dyn Backend) {
    let (debit, credit) = ([NewEvent::new("Debited", b"30")], [NewEvent::new("Credited", b"30")]);
    let streams = [
        StreamAppend::new("account-a", ExpectedVersion::NoStream, &debit),
        StreamAppend::new("account-b", ExpectedVersion::NoStream, &credit),
    ];
    match b.append_batch(&Batch::new(&streams)) {
        Ok(done) => {
            assert_eq!(done.len(), 2);
            assert_eq!(
                (b.stream_version("account-a").unwrap(), b.stream_version("account-b").unwrap()),
                (Some(0), Some(0))
            );
        }
        Err(Error::Unsupported(reason)) => {
            assert!(reason.contains("atomic"), "{reason}");
            assert_eq!(
                (b.stream_version("account-a").unwrap(), b.stream_version("account-b").unwrap()),
                (None, None)
            );
        }
        Err(e) => panic!("neither done nor refused as unsupported: {e}"),
    }
    // One stream's batch is atomic everywhere, including its consumer-free first version.
    let one = [StreamAppend::new("account-c", ExpectedVersion::NoStream, &debit).first_version(1)];
    assert_eq!(b.append_batch(&Batch::new(&one)).unwrap()[0].versions, 1..2);
}

/// Writers racing on one stream with read-decide-append: every success lands once, versions stay gap-free,
/// and every conflict reported was real (the loser's version was taken by someone else).
fn racing_writers(b: &dyn Backend) {
    let successes = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..4u8 {
            let successes = &successes;
            s.spawn(move || {
                let mut done = 0;
                while done < 10 {
                    let version = b.stream_version("counter").unwrap();
                    let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    match b.append("counter", expected, &[NewEvent::new("Incremented", &[w, done])]) {
                        Ok(a) => {
                            assert_eq!(a.versions.start, version.map_or(0, |v| v + 1));
                            done += 1;
                            successes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) if e.is_wrong_expected_version() => {
                            let now = b.stream_version("counter").unwrap();
                            assert_ne!(now, version, "a conflict means someone else appended");
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let events = b.read_stream("counter", 0, None).unwrap();
    assert_eq!(events.len() as u64, successes.into_inner());
    assert_eq!(events.len(), 40);
    assert!(events.iter().enumerate().all(|(i, e)| e.stream_version == i as u64));
    let mut payloads: Vec<_> = events.iter().map(|e| e.payload.clone()).collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 40, "each success exactly once");
}

/// The aggregate layer on the backend: create, load, command, save, conflict, a retried save, time travel by
/// version, and the same state as folding the events by hand.
#[allow(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents are written euros_cents: 100_00 is 100.00"
)]
fn aggregates(b: &dyn Backend) {
    use foldlog::{EventContext, RepositoryError, Root};
    use foldlog_bank::{Account, BankError};
    use foldlog_jetstream::{AggregateError, BackendRepository};

    let accounts = BackendRepository::<Account>::new(b);
    let mut alice = Root::<Account>::new("alice");
    alice.execute(|a| a.open("Alice", 100_00)).unwrap();
    alice.context(EventContext::new().correlation_id(7));
    assert_eq!(accounts.save(&mut alice).unwrap().versions, 1..2);
    let mut again = Root::<Account>::new("alice");
    again.execute(|a| a.open("Alice", 1)).unwrap();
    assert!(matches!(
        accounts.save(&mut again),
        Err(AggregateError::Repository(RepositoryError::AlreadyExists { version: 1, .. }))
    ));

    let mut one = accounts.get("alice").unwrap();
    let mut two = accounts.get("alice").unwrap();
    one.execute(|a| a.deposit(50_00)).unwrap();
    one.context(EventContext::new().command_id(0xD0));
    let mut retry = accounts.get("alice").unwrap();
    retry.execute(|a| a.deposit(50_00)).unwrap();
    retry.context(EventContext::new().command_id(0xD0));
    assert_eq!(accounts.save(&mut one).unwrap().versions, 2..3);
    assert_eq!(accounts.save(&mut retry).unwrap().versions, 2..3, "a retried save is the first one");
    two.execute(|a| a.withdraw(10_00)).unwrap();
    assert!(matches!(
        accounts.save(&mut two),
        Err(AggregateError::Repository(RepositoryError::Conflict { loaded: 1, actual: 2, .. }))
    ));
    assert!(matches!(two.execute(|a| a.withdraw(1_000_00)), Err(BankError::Overdraft { .. })));

    let now = accounts.get("alice").unwrap();
    assert_eq!((now.version(), now.balance), (2, 150_00));
    assert_eq!(accounts.get_at("alice", 1).unwrap().balance, 100_00);
    assert!(matches!(
        accounts.get_at("alice", 3),
        Err(AggregateError::Repository(RepositoryError::NoSuchVersion { last: 2, .. }))
    ));
    assert!(matches!(accounts.get("bob"), Err(AggregateError::Repository(RepositoryError::NotFound { .. }))));
    let stored = b.read_stream("account-alice", 0, None).unwrap();
    assert_eq!(EventContext::decode(&stored[0].metadata).unwrap().correlation_id, Some(7));
    assert_eq!(stored[1].event_id, Some(0xD0));
}

/// A backend that counts the events its reads return, so a test sees what a load read, not only what it
/// folded (a load that read the whole stream and skipped the events below the snapshot would fold as few).
struct Counting<'b> {
    inner: &'b dyn Backend,
    read: AtomicU64,
}

impl<'b> Counting<'b> {
    fn new(inner: &'b dyn Backend) -> Counting<'b> {
        Counting { inner, read: AtomicU64::new(0) }
    }

    /// Events read since the last call.
    fn take(&self) -> u64 {
        self.read.swap(0, Ordering::Relaxed)
    }

    fn counted(
        &self,
        events: foldlog_jetstream::Result<Vec<OwnedEvent>>,
    ) -> foldlog_jetstream::Result<Vec<OwnedEvent>> {
        if let Ok(e) = &events {
            self.read.fetch_add(e.len() as u64, Ordering::Relaxed);
        }
        events
    }
}

impl Backend for Counting<'_> {
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent<'_>],
    ) -> foldlog_jetstream::Result<foldlog_jetstream::Appended> {
        self.inner.append(stream, expected, events)
    }
    fn append_batch(&self, batch: &Batch<'_>) -> foldlog_jetstream::Result<Vec<foldlog_jetstream::Appended>> {
        self.inner.append_batch(batch)
    }
    fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: Option<u64>,
    ) -> foldlog_jetstream::Result<Vec<OwnedEvent>> {
        self.counted(self.inner.read_stream(stream, from, limit))
    }
    fn read_stream_backward(
        &self,
        stream: &str,
        from: Option<u64>,
        limit: Option<u64>,
    ) -> foldlog_jetstream::Result<Vec<OwnedEvent>> {
        self.counted(self.inner.read_stream_backward(stream, from, limit))
    }
    fn read_all(&self, opts: &ReadAll) -> foldlog_jetstream::Result<Vec<OwnedEvent>> {
        self.counted(self.inner.read_all(opts))
    }
    fn stream_version(&self, stream: &str) -> foldlog_jetstream::Result<Option<u64>> {
        self.inner.stream_version(stream)
    }
    fn next_position(&self) -> foldlog_jetstream::Result<u64> {
        self.inner.next_position()
    }
    fn consumer_position(&self, name: &str) -> foldlog_jetstream::Result<Option<u64>> {
        self.inner.consumer_position(name)
    }
    fn save_consumer_position(&self, name: &str, position: u64) -> foldlog_jetstream::Result<()> {
        self.inner.save_consumer_position(name, position)
    }
    fn snapshots(
        &self,
        stream: &str,
        at_most: u64,
    ) -> foldlog_jetstream::Result<Box<dyn Iterator<Item = FoundSnapshot> + '_>> {
        self.inner.snapshots(stream, at_most)
    }
    fn write_snapshot(
        &self,
        stream: &str,
        snapshot: &foldlog::SnapshotData,
        keep: usize,
    ) -> foldlog_jetstream::Result<()> {
        self.inner.write_snapshot(stream, snapshot, keep)
    }
    fn subscribe(&self, from: u64) -> foldlog_jetstream::Result<Box<dyn EventSubscription + '_>> {
        self.inner.subscribe(from)
    }
}

/// Snapshots through `BackendRepository`, as `foldlog::Repository` takes them: written when a save crosses
/// the policy's multiple, a load starts from one and reads only from its event on, `get_at` below it folds
/// from the start, and a snapshot that does not fit (another state version, a state that does not decode, an
/// event the log does not hold, a version past the stream) is not used and the history is folded.
#[allow(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents are written euros_cents: 100_00 is 100.00"
)]
fn snapshots(b: &dyn Backend) {
    use foldlog::rkyv::{rancor, util::AlignedVec};
    use foldlog::{Root, SnapshotData, SnapshotPolicy, SnapshotRefusal};
    use foldlog_bank::Account;
    use foldlog_jetstream::BackendRepository;

    let counted = Counting::new(b);
    // keep(1): JetStream keeps one snapshot per aggregate, so the embedded store is asked for the same.
    let accounts = BackendRepository::<Account>::with_snapshots(&counted, SnapshotPolicy::every(5).keep(1));
    let plain = BackendRepository::<Account>::new(b);
    let mut alice = Root::<Account>::new("alice");
    alice.execute(|a| a.open("Alice", 100_00)).unwrap();
    let mut written = Vec::new();
    assert!(accounts.save(&mut alice).unwrap().snapshot.is_none());
    for i in 1..=6u64 {
        let mut a = accounts.get("alice").unwrap();
        a.execute(|a| a.deposit(i * 1_00)).unwrap();
        let saved = accounts.save(&mut a).unwrap();
        if let Some(snapshot) = saved.snapshot {
            written.push((saved.versions.end - 1, snapshot.unwrap()));
        }
    }
    assert_eq!(written, [(5, 5)], "one snapshot, by the save that reached version 5");
    let full = plain.get("alice").unwrap();
    assert_eq!((full.version(), full.balance, full.load_info().snapshot_version), (7, 121_00, None));

    counted.take();
    let alice = accounts.get("alice").unwrap();
    assert_eq!(alice.state(), full.state());
    assert_eq!(
        (alice.version(), alice.load_info().snapshot_version, alice.load_info().events_folded),
        (7, Some(5), 2)
    );
    assert_eq!(
        counted.take(),
        3,
        "the snapshot's own event (checked against it) and the two after it, not 7"
    );
    let at5 = accounts.get_at("alice", 5).unwrap();
    assert_eq!((at5.load_info().snapshot_version, at5.load_info().events_folded), (Some(5), 0));
    assert_eq!(at5.state(), plain.get_at("alice", 5).unwrap().state());
    counted.take();
    let at3 = accounts.get_at("alice", 3).unwrap();
    assert_eq!(
        (at3.version(), at3.load_info().snapshot_version, at3.load_info().events_folded),
        (3, None, 3)
    );
    assert_eq!(at3.state(), plain.get_at("alice", 3).unwrap().state());
    // Read with room for a version 0 (streams may start there; a repository's start at 1): one event more
    // than folded, and far from the 7 of the stream.
    assert_eq!(counted.take(), 4, "below the snapshot: the history up to version 3, and version 4");

    // Snapshots that do not fit, each at version 7 (replacing the one at 5), then one past the stream.
    let stream = BackendRepository::<Account>::stream_id("alice");
    let seventh = b.read_stream(&stream, 7, None).unwrap().remove(0);
    let good_state = foldlog::rkyv::to_bytes::<rancor::Error>(alice.state()).unwrap();
    let mut garbage = AlignedVec::<16>::new();
    garbage.extend_from_slice(&[0xff; 5]);
    let at = |version, position, state_version, state: &AlignedVec| {
        SnapshotData::new(version, position, seventh.timestamp_micros, state_version, state.clone())
    };
    type Refused = fn(&SnapshotRefusal) -> bool;
    let bad: [(SnapshotData, Refused); 3] = [
        (at(7, seventh.position, 2, &good_state), |r| {
            matches!(r, SnapshotRefusal::StateVersion { found: 2, current: 1 })
        }),
        (at(7, seventh.position, 1, &garbage), |r| matches!(r, SnapshotRefusal::State(_))),
        (at(7, seventh.position + 1, 1, &good_state), |r| *r == SnapshotRefusal::NotTheLogsEvent),
    ];
    for (snapshot, expected) in bad {
        b.write_snapshot(&stream, &snapshot, 1).unwrap();
        counted.take();
        let loaded = accounts.get("alice").unwrap();
        let info = loaded.load_info();
        assert_eq!((info.snapshot_version, info.events_folded), (None, 7), "{snapshot:?} was refused");
        assert!(
            matches!(info.snapshots_rejected.as_slice(), [(7, why)] if expected(why)),
            "{:?}",
            info.snapshots_rejected
        );
        assert_eq!(loaded.state(), full.state());
        assert!(counted.take() >= 7, "the whole history was read");
    }
    // A good one at 7 again: the load reads its event alone and folds nothing.
    assert_eq!(accounts.snapshot(&full).unwrap(), 7);
    let loaded = accounts.get("alice").unwrap();
    assert_eq!((loaded.load_info().snapshot_version, loaded.load_info().events_folded), (Some(7), 0));
    assert_eq!(loaded.state(), full.state());
    // Past the stream (a log restored to an older state, say): not used, not even looked at.
    b.write_snapshot(&stream, &at(50, seventh.position, 1, &good_state), 1).unwrap();
    counted.take();
    let loaded = accounts.get("alice").unwrap();
    assert_eq!(loaded.load_info().snapshot_version, None);
    assert!(loaded.load_info().snapshots_rejected.is_empty());
    assert_eq!((loaded.state(), counted.take()), (full.state(), 7));
    // An older snapshot written after a newer one (a slow writer) does not stay: the newer one is kept.
    assert_eq!(accounts.snapshot(&full).unwrap(), 7);
    let kept: Vec<u64> = b.snapshots(&stream, u64::MAX).unwrap().map(|(v, _)| v).collect();
    assert_eq!(kept, [50]);
    // Pending events are not in the log yet: no snapshot of them.
    let mut pending = accounts.get("alice").unwrap();
    pending.execute(|a| a.deposit(1)).unwrap();
    assert!(matches!(accounts.snapshot(&pending), Err(Error::Store(StoreError::InvalidArgument(_)))));
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = foldlog::Store::open(dir.path()).unwrap();
                    super::$name(&store);
                }
            )*
        }
        mod jetstream {
            $(
                #[test]
                fn $name() {
                    if let Some(why) = super::nats_server_missing() {
                        panic!("these tests need nats-server (`.ci/run` installs it): {why}");
                    }
                    let server = super::NatsServer::single();
                    let store = super::JetStreamStore::connect(super::JetStreamOptions::new(server.url())).unwrap();
                    super::$name(&store);
                }
            )*
        }
    };
}

on_both_backends!(
    expected_versions,
    idempotent_retries,
    stream_reads,
    global_reads,
    subscription_exactly_once,
    consumer_positions,
    odd_stream_ids,
    multi_stream_batch_is_atomic_or_refused,
    racing_writers,
    aggregates,
    snapshots,
);

/// On the embedded store a `BackendRepository`'s snapshots are the library's snapshot files: the embedded
/// `Repository` loads from one the backend repository wrote, and the other way round.
#[test]
fn embedded_snapshots_are_the_librarys_files() {
    use foldlog::{Repository, Root, SnapshotPolicy};
    use foldlog_bank::Account;
    use foldlog_jetstream::BackendRepository;

    let dir = tempfile::tempdir().unwrap();
    let store = foldlog::Store::open(dir.path()).unwrap();
    let ours = BackendRepository::<Account>::with_snapshots(&store, SnapshotPolicy::every(2));
    let library = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(2));
    let mut alice = Root::<Account>::new("alice");
    alice.execute(|a| a.open("Alice", 100)).unwrap();
    alice.execute(|a| a.deposit(5)).unwrap();
    assert!(matches!(ours.save(&mut alice).unwrap().snapshot, Some(Ok(2))));
    assert_eq!(library.snapshot_versions("alice").unwrap(), [2]);
    assert_eq!(library.get("alice").unwrap().load_info().snapshot_version, Some(2));
    let mut alice = library.get("alice").unwrap();
    alice.execute(|a| a.deposit(7)).unwrap();
    library.save(&mut alice).unwrap();
    assert_eq!(library.snapshot(&alice).unwrap(), 3);
    let loaded = ours.get("alice").unwrap();
    assert_eq!((loaded.load_info().snapshot_version, loaded.balance), (Some(3), 112));
}

/// A snapshot message that is not a snapshot (damaged, or written by something else) is refused under the
/// version its header names, and the history folded, as a damaged snapshot file is on the embedded store.
#[test]
fn jetstream_refuses_a_damaged_snapshot_message() {
    use foldlog::{Root, SnapshotPolicy, SnapshotRefusal};
    use foldlog_bank::Account;
    use foldlog_jetstream::BackendRepository;

    let server = NatsServer::single();
    let store = JetStreamStore::connect(JetStreamOptions::new(server.url())).unwrap();
    let accounts = BackendRepository::<Account>::with_snapshots(&store, SnapshotPolicy::every(2));
    let mut alice = Root::<Account>::new("alice");
    alice.execute(|a| a.open("Alice", 100)).unwrap();
    alice.execute(|a| a.deposit(5)).unwrap();
    assert!(matches!(accounts.save(&mut alice).unwrap().snapshot, Some(Ok(2))));
    assert_eq!(accounts.get("alice").unwrap().load_info().snapshot_version, Some(2));
    // Another client overwrites it with bytes that are not a snapshot file.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Foldlog-Snapshot-Version", "2");
        let js = async_nats::jetstream::new(client);
        let ack = js
            .publish_with_headers("foldlog.default.snap.account-alice", headers, "not a snapshot".into())
            .await
            .unwrap();
        ack.await.unwrap();
    });
    let loaded = accounts.get("alice").unwrap();
    assert_eq!(loaded.load_info().snapshot_version, None);
    assert!(
        matches!(
            loaded.load_info().snapshots_rejected.as_slice(),
            [(2, SnapshotRefusal::TooShort { len: 14 })]
        ),
        "{:?}",
        loaded.load_info().snapshots_rejected
    );
    assert_eq!((loaded.version(), loaded.balance), (2, 105));
}

/// The one line an application changes: a directory or a `nats://` URL.
#[test]
fn open_picks_the_backend_from_one_string() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::single();
    for config in [dir.path().to_string_lossy().into_owned(), format!("{}#orders", server.url())] {
        let backend = foldlog_jetstream::open(&config).unwrap();
        backend.append("order-1", ExpectedVersion::NoStream, &[NewEvent::new("Placed", b"{}")]).unwrap();
        assert_eq!(backend.read_stream("order-1", 0, None).unwrap()[0].event_type, "Placed", "{config}");
    }
}
