//! What the projector's tests share: a bank workload written through the repository, the fold of the log the
//! read model must equal (computed here, independently of the projector), and the read model as SQLite holds
//! it.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use foldlog::rkyv::util::AlignedVec;
use foldlog::{decode_event, ExpectedVersion, NewEvent, Repository, Root, Store};
use foldlog_bank::{Account, ArchivedAccountEvent};
use foldlog_testkit::Rng;
use rusqlite::{Connection, OpenFlags};

/// Per account stream: (events, balance in cents).
pub type Balances = BTreeMap<String, (i64, i64)>;

/// The seed of a randomized test: `$FOLDLOG_SEED` if set, else `default`; printed, so a failure can be
/// replayed.
pub fn seed(default: u64) -> u64 {
    let seed = std::env::var("FOLDLOG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    println!("seed {seed} (FOLDLOG_SEED={seed} replays it)");
    seed
}

/// The projector binary, with its arguments.
pub fn projector(store: &Path, db: &Path, until: Option<u64>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projection_sqlite"));
    cmd.arg(store).arg(db);
    if let Some(until) = until {
        cmd.arg("--until").arg(until.to_string());
    }
    cmd
}

/// The bank's accounts as the workload keeps them: loaded once, then saved after every command.
pub struct Bank {
    pub accounts: Vec<Root<Account>>,
}

impl Bank {
    /// `n` accounts, none opened yet (ids `0` to `n - 1`, streams `account-0` …).
    pub fn new(n: usize) -> Bank {
        Bank { accounts: (0..n).map(|i| Root::new(i.to_string())).collect() }
    }

    /// Writes at least `events` events: commands on random accounts (1–3 per save, so appends of several
    /// events happen), opening an account first if needed, and now and then an event of a stream that is not
    /// an account, which the projector must skip while still moving its position past it. Returns how many.
    pub fn write(&mut self, store: &Store, rng: &mut Rng, events: usize) -> usize {
        let repo: Repository<'_, Account> = Repository::new(store);
        let mut written = 0;
        while written < events {
            if rng.chance(1, 20) {
                let audit = format!("audit-{}", rng.below(7));
                store.append(&audit, ExpectedVersion::Any, &[NewEvent::new("Noted", b"noise")]).unwrap();
                written += 1;
                continue;
            }
            let i = rng.below(self.accounts.len() as u64) as usize;
            let root = &mut self.accounts[i];
            let commands = 1 + rng.below(3);
            for _ in 0..commands {
                let amount = 1 + rng.below(50_000);
                if !root.open {
                    root.execute(|a| a.open("owner", amount)).unwrap();
                    continue;
                }
                match rng.below(10) {
                    0..=3 => root.execute(|a| a.deposit(amount)).unwrap(),
                    4..=6 if amount as i64 <= root.balance => root.execute(|a| a.withdraw(amount)).unwrap(),
                    4..=6 => root.execute(|a| a.deposit(amount)).unwrap(),
                    7 | 8 => root.execute(|a| a.charge_fee(amount % 500 + 1, "service")).unwrap(),
                    _ => root.execute(|a| a.refund_fee(amount % 300 + 1)).unwrap(),
                }
            }
            written += root.pending_event_types().len();
            repo.save(root).unwrap();
        }
        written
    }
}

/// The fold the read model must equal: every account event at a position up to `upto` (inclusive; `None`:
/// nothing), counted once and summed as the bank counts money, read with `read_all(0)`.
pub fn fold_log(store: &Store, upto: Option<u64>) -> Balances {
    let mut fold = Balances::new();
    let Some(upto) = upto else { return fold };
    let mut scratch = AlignedVec::new();
    for event in store.read_all(0) {
        let event = event.unwrap();
        if event.position() > upto {
            break;
        }
        if !event.stream_id().starts_with("account-") {
            continue;
        }
        let amount = match decode_event::<Account>(&event, &mut scratch).unwrap() {
            ArchivedAccountEvent::Opened { deposit, .. } => deposit.to_native() as i64,
            ArchivedAccountEvent::Deposited { amount } => amount.to_native() as i64,
            ArchivedAccountEvent::Withdrawn { amount } => -(amount.to_native() as i64),
            ArchivedAccountEvent::FeeCharged { amount, .. } => -(amount.to_native() as i64),
            ArchivedAccountEvent::FeeRefunded { amount } => amount.to_native() as i64,
        };
        let row = fold.entry(event.stream_id().to_owned()).or_default();
        row.0 += 1;
        row.1 += amount;
    }
    assert!(store.next_position() > upto, "the log ends before position {upto}");
    fold
}

/// The read model in the database at `db`: the balances and the saved position. A projector killed before it
/// made its tables has projected nothing.
///
/// NOTE: the connection may write, though this reads only: after a kill, the WAL index may need rebuilding,
/// which a read-only connection refuses (`SQLITE_READONLY_RECOVERY`); SQLite rebuilds it from the WAL on
/// open, as the next projector's connection would, and changes no row doing so.
pub fn read_model(db: &Path) -> (Balances, Option<u64>) {
    if !db.exists() {
        return (Balances::new(), None);
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('balances', 'projection_position')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    match tables {
        0 => return (Balances::new(), None),
        2 => {}
        n => panic!("{n} of the two tables: the schema was not made in one transaction"),
    }
    let mut rows = conn.prepare("SELECT stream, events, total FROM balances ORDER BY stream").unwrap();
    let balances = rows
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<rusqlite::Result<Balances>>()
        .unwrap();
    let saved: Option<i64> = conn
        .query_row("SELECT position FROM projection_position WHERE name = 'balances'", [], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
        .unwrap();
    (balances, saved.map(|p| u64::try_from(p).unwrap()))
}

/// Asserts that the read model's balances are the fold's, naming the streams that differ (not all 300).
#[track_caller]
pub fn assert_same(read_model: &Balances, fold: &Balances, context: &str) {
    let streams: std::collections::BTreeSet<&String> = read_model.keys().chain(fold.keys()).collect();
    let differ: Vec<String> = streams
        .into_iter()
        .filter(|s| read_model.get(*s) != fold.get(*s))
        .map(|s| format!("{s}: read model {:?}, log {:?}", read_model.get(s), fold.get(s)))
        .collect();
    assert!(
        differ.is_empty(),
        "{context}: {} of {} streams differ (events, balance):\n{}",
        differ.len(),
        fold.len(),
        differ.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}
