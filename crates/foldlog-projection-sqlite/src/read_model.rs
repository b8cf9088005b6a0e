//! The read model in SQLite: the balances and the position they count up to, written only together.
//!
//! ```sql
//! balances(stream TEXT PRIMARY KEY, events INTEGER, total INTEGER)     -- per account stream
//! projection_position(name TEXT PRIMARY KEY, position INTEGER)         -- 'balances' → last event counted
//! ```
//!
//! Every change is one transaction holding both: the rows of a batch of events and the position of the
//! batch's last event. SQLite commits a transaction whole or not at all, also across a crash, so the rows
//! count exactly the events up to the saved position. The tables are `STRICT`, so an integer sum that
//! overflowed into a float is refused rather than stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::failure::{Doing, Failure};

/// The name under which the position is saved in `projection_position`.
pub(crate) const PROJECTION: &str = "balances";

/// One transaction, so a process killed while it runs leaves both tables or neither.
const SCHEMA: &str = "
    BEGIN IMMEDIATE;
    CREATE TABLE IF NOT EXISTS balances (
        stream TEXT PRIMARY KEY,
        events INTEGER NOT NULL,
        total INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE IF NOT EXISTS projection_position (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    ) STRICT;
    COMMIT;";

const SAVED: &str = "SELECT position FROM projection_position WHERE name = ?1";

const ADD: &str = "INSERT INTO balances (stream, events, total) VALUES (?1, ?2, ?3)
    ON CONFLICT (stream) DO UPDATE SET events = events + excluded.events, total = total + excluded.total";

const SAVE: &str = "INSERT INTO projection_position (name, position) VALUES (?1, ?2)
    ON CONFLICT (name) DO UPDATE SET position = excluded.position";

/// How long a transaction waits for a lock another connection holds (a reader checkpointing, say) before it
/// gives up with an error.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// What a batch of events adds to one stream's row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delta {
    pub(crate) events: i64,
    pub(crate) total: i64,
}

/// The open database and the position it had saved when last read or written here.
pub(crate) struct ReadModel {
    conn: Connection,
    path: PathBuf,
    saved: Option<u64>,
}

impl ReadModel {
    /// Opens (or creates) the database at `path`, with the tables if missing, and reads the saved position.
    pub(crate) fn open(path: &Path) -> Result<ReadModel, Failure> {
        let at = || format!("opening the read model {}", path.display());
        let conn = Connection::open(path).doing(at)?;
        conn.busy_timeout(BUSY_WAIT).doing(at)?;
        // WAL: a commit appends to the log and syncs it once; FULL: that sync happens at every commit, so a
        // committed batch survives power loss too and the read model never goes back to a state a reader may
        // have seen (exactly once needs only the atomic commit).
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).doing(at)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Failure::read_model(path, format!("SQLite kept the journal mode {mode}, not WAL")));
        }
        conn.pragma_update(None, "synchronous", "FULL").doing(at)?;
        conn.execute_batch(SCHEMA).doing(at)?;
        // Tables of the same names but another shape (someone else's database) fail here, not mid-batch.
        conn.prepare(ADD).doing(at)?;
        conn.prepare(SAVE).doing(at)?;
        let saved = read_saved(&conn, path, at)?;
        Ok(ReadModel { conn, path: path.to_owned(), saved })
    }

    /// The position of the last event the rows count, `None` before the first batch.
    pub(crate) fn saved(&self) -> Option<u64> {
        self.saved
    }

    /// Adds a batch's rows and saves `last` as the position, in one transaction.
    ///
    /// The transaction first checks that the saved position is still the one this process read or wrote:
    /// a second projector on the same database would otherwise count the same events again.
    pub(crate) fn commit(&mut self, rows: &BTreeMap<String, Delta>, last: u64) -> Result<(), Failure> {
        let path = &self.path;
        let at = || format!("writing the read model {} up to position {last}", path.display());
        // IMMEDIATE: the write lock is taken before the check below, so nobody moves the position between.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).doing(at)?;
        let now = read_saved(&tx, path, at)?;
        if now != self.saved {
            return Err(Failure::read_model(
                path,
                format!(
                    "the saved position moved from {} to {} under this projector: is another one running \
                     on it?",
                    shown(self.saved),
                    shown(now)
                ),
            ));
        }
        {
            let mut add = tx.prepare_cached(ADD).doing(at)?;
            for (stream, d) in rows {
                add.execute(params![stream, d.events, d.total]).doing(at)?;
            }
            let position = i64::try_from(last)
                .map_err(|_| Failure::read_model(path, format!("position {last} does not fit SQLite")))?;
            tx.prepare_cached(SAVE).doing(at)?.execute(params![PROJECTION, position]).doing(at)?;
        }
        tx.commit().doing(at)?;
        self.saved = Some(last);
        Ok(())
    }
}

/// The saved position, `None` if none was saved yet.
fn read_saved(conn: &Connection, path: &Path, at: impl Fn() -> String) -> Result<Option<u64>, Failure> {
    let stored = conn.query_row(SAVED, [PROJECTION], |row| row.get::<_, i64>(0)).optional().doing(at)?;
    stored
        .map(|p| {
            u64::try_from(p).map_err(|_| Failure::read_model(path, format!("the saved position is {p}")))
        })
        .transpose()
}

fn shown(position: Option<u64>) -> String {
    position.map_or_else(|| "none".to_owned(), |p| p.to_string())
}
