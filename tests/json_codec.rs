//! The `Json` codec (feature `serde`; issue 13, item 6): serde events saved and loaded through a repository,
//! with snapshots of nothing special, readable payloads, schema upcasting, and a damaged payload as a clear
//! decode error.

use foldlog::{Aggregate, CodecError, DomainEvent, EventRef, ExpectedVersion, Json, NewEvent, Repository};
use foldlog::{Batch, RepositoryError, Root, Store, StreamAppend};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { cents: u64 },
}

impl DomainEvent for AccountEvent {
    const SCHEMA_VERSION: u32 = 2;
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
        }
    }

    /// Schema 1 stored deposits in whole units: `{"Deposited":{"units":N}}`.
    fn upcast(stored: &EventRef<'_>) -> Result<Self, CodecError> {
        #[derive(serde::Deserialize)]
        enum V1 {
            Deposited { units: u64 },
        }
        match serde_json::from_slice::<V1>(stored.payload()).map_err(CodecError::new)? {
            V1::Deposited { units } => Ok(AccountEvent::Deposited { cents: units * 100 }),
        }
    }
}

#[derive(Default)]
struct Account {
    owner: String,
    cents: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    type Codec = Json;
    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = owner,
            AccountEvent::Deposited { cents } => self.cents += cents,
        }
    }
}

#[test]
fn serde_events_round_trip_through_the_repository_as_readable_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let accounts = Repository::<Account>::new(&store);
    let mut a = Root::<Account>::new("7");
    a.record(AccountEvent::Opened { owner: "Ada".into() });
    a.record(AccountEvent::Deposited { cents: 250 });
    accounts.save(&mut a).expect("save");
    let loaded = accounts.get("7").expect("load");
    assert_eq!((loaded.owner.as_str(), loaded.cents, loaded.version()), ("Ada", 250, 2));
    let payloads: Vec<Vec<u8>> =
        store.read_stream("account-7", 1).map(|e| e.expect("read").payload().to_vec()).collect();
    assert_eq!(
        payloads,
        [br#"{"Opened":{"owner":"Ada"}}"#.to_vec(), br#"{"Deposited":{"cents":250}}"#.to_vec()]
    );
}

#[test]
fn an_old_schema_is_upcast_and_a_damaged_payload_is_a_decode_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    // Written by hand: a schema-1 deposit, then a payload that is not JSON of any known form.
    let v1 = [NewEvent::new("Deposited", br#"{"Deposited":{"units":3}}"#).schema_version(1)];
    // Repository streams start at version 1.
    let first = [StreamAppend::new("account-8", ExpectedVersion::NoStream, &v1).first_version(1)];
    store.append_batch(&Batch::new(&first)).expect("append");
    let accounts = Repository::<Account>::new(&store);
    assert_eq!(accounts.get("8").expect("upcast on load").cents, 300);
    let bad = NewEvent::new("Deposited", b"{not json").schema_version(2);
    store.append("account-8", ExpectedVersion::Exact(1), &[bad]).expect("append");
    match accounts.get("8") {
        Err(RepositoryError::Decode { version, event_type, .. }) => {
            assert_eq!((version, event_type.as_str()), (2, "Deposited"))
        }
        other => panic!("expected a decode error: {:?}", other.map(|r| r.version())),
    }
}

/// A projection decodes `Account` events from a subscription with the repository's own dispatch
/// (`decode_event`): current ones through the codec, old ones through the upcaster.
#[test]
fn a_projection_decodes_current_and_old_events_with_the_repository_dispatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let v1 = [NewEvent::new("Deposited", br#"{"Deposited":{"units":2}}"#).schema_version(1)];
    let first = [StreamAppend::new("account-9", ExpectedVersion::NoStream, &v1).first_version(1)];
    store.append_batch(&Batch::new(&first)).expect("append");
    let accounts = Repository::<Account>::new(&store);
    let mut a = accounts.get("9").expect("load");
    a.record(AccountEvent::Deposited { cents: 5 });
    accounts.save(&mut a).expect("save");
    let mut scratch = foldlog::rkyv::util::AlignedVec::new();
    let decoded: Vec<AccountEvent> = store
        .subscribe(0)
        .stream_prefix("account-")
        .idle_timeout(std::time::Duration::from_millis(10))
        .map(|e| foldlog::decode_event::<Account>(&e.expect("event"), &mut scratch).expect("decode"))
        .collect();
    assert_eq!(decoded, [AccountEvent::Deposited { cents: 200 }, AccountEvent::Deposited { cents: 5 }]);
}
