//! Upcasting chains (issue 13, item 6): `Upcaster` composes one step per schema version, so that events
//! stored at v1 and at v2 both reach the v3 form through the repository, each running only the steps from
//! its own version on; and every way a chain can fall short (no step from an old version, a schema bump
//! without its step, an event newer than the code, a failing reader or step) is a `CodecError` that names the
//! event type and the step.
//!
//! Method: the old forms are appended as raw events with their schema versions, as earlier builds wrote them,
//! then loaded through `Repository` and through `Upcaster::upcast` directly.

use std::sync::LazyLock;

use foldlog::rkyv::{rancor, Archive, Deserialize, Serialize};
use foldlog::{
    deserialize_payload, Aggregate, Batch, CodecError, DomainEvent, EventRef, ExpectedVersion, NewEvent,
    Repository, RepositoryError, Root, Store, StreamAppend, Upcaster, ZeroCopy,
};

/// v1: a credit in whole euros, a debit in whole euros.
#[derive(Archive, Serialize, Deserialize)]
#[rkyv(crate = foldlog::rkyv)]
enum WalletV1 {
    Credited { euros: u32 },
    Debited { euros: u32 },
}

/// v2: cents.
#[derive(Archive, Serialize, Deserialize)]
#[rkyv(crate = foldlog::rkyv)]
enum WalletV2 {
    Credited { cents: u64 },
    Debited { cents: u64 },
}

/// v3, current: cents and a note on credits.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = foldlog::rkyv)]
enum WalletEvent {
    Credited { cents: u64, note: String },
    Debited { cents: u64 },
}

fn read_v1(e: &EventRef<'_>) -> Result<WalletV1, CodecError> {
    deserialize_payload::<WalletV1>(e.payload())
}

fn read_v2(e: &EventRef<'_>) -> Result<WalletV2, CodecError> {
    deserialize_payload::<WalletV2>(e.payload())
}

#[expect(clippy::unnecessary_wraps, reason = "a step's signature: steps may refuse")]
fn v1_to_v2(v1: WalletV1) -> Result<WalletV2, CodecError> {
    Ok(match v1 {
        WalletV1::Credited { euros } => WalletV2::Credited { cents: u64::from(euros) * 100 },
        WalletV1::Debited { euros } => WalletV2::Debited { cents: u64::from(euros) * 100 },
    })
}

#[expect(clippy::unnecessary_wraps, reason = "a step's signature: steps may refuse")]
fn v2_to_v3(v2: WalletV2) -> Result<WalletEvent, CodecError> {
    Ok(match v2 {
        WalletV2::Credited { cents } => WalletEvent::Credited { cents, note: "before v3".into() },
        WalletV2::Debited { cents } => WalletEvent::Debited { cents },
    })
}

/// The whole chain, v1 → v2 → v3.
static WALLET: LazyLock<Upcaster<WalletEvent>> =
    LazyLock::new(|| Upcaster::oldest(1, read_v1).then(read_v2, v1_to_v2).then_current(v2_to_v3));

impl DomainEvent for WalletEvent {
    const SCHEMA_VERSION: u32 = 3;
    fn event_type(&self) -> &'static str {
        match self {
            WalletEvent::Credited { .. } => "Credited",
            WalletEvent::Debited { .. } => "Debited",
        }
    }
    fn upcast(stored: &EventRef<'_>) -> Result<Self, CodecError> {
        WALLET.upcast(stored)
    }
}

#[derive(Default, Debug, PartialEq)]
struct Wallet {
    cents: i64,
    notes: Vec<String>,
}

impl Aggregate for Wallet {
    const NAME: &'static str = "wallet";
    type Event = WalletEvent;
    type Codec = ZeroCopy;
    fn apply(&mut self, event: &ArchivedWalletEvent) {
        match event {
            ArchivedWalletEvent::Credited { cents, note } => {
                self.cents += i64::try_from(cents.to_native()).expect("small amounts");
                self.notes.push(note.to_string());
            }
            ArchivedWalletEvent::Debited { cents } => {
                self.cents -= i64::try_from(cents.to_native()).expect("small amounts");
            }
        }
    }
}

/// The same events as `Wallet`'s, but a chain that starts at v2: the v1 → v2 step was dropped.
#[derive(Archive, Serialize, Deserialize)]
#[rkyv(crate = foldlog::rkyv)]
struct LateEvent(WalletEvent);

static LATE: LazyLock<Upcaster<LateEvent>> =
    LazyLock::new(|| Upcaster::oldest(2, read_v2).then_current(|v2| v2_to_v3(v2).map(LateEvent)));

impl DomainEvent for LateEvent {
    const SCHEMA_VERSION: u32 = 3;
    fn event_type(&self) -> &'static str {
        self.0.event_type()
    }
    fn upcast(stored: &EventRef<'_>) -> Result<Self, CodecError> {
        LATE.upcast(stored)
    }
}

#[derive(Default)]
struct LateWallet;

impl Aggregate for LateWallet {
    const NAME: &'static str = "wallet";
    type Event = LateEvent;
    type Codec = ZeroCopy;
    fn apply(&mut self, _: &ArchivedLateEvent) {}
}

fn bytes<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<
        foldlog::rkyv::api::high::HighSerializer<
            foldlog::rkyv::util::AlignedVec,
            foldlog::rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    foldlog::rkyv::to_bytes::<rancor::Error>(value).expect("archive").to_vec()
}

/// Appends events as older builds wrote them: `(type, payload, schema version)`, to a repository stream.
fn append_old(store: &Store, stream: &str, events: &[(&str, Vec<u8>, u32)]) {
    let events: Vec<_> = events.iter().map(|(t, p, v)| NewEvent::new(t, p).schema_version(*v)).collect();
    let first = store.stream_version(stream).map_or(1, |v| v + 1);
    let expected = store.stream_version(stream).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let streams = [StreamAppend::new(stream, expected, &events).first_version(first)];
    store.append_batch(&Batch::new(&streams)).expect("append");
}

fn decode_reason(result: Result<Root<impl Aggregate>, RepositoryError>) -> String {
    match result {
        Err(RepositoryError::Decode { reason, .. }) => reason.to_string(),
        Err(e) => panic!("expected a decode error, got {e}"),
        Ok(_) => panic!("expected a decode error, the load succeeded"),
    }
}

#[test]
fn v1_and_v2_events_fold_to_the_v3_state_through_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_old(
        &store,
        "wallet-w",
        &[
            ("Credited", bytes(&WalletV1::Credited { euros: 10 }), 1),
            ("Debited", bytes(&WalletV1::Debited { euros: 3 }), 1),
            ("Credited", bytes(&WalletV2::Credited { cents: 250 }), 2),
            ("Debited", bytes(&WalletV2::Debited { cents: 50 }), 2),
        ],
    );
    let wallets = Repository::<Wallet>::new(&store);
    let mut w = wallets.get("w").unwrap();
    assert_eq!((w.cents, w.version(), w.load_info().events_upcast), (10_00 - 3_00 + 250 - 50, 4, 4));
    assert_eq!(w.notes, ["before v3", "before v3"]);

    // New events are written at v3 and read by the codec; the old ones keep being upcast on every load.
    w.record(WalletEvent::Credited { cents: 1, note: "now".into() });
    wallets.save(&mut w).unwrap();
    let w = wallets.get("w").unwrap();
    assert_eq!(
        (w.cents, w.notes.as_slice()),
        (9_01, &["before v3", "before v3", "now"].map(String::from)[..])
    );
    assert_eq!((w.load_info().events_folded, w.load_info().events_upcast), (5, 4));
    let last = store.read_stream("wallet-w", 5).next().unwrap().unwrap();
    assert_eq!(last.schema_version(), 3);

    // The same history written at v3 from the start folds to the same state.
    let mut fresh = Root::<Wallet>::new("fresh");
    for e in [
        WalletEvent::Credited { cents: 10_00, note: "before v3".into() },
        WalletEvent::Debited { cents: 3_00 },
        WalletEvent::Credited { cents: 250, note: "before v3".into() },
        WalletEvent::Debited { cents: 50 },
        WalletEvent::Credited { cents: 1, note: "now".into() },
    ] {
        fresh.record(e);
    }
    wallets.save(&mut fresh).unwrap();
    assert_eq!(wallets.get("fresh").unwrap().into_state(), w.into_state());
}

#[test]
fn each_stored_version_runs_only_the_steps_from_its_own_version_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_old(
        &store,
        "wallet-w",
        &[
            ("Credited", bytes(&WalletV1::Credited { euros: 1 }), 1),
            ("Debited", bytes(&WalletV2::Debited { cents: 7 }), 2),
        ],
    );
    let events: Vec<_> = store.read_stream("wallet-w", 0).map(Result::unwrap).collect();
    // Read as v2, the v1 payload would be misread (another layout); the chain reads it as v1, then steps.
    assert_eq!(
        WALLET.upcast(&events[0]).unwrap(),
        WalletEvent::Credited { cents: 100, note: "before v3".into() }
    );
    assert_eq!(WALLET.upcast(&events[1]).unwrap(), WalletEvent::Debited { cents: 7 });
    assert_eq!(WALLET.versions(), 1..3);
    assert_eq!(LATE.versions(), 2..3);
}

#[test]
fn a_missing_step_is_a_decode_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_old(&store, "wallet-w", &[("Credited", bytes(&WalletV1::Credited { euros: 1 }), 1)]);
    let reason = decode_reason(Repository::<LateWallet>::new(&store).get("w"));
    assert_eq!(reason, "no upcast step v1 → v2 for \"Credited\": the chain starts at v2");
    // The full chain reads the same log.
    assert_eq!(Repository::<Wallet>::new(&store).get("w").unwrap().cents, 100);
}

#[test]
fn a_schema_bump_without_its_step_names_the_step_that_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_old(&store, "wallet-w", &[("Debited", bytes(&WalletV2::Debited { cents: 5 }), 2)]);
    let event = store.read_stream("wallet-w", 0).next().unwrap().unwrap();
    // The code moved to v3 (WalletEvent::SCHEMA_VERSION) but this chain was left ending at v2.
    let stale: Upcaster<WalletEvent> =
        Upcaster::oldest(1, read_v1).then_current(|v1| v1_to_v2(v1).and_then(v2_to_v3));
    assert_eq!(stale.versions(), 1..2);
    let reason = stale.upcast(&event).unwrap_err().to_string();
    assert_eq!(reason, "no upcast step v2 → v3 for \"Debited\": the chain ends at v2, the code is at v3");
}

#[test]
fn an_event_newer_than_the_code_is_refused_by_the_repository_and_by_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_old(&store, "wallet-w", &[("Debited", b"from the future".to_vec(), 4)]);
    let reason = decode_reason(Repository::<Wallet>::new(&store).get("w"));
    assert!(reason.contains("newer than this code's 3"), "{reason}");
    let event = store.read_stream("wallet-w", 0).next().unwrap().unwrap();
    let reason = WALLET.upcast(&event).unwrap_err().to_string();
    assert_eq!(reason, "\"Debited\" at schema version 4 cannot be upcast: it is newer than the code (v3)");
}

#[test]
fn a_failing_reader_or_step_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_old(
        &store,
        "wallet-w",
        &[
            ("Credited", b"not an archive".to_vec(), 1),
            ("Credited", bytes(&WalletV1::Credited { euros: 0 }), 1),
        ],
    );
    let events: Vec<_> = store.read_stream("wallet-w", 0).map(Result::unwrap).collect();
    let reason = WALLET.upcast(&events[0]).unwrap_err().to_string();
    assert!(reason.starts_with("reading \"Credited\" as stored at v1: "), "{reason}");

    let refusing: Upcaster<WalletEvent> = Upcaster::oldest(1, read_v1)
        .then(read_v2, |v1| match v1 {
            WalletV1::Credited { euros: 0 } => Err(CodecError::new("a credit of nothing")),
            v1 => v1_to_v2(v1),
        })
        .then_current(v2_to_v3);
    let reason = refusing.upcast(&events[1]).unwrap_err().to_string();
    assert_eq!(reason, "upcast step v1 → v2 of \"Credited\" failed: a credit of nothing");
    // Through the repository the error also says where the event is.
    let err = Repository::<Wallet>::new(&store).get("w").map(|_| ()).unwrap_err();
    let RepositoryError::Decode { version: 1, schema_version: 1, ref event_type, .. } = err else {
        panic!("expected the first event's decode error, got {err}")
    };
    assert_eq!(event_type, "Credited");
}
