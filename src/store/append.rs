//! What an append is made of (events, per-stream parts, batches, results) and the checks a batch passes
//! before the writer sees it: names, version room, duplicates.

use super::*;
use crate::query::AppendCondition;
use crate::record::name_frame_len;

/// One event to append: [`NewEvent::new`] with a type and payload, then a setter per optional field.
///
/// ```
/// use foldlog::NewEvent;
///
/// let event = NewEvent::new("Deposited", b"50").metadata(b"correlation=7").event_id(0x2a).schema_version(2);
/// assert_eq!((event.event_id, event.timestamp_micros), (Some(0x2a), None));
/// ```
///
/// Non-exhaustive, so that a new field is not a breaking change; the fields stay public to read and assign.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct NewEvent<'a> {
    /// The event's type name (1..=256 bytes).
    pub event_type: &'a str,
    /// The event's bytes, in any codec.
    pub payload: &'a [u8],
    /// Application metadata (correlation and causation ids, ...); may be empty.
    pub metadata: &'a [u8],
    /// Caller-chosen id: a retry of an append whose acknowledgement was lost returns the original result.
    pub event_id: Option<u128>,
    /// Schema version of the event type (for upcasting on read). Default 0.
    pub schema_version: u32,
    /// The event's timestamp (microseconds since the Unix epoch); `None` (the default) stamps it with the
    /// wall clock at append. For importers and salvage, which carry the original time over; the store does
    /// not require timestamps to increase. Within [`TIMESTAMP_MIN`]..=[`TIMESTAMP_MAX`] (a signed 56-bit
    /// count of microseconds: the years 828 to 3112).
    pub timestamp_micros: Option<i64>,
    /// Tags (each 1..=256 bytes of UTF-8, at most 64), for reading and guarding events across streams by
    /// what they are about (`student:42`, `course:7`). Default none; stored once per segment, then as a
    /// 4-byte reference per event.
    pub tags: &'a [&'a str],
}

impl<'a> NewEvent<'a> {
    /// An event with a type and payload, no metadata or id.
    pub fn new(event_type: &'a str, payload: &'a [u8]) -> NewEvent<'a> {
        NewEvent { event_type, payload, ..NewEvent::default() }
    }

    /// Sets [`metadata`](field@NewEvent::metadata).
    #[must_use]
    pub fn metadata(mut self, metadata: &'a [u8]) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets [`event_id`](field@NewEvent::event_id): an id, or an `Option` of one.
    #[must_use]
    pub fn event_id(mut self, id: impl Into<Option<u128>>) -> Self {
        self.event_id = id.into();
        self
    }

    /// Sets [`schema_version`](field@NewEvent::schema_version).
    #[must_use]
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Sets [`timestamp_micros`](field@NewEvent::timestamp_micros): a time, or an `Option` of one.
    #[must_use]
    pub fn timestamp_micros(mut self, micros: impl Into<Option<i64>>) -> Self {
        self.timestamp_micros = micros.into();
        self
    }

    /// Sets [`tags`](field@NewEvent::tags).
    #[must_use]
    pub fn tags(mut self, tags: &'a [&'a str]) -> Self {
        self.tags = tags;
        self
    }
}

/// Events for one stream within a [`Batch`]. Non-exhaustive: made with [`StreamAppend::new`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct StreamAppend<'a> {
    /// The stream id (1..=1024 bytes of UTF-8).
    pub stream: &'a str,
    /// The optimistic-concurrency check.
    pub expected: ExpectedVersion,
    /// Version of the first event if the stream is new (0 by default; 1 for Python-style aggregates).
    pub first_version: u64,
    /// The events, in order.
    pub events: &'a [NewEvent<'a>],
}

impl<'a> StreamAppend<'a> {
    /// Events for `stream` with the given check; a new stream starts at version 0.
    pub fn new(stream: &'a str, expected: ExpectedVersion, events: &'a [NewEvent<'a>]) -> StreamAppend<'a> {
        StreamAppend { stream, expected, first_version: 0, events }
    }

    /// Sets [`first_version`](field@StreamAppend::first_version), the version of the first event if the
    /// stream is new.
    #[must_use]
    pub fn first_version(mut self, version: u64) -> Self {
        self.first_version = version;
        self
    }
}

/// An atomic write: events for any number of streams (each with its own check) and optionally a consumer's
/// new position. All of it becomes visible and durable together, or none of it.
///
/// A transfer between two accounts, recorded with the position of the projection that decided it:
///
/// ```
/// use foldlog::{Batch, Error, ExpectedVersion, NewEvent, Store, StreamAppend};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let (debit, credit) = ([NewEvent::new("Debited", b"30")], [NewEvent::new("Credited", b"30")]);
/// let streams = [
///     StreamAppend::new("account-a", ExpectedVersion::NoStream, &debit),
///     StreamAppend::new("account-b", ExpectedVersion::NoStream, &credit),
/// ];
/// let done = store.append_batch(&Batch::new(&streams).consumer("transfers", 17))?;
/// assert_eq!((done[0].positions.clone(), done[1].positions.clone()), (0..1, 1..2));
/// assert_eq!(store.consumer_position("transfers"), Some(17));
/// // The same checks again fail as a whole: nothing of the batch is written.
/// let again = store.append_batch(&Batch::new(&streams));
/// assert!(matches!(again, Err(Error::WrongExpectedVersion { .. })));
/// assert_eq!(store.next_position(), 2);
/// # Ok(())
/// # }
/// ```
///
/// Non-exhaustive: made with [`Batch::new`] (or `Batch::default()` for a consumer position alone).
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Batch<'a> {
    /// Per-stream events. A stream appears at most once.
    pub streams: &'a [StreamAppend<'a>],
    /// A named consumer's new position, committed with the events; must exceed its current one.
    pub consumer: Option<(&'a str, u64)>,
    /// A condition on the log (no event matching a query after a position), checked under the writer lock
    /// with the expected versions: if it fails, nothing of the batch is written.
    pub condition: Option<&'a AppendCondition>,
    /// Streams to truncate or delete, committed with the events (after them in the log); a stream appears
    /// at most once in the batch, here or in [`streams`](field@Batch::streams).
    pub controls: &'a [StreamControl<'a>],
    /// Set by [`crate::Store::reset_consumer`] only: the consumer may move to any position.
    pub(crate) reset_consumer: bool,
    /// Set by [`crate::Store::delete_consumer`] only: the consumer is forgotten.
    pub(crate) delete_consumer: bool,
    /// Set by foldlog's own writes to its system streams ([`crate::SYSTEM_PREFIX`]), which every other
    /// batch is refused.
    pub(crate) system: bool,
}

impl<'a> Batch<'a> {
    /// The events of `streams`, and no consumer position.
    pub fn new(streams: &'a [StreamAppend<'a>]) -> Batch<'a> {
        Batch {
            streams,
            consumer: None,
            condition: None,
            controls: &[],
            reset_consumer: false,
            delete_consumer: false,
            system: false,
        }
    }

    /// Marks the batch as foldlog's own write to a system stream (retention rules, an import).
    #[must_use]
    pub(crate) fn system(mut self) -> Self {
        self.system = true;
        self
    }

    /// Sets [`controls`](field@Batch::controls): streams truncated or deleted together with the events.
    #[must_use]
    pub fn controls(mut self, controls: &'a [StreamControl<'a>]) -> Self {
        self.controls = controls;
        self
    }

    /// Sets [`consumer`](field@Batch::consumer): consumer `name`'s new position, committed with the events.
    #[must_use]
    pub fn consumer(mut self, name: &'a str, position: u64) -> Self {
        self.consumer = Some((name, position));
        self
    }

    /// Sets [`condition`](field@Batch::condition): the batch is written only if no event matching its query
    /// was stored after its position.
    #[must_use]
    pub fn condition(mut self, condition: &'a AppendCondition) -> Self {
        self.condition = Some(condition);
        self
    }
}

/// What a [`StreamControl`] does to its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Hides the stream's events below this version from every read (see
    /// [`Store::truncate_before`](crate::Store::truncate_before)); at most the stream's last version + 1.
    TruncateBefore(u64),
    /// Hides all of the stream's events and refuses appends to it from now on (see
    /// [`Store::delete_stream`](crate::Store::delete_stream)).
    Delete,
}

/// A truncation or deletion of one stream within a [`Batch`], with its optimistic-concurrency check, made
/// with [`StreamControl::truncate_before`] or [`StreamControl::delete`]:
///
/// ```
/// use foldlog::{Batch, ExpectedVersion, NewEvent, Store, StreamAppend, StreamControl};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.append("cart-1", ExpectedVersion::NoStream, &[NewEvent::new("Added", b"pen")])?;
/// // The order goes into its own stream and the cart is deleted, atomically.
/// let placed = [NewEvent::new("Placed", b"pen")];
/// let order = [StreamAppend::new("order-1", ExpectedVersion::NoStream, &placed)];
/// let delete = [StreamControl::delete("cart-1", ExpectedVersion::Exact(0))];
/// store.append_batch(&Batch::new(&order).controls(&delete))?;
/// assert_eq!(store.read_stream("cart-1", 0).count(), 0);
/// assert!(store.stream_state("cart-1").is_some_and(|s| s.deleted));
/// # Ok(())
/// # }
/// ```
///
/// Non-exhaustive: made with its constructors.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct StreamControl<'a> {
    /// The stream id; it must have events.
    pub stream: &'a str,
    /// The optimistic-concurrency check, against the stream's last version (hidden events count).
    pub expected: ExpectedVersion,
    /// What to do.
    pub control: Control,
}

impl<'a> StreamControl<'a> {
    /// Hide `stream`'s events below version `version`.
    pub fn truncate_before(stream: &'a str, expected: ExpectedVersion, version: u64) -> StreamControl<'a> {
        StreamControl { stream, expected, control: Control::TruncateBefore(version) }
    }

    /// Delete `stream`: hide its events and refuse appends to it.
    pub fn delete(stream: &'a str, expected: ExpectedVersion) -> StreamControl<'a> {
        StreamControl { stream, expected, control: Control::Delete }
    }
}

/// What one stream's append produced. Non-exhaustive: the store may report more about an append later.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// Global positions of the events (contiguous; empty if no events).
    pub positions: std::ops::Range<u64>,
    /// Stream versions of the events.
    pub versions: std::ops::Range<u64>,
    /// True if this was a retry of an earlier append (matched by event ids) and nothing was written.
    pub deduplicated: bool,
}

pub(super) fn check_name(kind: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() || name.len() > max {
        return Err(Error::InvalidArgument(format!("{kind} must be 1..={max} bytes, got {}", name.len())));
    }
    Ok(())
}

/// An upper bound of the bytes a batch's frames take: per event its frame with every optional part, and a
/// definition of each name it uses (as if none were defined yet); per consumer frame its frame and a
/// definition of its name.
pub(super) fn batch_size_bound(batch: &Batch<'_>) -> u64 {
    let events: u64 = batch
        .streams
        .iter()
        .flat_map(|s| s.events.iter().map(move |e| (s, e)))
        .map(|(s, e)| event_bound(s.stream, e))
        .sum();
    let controls: u64 =
        batch.controls.iter().map(|c| name_frame_len(c.stream) + frame::CONTROL_LEN as u64).sum();
    events
        + controls
        + batch.consumer.map_or(0, |(name, _)| name_frame_len(name) + frame::CONSUMER_LEN as u64)
}

/// The most bytes one event can take: its frame, and a definition of its stream, type and every tag.
fn event_bound(stream: &str, e: &NewEvent<'_>) -> u64 {
    let names = name_frame_len(stream)
        + name_frame_len(e.event_type)
        + e.tags.iter().map(|t| name_frame_len(t)).sum::<u64>();
    let fixed = frame::EVENT_FIXED_LEN + frame::EVENT_ID_LEN + frame::EXTRAS_LEN + 4 * e.tags.len() + 16;
    names + padded((fixed + e.metadata.len() + e.payload.len()) as u64)
}

/// The first version of `s`'s events, checked so that its last event stays at or below
/// [`STREAM_VERSION_MAX`]; `first` is `None` when the version after the stream's last one does not exist.
pub(super) fn check_version_room(s: &StreamAppend<'_>, first: Option<u64>) -> Result<u64> {
    let n = s.events.len() as u64;
    let fits = first.filter(|&v| {
        v <= STREAM_VERSION_MAX + 1
            && (n == 0 || v.checked_add(n - 1).is_some_and(|last| last <= STREAM_VERSION_MAX))
    });
    fits.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "stream {:?}: {n} events from version {} would pass the largest stream version {STREAM_VERSION_MAX}",
            s.stream,
            first.map_or_else(|| "past u64::MAX".to_owned(), |v| v.to_string()),
        ))
    })
}

pub(super) fn validate_batch(batch: &Batch<'_>) -> Result<()> {
    for s in batch.streams {
        check_name("stream id", s.stream, STREAM_ID_BYTES_MAX)?;
        if s.first_version > STREAM_VERSION_MAX {
            return Err(Error::InvalidArgument(format!(
                "stream {:?}: first version {} is past the largest stream version {STREAM_VERSION_MAX}",
                s.stream, s.first_version
            )));
        }
        for e in s.events {
            check_name("event type", e.event_type, NAME_BYTES_MAX)?;
            check_event(s.stream, e)?;
        }
    }
    if let Some((name, _)) = batch.consumer {
        check_name("consumer name", name, NAME_BYTES_MAX)?;
    }
    for c in batch.controls {
        check_name("stream id", c.stream, STREAM_ID_BYTES_MAX)?;
    }
    let named = batch.streams.iter().map(|s| s.stream).chain(batch.controls.iter().map(|c| c.stream));
    if let Some(stream) = first_duplicate(named) {
        return Err(Error::InvalidArgument(format!("stream {stream:?} appears twice in one batch")));
    }
    let ids = batch.streams.iter().flat_map(|s| s.events.iter().filter_map(|e| e.event_id));
    if let Some(id) = first_duplicate(ids) {
        return Err(Error::InvalidArgument(format!("event id {id:032x} appears twice in one batch")));
    }
    Ok(())
}

/// What the format bounds in one event beyond its names: its tags and its timestamp.
fn check_event(stream: &str, e: &NewEvent<'_>) -> Result<()> {
    if e.tags.len() > TAGS_MAX {
        return Err(Error::InvalidArgument(format!(
            "stream {stream:?}: an event of type {:?} has {} tags; at most {TAGS_MAX}",
            e.event_type,
            e.tags.len()
        )));
    }
    for t in e.tags {
        check_name("tag", t, NAME_BYTES_MAX)?;
    }
    if let Some(t) = e.timestamp_micros.filter(|t| !(TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(t)) {
        return Err(Error::InvalidArgument(format!(
            "stream {stream:?}: timestamp {t} µs is outside {TIMESTAMP_MIN}..={TIMESTAMP_MAX} (years 828 to 3112)"
        )));
    }
    Ok(())
}

/// The first item that appeared before. Small inputs (the common batch of one stream and a few events) are
/// compared pairwise without allocating; larger ones go through a hash set, so a batch of 100,000 ids costs
/// linear time, not quadratic.
pub(super) fn first_duplicate<T: Eq + std::hash::Hash + Copy>(
    items: impl Iterator<Item = T> + Clone,
) -> Option<T> {
    const PAIRWISE_MAX: usize = 16;
    if items.clone().nth(PAIRWISE_MAX).is_none() {
        return items
            .clone()
            .enumerate()
            .find(|&(i, x)| items.clone().take(i).any(|o| o == x))
            .map(|(_, x)| x);
    }
    let mut set = std::collections::HashSet::new();
    items.into_iter().find(|&x| !set.insert(x))
}
