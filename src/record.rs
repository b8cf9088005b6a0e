//! One frame: its fields, its CRC and the name definitions it refers to. Pure functions, no I/O.
//!
//! Encoding writes into a caller's 8-aligned slice (the map's free tail); decoding checks bounds, CRC, kind,
//! flags, reserved bytes, every length and every name reference before handing out references into the
//! segment's bytes. The layouts are in `format::frame` and docs/format.md, "Frames".

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::checked::CheckedFrames;
use crate::format::{
    frame, frame_crc, padded, timestamp_bytes, timestamp_from_bytes, FLAG_COMMIT, FLAG_DELETE, FLAG_EVENT_ID,
    FLAG_EXTRAS, FLAG_STREAM_DELETED, KIND_CONSUMER, KIND_CONTROL, KIND_EVENT, KIND_GAP, KIND_MASK,
    KIND_NAME, NAME_BYTES_MAX, NAME_CONSUMER, NAME_STREAM, NAME_TAG, NAME_TYPE, SEGMENT_HEADER_LEN,
    STREAM_ID_BYTES_MAX, TAGS_MAX,
};

/// The bytes of one segment (from offset 0) and what a frame's CRC and fields are relative to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegView<'a> {
    /// The segment's bytes from file offset `SEGMENT_HEADER_LEN` (the header is the writer's and is never
    /// borrowed), up to where its frames may be read.
    pub bytes: &'a [u8],
    /// The segment's sequence number (part of every frame's CRC).
    pub seq: u32,
    /// The segment's base position (an event stores its position relative to it).
    pub base: u64,
    /// Frames below this offset were checked (CRC included) by this process already: their CRC and their
    /// name definitions' CRCs are not computed again. 0 checks everything.
    pub checked_below: u64,
    /// Frames above `checked_below` this process checked already (their CRC is skipped), and where a frame
    /// that passes its check here is recorded; `None` checks every frame above `checked_below` and records
    /// nothing.
    pub checked: Option<&'a CheckedFrames>,
}

/// A zero-copy view of one stored event, borrowed from the log's map.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    position: u64,
    stream_version: u64,
    timestamp_micros: i64,
    schema_version: u32,
    event_id: Option<u128>,
    stream_id: &'a str,
    event_type: &'a str,
    metadata: &'a [u8],
    payload: &'a [u8],
    tags: TagRefs<'a>,
}

/// Where an event's tags are: in a segment (its bytes and the u32 offsets of the tags' name definitions), or
/// in an [`OwnedEvent`] viewed as an [`EventRef`].
#[derive(Clone, Copy)]
enum TagRefs<'a> {
    Segment { seg: &'a [u8], refs: &'a [u8] },
    Owned(&'a [String]),
}

impl<'a> EventRef<'a> {
    /// Global position in the log (0-based, dense).
    pub fn position(&self) -> u64 {
        self.position
    }
    /// Version within its stream.
    pub fn stream_version(&self) -> u64 {
        self.stream_version
    }
    /// Stream id.
    pub fn stream_id(&self) -> &'a str {
        self.stream_id
    }
    /// Event type name.
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }
    /// Schema version of the event type.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }
    /// Append time, microseconds since the Unix epoch.
    pub fn timestamp_micros(&self) -> i64 {
        self.timestamp_micros
    }
    /// The caller-chosen event id, if any.
    pub fn event_id(&self) -> Option<u128> {
        self.event_id
    }
    /// Metadata bytes (may be empty).
    pub fn metadata(&self) -> &'a [u8] {
        self.metadata
    }
    /// Payload bytes, straight from the map (8-aligned there).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
    /// The event's tags, in the order they were appended.
    pub fn tags(&self) -> Tags<'a> {
        match self.tags {
            TagRefs::Segment { seg, refs } => Tags { seg, refs, owned: &[] },
            TagRefs::Owned(owned) => Tags { seg: &[], refs: &[], owned },
        }
    }
    /// Copies the event out of the map.
    pub fn to_owned(&self) -> OwnedEvent {
        OwnedEvent {
            position: self.position(),
            stream_id: self.stream_id().to_owned(),
            stream_version: self.stream_version(),
            event_type: self.event_type().to_owned(),
            schema_version: self.schema_version(),
            timestamp_micros: self.timestamp_micros(),
            event_id: self.event_id(),
            tags: self.tags().map(str::to_owned).collect(),
            metadata: self.metadata().to_vec(),
            payload: self.payload().to_vec(),
        }
    }
}

/// The tags of one event: an iterator of `&str` borrowed from the map, each checked when the event was
/// decoded.
#[derive(Clone)]
pub struct Tags<'a> {
    seg: &'a [u8],
    /// The u32 offsets of the tags' name definitions, not yet iterated.
    refs: &'a [u8],
    /// The tags of an owned event, not yet iterated.
    owned: &'a [String],
}

impl<'a> Iterator for Tags<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if let Some((first, rest)) = self.owned.split_first() {
            self.owned = rest;
            return Some(first);
        }
        let (r, rest) = self.refs.split_first_chunk::<4>()?;
        self.refs = rest;
        // Every field of the definition was checked at decode (and its CRC with it), so only the name is
        // taken again; still through checked slicing and UTF-8, never trusted blindly.
        let frame = bytes_at(self.seg, u64::from(u32::from_le_bytes(*r)))?;
        let len = u32_at(frame, frame::LEN).ok()? as usize;
        std::str::from_utf8(frame.get(frame::NAME_BYTES..len)?).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.refs.len() / 4 + self.owned.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Tags<'_> {}

impl std::fmt::Debug for Tags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// An event copied out of the log, every field as stored: what [`EventRef::to_owned`] returns and what
/// [`crate::import::import`] takes. Made with [`OwnedEvent::new`] and a setter per other field:
///
/// ```
/// use foldlog::OwnedEvent;
///
/// let event = OwnedEvent::new(0, "account-7", 1, "Opened", b"100".to_vec())
///     .timestamp_micros(1_700_000_000_000_000);
/// assert_eq!((event.event_id, event.schema_version), (None, 0));
/// ```
///
/// Non-exhaustive, so that a field the format gains later is not a breaking change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwnedEvent {
    /// Global position in the log.
    pub position: u64,
    /// The stream the event belongs to.
    pub stream_id: String,
    /// Version within the stream.
    pub stream_version: u64,
    /// The event's type name.
    pub event_type: String,
    /// Schema version of the event type, chosen by the application. Default 0.
    pub schema_version: u32,
    /// Append time, microseconds since the Unix epoch. Default 0.
    pub timestamp_micros: i64,
    /// The caller-chosen id for idempotent retries, if any. Default `None`.
    pub event_id: Option<u128>,
    /// Tags (for queries across streams), in order. Default none.
    pub tags: Vec<String>,
    /// Application metadata (correlation and causation ids, ...). Default empty.
    pub metadata: Vec<u8>,
    /// The event's bytes.
    pub payload: Vec<u8>,
}

impl OwnedEvent {
    /// The event viewed as an [`EventRef`], borrowed from this value: what code written for events read from
    /// a store (upcasters, `decode_event`, `Root::from_history`) takes, for events that came from elsewhere (an
    /// export, another backend).
    ///
    /// ```
    /// use foldlog::OwnedEvent;
    ///
    /// let owned = OwnedEvent::new(7, "account-1", 2, "Deposited", b"50".to_vec()).tags(["branch:9"]);
    /// let view = owned.as_event_ref();
    /// assert_eq!((view.position(), view.stream_id(), view.payload()), (7, "account-1", &b"50"[..]));
    /// assert_eq!(view.tags().collect::<Vec<_>>(), ["branch:9"]);
    /// assert_eq!(view.to_owned(), owned);
    /// ```
    pub fn as_event_ref(&self) -> EventRef<'_> {
        EventRef {
            position: self.position,
            stream_version: self.stream_version,
            timestamp_micros: self.timestamp_micros,
            schema_version: self.schema_version,
            event_id: self.event_id,
            stream_id: &self.stream_id,
            event_type: &self.event_type,
            metadata: &self.metadata,
            payload: &self.payload,
            tags: TagRefs::Owned(&self.tags),
        }
    }

    /// The event at `position`, version `stream_version` of `stream_id`, with a type and payload; no
    /// metadata or id, schema version 0, timestamp 0.
    pub fn new(
        position: u64,
        stream_id: impl Into<String>,
        stream_version: u64,
        event_type: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> OwnedEvent {
        OwnedEvent {
            position,
            stream_id: stream_id.into(),
            stream_version,
            event_type: event_type.into(),
            payload: payload.into(),
            ..OwnedEvent::default()
        }
    }

    /// Sets [`schema_version`](field@OwnedEvent::schema_version).
    #[must_use]
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Sets [`timestamp_micros`](field@OwnedEvent::timestamp_micros).
    #[must_use]
    pub fn timestamp_micros(mut self, micros: i64) -> Self {
        self.timestamp_micros = micros;
        self
    }

    /// Sets [`event_id`](field@OwnedEvent::event_id): an id, or an `Option` of one.
    #[must_use]
    pub fn event_id(mut self, id: impl Into<Option<u128>>) -> Self {
        self.event_id = id.into();
        self
    }

    /// Sets [`tags`](field@OwnedEvent::tags).
    #[must_use]
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`metadata`](field@OwnedEvent::metadata).
    #[must_use]
    pub fn metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

impl std::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRef")
            .field("position", &self.position())
            .field("stream_id", &self.stream_id())
            .field("stream_version", &self.stream_version())
            .field("event_type", &self.event_type())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// The typed body of a frame that passed every check.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Body<'a> {
    /// An event (kind 1).
    Event(EventRef<'a>),
    /// A consumer position (kind 2).
    Consumer(ConsumerRef<'a>),
    /// A name definition (kind 3): read through the frames that refer to it.
    Name,
    /// A stream control (kind 4): a truncation point, maybe with the stream's deletion.
    Control(ControlRef<'a>),
    /// A gap (kind 5): positions whose events a scavenge removed.
    Gap(GapRef),
}

/// A gap frame's fields: positions `first..first + count` hold no event any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GapRef {
    pub first: u64,
    pub count: u64,
}

/// A stream-control frame's fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ControlRef<'a> {
    pub stream: &'a str,
    /// The stream's events below this version are hidden from every read.
    pub truncate_before: u64,
    /// The stream is deleted: nothing may be appended to it again.
    pub deleted: bool,
}

/// A consumer-position frame's fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConsumerRef<'a> {
    pub name: &'a str,
    pub position: u64,
    /// The consumer is deleted: its position is forgotten.
    pub delete: bool,
}

/// A frame that passed every check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame<'a> {
    pub body: Body<'a>,
    pub commit: bool,
    /// Bytes the frame occupies, padding included: the next frame starts this far on.
    pub len: u64,
}

/// Why the bytes at a frame offset are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameProblem {
    /// `len` is zero: nothing was written here.
    Empty,
    /// The frame would run past the end of the bytes.
    Truncated,
    /// The CRC does not match.
    Checksum,
    /// Unknown kind or flags, non-zero reserved bytes, or a length too short for the kind.
    Header,
    /// The CRC matched but the fields do not fit together (lengths past the frame, bad UTF-8, a version or
    /// position out of range).
    Body,
    /// A name reference (at this offset) is not a valid definition of the right sort earlier in the
    /// segment.
    Name(u64),
}

impl std::fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameProblem::Empty => f.write_str("no frame (zero length)"),
            FrameProblem::Truncated => f.write_str("frame runs past the end of the segment"),
            FrameProblem::Checksum => f.write_str("frame CRC mismatch"),
            FrameProblem::Header => f.write_str("frame header has unknown kind, flags or reserved bytes"),
            FrameProblem::Body => f.write_str("frame fields do not fit together"),
            FrameProblem::Name(at) => {
                write!(f, "frame refers to a name at offset {at} that is not defined there")
            }
        }
    }
}

/// The common part of every frame: where its bytes are and what its head byte says, after the CRC check.
struct Raw<'a> {
    /// The frame's bytes, `len` of them (padding excluded).
    bytes: &'a [u8],
    kind: u8,
    flags: u8,
    /// Padded length.
    len: u64,
}

/// The bytes of a segment view (which starts at `SEGMENT_HEADER_LEN`) from file offset `offset` on.
fn bytes_at(seg: &[u8], offset: u64) -> Option<&[u8]> {
    let i = usize::try_from(offset.checked_sub(SEGMENT_HEADER_LEN)?).ok()?;
    seg.get(i..)
}

/// Bounds, length and (unless the view says it was checked) CRC of the frame at `offset`.
fn raw_frame<'a>(view: &SegView<'a>, offset: u64) -> Result<Raw<'a>, FrameProblem> {
    let rest = bytes_at(view.bytes, offset).ok_or(FrameProblem::Truncated)?;
    let prefix: &[u8; 8] = rest.first_chunk().ok_or(FrameProblem::Truncated)?;
    let len = LE::read_u32(prefix.get(frame::LEN).ok_or(FrameProblem::Truncated)?);
    if len == 0 {
        return Err(FrameProblem::Empty);
    }
    let len_usize = len as usize;
    if len_usize <= frame::HEAD {
        return Err(FrameProblem::Header);
    }
    let padded_len = padded(u64::from(len));
    if (rest.len() as u64) < padded_len {
        return Err(FrameProblem::Truncated);
    }
    let bytes = rest.get(..len_usize).ok_or(FrameProblem::Truncated)?;
    if offset >= view.checked_below {
        check_crc(view, offset, *prefix, bytes)?;
    }
    let head = *bytes.get(frame::HEAD).ok_or(FrameProblem::Truncated)?;
    Ok(Raw { bytes, kind: head & KIND_MASK, flags: head & !KIND_MASK, len: padded_len })
}

/// The CRC check of the frame at `offset` (`prefix` its first 8 bytes, `bytes` all of it), unless the view
/// remembers checking it; a frame that passes is remembered. Kept out of [`raw_frame`], which a walk over
/// checked frames runs without it and which must stay small enough to inline.
#[inline(never)]
fn check_crc(view: &SegView<'_>, offset: u64, prefix: [u8; 8], bytes: &[u8]) -> Result<(), FrameProblem> {
    if view.checked.is_some_and(|c| c.contains(offset)) {
        return Ok(());
    }
    let covered = bytes.get(frame::LEN.start..).ok_or(FrameProblem::Truncated)?;
    let at = u32::try_from(offset).map_err(|_| FrameProblem::Truncated)?;
    if frame_crc(covered, view.seq, at)
        != LE::read_u32(prefix.get(frame::CRC).ok_or(FrameProblem::Truncated)?)
    {
        return Err(FrameProblem::Checksum);
    }
    if let Some(checked) = view.checked {
        checked.insert(offset);
    }
    Ok(())
}

/// Decodes and fully validates the frame at `offset` of a segment: bounds, CRC (unless below the view's
/// `checked_below`), header fields, every length, and the name definitions it refers to.
pub(crate) fn decode_frame<'a>(view: &SegView<'a>, offset: u64) -> Result<Frame<'a>, FrameProblem> {
    decode_frame_cached(view, offset, None)
}

/// As [`decode_frame`], resolving the event's stream and type through `cache` (the names a sequential reader
/// of this segment resolved already; only for bytes that do not change under the reader).
pub(crate) fn decode_frame_cached<'a>(
    view: &SegView<'a>,
    offset: u64,
    cache: Option<&mut NameCache<'a>>,
) -> Result<Frame<'a>, FrameProblem> {
    let raw = raw_frame(view, offset)?;
    let commit = raw.flags & FLAG_COMMIT != 0;
    let body = match raw.kind {
        KIND_EVENT => Body::Event(decode_event(view, offset, &raw, cache)?),
        KIND_CONSUMER => Body::Consumer(decode_consumer(view, offset, &raw)?),
        KIND_CONTROL => Body::Control(decode_control(view, offset, &raw)?),
        KIND_GAP => Body::Gap(decode_gap(view, &raw)?),
        KIND_NAME => {
            if raw.flags != 0 {
                return Err(FrameProblem::Header);
            }
            name_fields(raw.bytes)?;
            Body::Name
        }
        _ => return Err(FrameProblem::Header),
    };
    Ok(Frame { body, commit, len: raw.len })
}

/// The global position of an event frame read on its own (`frame` starts at the frame, which sits at `at` of
/// a segment whose base is `base`), after its length, CRC and kind are checked; its names are not resolved.
/// `None` if it is not a valid event frame.
pub(crate) fn event_position(frame: &[u8], at: Place, base: u64) -> Option<u64> {
    let len = u32_at(frame, frame::LEN).ok()? as usize;
    let b = frame.get(..len).filter(|b| b.len() >= frame::EVENT_FIXED_LEN)?;
    let crc = frame_crc(b.get(frame::LEN.start..)?, at.seq, u32::try_from(at.offset).ok()?);
    let head = *b.get(frame::HEAD)?;
    let ok = crc == u32_at(b, frame::CRC).ok()? && head & KIND_MASK == KIND_EVENT;
    ok.then(|| base.checked_add(u64::from(u32_at(b, frame::POSITION_DELTA).ok()?)))?
}

/// Prefetches the name definitions of the frame at `offset` if it is an event (its header is read unchecked:
/// a hint, never trusted), and returns where the next frame starts; `None` at the end of the frames.
pub(crate) fn prefetch_names(view: &SegView<'_>, offset: u64) -> Option<u64> {
    let b = bytes_at(view.bytes, offset)?;
    let len = u32_at(b, frame::LEN).ok().filter(|&l| l > 0)?;
    let head = b.get(frame::HEAD).copied().unwrap_or(0);
    if head & KIND_MASK == KIND_EVENT {
        let prefetch = |def: u32| {
            let at = u64::from(def).checked_sub(SEGMENT_HEADER_LEN).and_then(|d| usize::try_from(d).ok());
            if let Some(at) = at {
                crate::map::prefetch(view.bytes, at);
            }
        };
        for field in [frame::STREAM, frame::TYPE] {
            prefetch(u32_at(b, field).ok()?);
        }
        if head & FLAG_EXTRAS != 0 {
            let mut at = frame::EVENT_FIXED_LEN;
            if head & FLAG_EVENT_ID != 0 {
                at += frame::EVENT_ID_LEN;
            }
            let count = (u32_at(b, at..at + 4).ok()? as usize).min(TAGS_MAX);
            let refs = b.get(at + frame::EXTRAS_LEN..).unwrap_or(&[]);
            refs.chunks_exact(4).take(count).for_each(|r| prefetch(LE::read_u32(r)));
        }
    }
    offset.checked_add(padded(u64::from(len)))
}

fn u32_at(bytes: &[u8], at: std::ops::Range<usize>) -> Result<u32, FrameProblem> {
    bytes.get(at).map(LE::read_u32).ok_or(FrameProblem::Truncated)
}

fn u64_at(bytes: &[u8], at: std::ops::Range<usize>) -> Result<u64, FrameProblem> {
    bytes.get(at).map(LE::read_u64).ok_or(FrameProblem::Truncated)
}

fn decode_event<'a>(
    view: &SegView<'a>,
    offset: u64,
    raw: &Raw<'a>,
    mut cache: Option<&mut NameCache<'a>>,
) -> Result<EventRef<'a>, FrameProblem> {
    let b = raw.bytes;
    if raw.flags & !(FLAG_COMMIT | FLAG_EVENT_ID | FLAG_EXTRAS) != 0 {
        return Err(FrameProblem::Header);
    }
    if b.len() < frame::EVENT_FIXED_LEN {
        return Err(FrameProblem::Header);
    }
    let mut resolve = |at: u32, what: u8| match cache.as_deref_mut() {
        Some(c) if what != NAME_TAG || c.tags => c.resolve(view, offset, at, what),
        _ => name_ref(view, offset, at, what),
    };
    let stream = resolve(u32_at(b, frame::STREAM)?, NAME_STREAM)?;
    let ty = resolve(u32_at(b, frame::TYPE)?, NAME_TYPE)?;
    let stream_version =
        stream.value.checked_add(u64::from(u32_at(b, frame::VERSION_DELTA)?)).ok_or(FrameProblem::Body)?;
    let position =
        view.base.checked_add(u64::from(u32_at(b, frame::POSITION_DELTA)?)).ok_or(FrameProblem::Body)?;
    let ts: [u8; 7] =
        b.get(frame::TIMESTAMP).and_then(|t| t.try_into().ok()).ok_or(FrameProblem::Truncated)?;
    let schema_version = u32::try_from(ty.value).map_err(|_| FrameProblem::Body)?;
    let mut at = frame::EVENT_FIXED_LEN;
    let event_id = if raw.flags & FLAG_EVENT_ID != 0 {
        let id = b.get(at..at + frame::EVENT_ID_LEN).ok_or(FrameProblem::Body)?;
        at += frame::EVENT_ID_LEN;
        Some(LE::read_u128(id))
    } else {
        None
    };
    let (mut tags, mut metadata): (&[u8], &[u8]) = (&[], &[]);
    if raw.flags & FLAG_EXTRAS != 0 {
        let count = u32_at(b, at..at + 4).map_err(|_| FrameProblem::Body)? as usize;
        let meta_len = u32_at(b, at + 4..at + 8).map_err(|_| FrameProblem::Body)? as usize;
        at += frame::EXTRAS_LEN;
        if count > TAGS_MAX {
            return Err(FrameProblem::Body);
        }
        tags = b.get(at..at + 4 * count).ok_or(FrameProblem::Body)?;
        at = (at + 4 * count).next_multiple_of(8);
        metadata =
            b.get(at..at.checked_add(meta_len).ok_or(FrameProblem::Body)?).ok_or(FrameProblem::Body)?;
        at = (at + meta_len).next_multiple_of(8);
        for r in tags.chunks_exact(4) {
            resolve(LE::read_u32(r), NAME_TAG)?;
        }
    }
    let payload = b.get(at..).ok_or(FrameProblem::Body)?;
    Ok(EventRef {
        position,
        stream_version,
        timestamp_micros: timestamp_from_bytes(ts),
        schema_version,
        event_id,
        stream_id: stream.name,
        event_type: ty.name,
        metadata,
        payload,
        tags: TagRefs::Segment { seg: view.bytes, refs: tags },
    })
}

fn decode_consumer<'a>(
    view: &SegView<'a>,
    offset: u64,
    raw: &Raw<'a>,
) -> Result<ConsumerRef<'a>, FrameProblem> {
    let shape = (FLAG_DELETE, frame::CONSUMER_LEN, frame::CONSUMER_POSITION);
    let (name, position, delete) = decode_named(view, offset, raw, shape, NAME_CONSUMER)?;
    Ok(ConsumerRef { name: name.name, position, delete })
}

fn decode_control<'a>(
    view: &SegView<'a>,
    offset: u64,
    raw: &Raw<'a>,
) -> Result<ControlRef<'a>, FrameProblem> {
    let shape = (FLAG_STREAM_DELETED, frame::CONTROL_LEN, frame::CONTROL_TRUNCATE_BEFORE);
    let (stream, truncate_before, deleted) = decode_named(view, offset, raw, shape, NAME_STREAM)?;
    // A version past the largest one plus one hides nothing a stream can hold: not written by foldlog.
    if truncate_before > crate::format::STREAM_VERSION_MAX + 1 {
        return Err(FrameProblem::Body);
    }
    Ok(ControlRef { stream: stream.name, truncate_before, deleted })
}

fn decode_gap(view: &SegView<'_>, raw: &Raw<'_>) -> Result<GapRef, FrameProblem> {
    let b = raw.bytes;
    if raw.flags & !FLAG_COMMIT != 0 || b.len() != frame::GAP_LEN {
        return Err(FrameProblem::Header);
    }
    if b.get(frame::TIMESTAMP).is_none_or(|z| z.iter().any(|&x| x != 0)) {
        return Err(FrameProblem::Header);
    }
    let count = u64::from(u32_at(b, frame::GAP_COUNT)?);
    let first = view.base.checked_add(u64::from(u32_at(b, frame::GAP_FIRST)?)).ok_or(FrameProblem::Body)?;
    // The last position is never used (as for events), so a gap's end always fits.
    if count == 0 || first.checked_add(count).is_none_or(|end| end == u64::MAX) {
        return Err(FrameProblem::Body);
    }
    Ok(GapRef { first, count })
}

/// Checks a frame of the shape `encode_named` writes: no flag but `COMMIT` and `flag`, exactly `len` bytes,
/// zero where an event has its timestamp and type, and a name definition of sort `what`; returns the name, the
/// u64 at `value_at`, and whether `flag` is set.
fn decode_named<'a>(
    view: &SegView<'a>,
    offset: u64,
    raw: &Raw<'a>,
    (flag, len, value_at): (u8, usize, std::ops::Range<usize>),
    what: u8,
) -> Result<(NameFields<'a>, u64, bool), FrameProblem> {
    let b = raw.bytes;
    if raw.flags & !(FLAG_COMMIT | flag) != 0 || b.len() != len {
        return Err(FrameProblem::Header);
    }
    let zero =
        b.get(frame::TIMESTAMP).is_some_and(|z| z.iter().all(|&x| x == 0)) && u32_at(b, frame::TYPE)? == 0;
    if !zero {
        return Err(FrameProblem::Header);
    }
    let name = name_ref(view, offset, u32_at(b, frame::STREAM)?, what)?;
    Ok((name, u64_at(b, value_at)?, raw.flags & flag != 0))
}

/// The name definitions a reader resolved already, by segment and offset (direct-mapped): a reference found
/// here skips the definition's checks, which passed when it was first resolved. The bytes of a committed frame
/// never change, so this is exact; a reader that re-checks every read (`crc_every_read`) does not use it.
/// Entries name their map, so one cache serves a read that crosses segments without being cleared.
pub(crate) struct NameCache<'a> {
    slots: Vec<(u64, NameFields<'a>)>,
    /// Whether tags go through the cache too. A read of one tag's events meets that tag again and again;
    /// a walk of the whole log meets most tags once per segment (a student's, an order's), and probing and
    /// filling the cache for them made replay of a log with two tags an event 12 % slower.
    tags: bool,
}

/// Slots of a sequential reader's [`NameCache`]: enough for the event types of a log and its busiest streams.
/// (1,024 slots made replay three times slower on this machine, 64 and 256 the same; not understood yet.)
pub(crate) const NAME_CACHE_SLOTS: usize = 256;

impl<'a> NameCache<'a> {
    /// An empty cache of `slots` entries (a power of two), for tags too if `tags`.
    pub(crate) fn new(slots: usize, tags: bool) -> NameCache<'a> {
        debug_assert!(slots.is_power_of_two());
        NameCache { slots: vec![(0, NameFields { what: 0, value: 0, name: "" }); slots], tags }
    }

    fn resolve(
        &mut self,
        view: &SegView<'a>,
        user: u64,
        at: u32,
        what: u8,
    ) -> Result<NameFields<'a>, FrameProblem> {
        let slot = (at as usize / 8) & (self.slots.len() - 1);
        // The key is the definition's address: it names the map too, and a scavenge's rewritten map of a
        // segment (same number, other offsets) is another map. Maps are never unmapped while the store lives,
        // so no other map takes an address a live cache holds.
        let key = u64::try_from(view.bytes.as_ptr().addr()).unwrap_or(0).wrapping_add(u64::from(at));
        if let Some(&(k, fields)) = self.slots.get(slot) {
            // No map sits at address 0, so a zero key is an empty slot; the definition must
            // still come before the frame that uses it.
            if k == key && fields.what == what && u64::from(at) < user {
                return Ok(fields);
            }
        }
        let fields = name_ref(view, user, at, what)?;
        if let Some(s) = self.slots.get_mut(slot) {
            // A tag never evicts a stream or a type: tags are often one event's own (a student, an order),
            // and letting each push out the few names every event uses turns a replay's hits into misses.
            if what != NAME_TAG || s.1.what == NAME_TAG || s.0 == 0 {
                *s = (key, fields);
            }
        }
        Ok(fields)
    }
}

/// A name definition's fields.
#[derive(Clone, Copy)]
struct NameFields<'a> {
    what: u8,
    value: u64,
    name: &'a str,
}

/// The name definition referred to at `at` by the frame at `user`: a valid kind-3 frame of sort `what`,
/// earlier in the same segment.
fn name_ref<'a>(view: &SegView<'a>, user: u64, at: u32, what: u8) -> Result<NameFields<'a>, FrameProblem> {
    let at64 = u64::from(at);
    let misplaced = at64 < SEGMENT_HEADER_LEN || at64 >= user || !at64.is_multiple_of(8);
    if misplaced {
        return Err(FrameProblem::Name(at64));
    }
    let raw = raw_frame(view, at64).map_err(|_| FrameProblem::Name(at64))?;
    if raw.kind != KIND_NAME || raw.flags != 0 {
        return Err(FrameProblem::Name(at64));
    }
    let fields = name_fields(raw.bytes).map_err(|_| FrameProblem::Name(at64))?;
    if fields.what != what {
        return Err(FrameProblem::Name(at64));
    }
    Ok(fields)
}

/// The fields of the name frame at the start of `b` (its CRC is the caller's business).
fn name_fields(b: &[u8]) -> Result<NameFields<'_>, FrameProblem> {
    let len = u32_at(b, frame::LEN)? as usize;
    let b = b.get(..len).ok_or(FrameProblem::Truncated)?;
    let what = *b.get(frame::NAME_WHAT).ok_or(FrameProblem::Header)?;
    let reserved = b.get(frame::NAME_WHAT + 1..frame::NAME_VALUE.start).ok_or(FrameProblem::Header)?;
    if reserved.iter().any(|&x| x != 0) || b.get(frame::HEAD).map(|h| h & KIND_MASK) != Some(KIND_NAME) {
        return Err(FrameProblem::Header);
    }
    let value = u64_at(b, frame::NAME_VALUE).map_err(|_| FrameProblem::Header)?;
    let name = b.get(frame::NAME_BYTES..).ok_or(FrameProblem::Header)?;
    let max = match what {
        NAME_STREAM => STREAM_ID_BYTES_MAX,
        NAME_TYPE | NAME_TAG | NAME_CONSUMER => NAME_BYTES_MAX,
        _ => return Err(FrameProblem::Header),
    };
    let value_ok = match what {
        NAME_STREAM => value <= crate::format::STREAM_VERSION_MAX,
        NAME_TYPE => u32::try_from(value).is_ok(),
        _ => value == 0,
    };
    if name.is_empty() || name.len() > max || !value_ok {
        return Err(FrameProblem::Body);
    }
    let name = std::str::from_utf8(name).map_err(|_| FrameProblem::Body)?;
    Ok(NameFields { what, value, name })
}

/// What an event frame holds, resolved by the writer: the offsets of its name definitions and its fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventFields<'e> {
    pub stream_def: u32,
    pub type_def: u32,
    pub version_delta: u32,
    pub position_delta: u32,
    pub timestamp_micros: i64,
    pub event_id: Option<u128>,
    /// The offsets of the tags' name definitions, as u32s.
    pub tag_defs: &'e [u32],
    pub metadata: &'e [u8],
    pub payload: &'e [u8],
}

impl<'e> EventFields<'e> {
    /// The same fields with the tags' definitions at `tag_defs`.
    pub(crate) fn with_tags<'t>(&self, tag_defs: &'t [u32]) -> EventFields<'t>
    where
        'e: 't,
    {
        EventFields { tag_defs, ..*self }
    }

    /// The frame's length before padding.
    pub(crate) fn len(&self) -> usize {
        let mut n = frame::EVENT_FIXED_LEN;
        if self.event_id.is_some() {
            n += frame::EVENT_ID_LEN;
        }
        if self.has_extras() {
            n += frame::EXTRAS_LEN;
            n = (n + 4 * self.tag_defs.len()).next_multiple_of(8);
            n = (n + self.metadata.len()).next_multiple_of(8);
        }
        n + self.payload.len()
    }

    fn has_extras(&self) -> bool {
        !self.tag_defs.is_empty() || !self.metadata.is_empty()
    }
}

/// Where a frame is written: the segment's number and the frame's offset, both part of its CRC.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    pub seq: u32,
    pub offset: u64,
}

/// Writes one event frame (fields, zero padding, CRC) at the start of `dst`. Returns its padded length, or
/// `None` if it does not fit (or its timestamp is out of range: the batch was checked before).
pub(crate) fn encode_event(e: &EventFields<'_>, commit: bool, at: Place, dst: &mut [u8]) -> Option<u64> {
    let len = e.len();
    let padded_len = usize::try_from(padded(len as u64)).ok()?;
    let f = dst.get_mut(..padded_len)?;
    f.fill(0);
    let mut flags = KIND_EVENT;
    if commit {
        flags |= FLAG_COMMIT;
    }
    f.get_mut(frame::TIMESTAMP)?.copy_from_slice(&timestamp_bytes(e.timestamp_micros)?);
    LE::write_u32(f.get_mut(frame::STREAM)?, e.stream_def);
    LE::write_u32(f.get_mut(frame::TYPE)?, e.type_def);
    LE::write_u32(f.get_mut(frame::VERSION_DELTA)?, e.version_delta);
    LE::write_u32(f.get_mut(frame::POSITION_DELTA)?, e.position_delta);
    let mut p = frame::EVENT_FIXED_LEN;
    if let Some(id) = e.event_id {
        flags |= FLAG_EVENT_ID;
        LE::write_u128(f.get_mut(p..p + frame::EVENT_ID_LEN)?, id);
        p += frame::EVENT_ID_LEN;
    }
    if e.has_extras() {
        flags |= FLAG_EXTRAS;
        LE::write_u32(f.get_mut(p..p + 4)?, u32::try_from(e.tag_defs.len()).ok()?);
        LE::write_u32(f.get_mut(p + 4..p + 8)?, u32::try_from(e.metadata.len()).ok()?);
        p += frame::EXTRAS_LEN;
        for &t in e.tag_defs {
            LE::write_u32(f.get_mut(p..p + 4)?, t);
            p += 4;
        }
        p = p.next_multiple_of(8);
        f.get_mut(p..p + e.metadata.len())?.copy_from_slice(e.metadata);
        p = (p + e.metadata.len()).next_multiple_of(8);
    }
    f.get_mut(p..p + e.payload.len())?.copy_from_slice(e.payload);
    *f.get_mut(frame::HEAD)? = flags;
    seal(f, len, at)
}

/// Writes a consumer-position frame for the consumer whose name is defined at `name_def`.
pub(crate) fn encode_consumer(
    name_def: u32,
    position: u64,
    delete: bool,
    commit: bool,
    at: Place,
    dst: &mut [u8],
) -> Option<u64> {
    let head = KIND_CONSUMER | if delete { FLAG_DELETE } else { 0 };
    encode_named(head, commit, (name_def, frame::CONSUMER_POSITION, position), frame::CONSUMER_LEN, at, dst)
}

/// Writes a stream-control frame for the stream whose id is defined at `stream_def`: its events below
/// `truncate_before` are hidden, and with `deleted` the stream takes no more events.
pub(crate) fn encode_control(
    stream_def: u32,
    truncate_before: u64,
    deleted: bool,
    commit: bool,
    at: Place,
    dst: &mut [u8],
) -> Option<u64> {
    let head = KIND_CONTROL | if deleted { FLAG_STREAM_DELETED } else { 0 };
    let named = (stream_def, frame::CONTROL_TRUNCATE_BEFORE, truncate_before);
    encode_named(head, commit, named, frame::CONTROL_LEN, at, dst)
}

/// Writes a frame of the shape consumer and stream-control frames share: `len` bytes, zero but for the head
/// byte, a name definition's offset where an event has its stream's, and one u64 at `value_at`.
fn encode_named(
    head: u8,
    commit: bool,
    (name_def, value_at, value): (u32, std::ops::Range<usize>, u64),
    len: usize,
    at: Place,
    dst: &mut [u8],
) -> Option<u64> {
    let f = dst.get_mut(..len)?;
    f.fill(0);
    *f.get_mut(frame::HEAD)? = head | if commit { FLAG_COMMIT } else { 0 };
    LE::write_u32(f.get_mut(frame::STREAM)?, name_def);
    LE::write_u64(f.get_mut(value_at)?, value);
    seal(f, len, at)
}

/// Writes a gap frame: `count` positions from `first_delta` above the segment's base hold no event.
pub(crate) fn encode_gap(
    first_delta: u32,
    count: u32,
    commit: bool,
    at: Place,
    dst: &mut [u8],
) -> Option<u64> {
    let f = dst.get_mut(..frame::GAP_LEN)?;
    f.fill(0);
    *f.get_mut(frame::HEAD)? = KIND_GAP | if commit { FLAG_COMMIT } else { 0 };
    LE::write_u32(f.get_mut(frame::GAP_FIRST)?, first_delta);
    LE::write_u32(f.get_mut(frame::GAP_COUNT)?, count);
    seal(f, frame::GAP_LEN, at)
}

/// Writes a name definition: `what` (`NAME_*`), its value and the name.
pub(crate) fn encode_name(what: u8, value: u64, name: &str, at: Place, dst: &mut [u8]) -> Option<u64> {
    let len = frame::NAME_BYTES + name.len();
    let f = dst.get_mut(..usize::try_from(padded(len as u64)).ok()?)?;
    f.fill(0);
    *f.get_mut(frame::HEAD)? = KIND_NAME;
    *f.get_mut(frame::NAME_WHAT)? = what;
    LE::write_u64(f.get_mut(frame::NAME_VALUE)?, value);
    f.get_mut(frame::NAME_BYTES..len)?.copy_from_slice(name.as_bytes());
    seal(f, len, at)
}

/// The bytes a name definition of `name` occupies.
pub(crate) fn name_frame_len(name: &str) -> u64 {
    padded((frame::NAME_BYTES + name.len()) as u64)
}

/// Fills in the length and CRC of a frame whose other fields are in place; returns its padded length.
fn seal(f: &mut [u8], len: usize, at: Place) -> Option<u64> {
    LE::write_u32(f.get_mut(frame::LEN)?, u32::try_from(len).ok()?);
    let crc = frame_crc(f.get(frame::LEN.start..len)?, at.seq, u32::try_from(at.offset).ok()?);
    LE::write_u32(f.get_mut(frame::CRC)?, crc);
    Some(padded(len as u64))
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests index and convert what they just built"
)]
mod tests {
    use super::*;
    use crate::format::STREAM_VERSION_MAX;

    /// A segment's frame bytes (from offset 128): a definition of stream `s-1`, then a stream control.
    fn control_segment(truncate_before: u64, deleted: bool) -> (Vec<u8>, u64) {
        let mut out = vec![0u8; 256];
        let def = encode_name(NAME_STREAM, 0, "s-1", Place { seq: 3, offset: 128 }, &mut out).unwrap();
        let at = 128 + def;
        let place = Place { seq: 3, offset: at };
        let n = encode_control(128, truncate_before, deleted, true, place, &mut out[def as usize..]).unwrap();
        assert_eq!(n, frame::CONTROL_LEN as u64);
        out.truncate((def + n) as usize);
        (out, at)
    }

    fn decode(bytes: &[u8], at: u64) -> Result<Frame<'_>, FrameProblem> {
        decode_frame(&SegView { bytes, seq: 3, base: 0, checked_below: 0, checked: None }, at)
    }

    #[test]
    fn stream_controls_round_trip() {
        for (before, deleted) in [(0, false), (7, false), (12, true), (STREAM_VERSION_MAX + 1, true)] {
            let (bytes, at) = control_segment(before, deleted);
            let f = decode(&bytes, at).unwrap();
            assert!(f.commit);
            let Body::Control(c) = f.body else { panic!("not a control: {:?}", f.body) };
            assert_eq!((c.stream, c.truncate_before, c.deleted), ("s-1", before, deleted));
        }
    }

    #[test]
    fn a_changed_byte_of_a_stream_control_is_refused() {
        let (bytes, at) = control_segment(5, true);
        for i in (at - 128) as usize..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x04;
            assert!(decode(&flipped, at).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn stream_controls_with_unknown_bits_or_values_are_refused_even_with_a_matching_crc() {
        let (bytes, at) = control_segment(5, false);
        let start = (at - 128) as usize;
        let resealed = |edit: &dyn Fn(&mut [u8])| {
            let mut b = bytes.clone();
            edit(&mut b[start..]);
            let crc = frame_crc(&b[start + 4..start + frame::CONTROL_LEN], 3, at as u32);
            LE::write_u32(&mut b[start..start + 4], crc);
            decode(&b, at).map(|_| ())
        };
        assert_eq!(resealed(&|_| {}), Ok(()));
        assert_eq!(resealed(&|f| f[frame::HEAD] |= 1 << 5), Err(FrameProblem::Header), "an unknown flag");
        assert_eq!(resealed(&|f| f[10] = 1), Err(FrameProblem::Header), "a reserved byte");
        assert_eq!(resealed(&|f| f[20] = 1), Err(FrameProblem::Header), "the reserved word");
        let past = STREAM_VERSION_MAX + 2;
        let r = resealed(&|f| LE::write_u64(&mut f[frame::CONTROL_TRUNCATE_BEFORE], past));
        assert_eq!(r, Err(FrameProblem::Body), "a truncation point no stream can reach");
        let r = resealed(&|f| LE::write_u32(&mut f[frame::STREAM], 136));
        assert_eq!(r, Err(FrameProblem::Name(136)), "a stream reference that is no definition");
        assert_eq!(
            resealed(&|f| f[frame::HEAD] = (f[frame::HEAD] & !KIND_MASK) | 5),
            Err(FrameProblem::Header)
        );
    }
}
