//! `#[derive(DomainEvent)]` against the real trait: type names from variants (or renamed), the schema
//! version, the upcaster, and an aggregate saved and loaded through the repository with derived events.

use foldlog::rkyv::{Archive, Deserialize, Serialize};
use foldlog::{Aggregate, CodecError, DomainEvent, EventRef, Repository, Root, Store, ZeroCopy};
use foldlog_derive::DomainEvent;

#[derive(Archive, Serialize, Deserialize, DomainEvent)]
#[rkyv(crate = foldlog::rkyv)]
#[domain_event(schema_version = 3, upcast = upcast_v2)]
enum AccountEvent {
    Opened {
        owner: String,
    },
    #[domain_event(rename = "MoneyIn")]
    Deposited {
        cents: u64,
    },
    Closed,
    Noted(u32),
}

/// Older schemas come back as a note of the schema they were stored with (enough to see the call).
fn upcast_v2(stored: &EventRef<'_>) -> Result<AccountEvent, CodecError> {
    Ok(AccountEvent::Noted(stored.schema_version()))
}

#[derive(Archive, Serialize, Deserialize, DomainEvent)]
#[rkyv(crate = foldlog::rkyv)]
enum Plain {
    Happened,
}

#[test]
fn type_names_schema_version_and_upcaster_come_from_the_attributes() {
    assert_eq!(AccountEvent::Opened { owner: "a".into() }.event_type(), "Opened");
    assert_eq!(AccountEvent::Deposited { cents: 1 }.event_type(), "MoneyIn");
    assert_eq!(AccountEvent::Closed.event_type(), "Closed");
    assert_eq!(AccountEvent::Noted(1).event_type(), "Noted");
    assert_eq!(AccountEvent::SCHEMA_VERSION, 3);
    assert_eq!((Plain::SCHEMA_VERSION, Plain::Happened.event_type()), (1, "Happened"));
}

#[derive(Default)]
struct Account {
    cents: u64,
    open: bool,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    type Codec = ZeroCopy;
    fn apply(&mut self, event: &ArchivedAccountEvent) {
        match event {
            ArchivedAccountEvent::Opened { .. } => self.open = true,
            ArchivedAccountEvent::Deposited { cents } => self.cents += cents.to_native(),
            ArchivedAccountEvent::Closed => self.open = false,
            ArchivedAccountEvent::Noted(_) => {}
        }
    }
}

#[test]
fn derived_events_go_through_the_repository_under_their_stored_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let accounts = Repository::<Account>::new(&store);
    let mut a = Root::<Account>::new("1");
    a.record(AccountEvent::Opened { owner: "Ada".into() });
    a.record(AccountEvent::Deposited { cents: 70 });
    accounts.save(&mut a).expect("save");
    let loaded = accounts.get("1").expect("load");
    assert!(loaded.open);
    assert_eq!(loaded.cents, 70);
    let stored: Vec<(String, u32)> = store
        .read_stream("account-1", 1)
        .map(|e| e.map(|e| (e.event_type().to_owned(), e.schema_version())).expect("read"))
        .collect();
    assert_eq!(stored, [("Opened".to_owned(), 3), ("MoneyIn".to_owned(), 3)]);
}

#[test]
fn the_named_upcaster_reads_older_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let old = [foldlog::NewEvent::new("Deposited", b"an old form").schema_version(2)];
    store.append("account-2", foldlog::ExpectedVersion::NoStream, &old).expect("append");
    let e = store.read_stream("account-2", 0).next().expect("one event").expect("read");
    let mut scratch = foldlog::rkyv::util::AlignedVec::new();
    let decoded = foldlog::decode_event::<Account>(&e, &mut scratch).expect("upcast");
    assert!(matches!(decoded, ArchivedAccountEvent::Noted(n) if n.to_native() == 2));
}
