//! `AsyncRepository` (feature `tokio`; issue 13, item 7): the repository used from async code without
//! blocking the runtime's threads. On a current-thread runtime (one thread for every task, where one blocked
//! call stalls everything), saves that sync every append (`Durability::Always`) let another task keep ticking
//! while they wait; a load whose decoding waits for another task of the same runtime completes (it would
//! deadlock on the runtime's thread); the async calls give what the synchronous repository gives, snapshots,
//! conflicts and errors included; and a save whose future is dropped still completes, leaving the root as a
//! never-saved placeholder that cannot write anything wrong.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents are written euros_cents: 100_00 is 100.00"
)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use foldlog::rkyv::util::AlignedVec;
use foldlog::rkyv::{Archive, Deserialize, Serialize};
use foldlog::{
    access_payload, Aggregate, AsyncRepository, Codec, CodecError, DomainEvent, Durability, Options,
    RepositoryError, Root, SnapshotPolicy, Store,
};
use foldlog_bank::Account;

fn open(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(Store::open_with(dir, Options::default().durability(Durability::Always)).expect("open"))
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

#[test]
fn saves_that_sync_do_not_stall_other_tasks_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = AsyncRepository::<Account>::new(open(dir.path()));
    current_thread().block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut alice = Root::<Account>::new("alice");
        alice.execute(|a| a.open("Alice", 100_00)).unwrap();
        let (saves, started) = (50, Instant::now());
        let mut stalled = 0;
        for i in 0..saves {
            if i > 0 {
                alice.execute(|a| a.deposit(1_00)).unwrap();
            }
            let before = ticks.load(Ordering::Relaxed);
            accounts.save(&mut alice).await.unwrap();
            if ticks.load(Ordering::Relaxed) == before {
                stalled += 1;
            }
        }
        let ticked = ticks.load(Ordering::Relaxed);
        eprintln!(
            "{saves} synced saves in {:?}; the ticker ticked {ticked} times meanwhile, and not at all during \
             {stalled} of them",
            started.elapsed()
        );
        // NOTE: not every save: a yielding task is woken at the scheduler's next turn, and a save that ends
        // before that turn (the runtime's thread descheduled for a moment) sees no tick. A save on the
        // runtime's thread sees none, every time (the control below).
        assert!(stalled * 2 <= saves, "the ticker ran during most saves; {stalled} of {saves} saw no tick");

        // The control: the same save made on the runtime's thread stalls the ticker for its whole length.
        alice.execute(|a| a.deposit(1_00)).unwrap();
        let before = ticks.load(Ordering::Relaxed);
        accounts.blocking().save(&mut alice).unwrap();
        assert_eq!(ticks.load(Ordering::Relaxed), before, "a blocking save lets no other task run");

        ticker.abort();
        assert_eq!(accounts.get("alice").await.unwrap().balance, 100_00 + 50 * 1_00);
    });
}

/// Closed: the gated codec's `decode` waits until a task opens it.
static GATE_CLOSED: AtomicBool = AtomicBool::new(false);
static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

#[derive(Archive, Serialize, Deserialize)]
#[rkyv(crate = foldlog::rkyv)]
struct Knocked;

impl DomainEvent for Knocked {
    const SCHEMA_VERSION: u32 = 1;
    fn event_type(&self) -> &'static str {
        "Knocked"
    }
}

/// rkyv in place, but decoding waits while the gate is closed.
struct Gated;

impl Codec<Knocked> for Gated {
    type View<'a> = &'a ArchivedKnocked;

    fn encode(event: &Knocked, out: &mut AlignedVec) -> Result<(), CodecError> {
        *out = foldlog::rkyv::to_bytes::<foldlog::rkyv::rancor::Error>(event).map_err(CodecError::new)?;
        Ok(())
    }

    fn decode<'a>(payload: &'a [u8], scratch: &'a mut AlignedVec) -> Result<&'a ArchivedKnocked, CodecError> {
        if GATE_CLOSED.load(Ordering::SeqCst) {
            let (open, opened) = &GATE;
            let guard = open.lock().unwrap();
            let (guard, wait) =
                opened.wait_timeout_while(guard, Duration::from_secs(10), |open| !*open).unwrap();
            assert!(*guard && !wait.timed_out(), "never opened: the load ran on the runtime's only thread");
        }
        access_payload::<ArchivedKnocked>(payload, scratch)
    }

    fn from_owned(_: Knocked, _: &mut AlignedVec) -> Result<&ArchivedKnocked, CodecError> {
        Err(CodecError::new("a door's events are never upcast"))
    }
}

#[derive(Default)]
struct Door {
    knocks: u32,
}

impl Aggregate for Door {
    const NAME: &'static str = "door";
    type Event = Knocked;
    type Codec = Gated;
    fn apply(&mut self, _: &ArchivedKnocked) {
        self.knocks += 1;
    }
}

#[test]
fn a_load_waiting_on_another_task_of_a_current_thread_runtime_completes() {
    let dir = tempfile::tempdir().unwrap();
    let doors = AsyncRepository::<Door>::new(open(dir.path()));
    let mut door = Root::<Door>::new("front");
    door.record(Knocked);
    door.record(Knocked);
    doors.blocking().save(&mut door).unwrap();

    GATE_CLOSED.store(true, Ordering::SeqCst);
    let knocks = current_thread().block_on(async {
        // The opener can only run on this thread, and only while the load is not holding it.
        let opener = tokio::spawn(async {
            let (open, opened) = &GATE;
            *open.lock().unwrap() = true;
            opened.notify_all();
        });
        let door = doors.get("front").await.unwrap();
        opener.await.unwrap();
        door.knocks
    });
    assert_eq!(knocks, 2);
}

#[test]
fn async_calls_give_what_the_sync_repository_gives() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let accounts = AsyncRepository::<Account>::with_snapshots(Arc::clone(&store), SnapshotPolicy::every(2));
    current_thread().block_on(async {
        let mut acme = Root::<Account>::new("acme");
        acme.execute(|a| a.open("ACME", 10_00)).unwrap();
        for _ in 0..4 {
            acme.execute(|a| a.deposit(1_00)).unwrap();
        }
        let saved = accounts.save(&mut acme).await.unwrap();
        assert_eq!((saved.versions, acme.version()), (1..6, 5));
        assert!(matches!(saved.snapshot, Some(Ok(5))), "{:?}", saved.snapshot);

        let loaded = accounts.get("acme").await.unwrap();
        assert_eq!((loaded.balance, loaded.version()), (14_00, 5));
        assert_eq!(loaded.load_info().snapshot_version, Some(5));
        assert_eq!(accounts.get_at("acme", 2).await.unwrap().balance, 11_00);
        let now = i64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros(),
        )
        .unwrap();
        assert_eq!(accounts.get_as_of("acme", now).await.unwrap().version(), 5);
        let sync = accounts.blocking().get("acme").unwrap();
        assert_eq!((sync.balance, sync.version()), (loaded.balance, loaded.version()));

        // Two roots loaded at the same version: the second save is a conflict that writes nothing, and the
        // losing root comes back unchanged (still stale, still holding its pending event).
        let (mut a, mut b) = (accounts.get("acme").await.unwrap(), accounts.get("acme").await.unwrap());
        a.execute(|x| x.deposit(5)).unwrap();
        b.execute(|x| x.withdraw(5)).unwrap();
        accounts.save(&mut a).await.unwrap();
        let lost = accounts.save(&mut b).await;
        assert!(matches!(lost, Err(RepositoryError::Conflict { loaded: 5, actual: 6, .. })), "{lost:?}");
        assert_eq!((b.version(), b.pending_event_types().len()), (5, 1));
        assert!(matches!(accounts.get("nobody").await, Err(RepositoryError::NotFound { .. })));
        assert!(matches!(accounts.get_at("acme", 9).await, Err(RepositoryError::NoSuchVersion { .. })));
    });
}

#[test]
fn a_dropped_save_still_completes_and_leaves_a_never_saved_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let accounts = AsyncRepository::<Account>::new(Arc::clone(&store));
    current_thread().block_on(async {
        let mut bob = Root::<Account>::new("bob");
        bob.execute(|a| a.open("Bob", 7_00)).unwrap();
        {
            let mut save = Box::pin(accounts.save(&mut bob));
            let first = std::future::poll_fn(|cx| Poll::Ready(save.as_mut().poll(cx).is_ready())).await;
            assert!(!first, "a synced save is still running on the pool after one poll");
        }
        assert_eq!((bob.id(), bob.version(), bob.pending_event_types().len()), ("bob", 0, 0));

        let deadline = Instant::now() + Duration::from_secs(10);
        while store.stream_version("account-bob").is_none() {
            assert!(Instant::now() < deadline, "the dropped save never completed");
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(accounts.get("bob").await.unwrap().balance, 7_00);
        // The placeholder writes nothing wrong: nothing pending, nothing saved; a new creation is refused.
        assert!(accounts.save(&mut bob).await.unwrap().versions.is_empty());
        bob.execute(|a| a.open("Bob again", 1_00)).unwrap();
        let again = accounts.save(&mut bob).await;
        assert!(matches!(again, Err(RepositoryError::AlreadyExists { version: 1, .. })), "{again:?}");
    });
}
