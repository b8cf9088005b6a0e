//! The bank story: accounts as event-sourced aggregates on foldlog.
//!
//! The domain (an `Account`, its events and its commands) comes first, then `run`, which tells the story on a
//! real store: accounts opened with a deposit, deposits, a withdrawal refused for overdraft by the command, a
//! statement printed from the history, time travel to the version where a balance went wrong, a concurrent
//! modification caught, and a long-lived account loaded from a snapshot. Used by `foldlog demo` and by
//! `examples/bank.rs`; docs/guide.md quotes it. `demo_dir` is the directory rule both follow: write only
//! where the demo owns the directory.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents are written euros_cents: 100_00 is 100.00"
)]

pub mod demo_dir;

use std::error::Error;

/// The story prints through this rather than the standard `println!`, which panics when stdout is closed
/// (`foldlog demo | head`): a closed stdout ends the process quietly instead, as it would end any Unix tool.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}
use std::path::Path;
use std::time::{Duration, Instant};

use foldlog::rkyv::{Archive, Deserialize, Serialize};
use foldlog::{
    decode_event, Aggregate, DomainEvent, Repository, RepositoryError, Root, Snapshot, SnapshotPolicy, Store,
    ZeroCopy,
};

/// Amounts are in cents.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = foldlog::rkyv)]
pub enum AccountEvent {
    /// The account was opened with a first deposit.
    Opened { owner: String, deposit: u64 },
    /// Money came in.
    Deposited { amount: u64 },
    /// Money went out.
    Withdrawn { amount: u64 },
    /// The bank charged a fee (fees may overdraw an account: bank policy).
    FeeCharged { amount: u64, reason: String },
    /// A fee was given back.
    FeeRefunded { amount: u64 },
}

impl DomainEvent for AccountEvent {
    const SCHEMA_VERSION: u32 = 1;

    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
            AccountEvent::FeeCharged { .. } => "FeeCharged",
            AccountEvent::FeeRefunded { .. } => "FeeRefunded",
        }
    }
}

/// An account: plain data, the fold of its events.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(crate = foldlog::rkyv)]
pub struct Account {
    pub owner: String,
    pub open: bool,
    /// In cents; negative only through fees.
    pub balance: i64,
    pub transactions: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    type Codec = ZeroCopy;

    fn apply(&mut self, event: &ArchivedAccountEvent) {
        match event {
            ArchivedAccountEvent::Opened { owner, deposit } => {
                self.owner = owner.to_string();
                self.open = true;
                self.balance = deposit.to_native() as i64;
            }
            ArchivedAccountEvent::Deposited { amount } => self.balance += amount.to_native() as i64,
            ArchivedAccountEvent::Withdrawn { amount } => self.balance -= amount.to_native() as i64,
            ArchivedAccountEvent::FeeCharged { amount, .. } => self.balance -= amount.to_native() as i64,
            ArchivedAccountEvent::FeeRefunded { amount } => self.balance += amount.to_native() as i64,
        }
        self.transactions += 1;
    }
}

impl Snapshot for Account {
    const STATE_VERSION: u32 = 1;
}

/// Why a command refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("amounts must be positive")]
    ZeroAmount,
    #[error("overdraft: balance {}, asked for {}", money(*balance), money(*amount as i64))]
    Overdraft { balance: i64, amount: u64 },
}

impl Account {
    /// Command: open the account with a first deposit.
    pub fn open(&self, owner: &str, deposit: u64) -> Result<AccountEvent, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        if deposit == 0 {
            return Err(BankError::ZeroAmount);
        }
        Ok(AccountEvent::Opened { owner: owner.to_owned(), deposit })
    }

    /// Command: pay money in.
    pub fn deposit(&self, amount: u64) -> Result<AccountEvent, BankError> {
        self.check(amount)?;
        Ok(AccountEvent::Deposited { amount })
    }

    /// Command: take money out, never more than the balance.
    pub fn withdraw(&self, amount: u64) -> Result<AccountEvent, BankError> {
        self.check(amount)?;
        if amount as i64 > self.balance {
            return Err(BankError::Overdraft { balance: self.balance, amount });
        }
        Ok(AccountEvent::Withdrawn { amount })
    }

    /// Command: charge a fee (allowed to overdraw).
    pub fn charge_fee(&self, amount: u64, reason: &str) -> Result<AccountEvent, BankError> {
        self.check(amount)?;
        Ok(AccountEvent::FeeCharged { amount, reason: reason.to_owned() })
    }

    /// Command: give a fee back.
    pub fn refund_fee(&self, amount: u64) -> Result<AccountEvent, BankError> {
        self.check(amount)?;
        Ok(AccountEvent::FeeRefunded { amount })
    }

    fn check(&self, amount: u64) -> Result<(), BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        if amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        Ok(())
    }
}

/// Cents as `-12.34`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.unsigned_abs() / 100, cents.unsigned_abs() % 100)
}

/// Microseconds since the epoch as a UTC time of day.
fn clock(micros: i64) -> String {
    let s = micros.div_euclid(1_000_000);
    let ms = micros.rem_euclid(1_000_000) / 1000;
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600 % 24, s / 60 % 60, s % 60)
}

type StoryResult<T = ()> = Result<T, Box<dyn Error>>;

/// Tells the whole story in `dir`, which must be new or empty (the caller makes it so; nothing is deleted here).
pub fn run(dir: &Path) -> StoryResult {
    println!("\nThe bank: accounts as event-sourced aggregates, in {}", dir.display());
    let store = Store::open(dir)?;
    if store.next_position() != 0 {
        return Err(format!(
            "{} already holds a store; the bank story starts from an empty one",
            dir.display()
        )
        .into());
    }
    let accounts: Repository<'_, Account> = Repository::with_snapshots(&store, SnapshotPolicy::every(10_000));
    open_accounts(&accounts)?;
    move_money(&accounts)?;
    statement(&accounts, "alice")?;
    time_travel(&accounts)?;
    concurrent_tellers(&accounts)?;
    long_lived_account(&store)?;
    read_side(&store)?;
    store.close()?;
    Ok(())
}

fn open_accounts(accounts: &Repository<'_, Account>) -> StoryResult {
    println!("\n1. Opening accounts (creation is a command; its event is recorded once)");
    for (id, owner, deposit) in [("alice", "Alice", 100_00), ("bob", "Bob", 20_00)] {
        let mut account = Root::<Account>::new(id);
        account.execute(|a| a.open(owner, deposit))?;
        accounts.save(&mut account)?;
        println!(
            "   {id}: opened by {owner} with {} (version {})",
            money(account.balance),
            account.version()
        );
    }
    let mut again = Root::<Account>::new("bob");
    again.execute(|a| a.open("Bob", 1_00))?;
    match accounts.save(&mut again) {
        Err(e @ RepositoryError::AlreadyExists { .. }) => println!("   bob again: refused: {e}"),
        other => return Err(format!("a second account bob was not refused: {other:?}").into()),
    }
    Ok(())
}

fn move_money(accounts: &Repository<'_, Account>) -> StoryResult {
    println!("\n2. Deposits and withdrawals (commands decide; apply only folds)");
    let mut alice = accounts.get("alice")?;
    alice.execute(|a| a.deposit(50_00))?;
    alice.execute(|a| a.withdraw(30_00))?;
    println!("   alice: deposit 50.00, withdraw 30.00 -> pending {}", alice.pending_event_types().join(", "));
    accounts.save(&mut alice)?;
    println!("   alice: saved, balance {} at version {}", money(alice.balance), alice.version());
    let mut bob = accounts.get("bob")?;
    match bob.execute(|a| a.withdraw(50_00)) {
        Err(refusal) => println!("   bob: withdraw 50.00 refused by the command: {refusal}"),
        Ok(()) => return Err("bob's overdraft was accepted".into()),
    }
    println!(
        "   bob: nothing recorded ({} pending), balance still {}",
        bob.pending_event_types().len(),
        money(bob.balance)
    );
    Ok(())
}

fn statement(accounts: &Repository<'_, Account>, id: &str) -> StoryResult {
    println!("\n3. Statement for {id}, printed from its history");
    println!("   {:>3}  {:<12}  {:<11}  {:>9}  {:>9}", "v", "time (UTC)", "event", "amount", "balance");
    let mut before = 0;
    accounts.history(id, |event, account| {
        let amount = account.balance - before;
        before = account.balance;
        println!(
            "   {:>3}  {:<12}  {:<11}  {:>9}  {:>9}",
            event.stream_version(),
            clock(event.timestamp_micros()),
            event.event_type(),
            money(amount),
            money(account.balance)
        );
    })?;
    Ok(())
}

fn time_travel(accounts: &Repository<'_, Account>) -> StoryResult {
    println!("\n4. Time travel: when did bob's balance go wrong?");
    let mut bob = accounts.get("bob")?;
    bob.execute(|a| a.deposit(12_00))?;
    // The monthly-fee job had a unit bug: it charged 500.00 instead of 5.00.
    bob.execute(|a| a.charge_fee(500_00, "monthly fee"))?;
    bob.execute(|a| a.deposit(3_00))?;
    accounts.save(&mut bob)?;
    println!(
        "   bob's balance is now {}. Walking the history for the first negative balance:",
        money(bob.balance)
    );
    let mut wrong = None;
    accounts.history("bob", |event, account| {
        if account.balance < 0 && wrong.is_none() {
            wrong = Some(event.stream_version());
        }
    })?;
    let v = wrong.ok_or("bob's balance never went negative")?;
    let (then, before) = (accounts.get_at("bob", v)?, accounts.get_at("bob", v - 1)?);
    println!(
        "   version {}: balance {} (the state as it was, folded up to that version)",
        v - 1,
        money(before.balance)
    );
    println!("   version {v}: balance {} <- the fee went wrong here", money(then.balance));
    let fee = (before.balance - then.balance) as u64;
    bob.execute(|a| a.refund_fee(fee - 5_00))?;
    accounts.save(&mut bob)?;
    println!(
        "   correction: refunded {} as a new event (history is never edited); balance {} at version {}",
        money((fee - 5_00) as i64),
        money(bob.balance),
        bob.version()
    );
    Ok(())
}

fn concurrent_tellers(accounts: &Repository<'_, Account>) -> StoryResult {
    println!("\n5. Two tellers change alice at once");
    let mut teller1 = accounts.get("alice")?;
    let mut teller2 = accounts.get("alice")?;
    println!("   both loaded alice at version {}", teller1.version());
    teller1.execute(|a| a.withdraw(10_00))?;
    accounts.save(&mut teller1)?;
    println!("   teller 1: withdrew 10.00, saved at version {}", teller1.version());
    teller2.execute(|a| a.deposit(5_00))?;
    match accounts.save(&mut teller2) {
        Err(e @ RepositoryError::Conflict { .. }) => println!("   teller 2: {e}"),
        other => return Err(format!("the concurrent save was not refused: {other:?}").into()),
    }
    let mut teller2 = accounts.get("alice")?;
    teller2.execute(|a| a.deposit(5_00))?;
    accounts.save(&mut teller2)?;
    println!(
        "   teller 2: reloaded, deposited 5.00 again, saved: balance {} at version {}",
        money(teller2.balance),
        teller2.version()
    );
    Ok(())
}

fn long_lived_account(store: &Store) -> StoryResult {
    const EVENTS: u64 = 100_000;
    let policy = SnapshotPolicy::every(10_000);
    println!("\n6. A long-lived account: {EVENTS} events, a snapshot every {} events", policy.every_events);
    let with_snapshots: Repository<'_, Account> = Repository::with_snapshots(store, policy);
    let mut acme = Root::<Account>::new("acme");
    acme.execute(|a| a.open("ACME Ltd", 1_000_00))?;
    for i in 1..EVENTS + 250 {
        if i % 3 == 0 {
            acme.execute(|a| a.withdraw(7_00))?;
        } else {
            acme.execute(|a| a.deposit(5_00))?;
        }
        if i % 1000 == 999 {
            with_snapshots.save(&mut acme)?;
        }
    }
    with_snapshots.save(&mut acme)?;
    let full: Repository<'_, Account> = Repository::new(store);
    let (slow, full_time) = timed(|| full.get("acme"))?;
    let (fast, snap_time) = timed(|| with_snapshots.get("acme"))?;
    let info = fast.load_info();
    println!(
        "   full fold:       {} events in {:.2} ms ({:.1} M events/s, {} payloads copied)",
        slow.load_info().events_folded,
        full_time.as_secs_f64() * 1e3,
        slow.load_info().events_folded as f64 / full_time.as_secs_f64() / 1e6,
        slow.load_info().events_copied
    );
    println!(
        "   snapshot + tail: snapshot at version {} + {} events in {:.3} ms",
        info.snapshot_version.unwrap_or(0),
        info.events_folded,
        snap_time.as_secs_f64() * 1e3
    );
    println!(
        "   same state either way: {} (balance {}, {} transactions)",
        slow.state() == fast.state(),
        money(fast.balance),
        fast.transactions
    );
    let deleted = with_snapshots.delete_snapshots("acme")?;
    let rebuilt = with_snapshots.get("acme")?;
    println!(
        "   deleted {deleted} snapshots: the next load folds all {} events and gets the same state: {}",
        rebuilt.load_info().events_folded,
        rebuilt.state() == fast.state()
    );
    Ok(())
}

fn timed<T>(f: impl Fn() -> Result<T, RepositoryError>) -> StoryResult<(T, Duration)> {
    // The best of a few runs: the first one also faults the pages in.
    let mut best = None;
    let mut out = None;
    for _ in 0..5 {
        let started = Instant::now();
        out = Some(f()?);
        let t = started.elapsed();
        best = Some(best.map_or(t, |b: Duration| b.min(t)));
    }
    Ok((out.expect("ran"), best.expect("ran")))
}

/// A read model of the whole bank, kept by following the log: money in and out per account, and the position
/// up to which it counts every event (saved with the rows, in a real read model's database, so the two never
/// disagree).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BankTotals {
    /// Per account id: (money in, money out, fees), in cents.
    pub accounts: std::collections::BTreeMap<String, (u64, u64, u64)>,
    /// Every event below this position is counted.
    pub position: u64,
}

impl BankTotals {
    /// Counts what was committed since `position` (catch-up; a zero timeout: what is there now), decoding the
    /// account events as the repository does.
    ///
    /// # Errors
    ///
    /// A damaged event, or one the account's codec cannot read.
    pub fn catch_up(&mut self, store: &Store) -> StoryResult<u64> {
        let mut sub = store.subscribe(self.position).stream_prefix(Account::NAME);
        let mut scratch = foldlog::rkyv::util::AlignedVec::new();
        let mut counted = 0;
        while let Some(e) = sub.next_event(Duration::ZERO)? {
            let id = e.stream_id().trim_start_matches(Account::NAME).trim_start_matches('-').to_owned();
            let row = self.accounts.entry(id).or_default();
            match decode_event::<Account>(&e, &mut scratch)? {
                ArchivedAccountEvent::Opened { deposit: n, .. }
                | ArchivedAccountEvent::Deposited { amount: n } => {
                    row.0 += n.to_native();
                }
                ArchivedAccountEvent::Withdrawn { amount } => row.1 += amount.to_native(),
                ArchivedAccountEvent::FeeCharged { amount, .. } => row.2 += amount.to_native(),
                ArchivedAccountEvent::FeeRefunded { amount } => row.2 -= amount.to_native(),
            }
            counted += 1;
        }
        self.position = sub.position();
        Ok(counted)
    }
}

fn read_side(store: &Store) -> StoryResult {
    println!("\n7. The read side: totals of every account, projected by following the log");
    let mut totals = BankTotals::default();
    let started = Instant::now();
    let counted = totals.catch_up(store)?;
    println!(
        "   caught up: {counted} events in {:.1?}, up to position {}",
        started.elapsed(),
        totals.position
    );
    for (id, (money_in, money_out, fees)) in totals.accounts.iter().filter(|(id, _)| *id != "acme") {
        println!(
            "   {id:<6} in {:>9}  out {:>9}  fees {:>7}",
            money(*money_in as i64),
            money(*money_out as i64),
            money(*fees as i64)
        );
    }
    let accounts: Repository<'_, Account> = Repository::new(store);
    let mut bob = accounts.get("bob")?;
    bob.execute(|a| a.deposit(5_00))?;
    accounts.save(&mut bob)?;
    let counted = totals.catch_up(store)?;
    let (money_in, _, _) = totals.accounts["bob"];
    println!(
        "   bob deposits 5.00; the projection reads only the new event ({counted}): bob in {}",
        money(money_in as i64)
    );
    Ok(())
}
