//! The peers: SQLite, redb and fjall, each with its default configuration except the one setting per mode
//! that gives it the same durability promise as foldlog, and each doing the expected-version check inside
//! the same transaction as the write.
//!
//! Every peer stores an event once, keyed by its global position, plus a `(stream, version) → position`
//! index that both the version check and stream reads use. That is the table SQLite gets from
//! `INTEGER PRIMARY KEY` plus `UNIQUE(stream, version)`, built by hand for the two key-value stores.

use std::path::Path;

use foldlog_bench::{BenchResult, Engine, EngineSpec, Mode};

fn conflict(stream: &str, expected: u64, actual: u64) -> Box<dyn std::error::Error + Send + Sync> {
    format!("wrong expected version on {stream}: next is {actual}, caller expected {expected}").into()
}

/// Counts append calls and says which one must be durable (shared with the DCB peer in `dcb.rs`).
pub(crate) struct Cadence {
    pub(crate) mode: Mode,
    calls: u32,
}

impl Cadence {
    pub(crate) fn new(mode: Mode) -> Cadence {
        Cadence { mode, calls: 0 }
    }

    pub(crate) fn next_is_durable(&mut self) -> bool {
        self.calls += 1;
        match self.mode {
            Mode::NoSync => false,
            Mode::Group(n) => self.calls.is_multiple_of(n),
            Mode::Always => true,
        }
    }
}

/// A stored event for the key-value stores: `stream_len u16 | kind_len u16 | version u64 | stream | kind |
/// payload`.
fn encode(out: &mut Vec<u8>, stream: &str, version: u64, kind: &str, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(kind.len() as u16).to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(payload);
}

/// (stream id, type, payload) lengths of an encoded event.
fn decode_lens(v: &[u8]) -> BenchResult<(usize, usize, usize)> {
    let s = u16::from_le_bytes(v.get(..2).ok_or("short value")?.try_into()?) as usize;
    let k = u16::from_le_bytes(v.get(2..4).ok_or("short value")?.try_into()?) as usize;
    let p = v.len().checked_sub(12 + s + k).ok_or("short value")?;
    Ok((s, k, p))
}

// ---------------------------------------------------------------------------------------------------------

/// SQLite through rusqlite (bundled), WAL mode, one transaction per append call.
/// A SQLite database in `dir` (made if missing) with the settings every SQLite row shares: WAL, and
/// `synchronous=FULL` when every commit must be durable, `NORMAL` otherwise (a group's last commit switches
/// to `FULL` itself, see `Cadence`).
pub(crate) fn open_sqlite(dir: &Path, mode: Mode) -> BenchResult<rusqlite::Connection> {
    std::fs::create_dir_all(dir)?;
    let conn = rusqlite::Connection::open(dir.join("events.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if mode == Mode::Always { "FULL" } else { "NORMAL" })?;
    Ok(conn)
}

pub struct Sqlite {
    conn: rusqlite::Connection,
    cadence: Cadence,
}

pub const SQLITE: EngineSpec = EngineSpec { name: "sqlite", setting: Sqlite::setting, open: Sqlite::open };

impl Sqlite {
    fn setting(mode: Mode) -> String {
        match mode {
            Mode::NoSync => "WAL, synchronous=NORMAL".into(),
            Mode::Group(n) => format!("WAL, synchronous=NORMAL; FULL for every {n}th commit (syncs the WAL)"),
            Mode::Always => "WAL, synchronous=FULL".into(),
        }
    }

    fn open(dir: &Path, mode: Mode) -> BenchResult<Box<dyn Engine>> {
        let conn = open_sqlite(dir, mode)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                pos INTEGER PRIMARY KEY,
                stream TEXT NOT NULL,
                version INTEGER NOT NULL,
                kind TEXT NOT NULL,
                payload BLOB NOT NULL,
                UNIQUE (stream, version)
            );",
        )?;
        Ok(Box::new(Sqlite { conn, cadence: Cadence::new(mode) }))
    }
}

impl Engine for Sqlite {
    fn append(&mut self, stream: &str, next_version: u64, events: &[(&str, &[u8])]) -> BenchResult<()> {
        let durable = self.cadence.next_is_durable();
        let group = matches!(self.cadence.mode, Mode::Group(_));
        if durable && group {
            // In WAL mode a FULL commit syncs the WAL, which makes the earlier NORMAL commits durable too.
            self.conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx
            .prepare_cached("SELECT max(version) FROM events WHERE stream = ?1")?
            .query_row([stream], |r| r.get(0))?;
        let actual = last.map_or(0, |v| v as u64 + 1);
        if actual != next_version {
            return Err(conflict(stream, next_version, actual));
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (stream, version, kind, payload) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (i, (kind, payload)) in events.iter().enumerate() {
                insert.execute(rusqlite::params![stream, (next_version + i as u64) as i64, kind, payload])?;
            }
        }
        tx.commit()?;
        if durable && group {
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> BenchResult<()> {
        if self.cadence.mode != Mode::Always {
            // Syncs the WAL (and the database file): everything committed so far becomes durable.
            self.conn.query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    fn read_stream(&mut self, stream: &str, limit: usize) -> BenchResult<(u64, u64)> {
        let mut q = self
            .conn
            .prepare_cached("SELECT payload FROM events WHERE stream = ?1 ORDER BY version LIMIT ?2")?;
        let mut rows = q.query(rusqlite::params![stream, i64::try_from(limit).unwrap_or(-1)])?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(row) = rows.next()? {
            bytes += row.get_ref(0)?.as_blob()?.len() as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn replay(&mut self) -> BenchResult<(u64, u64)> {
        let mut q = self.conn.prepare_cached("SELECT stream, kind, payload FROM events ORDER BY pos")?;
        let mut rows = q.query([])?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(row) = rows.next()? {
            let len = row.get_ref(0)?.as_str()?.len()
                + row.get_ref(1)?.as_str()?.len()
                + row.get_ref(2)?.as_blob()?.len();
            bytes += len as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------

const REDB_EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
const REDB_BY_STREAM: redb::TableDefinition<(&str, u64), u64> = redb::TableDefinition::new("by_stream");

/// redb: one write transaction per append call.
pub struct Redb {
    db: redb::Database,
    cadence: Cadence,
    next_position: u64,
    buf: Vec<u8>,
}

pub const REDB: EngineSpec = EngineSpec { name: "redb", setting: Redb::setting, open: Redb::open };

impl Redb {
    fn setting(mode: Mode) -> String {
        match mode {
            Mode::NoSync => "Durability::None (held in process memory until a durable commit)".into(),
            Mode::Group(n) => format!("Durability::None; Immediate for every {n}th commit"),
            Mode::Always => "Durability::Immediate".into(),
        }
    }

    fn open(dir: &Path, mode: Mode) -> BenchResult<Box<dyn Engine>> {
        use redb::ReadableDatabase;
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::create(dir.join("events.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(REDB_EVENTS)?;
        tx.open_table(REDB_BY_STREAM)?;
        tx.commit()?;
        let next_position = {
            use redb::ReadableTable;
            let rtx = db.begin_read()?;
            let t = rtx.open_table(REDB_EVENTS)?;
            let last = t.last()?.map_or(0, |(k, _)| k.value() + 1);
            last
        };
        Ok(Box::new(Redb { db, cadence: Cadence::new(mode), next_position, buf: Vec::new() }))
    }
}

impl Engine for Redb {
    fn append(&mut self, stream: &str, next_version: u64, events: &[(&str, &[u8])]) -> BenchResult<()> {
        use redb::ReadableTable;
        let mut tx = self.db.begin_write()?;
        let durable = self.cadence.next_is_durable();
        tx.set_durability(if durable { redb::Durability::Immediate } else { redb::Durability::None })?;
        {
            let mut by_stream = tx.open_table(REDB_BY_STREAM)?;
            let actual = by_stream
                .range((stream, 0)..=(stream, u64::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(k, _)| k.value().1 + 1);
            if actual != next_version {
                return Err(conflict(stream, next_version, actual));
            }
            let mut table = tx.open_table(REDB_EVENTS)?;
            for (i, (kind, payload)) in events.iter().enumerate() {
                let version = next_version + i as u64;
                encode(&mut self.buf, stream, version, kind, payload);
                table.insert(self.next_position + i as u64, self.buf.as_slice())?;
                by_stream.insert((stream, version), self.next_position + i as u64)?;
            }
        }
        tx.commit()?;
        self.next_position += events.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> BenchResult<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        tx.commit()?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str, limit: usize) -> BenchResult<(u64, u64)> {
        use redb::ReadableDatabase;
        let rtx = self.db.begin_read()?;
        let by_stream = rtx.open_table(REDB_BY_STREAM)?;
        let table = rtx.open_table(REDB_EVENTS)?;
        let (mut n, mut bytes) = (0u64, 0u64);
        for entry in by_stream.range((stream, 0)..=(stream, u64::MAX))?.take(limit) {
            let (_, pos) = entry?;
            let v = table.get(pos.value())?.ok_or("index points at no event")?;
            bytes += decode_lens(v.value())?.2 as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn replay(&mut self) -> BenchResult<(u64, u64)> {
        use redb::{ReadableDatabase, ReadableTable};
        let rtx = self.db.begin_read()?;
        let table = rtx.open_table(REDB_EVENTS)?;
        let (mut n, mut bytes) = (0u64, 0u64);
        for entry in table.iter()? {
            let (_, v) = entry?;
            let (s, k, p) = decode_lens(v.value())?;
            bytes += (s + k + p) as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        drop(self.db);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------

/// fjall: a single-writer transactional database, one write transaction per append call.
pub struct Fjall {
    db: fjall::SingleWriterTxDatabase,
    events: fjall::SingleWriterTxKeyspace,
    by_stream: fjall::SingleWriterTxKeyspace,
    cadence: Cadence,
    next_position: u64,
    buf: Vec<u8>,
}

pub const FJALL: EngineSpec = EngineSpec { name: "fjall", setting: Fjall::setting, open: Fjall::open };

fn fjall_stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 9);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

impl Fjall {
    fn setting(mode: Mode) -> String {
        match mode {
            Mode::NoSync => "PersistMode::Buffer (the default: to the OS per commit)".into(),
            Mode::Group(n) => format!("PersistMode::Buffer; SyncData for every {n}th commit"),
            Mode::Always => "PersistMode::SyncData per commit".into(),
        }
    }

    fn open(dir: &Path, mode: Mode) -> BenchResult<Box<dyn Engine>> {
        use fjall::Readable;
        let db = fjall::SingleWriterTxDatabase::builder(dir).open()?;
        let events = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
        let by_stream = db.keyspace("by_stream", fjall::KeyspaceCreateOptions::default)?;
        let next_position = match db.read_tx().last_key_value(&events) {
            Some(g) => u64::from_be_bytes(g.key()?.as_ref().try_into()?) + 1,
            None => 0,
        };
        Ok(Box::new(Fjall {
            db,
            events,
            by_stream,
            cadence: Cadence::new(mode),
            next_position,
            buf: Vec::new(),
        }))
    }
}

impl Engine for Fjall {
    fn append(&mut self, stream: &str, next_version: u64, events: &[(&str, &[u8])]) -> BenchResult<()> {
        use fjall::Readable;
        let durable = self.cadence.next_is_durable();
        let persist = if durable { fjall::PersistMode::SyncData } else { fjall::PersistMode::Buffer };
        let mut tx = self.db.write_tx().durability(Some(persist));
        let prefix = fjall_stream_key(stream, 0);
        let actual = match tx.prefix(&self.by_stream, &prefix[..stream.len() + 1]).next_back() {
            Some(g) => {
                let k = g.key()?;
                u64::from_be_bytes(k[k.len() - 8..].try_into()?) + 1
            }
            None => 0,
        };
        if actual != next_version {
            return Err(conflict(stream, next_version, actual));
        }
        for (i, (kind, payload)) in events.iter().enumerate() {
            let version = next_version + i as u64;
            let position = (self.next_position + i as u64).to_be_bytes();
            encode(&mut self.buf, stream, version, kind, payload);
            tx.insert(&self.events, position, self.buf.as_slice());
            tx.insert(&self.by_stream, fjall_stream_key(stream, version), position);
        }
        tx.commit()?;
        self.next_position += events.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> BenchResult<()> {
        Ok(self.db.persist(fjall::PersistMode::SyncData)?)
    }

    fn read_stream(&mut self, stream: &str, limit: usize) -> BenchResult<(u64, u64)> {
        use fjall::Readable;
        let snapshot = self.db.read_tx();
        let prefix = fjall_stream_key(stream, 0);
        let (mut n, mut bytes) = (0u64, 0u64);
        for g in snapshot.prefix(&self.by_stream, &prefix[..stream.len() + 1]).take(limit) {
            let pos = g.value()?;
            let v = snapshot.get(&self.events, pos)?.ok_or("index points at no event")?;
            bytes += decode_lens(&v)?.2 as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn replay(&mut self) -> BenchResult<(u64, u64)> {
        use fjall::Readable;
        let snapshot = self.db.read_tx();
        let (mut n, mut bytes) = (0u64, 0u64);
        for g in snapshot.iter(&self.events) {
            let v = g.value()?;
            let (s, k, p) = decode_lens(&v)?;
            bytes += (s + k + p) as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }
}
