//! One frame: header, CRC and the rkyv-archived body. Pure functions, no I/O.
//!
//! Encoding writes into a caller's 16-aligned slice (the map's free tail); decoding checks bounds, CRC, kind,
//! reserved bytes and rkyv validity before handing out a reference into the bytes it was given.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use rkyv::rancor::Failure;
use rkyv::ser::writer::Buffer;
use rkyv::{Archive, Deserialize, Serialize};

use crate::format::{
    event_id_from_bytes, frame_crc, frame_len, FrameHeader, FLAG_COMMIT, FRAME_ALIGN, FRAME_HEADER_USIZE,
    KIND_CONSUMER, KIND_EVENT,
};

/// The archived envelope of one event: what a frame of kind 1 holds. See `docs/format.md`.
///
/// Not part of the public API: its fields are the on-disk layout (the event id as big-endian bytes because
/// the archive keeps no `u128` alignment), which must be free to change with the format. Users see an event
/// as an [`EventRef`], or an [`OwnedEvent`] copied out of one.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Global position.
    pub position: u64,
    /// Version within the stream.
    pub stream_version: u64,
    /// Wall clock at append, microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// Schema version of the event type, chosen by the application.
    pub schema_version: u32,
    /// Caller-chosen id (a big-endian `u128`) for idempotent retries.
    pub event_id: Option<[u8; 16]>,
    /// The stream the event belongs to.
    pub stream_id: String,
    /// The event's type name.
    pub event_type: String,
    /// Application metadata (correlation and causation ids, ...).
    pub metadata: Vec<u8>,
    /// The event's bytes.
    pub payload: Vec<u8>,
}

/// The body of a consumer-position frame (kind 2).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ConsumerBody {
    /// The consumer's name.
    pub name: String,
    /// Last position it has processed.
    pub position: u64,
    /// Sequence number of the segment this frame was written to.
    pub segment: u32,
    /// File offset this frame was written at. With `segment`, it ties the frame to its place, so a frame
    /// copied elsewhere (a misdirected write) is refused: a consumer frame carries no global position that
    /// would betray it the way an event frame's does.
    pub offset: u32,
}

/// Size of the archived envelope's root struct (docs/format.md).
pub(crate) const ENVELOPE_ROOT_LEN: usize = 80;

// The root struct's layout is part of the format (docs/format.md); this catches an accidental change.
const _: () = assert!(std::mem::size_of::<ArchivedEnvelope>() == ENVELOPE_ROOT_LEN);
const _: () = assert!(std::mem::align_of::<ArchivedEnvelope>() == 8);
const _: () = assert!(std::mem::align_of::<ArchivedEnvelope>() as u64 <= FRAME_ALIGN);

/// A zero-copy view of one stored event, borrowed from the log's map.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    archived: &'a ArchivedEnvelope,
}

impl<'a> EventRef<'a> {
    pub(crate) fn new(archived: &'a ArchivedEnvelope) -> EventRef<'a> {
        EventRef { archived }
    }

    /// Global position in the log (0-based, dense).
    pub fn position(&self) -> u64 {
        self.archived.position.to_native()
    }
    /// Version within its stream.
    pub fn stream_version(&self) -> u64 {
        self.archived.stream_version.to_native()
    }
    /// Stream id.
    pub fn stream_id(&self) -> &'a str {
        self.archived.stream_id.as_str()
    }
    /// Event type name.
    pub fn event_type(&self) -> &'a str {
        self.archived.event_type.as_str()
    }
    /// Schema version of the event type.
    pub fn schema_version(&self) -> u32 {
        self.archived.schema_version.to_native()
    }
    /// Append time, microseconds since the Unix epoch.
    pub fn timestamp_micros(&self) -> i64 {
        self.archived.timestamp_micros.to_native()
    }
    /// The caller-chosen event id, if any.
    pub fn event_id(&self) -> Option<u128> {
        self.archived.event_id.as_ref().copied().map(event_id_from_bytes)
    }
    /// Metadata bytes (may be empty).
    pub fn metadata(&self) -> &'a [u8] {
        self.archived.metadata.as_slice()
    }
    /// Payload bytes, straight from the map.
    pub fn payload(&self) -> &'a [u8] {
        self.archived.payload.as_slice()
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
            metadata: self.metadata().to_vec(),
            payload: self.payload().to_vec(),
        }
    }
    /// Copies the event out of the map as the on-disk struct, to encode it again (the fuzz targets'
    /// round trip).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn to_envelope(self) -> Envelope {
        Envelope {
            position: self.position(),
            stream_version: self.stream_version(),
            timestamp_micros: self.timestamp_micros(),
            schema_version: self.schema_version(),
            event_id: self.archived.event_id.as_ref().copied(),
            stream_id: self.stream_id().to_owned(),
            event_type: self.event_type().to_owned(),
            metadata: self.metadata().to_vec(),
            payload: self.payload().to_vec(),
        }
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
    /// Application metadata (correlation and causation ids, ...). Default empty.
    pub metadata: Vec<u8>,
    /// The event's bytes.
    pub payload: Vec<u8>,
}

impl OwnedEvent {
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
}

/// A consumer-position frame's fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConsumerRef<'a> {
    pub name: &'a str,
    pub position: u64,
    /// Where the frame says it was written: segment sequence number and file offset.
    pub segment: u32,
    pub offset: u32,
}

/// A frame that passed every check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame<'a> {
    pub body: Body<'a>,
    pub commit: bool,
    /// Bytes the frame occupies, padding included.
    pub len: u64,
}

/// Why the bytes at a frame offset are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameProblem {
    /// `body_len` is zero: nothing was written here.
    Empty,
    /// The header or body would run past the end of the bytes.
    Truncated,
    /// The CRC does not match.
    Checksum,
    /// Unknown kind, flags or non-zero reserved bytes.
    Header,
    /// CRC matched but rkyv validation rejected the body.
    Archive,
}

impl std::fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameProblem::Empty => "no frame (zero length)",
            FrameProblem::Truncated => "frame runs past the end of the segment",
            FrameProblem::Checksum => "frame CRC mismatch",
            FrameProblem::Header => "frame header has unknown kind, flags or reserved bytes",
            FrameProblem::Archive => "frame body is not a valid archive",
        })
    }
}

/// Decodes and fully validates the frame at the start of `bytes`: bounds, CRC, header fields and rkyv
/// validity.
///
/// `bytes` must start at a 16-aligned address for the rkyv check to pass; the map guarantees it.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<Frame<'_>, FrameProblem> {
    decode(bytes, true)
}

/// As [`decode_frame`] without the CRC, for a frame this process has already checked (it wrote it, recovery
/// scanned it, or an earlier read checked it): bounds, header fields and the rkyv validation still run, so
/// even a bookkeeping bug cannot turn bytes into undefined behaviour.
pub(crate) fn decode_checked_frame(bytes: &[u8]) -> Result<Frame<'_>, FrameProblem> {
    decode(bytes, false)
}

fn decode(bytes: &[u8], crc: bool) -> Result<Frame<'_>, FrameProblem> {
    let raw: &[u8; FRAME_HEADER_USIZE] = bytes.first_chunk().ok_or(FrameProblem::Truncated)?;
    let header = FrameHeader::read(raw);
    if header.body_len == 0 {
        return Err(FrameProblem::Empty);
    }
    let len = frame_len(u64::from(header.body_len));
    if (bytes.len() as u64) < len {
        return Err(FrameProblem::Truncated);
    }
    // Within `len`, which the bytes hold: the padding follows the body.
    let body_end = FRAME_HEADER_USIZE + header.body_len as usize;
    let covered = bytes.get(4..body_end).ok_or(FrameProblem::Truncated)?;
    if crc && frame_crc(covered) != header.crc {
        return Err(FrameProblem::Checksum);
    }
    if !FrameHeader::well_formed(raw) {
        return Err(FrameProblem::Header);
    }
    let body = covered.get(FRAME_HEADER_USIZE - 4..).ok_or(FrameProblem::Truncated)?;
    let body = if header.kind == KIND_EVENT {
        Body::Event(EventRef::new(
            rkyv::access::<ArchivedEnvelope, Failure>(body).map_err(|_| FrameProblem::Archive)?,
        ))
    } else {
        let c = rkyv::access::<ArchivedConsumerBody, Failure>(body).map_err(|_| FrameProblem::Archive)?;
        Body::Consumer(ConsumerRef {
            name: c.name.as_str(),
            position: c.position.to_native(),
            segment: c.segment.to_native(),
            offset: c.offset.to_native(),
        })
    };
    Ok(Frame { body, commit: header.flags & FLAG_COMMIT != 0, len })
}

/// Writes one whole frame (header, body, zero padding) at the start of `dst`. Returns the frame's length, or
/// `None` if it does not fit.
pub(crate) fn encode_event(env: &Envelope, commit: bool, dst: &mut [u8]) -> Option<u64> {
    encode(KIND_EVENT, commit, dst, |body| {
        rkyv::api::high::to_bytes_in::<_, Failure>(env, Buffer::from(body)).ok().map(|b| b.len())
    })
}

/// Writes a consumer-position frame; see [`encode_event`].
pub(crate) fn encode_consumer(c: &ConsumerBody, commit: bool, dst: &mut [u8]) -> Option<u64> {
    encode(KIND_CONSUMER, commit, dst, |body| {
        rkyv::api::high::to_bytes_in::<_, Failure>(c, Buffer::from(body)).ok().map(|b| b.len())
    })
}

fn encode(
    kind: u8,
    commit: bool,
    dst: &mut [u8],
    body: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Option<u64> {
    let body_len = body(dst.get_mut(FRAME_HEADER_USIZE..)?)?;
    let len = frame_len(body_len as u64);
    let body_len_field = u32::try_from(body_len).ok().filter(|&l| l > 0)?;
    let frame = dst.get_mut(..usize::try_from(len).ok()?)?;
    frame.get_mut(FRAME_HEADER_USIZE + body_len..)?.fill(0);
    FrameHeader::write(frame, kind, if commit { FLAG_COMMIT } else { 0 }, body_len_field);
    Some(len)
}
