//! Import: build a new store from a sequence of events and consumer positions (what `foldlog import` reads
//! from an export), keeping every field, so that an export of the new store equals the input.
//!
//! The rules: events come in global order with positions 0, 1, 2, … exactly (the engine assigns positions
//! densely, and keeping them is the point); each stream's versions follow each other without a gap, its
//! first event starting it at any version; a consumer position applies where it appears (consumer positions
//! only advance), and so does a stream's truncation or deletion. Anything else is refused with the record's line number, and nothing is left behind: the
//! store is built in a temporary directory next to `dst` and renamed into place only when every record was
//! appended and synced. Parsing (JSON Lines in the CLI) is the caller's: this module needs no serde.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use crate::error::{Error, ExpectedVersion, Result};
use crate::options::{Durability, Options};
use crate::record::OwnedEvent;
use crate::staging::Staging;
use crate::store::{Batch, NewEvent, Store, StreamAppend};

/// One record to import. Non-exhaustive: an export may carry other kinds of record later.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// An event, every field as stored (`position` must be the next position of the new store).
    Event(OwnedEvent),
    /// A named consumer's position.
    Consumer {
        /// The consumer's name.
        name: String,
        /// The last position it processed.
        position: u64,
    },
    /// A stream's truncation or deletion, applied where it appears (to the events imported before it):
    /// [`Store::truncate_before`] at `truncate_before`, or with `deleted`, [`Store::delete_stream`].
    StreamControl {
        /// The stream; it must have events by then.
        stream: String,
        /// Its events below this version are hidden.
        truncate_before: u64,
        /// The stream is deleted.
        deleted: bool,
    },
}

/// What [`import()`] built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// The new store.
    pub dst: PathBuf,
    /// Events imported.
    pub events: u64,
    /// Consumer-position records applied.
    pub consumer_records: u64,
    /// Stream truncations and deletions applied.
    pub stream_controls: u64,
}

/// Events of one stream waiting to be appended as one batch.
const BATCH_EVENTS_MAX: usize = 1000;

/// Builds a new store at `dst` (which must not exist, or be an empty directory) from `records`, each with
/// the line number (or any place number) to name when it is refused. An `Err` item is refused as it is
/// ([`Error::InvalidArgument`] with its text, prefixed by nothing: the caller's error names its place).
///
/// ```
/// use foldlog::import::{import, Record};
/// use foldlog::OwnedEvent;
///
/// # fn main() -> foldlog::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let event = OwnedEvent::new(0, "account-7", 1, "Opened", b"100".to_vec())
///     .timestamp_micros(1_700_000_000_000_000);
/// let records = vec![Ok::<_, String>((1, Record::Event(event)))];
/// let report = import(tmp.path().join("new"), records)?;
/// assert_eq!(report.events, 1);
/// let store = foldlog::Store::open(tmp.path().join("new"))?;
/// assert_eq!(store.stream_version("account-7"), Some(1));
/// # Ok(())
/// # }
/// ```
pub fn import<E: Display>(
    dst: impl AsRef<Path>,
    records: impl IntoIterator<Item = Result<(u64, Record), E>>,
) -> Result<ImportReport> {
    let dst = dst.as_ref();
    let staging = Staging::new(dst)?;
    let store = Store::open_with(
        staging.path(),
        // Synced once at the end: the store is not visible before it is complete anyway. No event-id window:
        // the exporting store decided which appends were retries (see `Staging::remove_checkpoint`).
        Options { durability: Durability::Never, event_ids_remembered: 0, ..Options::default() },
    )?;
    let mut report = ImportReport { dst: dst.to_path_buf(), ..ImportReport::default() };
    let mut pending: Vec<(u64, OwnedEvent)> = Vec::new();
    for item in records {
        let (line, record) = item.map_err(|e| Error::InvalidArgument(e.to_string()))?;
        match record {
            Record::Event(e) => {
                let expected = store.next_position() + pending.len() as u64;
                if e.position != expected {
                    return Err(refused(
                        line,
                        format!(
                            "position {} where {expected} belongs (positions run 0, 1, 2, ... without a gap)",
                            e.position
                        ),
                    ));
                }
                let same_stream = pending.last().is_none_or(|(_, p)| p.stream_id == e.stream_id);
                // A store whose id window had forgotten an id may have used it again; one batch may not.
                let id_again = e.event_id.is_some() && pending.iter().any(|(_, p)| p.event_id == e.event_id);
                if !same_stream || id_again || pending.len() >= BATCH_EVENTS_MAX {
                    flush(&store, &mut pending)?;
                }
                pending.push((line, e));
                report.events += 1;
            }
            Record::Consumer { name, position } => {
                flush(&store, &mut pending)?;
                store
                    .append_batch(&Batch::new(&[]).consumer(&name, position))
                    .map_err(|e| refused(line, e))?;
                report.consumer_records += 1;
            }
            Record::StreamControl { stream, truncate_before, deleted } => {
                flush(&store, &mut pending)?;
                let applied = if deleted {
                    store.delete_stream(&stream, ExpectedVersion::Any)
                } else {
                    store.truncate_before(&stream, ExpectedVersion::Any, truncate_before)
                };
                applied.map_err(|e| refused(line, e))?;
                report.stream_controls += 1;
            }
        }
    }
    flush(&store, &mut pending)?;
    store.close()?;
    staging.remove_checkpoint()?;
    staging.finish()?;
    Ok(report)
}

fn refused(line: u64, why: impl Display) -> Error {
    Error::InvalidArgument(format!("line {line}: {why}"))
}

/// Appends the pending events (all of one stream, versions checked here so the error names the line).
fn flush(store: &Store, pending: &mut Vec<(u64, OwnedEvent)>) -> Result<()> {
    let Some((first_line, first)) = pending.first() else { return Ok(()) };
    let stream = first.stream_id.as_str();
    let last = store.stream_version(stream);
    if let Some(last) = last {
        if last.checked_add(1) != Some(first.stream_version) {
            return Err(refused(*first_line, format!(
                "stream {stream:?} is at version {last}, this event has version {} (versions run on without a gap)",
                first.stream_version
            )));
        }
    }
    for pair in pending.windows(2) {
        let [(_, a), (line, b)] = pair else { continue };
        if a.stream_version.checked_add(1) != Some(b.stream_version) {
            return Err(refused(
                *line,
                format!(
                    "stream {stream:?} has version {} after {} (versions run on without a gap)",
                    b.stream_version, a.stream_version
                ),
            ));
        }
    }
    // foldlog's own streams come over only as what this build writes there (an export carries them).
    let system = stream.starts_with(crate::SYSTEM_PREFIX);
    if system {
        for (line, e) in pending.iter() {
            crate::retention::check_system_event(stream, &e.event_type, &e.payload)
                .map_err(|why| refused(*line, format!("stream {stream:?}: {why}")))?;
        }
    }
    let tags: Vec<Vec<&str>> =
        pending.iter().map(|(_, e)| e.tags.iter().map(String::as_str).collect()).collect();
    let events: Vec<NewEvent<'_>> = pending
        .iter()
        .zip(&tags)
        .map(|((_, e), tags)| NewEvent {
            event_type: &e.event_type,
            payload: &e.payload,
            metadata: &e.metadata,
            event_id: e.event_id,
            schema_version: e.schema_version,
            timestamp_micros: Some(e.timestamp_micros),
            tags,
        })
        .collect();
    let append = StreamAppend {
        stream,
        expected: last.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
        first_version: first.stream_version,
        events: &events,
    };
    let appends = [append];
    let batch = if system { Batch::new(&appends).system() } else { Batch::new(&appends) };
    let appended = store.append_batch(&batch);
    let appended = appended.map_err(|e| refused(*first_line, e))?;
    debug_assert!(appended.iter().all(|a| !a.deduplicated), "no id window, so no retry is recognised");
    pending.clear();
    Ok(())
}
