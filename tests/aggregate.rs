//! Aggregates, the repository and snapshots, end to end on real stores in temp directories.
//!
//! Goal: every promise of `src/aggregate.rs` and `src/snapshot.rs` holds where a user can see it: creation
//! events are recorded once, refusals record nothing, loads fold in place (zero-copy, proven by addresses),
//! old schema versions are upcast, other codecs work, conflicts are caught, and snapshots are used when sound
//! and ignored (never trusted) when damaged, outdated or foreign. The bank domain is the one the example uses.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents are written euros_cents: 100_00 is 100.00"
)]

use foldlog_bank as demo_bank;

use std::path::{Path, PathBuf};

use demo_bank::{Account, AccountEvent, ArchivedAccountEvent, BankError};
use foldlog::{
    Aggregate, Codec, CodecError, Deserialized, DomainEvent, Durability, EventRef, NewEvent, Options,
    Repository, RepositoryError, Root, Snapshot, SnapshotPolicy, SnapshotRefusal, Store, ZeroCopy,
};
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

fn options() -> Options {
    Options::default().durability(Durability::Never).segment_size_bytes(1 << 20)
}

fn open(dir: &Path) -> Store {
    Store::open_with(dir, options()).expect("open store")
}

/// Opens `id` with 100.00 and runs `deposits` deposits of 1.00, saving after each.
fn account(repo: &Repository<'_, Account>, id: &str, deposits: u64) -> Root<Account> {
    let mut root = Root::<Account>::new(id);
    root.execute(|a| a.open("Owner", 100_00)).unwrap();
    repo.save(&mut root).unwrap();
    for _ in 0..deposits {
        root.execute(|a| a.deposit(1_00)).unwrap();
        repo.save(&mut root).unwrap();
    }
    root
}

fn event_types(store: &Store, stream: &str) -> Vec<String> {
    store.read_stream(stream, 0).map(|e| e.unwrap().event_type().to_owned()).collect()
}

#[test]
fn creation_is_a_command_whose_event_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut alice = Root::<Account>::new("alice");
    assert_eq!(alice.state(), &Account::default(), "the shell is empty");
    assert!(alice.pending_event_types().is_empty(), "the shell's constructor emits nothing");
    alice.execute(|a| a.open("Alice", 10_00)).unwrap();
    assert_eq!(alice.pending_event_types(), ["Opened"]);
    assert_eq!((alice.open, alice.balance), (true, 10_00), "record applies at once");
    let saved = repo.save(&mut alice).unwrap();
    assert_eq!(saved.versions, 1..2, "repository streams start at version 1");
    assert!(saved.snapshot.is_none());

    let loaded = repo.get("alice").unwrap();
    assert_eq!(loaded.state(), alice.state());
    assert_eq!(loaded.version(), 1);
    assert!(loaded.pending_event_types().is_empty(), "loading records nothing");
    assert_eq!(event_types(&store, "account-alice"), ["Opened"]);

    // Opening it again is refused by the command; creating it again by the repository.
    let mut loaded = loaded;
    assert_eq!(loaded.execute(|a| a.open("Alice", 1)), Err(BankError::AlreadyOpen));
    let mut twin = Root::<Account>::new("alice");
    twin.execute(|a| a.open("Mallory", 1)).unwrap();
    match repo.save(&mut twin) {
        Err(RepositoryError::AlreadyExists { id, version }) => {
            assert_eq!((id.as_str(), version), ("alice", 1))
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(event_types(&store, "account-alice"), ["Opened"]);
    // Saving with nothing pending writes nothing.
    assert_eq!(repo.save(&mut alice).unwrap().versions, 2..2);
    assert_eq!(store.stream_version("account-alice"), Some(1));
}

#[test]
fn a_refused_command_records_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut bob = account(&repo, "bob", 0);
    let before = bob.state().clone();
    assert_eq!(
        bob.execute(|a| a.withdraw(100_01)),
        Err(BankError::Overdraft { balance: 100_00, amount: 100_01 })
    );
    assert_eq!(bob.execute(|a| a.deposit(0)), Err(BankError::ZeroAmount));
    assert_eq!(bob.state(), &before);
    assert!(bob.pending_event_types().is_empty());
    assert_eq!(Root::<Account>::new("x").execute(|a| a.deposit(5)), Err(BankError::NotOpen));
    // Several events from one command, in order.
    bob.execute(|a| Ok::<_, BankError>(vec![a.deposit(1)?, a.withdraw(2)?])).unwrap();
    bob.execute(|_| Ok::<Option<AccountEvent>, BankError>(None)).unwrap();
    assert_eq!(bob.pending_event_types(), ["Deposited", "Withdrawn"]);
    assert_eq!(repo.save(&mut bob).unwrap().versions, 2..4);
    assert_eq!(repo.get("bob").unwrap().balance, 100_00 - 1);
}

#[test]
fn unknown_ids_and_versions_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    match repo.get("nobody") {
        Err(RepositoryError::NotFound { id, stream }) => {
            assert_eq!((id.as_str(), stream.as_str()), ("nobody", "account-nobody"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(repo.get_at("nobody", 1), Err(RepositoryError::NotFound { .. })));
    assert!(matches!(repo.history("nobody", |_, _| {}), Err(RepositoryError::NotFound { .. })));
    account(&repo, "carol", 2);
    for v in [0, 4, u64::MAX] {
        match repo.get_at("carol", v) {
            Err(RepositoryError::NoSuchVersion { version, last, .. }) => assert_eq!((version, last), (v, 3)),
            other => panic!("expected NoSuchVersion for {v}, got {other:?}"),
        }
    }
    let msg = repo.get("nobody").unwrap_err().to_string();
    assert!(msg.contains("nobody") && msg.contains("no events"), "{msg}");
}

#[test]
fn get_at_is_the_state_after_that_version_and_history_shows_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    account(&repo, "dave", 5);
    for v in 1..=6u64 {
        let then = repo.get_at("dave", v).unwrap();
        assert_eq!(then.version(), v);
        assert_eq!(then.balance, 100_00 + (v as i64 - 1) * 1_00);
        assert_eq!(then.transactions, v);
    }
    let mut seen = Vec::new();
    let last = repo
        .history("dave", |e, a| seen.push((e.stream_version(), e.event_type().to_owned(), a.balance)))
        .unwrap();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0], (1, "Opened".into(), 100_00));
    assert_eq!(seen[5], (6, "Deposited".into(), 105_00));
    assert_eq!(last.state(), repo.get("dave").unwrap().state());
    // A root from the past cannot be saved over the present.
    let mut old = repo.get_at("dave", 3).unwrap();
    old.execute(|a| a.withdraw(1)).unwrap();
    assert!(matches!(repo.save(&mut old), Err(RepositoryError::Conflict { loaded: 3, actual: 6, .. })));
}

#[test]
fn two_handles_on_one_aggregate_conflict_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    account(&repo, "erin", 1);
    let mut first = repo.get("erin").unwrap();
    let mut second = repo.get("erin").unwrap();
    first.execute(|a| a.withdraw(50_00)).unwrap();
    second.execute(|a| a.withdraw(60_00)).unwrap();
    repo.save(&mut first).unwrap();
    match repo.save(&mut second) {
        Err(RepositoryError::Conflict { id, loaded, actual }) => {
            assert_eq!((id.as_str(), loaded, actual), ("erin", 2, 3))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.stream_version("account-erin"), Some(3), "the losing save wrote nothing");
    assert_eq!(second.pending_event_types(), ["Withdrawn"], "the stale root keeps its events");
    // Rerun against the new state: now the command refuses (51.00 left).
    let mut second = repo.get("erin").unwrap();
    assert!(matches!(second.execute(|a| a.withdraw(60_00)), Err(BankError::Overdraft { .. })));
    assert_eq!(repo.get("erin").unwrap().balance, 51_00);
}

/// The address of what `decode` returns lies inside the payload slice borrowed from the map: nothing was copied.
#[test]
fn loads_read_payloads_in_place_whatever_the_id_and_type_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut scratch = AlignedVec::new();
    for len in 1..=40 {
        let id = "x".repeat(len);
        let mut root = account(&repo, &id, 1);
        root.execute(|a| a.charge_fee(1, "monthly")).unwrap();
        root.execute(|a| a.refund_fee(1)).unwrap();
        root.execute(|a| a.withdraw(1)).unwrap();
        repo.save(&mut root).unwrap();
        let stream = Repository::<Account>::stream_id(&id);
        for e in store.read_stream(&stream, 0) {
            let e = e.unwrap();
            let payload = e.payload();
            assert_eq!(
                payload.as_ptr() as usize % 8,
                0,
                "payload of {stream} v{} not 8-aligned",
                e.stream_version()
            );
            scratch.clear();
            let archived = <ZeroCopy as Codec<AccountEvent>>::decode(payload, &mut scratch).unwrap();
            let at = archived as *const ArchivedAccountEvent as usize;
            let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
            assert!(range.contains(&at), "archived event at {at:#x} outside the payload {range:x?}");
            assert!(scratch.is_empty(), "decode used the scratch buffer");
        }
        let loaded = repo.get(&id).unwrap();
        assert_eq!(loaded.load_info().events_copied, 0);
        assert_eq!(loaded.load_info().events_folded, 5);
        assert_eq!(loaded.state(), root.state());
    }
}

/// Events appended by other means, with any metadata length, still have their payload 8-aligned in the map
/// (format 3 pads after the metadata), so the rkyv codecs read them in place; an older schema version with no
/// upcaster is refused by name.
#[test]
fn payloads_stay_aligned_whatever_the_metadata_length() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let open_event =
        rkyv::to_bytes::<rkyv::rancor::Error>(&AccountEvent::Opened { owner: "Zed".into(), deposit: 7 })
            .unwrap();
    store
        .append("account-zed", foldlog::ExpectedVersion::NoStream, &[NewEvent::new("Opened", &open_event)])
        .unwrap();
    let mut misaligned = 0;
    for meta_len in 0..16usize {
        let deposit = rkyv::to_bytes::<rkyv::rancor::Error>(&AccountEvent::Deposited { amount: 1 }).unwrap();
        let metadata = vec![0xAB; meta_len];
        let event = NewEvent::new("Deposited", &deposit).metadata(&metadata).schema_version(1);
        store.append("account-zed", foldlog::ExpectedVersion::Any, &[event]).unwrap();
    }
    let mut open_event_schema_zero = 0;
    for e in store.read_stream("account-zed", 0) {
        let e = e.unwrap();
        if e.schema_version() == 0 {
            open_event_schema_zero += 1;
        } else if !(e.payload().as_ptr() as usize)
            .is_multiple_of(std::mem::align_of::<ArchivedAccountEvent>())
        {
            misaligned += 1;
        }
    }
    assert_eq!(open_event_schema_zero, 1);
    assert_eq!(misaligned, 0, "every payload starts 8-aligned whatever the metadata length");
    // The first event was written with schema version 0 (NewEvent::new's default): it is older than the
    // bank's version 1 and AccountEvent has no upcaster, so the load names it.
    let repo = Repository::<Account>::new(&store);
    match repo.get("zed") {
        Err(RepositoryError::Decode { version, schema_version, reason, .. }) => {
            assert_eq!((version, schema_version), (0, 0));
            assert!(reason.0.contains("no upcaster"), "{reason}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // The same events with the right schema version in a fresh stream.
    let store2_dir = tempfile::tempdir().unwrap();
    let store2 = open(store2_dir.path());
    let mut expected_copies = 0;
    for (i, meta_len) in (0..16usize).enumerate() {
        let ev = if i == 0 {
            AccountEvent::Opened { owner: "Zed".into(), deposit: 7 }
        } else {
            AccountEvent::Deposited { amount: 1 }
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&ev).unwrap();
        let metadata = vec![0xAB; meta_len];
        let event = NewEvent::new(ev.event_type(), &bytes).metadata(&metadata).schema_version(1);
        store2.append("account-zed", foldlog::ExpectedVersion::Any, &[event]).unwrap();
    }
    for e in store2.read_stream("account-zed", 0) {
        let e = e.unwrap();
        if !(e.payload().as_ptr() as usize).is_multiple_of(std::mem::align_of::<ArchivedAccountEvent>()) {
            expected_copies += 1;
        }
    }
    let zed = Repository::<Account>::new(&store2).get_at("zed", 15).unwrap();
    assert_eq!(zed.balance, 7 + 15);
    assert_eq!(zed.load_info().events_copied, expected_copies);
    assert_eq!(expected_copies, 0);
    // The owned path reads the same bytes to the same state.
    let owned = Repository::<OwnedAccount>::new(&store2).get_at("zed", 15).unwrap();
    assert_eq!(owned.balance, zed.balance);
}

/// The bank account folded from owned, deserialized events.
#[derive(Default)]
struct OwnedAccount {
    balance: i64,
}

impl Aggregate for OwnedAccount {
    const NAME: &'static str = "account";
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
    }
}

#[test]
fn the_owned_path_folds_the_same_log_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut fred = account(&repo, "fred", 3);
    fred.execute(|a| a.charge_fee(500_00, "oops")).unwrap();
    repo.save(&mut fred).unwrap();
    let owned = Repository::<OwnedAccount>::new(&store).get("fred").unwrap();
    assert_eq!(owned.balance, fred.balance);
    assert_eq!(owned.version(), fred.version());
}

// ---- Schema evolution: a wallet whose events changed shape between version 1 and version 2.

mod wallet_v1 {
    use super::*;

    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub enum WalletEvent {
        Created {
            owner: String,
        },
        /// Whole euros, u32.
        Credited {
            euros: u32,
        },
    }

    impl DomainEvent for WalletEvent {
        const SCHEMA_VERSION: u32 = 1;
        fn event_type(&self) -> &'static str {
            match self {
                WalletEvent::Created { .. } => "Created",
                WalletEvent::Credited { .. } => "Credited",
            }
        }
    }

    #[derive(Default)]
    pub struct Wallet {
        pub euros: u64,
    }

    impl Aggregate for Wallet {
        const NAME: &'static str = "wallet";
        type Event = WalletEvent;
        type Codec = ZeroCopy;
        fn apply(&mut self, event: &ArchivedWalletEvent) {
            match event {
                ArchivedWalletEvent::Created { .. } => {}
                ArchivedWalletEvent::Credited { euros } => self.euros += u64::from(euros.to_native()),
            }
        }
    }
}

mod wallet_v2 {
    use super::*;

    /// Version 2: amounts in cents with a currency.
    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub enum WalletEvent {
        Created { owner: String, currency: String },
        Credited { cents: u64, currency: String },
    }

    impl DomainEvent for WalletEvent {
        const SCHEMA_VERSION: u32 = 2;
        fn event_type(&self) -> &'static str {
            match self {
                WalletEvent::Created { .. } => "Created",
                WalletEvent::Credited { .. } => "Credited",
            }
        }
        fn upcast(stored: &EventRef<'_>) -> Result<Self, CodecError> {
            match stored.schema_version() {
                1 => Ok(
                    match foldlog::deserialize_payload::<super::wallet_v1::WalletEvent>(stored.payload())? {
                        super::wallet_v1::WalletEvent::Created { owner } => {
                            WalletEvent::Created { owner, currency: "EUR".into() }
                        }
                        super::wallet_v1::WalletEvent::Credited { euros } => {
                            WalletEvent::Credited { cents: u64::from(euros) * 100, currency: "EUR".into() }
                        }
                    },
                ),
                v => Err(CodecError::new(format!("unknown wallet schema version {v}"))),
            }
        }
    }

    #[derive(Default, Debug, PartialEq)]
    pub struct Wallet {
        pub owner: String,
        pub cents: u64,
        pub currencies: Vec<String>,
    }

    impl Aggregate for Wallet {
        const NAME: &'static str = "wallet";
        type Event = WalletEvent;
        type Codec = ZeroCopy;
        fn apply(&mut self, event: &ArchivedWalletEvent) {
            let currency = match event {
                ArchivedWalletEvent::Created { owner, currency } => {
                    self.owner = owner.to_string();
                    currency
                }
                ArchivedWalletEvent::Credited { cents, currency } => {
                    self.cents += cents.to_native();
                    currency
                }
            };
            if !self.currencies.iter().any(|c| c == currency.as_str()) {
                self.currencies.push(currency.to_string());
            }
        }
    }
}

#[test]
fn events_written_as_v1_are_read_through_a_v2_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let v1 = Repository::<wallet_v1::Wallet>::new(&store);
    let mut w = Root::<wallet_v1::Wallet>::new("w");
    w.record(wallet_v1::WalletEvent::Created { owner: "Gus".into() });
    w.record(wallet_v1::WalletEvent::Credited { euros: 12 });
    w.record(wallet_v1::WalletEvent::Credited { euros: 30 });
    v1.save(&mut w).unwrap();
    assert_eq!(v1.get("w").unwrap().euros, 42);

    // The new code reads the old events through the upcaster and writes new ones as version 2.
    let v2 = Repository::<wallet_v2::Wallet>::new(&store);
    let mut w2 = v2.get("w").unwrap();
    assert_eq!(w2.load_info().events_upcast, 3);
    assert_eq!((w2.owner.as_str(), w2.cents, w2.currencies.clone()), ("Gus", 4200, vec!["EUR".to_string()]));
    w2.record(wallet_v2::WalletEvent::Credited { cents: 150, currency: "CHF".into() });
    v2.save(&mut w2).unwrap();
    let schemas: Vec<u32> = store.read_stream("wallet-w", 0).map(|e| e.unwrap().schema_version()).collect();
    assert_eq!(schemas, [1, 1, 1, 2], "the log keeps the old bytes; upcasting happens on read");
    let again = v2.get("w").unwrap();
    assert_eq!(again.state(), w2.state());
    assert_eq!((again.load_info().events_upcast, again.load_info().events_folded), (3, 4));
    assert_eq!(v2.get_at("w", 2).unwrap().cents, 1200);

    // The old code does not guess at an event from the future.
    match v1.get("w") {
        Err(RepositoryError::Decode { version: 4, schema_version: 2, reason, .. }) => {
            assert!(reason.0.contains("newer"), "{reason}")
        }
        other => panic!("expected a decode error, got {:?}", other.map(|r| r.euros)),
    }
}

// ---- A codec of the user's own: a line of text, as a JSON codec would do it.

#[derive(Clone, Debug, PartialEq)]
enum TallyEvent {
    Added(u64),
    Reset,
}

impl DomainEvent for TallyEvent {
    const SCHEMA_VERSION: u32 = 1;
    fn event_type(&self) -> &'static str {
        match self {
            TallyEvent::Added(_) => "Added",
            TallyEvent::Reset => "Reset",
        }
    }
}

struct TextCodec;

impl Codec<TallyEvent> for TextCodec {
    type View<'a> = TallyEvent;

    fn encode(event: &TallyEvent, out: &mut AlignedVec) -> Result<(), CodecError> {
        let text = match event {
            TallyEvent::Added(n) => format!("added {n}"),
            TallyEvent::Reset => "reset".to_owned(),
        };
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn decode<'a>(payload: &'a [u8], _scratch: &'a mut AlignedVec) -> Result<TallyEvent, CodecError> {
        let text = std::str::from_utf8(payload).map_err(CodecError::new)?;
        match text.split_once(' ') {
            Some(("added", n)) => n.parse().map(TallyEvent::Added).map_err(CodecError::new),
            None if text == "reset" => Ok(TallyEvent::Reset),
            _ => Err(CodecError::new(format!("not a tally event: {text:?}"))),
        }
    }

    fn from_owned(event: TallyEvent, _scratch: &mut AlignedVec) -> Result<TallyEvent, CodecError> {
        Ok(event)
    }
}

#[derive(Default, Debug, PartialEq)]
struct Tally {
    total: u64,
}

impl Aggregate for Tally {
    const NAME: &'static str = "tally";
    type Event = TallyEvent;
    type Codec = TextCodec;
    fn apply(&mut self, event: TallyEvent) {
        match event {
            TallyEvent::Added(n) => self.total += n,
            TallyEvent::Reset => self.total = 0,
        }
    }
}

#[test]
fn payloads_in_other_codecs_take_the_owned_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Tally>::new(&store);
    let mut t = Root::<Tally>::new("t");
    t.record(TallyEvent::Added(5));
    t.record(TallyEvent::Reset);
    t.record(TallyEvent::Added(7));
    repo.save(&mut t).unwrap();
    let payloads: Vec<String> = store
        .read_stream("tally-t", 0)
        .map(|e| String::from_utf8(e.unwrap().payload().to_vec()).unwrap())
        .collect();
    assert_eq!(payloads, ["added 5", "reset", "added 7"], "the log holds the codec's bytes");
    assert_eq!(repo.get("t").unwrap().total, 7);
    assert_eq!(repo.get_at("t", 1).unwrap().total, 5);
    // Damaged bytes are a named decode error, not a panic or a wrong state.
    store
        .append(
            "tally-t",
            foldlog::ExpectedVersion::Any,
            &[NewEvent::new("Added", b"added many").schema_version(1)],
        )
        .unwrap();
    match repo.get("t") {
        Err(e @ RepositoryError::Decode { version: 4, .. }) => {
            assert!(e.to_string().contains("tally-t"), "{e}")
        }
        other => panic!("expected a decode error, got {:?}", other.map(|r| r.total)),
    }
}

// ---- Snapshots.

/// The bank account under another state schema version (as after a change to the state struct).
#[derive(Default, Archive, Serialize, Deserialize, Debug, PartialEq)]
struct AccountV2(Account);

impl Aggregate for AccountV2 {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    type Codec = ZeroCopy;
    fn apply(&mut self, event: &ArchivedAccountEvent) {
        self.0.apply(event)
    }
}

impl Snapshot for AccountV2 {
    const STATE_VERSION: u32 = 2;
}

fn snapshot_files(store_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(store_dir.join("snapshots")) else { return out };
    for d in dirs {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn snapshots_are_taken_by_policy_and_loads_fold_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(10).keep(3));
    let full = Repository::<Account>::new(&store);
    let mut root = Root::<Account>::new("gail");
    root.execute(|a| a.open("Gail", 1_00)).unwrap();
    let mut taken = Vec::new();
    for i in 0..44 {
        root.execute(|a| a.deposit(i + 1)).unwrap();
        if i % 3 == 0 {
            if let Some(s) = repo.save(&mut root).unwrap().snapshot {
                taken.push(s.unwrap());
            }
        }
    }
    repo.save(&mut root).unwrap();
    assert_eq!(root.version(), 45);
    // Saves land on versions 2, 5, 8, ...: the first save at or past each multiple of 10 snapshots.
    assert_eq!(taken, [11, 20, 32, 41]);
    assert_eq!(repo.snapshot_versions("gail").unwrap(), [41, 32, 20], "keep = 3");

    let fast = repo.get("gail").unwrap();
    assert_eq!(fast.load_info().snapshot_version, Some(41));
    assert_eq!(fast.load_info().events_folded, 4);
    assert_eq!(fast.state(), full.get("gail").unwrap().state());
    assert_eq!(fast.state(), root.state());
    for v in 1..=45 {
        let a = repo.get_at("gail", v).unwrap();
        let expect_snapshot = [41, 32, 20].into_iter().find(|&s| s <= v);
        assert_eq!(a.load_info().snapshot_version, expect_snapshot, "v{v}");
        assert_eq!(a.state(), full.get_at("gail", v).unwrap().state(), "v{v}");
        assert_eq!(a.version(), v);
    }
    // Explicit snapshots; refused with pending events.
    let mut r = repo.get("gail").unwrap();
    assert_eq!(repo.snapshot(&r).unwrap(), 45);
    r.execute(|a| a.deposit(1)).unwrap();
    assert!(repo.snapshot(&r).is_err());
    assert!(Repository::<Account>::new(&store).snapshot(&r).is_err(), "a repository without snapshots");
}

#[test]
fn damaged_outdated_and_foreign_snapshots_are_ignored_and_deleting_them_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(5).keep(2));
    let full = Repository::<Account>::new(&store);
    account(&repo, "hank", 11);
    let truth = full.get("hank").unwrap();
    assert_eq!(repo.snapshot_versions("hank").unwrap(), [10, 5]);
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| !f.to_string_lossy().contains("hank")), "no raw ids in paths: {files:?}");

    // A flipped byte in the newest: the older one is used.
    let newest = files.iter().find(|f| f.to_string_lossy().ends_with("00000000000000000010.snap")).unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(newest, &bytes).unwrap();
    let loaded = repo.get("hank").unwrap();
    assert_eq!(loaded.load_info().snapshot_version, Some(5));
    assert_eq!(loaded.load_info().snapshots_rejected.len(), 1);
    assert_eq!(
        loaded.load_info().snapshots_rejected[0].1,
        SnapshotRefusal::Checksum,
        "{:?}",
        loaded.load_info()
    );
    assert_eq!(loaded.state(), truth.state());
    // A truncated file, a garbage file.
    std::fs::write(newest, &bytes[..bytes.len() / 3]).unwrap();
    assert_eq!(repo.get("hank").unwrap().state(), truth.state());
    std::fs::write(newest, b"not a snapshot").unwrap();
    assert_eq!(repo.get("hank").unwrap().load_info().snapshot_version, Some(5));

    // Another state schema version: every snapshot is refused, the state rebuilt from events.
    let v2 = Repository::<AccountV2>::with_snapshots(&store, SnapshotPolicy::every(5));
    let rebuilt = v2.get("hank").unwrap();
    assert_eq!(rebuilt.load_info().snapshot_version, None);
    assert!(rebuilt
        .load_info()
        .snapshots_rejected
        .iter()
        .any(|(_, why)| matches!(why, SnapshotRefusal::StateVersion { .. })));
    assert_eq!(rebuilt.state().0, *truth.state());

    // What a crash in the middle of a snapshot write leaves (a temp file), and a stray directory with a
    // snapshot's name: both ignored.
    let stream_dir = newest.parent().unwrap();
    std::fs::write(stream_dir.join("00000000000000000011.snap.tmp-1-1"), b"half a snapshot").unwrap();
    std::fs::create_dir(stream_dir.join("00000000000000000012.snap")).unwrap();
    assert_eq!(repo.snapshot_versions("hank").unwrap(), [10, 5]);
    assert_eq!(repo.get("hank").unwrap().state(), truth.state());
    std::fs::remove_dir(stream_dir.join("00000000000000000012.snap")).unwrap();

    // Deleted through the API, or the whole directory removed by hand: same state.
    assert_eq!(repo.delete_snapshots("hank").unwrap(), 2);
    let after = repo.get("hank").unwrap();
    assert_eq!((after.load_info().snapshot_version, after.load_info().events_folded), (None, 12));
    assert_eq!(after.state(), truth.state());
    repo.snapshot(&after).unwrap();
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    assert_eq!(repo.get("hank").unwrap().state(), truth.state());
    assert_eq!(repo.delete_snapshots("hank").unwrap(), 0);
}

/// A snapshot that does not describe this log's events (copied from another store, or taken before a crash
/// lost the unsynced events it covered and different ones took their versions) is refused.
#[test]
fn a_snapshot_of_another_history_is_refused() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    let b = open(b_dir.path());
    let repo_a = Repository::<Account>::with_snapshots(&a, SnapshotPolicy::every(4));
    let repo_b = Repository::<Account>::with_snapshots(&b, SnapshotPolicy::every(0));
    account(&repo_a, "ivy", 5);
    // Something else first in b, so even the global positions differ.
    b.append("unrelated", foldlog::ExpectedVersion::NoStream, &[NewEvent::new("Noise", b"x")]).unwrap();
    // The same id in b, with other amounts, at the same versions.
    let mut other = Root::<Account>::new("ivy");
    other.execute(|x| x.open("Ivy", 1)).unwrap();
    for _ in 0..5 {
        other.execute(|x| x.deposit(3)).unwrap();
    }
    repo_b.save(&mut other).unwrap();
    let from = snapshot_files(a_dir.path());
    assert_eq!(from.len(), 1);
    let rel = from[0].strip_prefix(a_dir.path()).unwrap();
    std::fs::create_dir_all(b_dir.path().join(rel).parent().unwrap()).unwrap();
    std::fs::copy(&from[0], b_dir.path().join(rel)).unwrap();
    assert_eq!(repo_b.snapshot_versions("ivy").unwrap(), [4]);
    let loaded = repo_b.get("ivy").unwrap();
    assert_eq!(loaded.load_info().snapshot_version, None, "{:?}", loaded.load_info());
    let why = &loaded.load_info().snapshots_rejected[0].1;
    assert_eq!(*why, SnapshotRefusal::NotTheLogsEvent, "{:?}", loaded.load_info());
    assert_eq!(loaded.balance, 1 + 15);
}

#[test]
fn a_failed_snapshot_never_fails_the_save() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(2));
    let snapshots = dir.path().join("snapshots");
    foldlog::io::testing::arm(foldlog::io::FaultPlan {
        dir: snapshots.clone(),
        nth: 1,
        persistent: true,
        errno: libc::EIO,
        ops: None,
    });
    let mut root = account(&repo, "jack", 0);
    root.execute(|a| a.deposit(1)).unwrap();
    let saved = repo.save(&mut root);
    let (calls, failed) = foldlog::io::testing::disarm(&snapshots);
    let saved = saved.expect("the save itself succeeds");
    assert_eq!(saved.versions, 2..3);
    assert!(matches!(saved.snapshot, Some(Err(foldlog::Error::Io { .. }))), "{saved:?}");
    assert!(calls >= 1 && failed >= 1);
    assert_eq!(repo.get("jack").unwrap().state(), root.state());
    assert!(
        snapshot_files(dir.path()).iter().all(|f| !f.to_string_lossy().contains(".tmp")),
        "no temp file left"
    );
}

#[test]
fn ids_that_are_not_file_names_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(1));
    for id in ["../../etc/passwd", "a/b", "ünïcødé ☃", &"long".repeat(200)] {
        let root = account(&repo, id, 1);
        let loaded = repo.get(id).unwrap();
        assert_eq!(loaded.load_info().snapshot_version, Some(2), "{id}");
        assert_eq!(loaded.state(), root.state());
    }
    for f in snapshot_files(dir.path()) {
        assert!(f.starts_with(dir.path().join("snapshots")), "{f:?}");
        assert_eq!(f.file_name().unwrap().len(), "00000000000000000002.snap".len());
    }
}

/// Every code block of docs/guide.md that names crates/foldlog-bank/src/lib.rs is a verbatim excerpt of it, so the guide
/// cannot drift from code the example compiles and runs. (The other blocks are doctests.)
#[test]
fn guide_excerpts_are_verbatim_from_the_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/guide.md")).unwrap();
    let source = std::fs::read_to_string(root.join("crates/foldlog-bank/src/lib.rs")).unwrap();
    let mut excerpts = 0;
    let mut rest = guide.as_str();
    while let Some(start) = rest.find("```rust") {
        let body_start = start + rest[start..].find('\n').unwrap() + 1;
        let end = body_start + rest[body_start..].find("```").unwrap();
        let block = &rest[body_start..end];
        if let Some(code) = block.strip_prefix("// crates/foldlog-bank/src/lib.rs\n") {
            assert!(
                source.contains(code),
                "guide excerpt not found verbatim in crates/foldlog-bank/src/lib.rs:\n{code}"
            );
            excerpts += 1;
        }
        rest = &rest[end + 3..];
    }
    assert!(excerpts >= 3, "the guide quotes the example ({excerpts} excerpts found)");
}

/// Issue 9, item 9: two threads saving one aggregate both prune the same old snapshot file, and the one that
/// found it already gone reported its own written snapshot as failed. A prune now ignores NotFound.
#[test]
fn regression_9_concurrent_saves_never_report_a_written_snapshot_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(1).keep(1));
    account(&repo, "kim", 0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = Vec::new();
                    let mut saved = 0;
                    while saved < 300 {
                        let mut root = repo.get("kim").unwrap();
                        root.execute(|a| a.deposit(1)).unwrap();
                        match repo.save(&mut root) {
                            Ok(s) => {
                                saved += 1;
                                if let Some(Err(e)) = s.snapshot {
                                    failed.push(e.to_string());
                                }
                            }
                            Err(RepositoryError::Conflict { .. }) => {}
                            Err(e) => panic!("save: {e}"),
                        }
                    }
                    failed
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "snapshots reported failed: {failures:?}");
    assert_eq!(repo.get("kim").unwrap().version(), 601);
}
