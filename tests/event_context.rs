//! Metadata and ids through the repository (issue 13, item 5): a command's correlation id, causation id and
//! application metadata reach every event it saves and read back unchanged; a command id makes a retried save
//! (after an error that hid a success) return the first save's result instead of a conflict, in the same
//! process and after a reopen; no metadata costs no bytes; and all of it works with snapshots.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents are written euros_cents: 100_00 is 100.00"
)]

use foldlog::{
    Durability, EventContext, ExpectedVersion, NewEvent, Options, Repository, RepositoryError, Root,
    SnapshotPolicy, Store, UnitOfWork,
};
use foldlog_bank::Account;

fn open(dir: &std::path::Path) -> Store {
    Store::open_with(dir, Options::default().durability(Durability::Always)).expect("open")
}

#[test]
fn context_reaches_every_event_of_a_save_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut alice = Root::<Account>::new("alice");
    alice.execute(|a| a.open("Alice", 100_00)).unwrap();
    alice.execute(|a| a.deposit(5_00)).unwrap();
    let context = EventContext::new()
        .correlation_id(0xC0FFEE)
        .causation_id(0xCA05E)
        .metadata(b"user=alice;ip=10.0.0.7".to_vec());
    alice.context(context.clone());
    repo.save(&mut alice).unwrap();
    // The next save carries no context: it was cleared by the successful save.
    alice.execute(|a| a.deposit(1_00)).unwrap();
    repo.save(&mut alice).unwrap();

    let events: Vec<_> = store.read_stream("account-alice", 0).map(|e| e.unwrap().to_owned()).collect();
    assert_eq!(events.len(), 3);
    for e in &events[..2] {
        let back = EventContext::decode(&e.metadata).expect("the repository's layout");
        assert_eq!((back.correlation_id, back.causation_id), (Some(0xC0FFEE), Some(0xCA05E)));
        assert_eq!(back.metadata, b"user=alice;ip=10.0.0.7");
        assert_eq!(e.event_id, None, "no command id, no event ids");
    }
    assert!(events[2].metadata.is_empty(), "no context, no metadata bytes");
    assert_eq!(EventContext::decode(&events[2].metadata), Some(EventContext::new()));
    // The state folds as usual.
    assert_eq!(repo.get("alice").unwrap().balance, 106_00);
}

#[test]
fn foreign_metadata_is_not_mistaken_for_a_context() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", b"x").metadata(b"{\"json\":1}")]).unwrap();
    let e = store.read_all(0).next().unwrap().unwrap();
    assert_eq!(EventContext::of(&e), None);
    for bad in [&[1u8, 4][..], &[1, 1, 0, 0], &[2, 0]] {
        assert_eq!(EventContext::decode(bad), None, "{bad:?}");
    }
}

/// Two handles decided the same command from the same state (the caller retried after an error that hid
/// the first save's success): with a command id the retry is the first save, not a conflict; without one,
/// or with another, it is a conflict. Nothing is written twice.
#[test]
fn a_retried_save_with_the_same_command_id_returns_the_first_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut bob = Root::<Account>::new("bob");
    bob.execute(|a| a.open("Bob", 50_00)).unwrap();
    repo.save(&mut bob).unwrap();

    let decide = |command: Option<u128>| {
        let mut root = repo.get("bob").unwrap();
        root.execute(|a| a.deposit(7_00)).unwrap();
        root.execute(|a| a.withdraw(2_00)).unwrap();
        root.context(EventContext::new().correlation_id(9).command_id(command));
        root
    };
    let (mut first, mut retry) = (decide(Some(0xAB)), decide(Some(0xAB)));
    let (other, plain) = (decide(Some(0xCD)), decide(None));
    let saved = repo.save(&mut first).unwrap();
    assert_eq!(saved.versions, 2..4);
    let again = repo.save(&mut retry).unwrap();
    assert_eq!(again.versions, saved.versions, "the retry is the first save");
    assert_eq!(retry.version(), 3);
    assert_eq!(store.stream_version("account-bob"), Some(3), "nothing written twice");
    for mut stale in [other, plain] {
        match repo.save(&mut stale) {
            Err(RepositoryError::Conflict { loaded: 1, actual: 3, .. }) => {}
            r => panic!("{r:?}"),
        }
    }
    let ids: Vec<_> = store.read_stream("account-bob", 2).map(|e| e.unwrap().event_id()).collect();
    assert_eq!(ids, [Some(0xAB), Some(0xAC)], "event i takes command_id + i");
    // After a reopen the ids are still remembered (the checkpoint and the log keep them).
    drop(store);
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut root = Root::<Account>::new("bob");
    root.execute(|a| a.open("Bob", 50_00)).unwrap();
    root.context(EventContext::new().command_id(0xFEED));
    let mut twin = Root::<Account>::new("carol");
    twin.execute(|a| a.open("Carol", 1_00)).unwrap();
    twin.context(EventContext::new().command_id(0xFEED));
    assert!(matches!(repo.save(&mut root), Err(RepositoryError::AlreadyExists { .. })), "bob exists");
    repo.save(&mut twin).unwrap();
    drop(store);
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let mut carol_retry = Root::<Account>::new("carol");
    carol_retry.execute(|a| a.open("Carol", 1_00)).unwrap();
    carol_retry.context(EventContext::new().command_id(0xFEED));
    assert_eq!(repo.save(&mut carol_retry).unwrap().versions, 1..2, "recognised after a reopen");
    assert_eq!(store.stream_version("account-carol"), Some(1));
}

/// Snapshots and contexts together (issue 13): a repository with a snapshot policy saves commands with
/// contexts, loads from the snapshots those saves wrote (folding only the tail), and every event still carries
/// its own command's ids and metadata; a retried save (same command id) of a root loaded from a snapshot is the
/// first save, and rewrites the same snapshot; after a reopen the snapshot is still used.
#[test]
fn contexts_and_snapshots_work_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(2));
    let opening = EventContext::new().correlation_id(0xA1).causation_id(0xA2).metadata(b"cmd=open".to_vec());
    let mut alice = Root::<Account>::new("alice");
    alice.execute(|a| a.open("Alice", 100_00)).unwrap();
    alice.execute(|a| a.deposit(10_00)).unwrap();
    alice.context(opening.clone().command_id(0x100));
    let saved = repo.save(&mut alice).unwrap();
    assert_eq!(saved.versions, 1..3);
    assert!(matches!(saved.snapshot, Some(Ok(2))), "{:?}", saved.snapshot);

    // Two roots loaded from the snapshot at version 2 decide the same command with the same command id.
    let paying = EventContext::new().correlation_id(0xB1).causation_id(0xB2).command_id(0x200);
    let decide = || {
        let mut root = repo.get("alice").unwrap();
        assert_eq!((root.load_info().snapshot_version, root.load_info().events_folded), (Some(2), 0));
        root.execute(|a| a.withdraw(30_00)).unwrap();
        root.execute(|a| a.deposit(1_00)).unwrap();
        root.context(paying.clone());
        root
    };
    let (mut first, mut retry) = (decide(), decide());
    let saved = repo.save(&mut first).unwrap();
    assert_eq!(saved.versions, 3..5);
    assert!(matches!(saved.snapshot, Some(Ok(4))), "{:?}", saved.snapshot);
    let again = repo.save(&mut retry).unwrap();
    assert_eq!(again.versions, 3..5, "the retry is the first save");
    assert!(matches!(again.snapshot, Some(Ok(4))), "the same state, the same snapshot: {:?}", again.snapshot);
    assert_eq!(store.stream_version("account-alice"), Some(4), "nothing written twice");

    // A save without a context after a load from the newest snapshot.
    let mut loaded = repo.get("alice").unwrap();
    assert_eq!((loaded.load_info().snapshot_version, loaded.load_info().events_folded), (Some(4), 0));
    assert_eq!(loaded.balance, 81_00);
    loaded.execute(|a| a.deposit(4_00)).unwrap();
    assert_eq!(repo.save(&mut loaded).unwrap().snapshot.map(Result::ok), None, "5 crosses no multiple of 2");

    let check = |store: &Store| {
        let events: Vec<_> = store.read_stream("account-alice", 0).map(|e| e.unwrap().to_owned()).collect();
        let contexts: Vec<_> = events.iter().map(|e| EventContext::decode(&e.metadata).unwrap()).collect();
        assert_eq!(contexts[..2], [opening.clone(), opening.clone()]);
        let without_command = paying.clone().command_id(None);
        assert_eq!(contexts[2..4], [without_command.clone(), without_command]);
        assert_eq!(contexts[4], EventContext::new());
        let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, [Some(0x100), Some(0x101), Some(0x200), Some(0x201), None]);
    };
    check(&store);
    let state = repo.get("alice").unwrap();
    assert_eq!((state.load_info().snapshot_version, state.load_info().events_folded), (Some(4), 1));
    assert_eq!((state.balance, state.version()), (85_00, 5));

    // After a reopen: the snapshot still matches the log's event, and the contexts are still on the events.
    drop(store);
    let store = open(dir.path());
    let repo = Repository::<Account>::with_snapshots(&store, SnapshotPolicy::every(2));
    let state = repo.get("alice").unwrap();
    assert_eq!((state.load_info().snapshot_version, state.load_info().events_folded), (Some(4), 1));
    assert_eq!(state.balance, 85_00);
    assert!(state.load_info().snapshots_rejected.is_empty(), "{:?}", state.load_info().snapshots_rejected);
    check(&store);
}

/// A unit of work saves each aggregate with its own context, in one batch.
#[test]
fn a_unit_of_work_keeps_each_roots_context() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = Repository::<Account>::new(&store);
    let (mut a, mut b) = (Root::<Account>::new("a"), Root::<Account>::new("b"));
    a.execute(|x| x.open("A", 1_00)).unwrap();
    b.execute(|x| x.open("B", 2_00)).unwrap();
    a.context(EventContext::new().correlation_id(1));
    b.context(EventContext::new().correlation_id(2));
    let mut unit = UnitOfWork::new(&store);
    unit.add(repo, &mut a).add(repo, &mut b);
    unit.commit().unwrap();
    for (stream, id) in [("account-a", 1), ("account-b", 2)] {
        let e = store.read_stream(stream, 0).next().unwrap().unwrap();
        assert_eq!(EventContext::of(&e).unwrap().correlation_id, Some(id));
    }
}
