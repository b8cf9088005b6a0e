//! Time travel by date (issue 14, item 6): the first position at or after a time, and an aggregate as it was
//! at a time, on events whose timestamps the test sets (as an importer does).

use foldlog::{
    Batch, DomainEvent, ExpectedVersion, NewEvent, Repository, RepositoryError, Store, StreamAppend,
};
use foldlog_bank::{Account, AccountEvent};

/// An account opened with 100 at t = 1,000, then deposits of 1, 2, 3 at t = 2,000, 3,000, 4,000 (µs), with
/// events of another stream in between.
fn store_with_dated_history(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    let history = [
        (1_000, AccountEvent::Opened { owner: "X".into(), deposit: 100 }),
        (2_000, AccountEvent::Deposited { amount: 1 }),
        (3_000, AccountEvent::Deposited { amount: 2 }),
        (4_000, AccountEvent::Deposited { amount: 3 }),
    ];
    for (i, (t, e)) in history.iter().enumerate() {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(e).unwrap();
        let event = [NewEvent::new(e.event_type(), &bytes)
            .schema_version(AccountEvent::SCHEMA_VERSION)
            .timestamp_micros(*t)];
        let s = [StreamAppend::new("account-x", ExpectedVersion::Any, &event).first_version(1)];
        store.append_batch(&Batch::new(&s)).unwrap();
        let other = [NewEvent::new("Noise", b"").timestamp_micros(t + 500)];
        store.append(&format!("other-{i}"), ExpectedVersion::Any, &other).unwrap();
    }
    store
}

#[test]
fn the_first_position_at_or_after_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_dated_history(dir.path());
    // Positions: 0 @1000, 1 @1500, 2 @2000, 3 @2500, 4 @3000, 5 @3500, 6 @4000, 7 @4500.
    for (t, want) in
        [(i64::MIN, 0), (1_000, 0), (1_001, 1), (2_500, 3), (4_500, 7), (4_501, 8), (i64::MAX, 8)]
    {
        assert_eq!(store.position_at_time(t).unwrap(), want, "t = {t}");
    }
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(Store::open(empty.path()).unwrap().position_at_time(0).unwrap(), 0);
}

#[test]
fn an_aggregate_as_it_was_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_dated_history(dir.path());
    let repo = Repository::<Account>::new(&store);
    for (t, version, balance) in [(1_000, 1, 100), (2_999, 2, 101), (3_000, 3, 103), (i64::MAX, 4, 106)] {
        let x = repo.get_as_of("x", t).unwrap();
        assert_eq!((x.version(), x.balance), (version, balance), "t = {t}");
    }
    match repo.get_as_of("x", 999) {
        Err(RepositoryError::NotYetAt { micros: 999, first: 1_000, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(repo.get_as_of("nobody", 5_000), Err(RepositoryError::NotFound { .. })));
}
