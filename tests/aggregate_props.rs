//! Property tests of the repository against an in-memory reference, on real stores in temp directories.
//!
//! Goal: whatever commands run and whenever saves and reloads happen, (1) `get` gives the state the aggregate
//! had in memory, which is also what a plain arithmetic model of the bank computes; (2) `get_at(v)` gives the
//! state right after the v-th event; (3) loading with snapshots (any policy) gives the same state as a full
//! fold; (4) two handles on one aggregate conflict exactly when the other one saved in between.
//! Method: proptest generates command sequences; each case opens its own store. Case counts are set so the
//! file runs in a few seconds under `cargo test --release`.

use foldlog_bank as demo_bank;

use demo_bank::Account;
use foldlog::{Durability, Options, Repository, RepositoryError, Root, SnapshotPolicy, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Cmd {
    Open(u64),
    Deposit(u64),
    Withdraw(u64),
    Fee(u64),
    Refund(u64),
    Save,
    Reload,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    // Amount 0 is refused by every command; large withdrawals are refused for overdraft.
    let amount = prop_oneof![Just(0u64), 1u64..500, 400u64..3000];
    prop_oneof![
        1 => amount.clone().prop_map(Cmd::Open),
        4 => amount.clone().prop_map(Cmd::Deposit),
        4 => amount.clone().prop_map(Cmd::Withdraw),
        1 => amount.clone().prop_map(Cmd::Fee),
        1 => amount.prop_map(Cmd::Refund),
        2 => Just(Cmd::Save),
        1 => Just(Cmd::Reload),
    ]
}

/// The bank as plain arithmetic, written apart from the domain code.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    open: bool,
    balance: i64,
    transactions: u64,
}

impl Model {
    /// Applies a command; false if the bank refuses it.
    fn run(&mut self, c: &Cmd) -> bool {
        let ok = match *c {
            Cmd::Open(n) => !self.open && n > 0,
            Cmd::Withdraw(n) => self.open && n > 0 && n as i64 <= self.balance,
            Cmd::Deposit(n) | Cmd::Fee(n) | Cmd::Refund(n) => self.open && n > 0,
            Cmd::Save | Cmd::Reload => return true,
        };
        if ok {
            match *c {
                Cmd::Open(n) => (self.open, self.balance) = (true, n as i64),
                Cmd::Deposit(n) | Cmd::Refund(n) => self.balance += n as i64,
                Cmd::Withdraw(n) | Cmd::Fee(n) => self.balance -= n as i64,
                Cmd::Save | Cmd::Reload => {}
            }
            self.transactions += 1;
        }
        ok
    }
}

fn run_command(root: &mut Root<Account>, c: &Cmd) -> bool {
    match *c {
        Cmd::Open(n) => root.execute(|a| a.open("Prop", n)).is_ok(),
        Cmd::Deposit(n) => root.execute(|a| a.deposit(n)).is_ok(),
        Cmd::Withdraw(n) => root.execute(|a| a.withdraw(n)).is_ok(),
        Cmd::Fee(n) => root.execute(|a| a.charge_fee(n, "prop")).is_ok(),
        Cmd::Refund(n) => root.execute(|a| a.refund_fee(n)).is_ok(),
        Cmd::Save | Cmd::Reload => unreachable!("handled by the caller"),
    }
}

fn open_store(dir: &std::path::Path) -> Store {
    Store::open_with(dir, Options::default().durability(Durability::Never).segment_size_bytes(256 << 10))
        .unwrap()
}

fn policy() -> impl Strategy<Value = SnapshotPolicy> {
    (0u64..8, 1usize..4).prop_map(|(every_events, keep)| SnapshotPolicy::every(every_events).keep(keep))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Properties 1-3 over one random life of an account.
    #[test]
    fn loads_equal_the_state_in_memory_at_every_version(
        cmds in proptest::collection::vec(cmd(), 1..60),
        policy in policy(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let plain = Repository::<Account>::new(&store);
        let snap = Repository::<Account>::with_snapshots(&store, policy);
        let mut root = Root::<Account>::new("p");
        let mut model = Model::default();
        // after[v - 1] = the state right after the event with version v.
        let mut after: Vec<Account> = Vec::new();
        for c in &cmds {
            match c {
                Cmd::Save => {
                    snap.save(&mut root).unwrap();
                    if root.version() > 0 {
                        let loaded = plain.get("p").unwrap();
                        prop_assert_eq!(loaded.state(), root.state());
                    }
                }
                Cmd::Reload => {
                    snap.save(&mut root).unwrap();
                    if root.version() > 0 {
                        let loaded = snap.get("p").unwrap();
                        prop_assert_eq!(loaded.state(), root.state());
                        prop_assert_eq!(loaded.version(), root.version());
                        root = loaded;
                    }
                }
                c => {
                    let accepted = run_command(&mut root, c);
                    prop_assert_eq!(accepted, model.run(c), "command {:?}", c);
                    if accepted {
                        after.push(root.state().clone());
                    }
                }
            }
            prop_assert_eq!(
                (root.open, root.balance, root.transactions),
                (model.open, model.balance, model.transactions)
            );
        }
        snap.save(&mut root).unwrap();
        prop_assert_eq!(root.version(), after.len() as u64);
        if after.is_empty() {
            let not_found = matches!(plain.get("p"), Err(RepositoryError::NotFound { .. }));
            prop_assert!(not_found, "an aggregate that never recorded an event is not found");
            return Ok(());
        }
        let full = plain.get("p").unwrap();
        prop_assert_eq!(full.state(), root.state());
        let fast = snap.get("p").unwrap();
        prop_assert_eq!(fast.state(), root.state());
        for (i, expected) in after.iter().enumerate() {
            let v = i as u64 + 1;
            let a = plain.get_at("p", v).unwrap();
            let b = snap.get_at("p", v).unwrap();
            prop_assert_eq!(a.state(), expected, "get_at({}) without snapshots", v);
            prop_assert_eq!(b.state(), expected, "get_at({}) with snapshots ({:?})", v, b.load_info());
            prop_assert_eq!((a.version(), b.version()), (v, v));
            if let Some(s) = b.load_info().snapshot_version {
                prop_assert!(s <= v);
                prop_assert_eq!(b.load_info().events_folded, v - s);
            }
        }
        // Snapshots are disposable.
        snap.delete_snapshots("p").unwrap();
        let rebuilt = snap.get("p").unwrap();
        prop_assert_eq!(rebuilt.state(), root.state());
    }

    /// Property 4: with two handles, a save conflicts exactly when the other handle saved events since this
    /// one loaded; a conflicting save writes nothing.
    #[test]
    fn two_handles_conflict_exactly_when_the_other_saved_in_between(
        steps in proptest::collection::vec((any::<bool>(), cmd()), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let repo = Repository::<Account>::new(&store);
        let mut first = Root::<Account>::new("q");
        first.execute(|a| a.open("Q", 100)).unwrap();
        repo.save(&mut first).unwrap();
        let mut handles = [repo.get("q").unwrap(), repo.get("q").unwrap()];
        let mut pending = [0usize; 2];
        let mut stored_version = 1u64;
        for (which, c) in &steps {
            let h = usize::from(*which);
            match c {
                Cmd::Save => {
                    let stale = handles[h].version() != stored_version;
                    match repo.save(&mut handles[h]) {
                        Ok(saved) => {
                            prop_assert!(!stale || pending[h] == 0, "a stale save with events succeeded");
                            prop_assert_eq!(saved.versions.end - saved.versions.start, pending[h] as u64);
                            if pending[h] > 0 {
                                stored_version += pending[h] as u64;
                                pending[h] = 0;
                                let loaded = repo.get("q").unwrap();
                                prop_assert_eq!(loaded.state(), handles[h].state());
                            }
                        }
                        Err(RepositoryError::Conflict { loaded, actual, .. }) => {
                            prop_assert!(stale && pending[h] > 0);
                            prop_assert_eq!((loaded, actual), (handles[h].version(), stored_version));
                            prop_assert_eq!(store.stream_version("account-q"), Some(stored_version));
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Cmd::Reload => {
                    handles[h] = repo.get("q").unwrap();
                    pending[h] = 0;
                }
                c => {
                    if run_command(&mut handles[h], c) {
                        pending[h] += 1;
                    }
                }
            }
        }
    }
}
