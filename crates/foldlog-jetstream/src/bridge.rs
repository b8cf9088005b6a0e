//! The bridge: every event of an embedded store, as a live writer commits it, published to JetStream exactly
//! once, so an embedded application can feed read models on other machines.
//!
//! Exactly once does not rest on JetStream's de-duplication window (which ends) nor on the saved position
//! (which lags): each event keeps its stream and version, and is appended with the expectation that the
//! JetStream stream is at the version before it. An event that is already there (a bridge killed after a
//! publish and before it saved its position) is recognised by the stream's last version and skipped; one
//! that is not is appended by exactly one publish, which the server accepts only at that version. The saved
//! position (a consumer position on the JetStream side, since the bridge only reads the embedded store) bounds
//! how much is re-examined after a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use foldlog::{Batch, EventRef, ExpectedVersion, NewEvent, Store, StreamAppend};

use crate::{Backend, Error, JetStreamStore, Result};

/// What a bridge run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Events appended to JetStream.
    pub published: u64,
    /// Events found already there (published before a restart) and skipped.
    pub skipped: u64,
    /// The source position up to which everything is on JetStream.
    pub position: u64,
}

/// How often the bridge saves its position while events flow (and always when it goes idle).
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// Follows `source` (typically a read-only handle beside the writer) from the position saved under
/// `consumer` on `target`, publishing every event, until `keep_going` returns false after an idle wait.
pub fn run(
    source: &Store,
    target: &JetStreamStore,
    consumer: &str,
    mut keep_going: impl FnMut(&BridgeStats) -> bool,
) -> Result<BridgeStats> {
    let start = target.consumer_position(consumer)?.unwrap_or(0);
    let mut stats = BridgeStats { position: start, ..BridgeStats::default() };
    let mut saved = start;
    let mut last_save = Instant::now();
    // Each JetStream stream's last version as this run knows it (looked up once per stream).
    let mut versions: HashMap<String, Option<u64>> = HashMap::new();
    let mut sub = source.subscribe(start);
    loop {
        let event = sub.next_event(Duration::from_millis(100))?;
        if let Some(e) = &event {
            let stream = e.stream_id();
            let known = match versions.get(stream) {
                Some(v) => *v,
                None => *versions.entry(stream.to_owned()).or_insert(target.stream_version(stream)?),
            };
            if known.is_some_and(|t| t >= e.stream_version()) {
                // Already there; the target's version stays what it is.
                stats.skipped += 1;
            } else {
                publish(target, e, known)?;
                stats.published += 1;
                versions.insert(stream.to_owned(), Some(e.stream_version()));
            }
            stats.position = sub.position();
        }
        let idle = event.is_none();
        if stats.position > saved && (idle || last_save.elapsed() >= SAVE_EVERY) {
            target.save_consumer_position(consumer, stats.position)?;
            saved = stats.position;
            last_save = Instant::now();
        }
        if idle && !keep_going(&stats) {
            return Ok(stats);
        }
    }
}

/// Appends `e` at its own version: the target must be exactly one version behind (or, for the stream's first
/// event, have no such stream), else the target holds events the source does not and the bridge stops.
fn publish(target: &JetStreamStore, e: &EventRef<'_>, known: Option<u64>) -> Result<()> {
    let v = e.stream_version();
    let expected = known.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    if known.is_some_and(|t| t + 1 != v) {
        return Err(gap(e, known));
    }
    let event = [NewEvent::new(e.event_type(), e.payload())
        .metadata(e.metadata())
        .event_id(e.event_id())
        .schema_version(e.schema_version())
        .timestamp_micros(e.timestamp_micros())];
    let one = [StreamAppend::new(e.stream_id(), expected, &event).first_version(v)];
    let done = target.append_batch(&Batch::new(&one))?;
    if done.first().is_none_or(|a| a.versions.start != v) {
        return Err(gap(e, known));
    }
    Ok(())
}

fn gap(e: &EventRef<'_>, known: Option<u64>) -> Error {
    Error::Unsupported(format!(
        "bridge: stream {:?} is at version {known:?} on JetStream, but the source's next event has version {}; \
         the JetStream log has another writer or another source",
        e.stream_id(),
        e.stream_version()
    ))
}
