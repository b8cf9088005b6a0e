//! The follow loop: subscribe after the saved position, gather a batch, commit it with its last position.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use foldlog::rkyv::util::AlignedVec;
use foldlog::{decode_event, Aggregate, EventRef, Options, Store};
use foldlog_bank::{Account, ArchivedAccountEvent};

use crate::failure::{Doing, Failure};
use crate::read_model::{Delta, ReadModel};

/// At most this many events go into one SQLite transaction; a batch also ends when the subscription has
/// nothing more at once, so a live store's events are committed as soon as they come.
const BATCH_EVENTS_MAX: usize = 256;

/// How long the projector sleeps when it has caught up, before it looks at the writer's head again.
///
/// NOTE: not `next_event(timeout)`'s own wait, which on a read-only handle polled the head every
/// `foldlog::FOLLOW_POLL` (0.1 ms) when this was written: that cost about 9 % of a core here while idle, and a
/// read model does not need a tenth of a millisecond's latency. (That wait now backs off to
/// `foldlog::FOLLOW_POLL_MAX`, 2 ms, when the log is quiet.) This wait costs at most this much latency per
/// batch.
const IDLE_POLL: Duration = Duration::from_millis(2);

/// Projects the store in `store_dir` into the database at `db_path`, from the event after the saved
/// position on: until the event at `until` is projected, or for ever.
pub(crate) fn run(store_dir: &Path, db_path: &Path, until: Option<u64>) -> Result<(), Failure> {
    let options = Options::default().read_only(true).create_if_missing(false);
    let store = Store::open_with(store_dir, options)
        .doing(|| format!("opening the store {} read-only", store_dir.display()))?;
    let mut model = ReadModel::open(db_path)?;
    let from = model.saved().map_or(0, |p| p + 1);
    let next = store.refresh().doing(|| format!("reading the store {}", store_dir.display()))?;
    if from > next {
        return Err(Failure::read_model(
            db_path,
            format!(
                "it counts events up to position {} but the store {} ends before {next}: the store lost \
                 events the read model counted (a machine crash of a writer that does not sync every \
                 append?), or this is another store's read model; rebuild it from an empty database",
                from - 1,
                store_dir.display()
            ),
        ));
    }
    eprintln!(
        "projection_sqlite: {} from position {from} into {}{}",
        store_dir.display(),
        db_path.display(),
        until.map_or_else(String::new, |u| format!(", until position {u}"))
    );
    if until.is_some_and(|u| from > u) {
        return Ok(());
    }
    // Only events the writer has synced: the read model outlives a machine crash (SQLite syncs every commit),
    // and an event the writer had committed but not synced may be lost in one, its position reused by another
    // event, leaving rows that count an event the log no longer has. With a writer in `Durability::Always`
    // every committed event is synced and this waits for nothing; in `Group` mode an event waits for the
    // writer's next sync (at most its `delay_max`).
    let mut sub = store.subscribe(from).durable_only(true);
    let mut batch = Batch::default();
    loop {
        store.refresh().doing(|| reading(store_dir, sub.position()))?;
        let Some(first) = sub.next_event(Duration::ZERO).doing(|| reading(store_dir, sub.position()))? else {
            std::thread::sleep(IDLE_POLL);
            continue;
        };
        batch.add(first)?;
        while batch.events < BATCH_EVENTS_MAX && until.is_none_or(|u| batch.last < u) {
            match sub.next_event(Duration::ZERO).doing(|| reading(store_dir, sub.position()))? {
                Some(event) => batch.add(event)?,
                None => break,
            }
        }
        model.commit(&batch.rows, batch.last)?;
        if until.is_some_and(|u| batch.last >= u) {
            eprintln!("projection_sqlite: projected up to position {}", batch.last);
            return Ok(());
        }
        batch.clear();
    }
}

fn reading(store_dir: &Path, position: u64) -> String {
    format!("reading the store {} at position {position}", store_dir.display())
}

/// The events gathered for one transaction, summed per stream.
#[derive(Default)]
struct Batch {
    rows: BTreeMap<String, Delta>,
    /// Events examined, counted or not.
    events: usize,
    /// The position of the last one.
    last: u64,
    scratch: AlignedVec,
}

impl Batch {
    /// Counts an event of an account stream (`account-…`, the bank's aggregate); every other event only
    /// moves the position past it.
    fn add(&mut self, event: EventRef<'_>) -> Result<(), Failure> {
        self.events += 1;
        self.last = event.position();
        let stream = event.stream_id();
        if !stream.strip_prefix(Account::NAME).is_some_and(|rest| rest.starts_with('-')) {
            return Ok(());
        }
        let failed =
            |why: String| Failure::Event { position: event.position(), stream: stream.to_owned(), why };
        let amount =
            |n: u64| i64::try_from(n).map_err(|_| failed(format!("the amount {n} does not fit i64")));
        let change =
            match decode_event::<Account>(&event, &mut self.scratch).map_err(|e| failed(e.to_string()))? {
                ArchivedAccountEvent::Opened { deposit: n, .. }
                | ArchivedAccountEvent::Deposited { amount: n }
                | ArchivedAccountEvent::FeeRefunded { amount: n } => amount(n.to_native())?,
                ArchivedAccountEvent::Withdrawn { amount: n }
                | ArchivedAccountEvent::FeeCharged { amount: n, .. } => -amount(n.to_native())?,
            };
        let row = self.rows.entry(stream.to_owned()).or_default();
        row.events += 1;
        row.total =
            row.total.checked_add(change).ok_or_else(|| failed("the balance overflows i64".to_owned()))?;
        Ok(())
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.events = 0;
    }
}
