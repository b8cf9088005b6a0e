//! foldlog's event-sourcing API on two backends: the embedded [`foldlog::Store`] and NATS JetStream.
//!
//! [`Backend`] is what an event-sourced application needs from its log: append with an expected version
//! (idempotent by event id), read a stream forward and backward, read the global log with a type filter,
//! subscribe (catch-up then live, exactly once) and keep named consumer positions. Both backends implement it
//! with the same semantics, which one test suite (`tests/behaviour.rs`) checks against both; [`open`] picks
//! one from a single configuration string, so an application moves from a directory to a cluster by changing
//! that string.
//!
//! The trait is synchronous because the embedded store, `Repository` and the aggregates are: the JetStream
//! backend owns a small tokio runtime and blocks on it (see [`JetStreamStore`]). Events come back owned
//! ([`foldlog::OwnedEvent`]) because a JetStream message cannot be borrowed the way the embedded store lends
//! its memory map; the embedded store's zero-copy reads stay available on [`foldlog::Store`] itself.
//!
//! The mapping to JetStream and what it cannot do: `docs/jetstream.md`.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod bridge;
mod codec;
mod embedded;
mod error;
mod jetstream;
mod repository;
pub mod subject;
#[doc(hidden)]
pub mod testing;

use std::time::Duration;

use foldlog::{Batch, ExpectedVersion, NewEvent, OwnedEvent, ReadAll, SnapshotData, SnapshotRefusal};

pub use error::{Error, Result};
pub use jetstream::{JetStreamOptions, JetStreamStore, EVENTS_PER_MESSAGE_MAX, POSITION_INDEX_BITS};
pub use repository::{AggregateError, BackendRepository, Saved};

/// A stored snapshot as [`Backend::snapshots`] finds it, or why it cannot be used.
pub type SnapshotFound = std::result::Result<SnapshotData, SnapshotRefusal>;

/// One of [`Backend::snapshots`]: the snapshot's stream version and what was found there.
pub type FoundSnapshot = (u64, SnapshotFound);

/// What one stream's append produced, on either backend.
///
/// The library's own `foldlog::Appended` is non-exhaustive (only the embedded store makes it), so the
/// backends report this one; `From<foldlog::Appended>` converts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// Global positions of the events, contiguous. Dense on the embedded store; on JetStream derived from the
    /// message's stream sequence (see [`POSITION_INDEX_BITS`]), so they grow but skip.
    pub positions: std::ops::Range<u64>,
    /// Stream versions of the events: gap-free on both backends.
    pub versions: std::ops::Range<u64>,
    /// True if this was a retry of an earlier append (matched by event id) and nothing was written.
    pub deduplicated: bool,
}

impl Appended {
    /// An append's outcome.
    pub fn new(
        positions: std::ops::Range<u64>,
        versions: std::ops::Range<u64>,
        deduplicated: bool,
    ) -> Appended {
        Appended { positions, versions, deduplicated }
    }
}

impl From<foldlog::Appended> for Appended {
    fn from(a: foldlog::Appended) -> Appended {
        Appended { positions: a.positions, versions: a.versions, deduplicated: a.deduplicated }
    }
}

/// The log an event-sourced application writes and reads, whatever stores it.
///
/// Semantics shared by every implementation (and tested against each):
/// - `append` checks `expected` against the stream's last version and writes all events or none; a new stream
///   starts at version 0; versions are gap-free.
/// - An append whose events carry ids that were already appended with the same content (a retry after a lost
///   acknowledgement) writes nothing and returns the original result with `deduplicated: true`; an id reused
///   for a different event is [`foldlog::Error::DuplicateEventId`].
/// - A failed check is [`foldlog::Error::WrongExpectedVersion`] (inside [`Error::Store`]) with the actual
///   version; nothing was written.
/// - Global positions increase in commit order; reads and subscriptions from a position return the events at
///   or after it.
pub trait Backend: Send + Sync {
    /// Appends `events` to `stream` if it is at `expected`; one atomic write.
    fn append(&self, stream: &str, expected: ExpectedVersion, events: &[NewEvent<'_>]) -> Result<Appended>;

    /// Appends a batch atomically. The embedded store takes any number of streams and a consumer position;
    /// JetStream 2.9 takes one stream, or a consumer position alone, and returns [`Error::Unsupported`] for
    /// the rest (`docs/jetstream.md`).
    fn append_batch(&self, batch: &Batch<'_>) -> Result<Vec<Appended>>;

    /// Events of `stream` from version `from_version` on, oldest first, at most `limit`.
    fn read_stream(&self, stream: &str, from_version: u64, limit: Option<u64>) -> Result<Vec<OwnedEvent>>;

    /// Events of `stream` from version `from_version` (`None`: its last) down, newest first, at most `limit`.
    fn read_stream_backward(
        &self,
        stream: &str,
        from_version: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<OwnedEvent>>;

    /// The global log as `opts` selects it (from, to, event type, limit), up to the head when called.
    fn read_all(&self, opts: &ReadAll) -> Result<Vec<OwnedEvent>>;

    /// The stream's last version, `None` if it has no events.
    fn stream_version(&self, stream: &str) -> Result<Option<u64>>;

    /// The position the next committed event will have at the earliest; a subscription from here sees only
    /// new events.
    fn next_position(&self) -> Result<u64>;

    /// Consumer `name`'s saved position.
    fn consumer_position(&self, name: &str) -> Result<Option<u64>>;

    /// Saves consumer `name`'s position; it must advance
    /// ([`foldlog::Error::ConsumerPositionNotAdvanced`] otherwise).
    fn save_consumer_position(&self, name: &str, position: u64) -> Result<()>;

    /// The aggregate snapshots stored for `stream` at or below version `at_most`, newest first, each read when
    /// the iterator reaches it (a caller that accepts the first reads no other). Checked as far as storage
    /// goes (checksum, format, that it is `stream`'s): whether one still matches the log and decodes is the
    /// caller's check ([`BackendRepository`] makes it). The embedded store keeps them in its snapshot files
    /// (`foldlog::SnapshotFiles`, shared with `foldlog::Repository`); JetStream the newest one per stream.
    fn snapshots(&self, stream: &str, at_most: u64) -> Result<Box<dyn Iterator<Item = FoundSnapshot> + '_>>;

    /// Stores a snapshot of `stream` and keeps its newest `keep` (at least 1). JetStream keeps one per stream
    /// whatever `keep` says; on both backends a snapshot older than the ones kept does not stay.
    fn write_snapshot(&self, stream: &str, snapshot: &SnapshotData, keep: usize) -> Result<()>;

    /// Every committed event from position `from` on, exactly once and in order: the log first, then live.
    fn subscribe(&self, from: u64) -> Result<Box<dyn EventSubscription + '_>>;
}

/// A live cursor over the global log; see [`Backend::subscribe`].
pub trait EventSubscription {
    /// The next event, waiting at most `timeout`; `Ok(None)` on timeout.
    fn next_event(&mut self, timeout: Duration) -> Result<Option<OwnedEvent>>;

    /// The position up to which every event was delivered: save it and resume from it.
    fn position(&self) -> u64;
}

/// Opens the backend a configuration string names: `nats://host:port[,nats://...]` (optionally followed by
/// `#log` to choose the log's name, default `default`) connects to JetStream; anything else is the directory of
/// an embedded store. The one line an application changes to move between them.
pub fn open(config: &str) -> Result<Box<dyn Backend>> {
    if config.starts_with("nats://") {
        let (urls, log) = config.split_once('#').unwrap_or((config, "default"));
        Ok(Box::new(JetStreamStore::connect(JetStreamOptions::new(urls).log(log))?))
    } else {
        Ok(Box::new(foldlog::Store::open(config)?))
    }
}

/// Whether a stream whose last version is `last` passes the check `expected` (the JetStream backend checks
/// before it publishes, then lets the server confirm nothing moved in between).
pub(crate) fn expected_matches(expected: ExpectedVersion, last: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => last.is_none(),
        ExpectedVersion::StreamExists => last.is_some(),
        ExpectedVersion::Exact(v) => last == Some(v),
    }
}
