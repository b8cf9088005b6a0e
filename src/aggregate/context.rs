//! What a command's events carry besides their payloads: a correlation id, a causation id and application
//! metadata (stored in each event's metadata field, docs/format.md "Events written by a Repository"), and a
//! command id from which the events take their event ids, so that a retried save is recognised instead of
//! reported as a conflict.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::EventRef;

/// First byte of a repository's metadata: the layout's version.
const LAYOUT_V1: u8 = 1;
/// Flag (second byte): a correlation id follows.
const HAS_CORRELATION: u8 = 1;
/// Flag: a causation id follows.
const HAS_CAUSATION: u8 = 2;

/// The context a [`Root`](crate::Root)'s next saved events carry: set with
/// [`Root::context`](crate::Root::context), read back from a stored event with [`EventContext::of`].
///
/// ```
/// use foldlog::EventContext;
///
/// let context = EventContext::new().correlation_id(7).causation_id(3).metadata(b"user=alice".to_vec());
/// let bytes = context.encode();
/// assert_eq!(EventContext::decode(&bytes), Some(context));
/// assert_eq!(EventContext::decode(b""), Some(EventContext::new()), "no metadata: an empty context");
/// ```
///
/// Non-exhaustive, so that a field is not a breaking change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventContext {
    /// The id shared by everything one request caused, across aggregates and services.
    pub correlation_id: Option<u128>,
    /// The id of what directly caused these events (the command, or the event a process manager reacted to).
    pub causation_id: Option<u128>,
    /// Application metadata bytes, stored after the ids.
    pub metadata: Vec<u8>,
    /// The command's id: its `i`-th event gets event id `command_id + i` (wrapping), so saving the same
    /// command twice (a retry after an error that hid a success) is recognised by the store and returns the
    /// first save's result. Use random ids (UUID v4 or v7), not counters, so two commands' ranges never meet.
    /// Not stored in the metadata.
    pub command_id: Option<u128>,
}

impl EventContext {
    /// An empty context: no ids, no metadata.
    pub fn new() -> EventContext {
        EventContext::default()
    }

    /// Sets [`correlation_id`](field@EventContext::correlation_id).
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<Option<u128>>) -> Self {
        self.correlation_id = id.into();
        self
    }

    /// Sets [`causation_id`](field@EventContext::causation_id).
    #[must_use]
    pub fn causation_id(mut self, id: impl Into<Option<u128>>) -> Self {
        self.causation_id = id.into();
        self
    }

    /// Sets [`metadata`](field@EventContext::metadata).
    #[must_use]
    pub fn metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Sets [`command_id`](field@EventContext::command_id).
    #[must_use]
    pub fn command_id(mut self, id: impl Into<Option<u128>>) -> Self {
        self.command_id = id.into();
        self
    }

    /// The metadata bytes of an event carrying this context: empty when there are no ids and no metadata,
    /// else the layout of docs/format.md ("Events written by a Repository"). The command id is not stored.
    pub fn encode(&self) -> Vec<u8> {
        if self.correlation_id.is_none() && self.causation_id.is_none() && self.metadata.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(2 + 32 + self.metadata.len());
        let mut flags = 0;
        if self.correlation_id.is_some() {
            flags |= HAS_CORRELATION;
        }
        if self.causation_id.is_some() {
            flags |= HAS_CAUSATION;
        }
        out.extend_from_slice(&[LAYOUT_V1, flags]);
        for id in [self.correlation_id, self.causation_id].into_iter().flatten() {
            let mut b = [0u8; 16];
            LE::write_u128(&mut b, id);
            out.extend_from_slice(&b);
        }
        out.extend_from_slice(&self.metadata);
        out
    }

    /// The context stored as `metadata` (without the command id); `None` if the bytes are not in the
    /// repository's layout (an event appended by other means with metadata of its own).
    pub fn decode(metadata: &[u8]) -> Option<EventContext> {
        let Some((&[version, flags], mut rest)) = metadata.split_first_chunk::<2>() else {
            return metadata.is_empty().then(EventContext::new);
        };
        if version != LAYOUT_V1 || flags & !(HAS_CORRELATION | HAS_CAUSATION) != 0 {
            return None;
        }
        let mut id = |present: bool| -> Option<Option<u128>> {
            if !present {
                return Some(None);
            }
            let (b, tail) = rest.split_first_chunk::<16>()?;
            rest = tail;
            Some(Some(LE::read_u128(b)))
        };
        let correlation_id = id(flags & HAS_CORRELATION != 0)?;
        let causation_id = id(flags & HAS_CAUSATION != 0)?;
        Some(EventContext { correlation_id, causation_id, metadata: rest.to_vec(), command_id: None })
    }

    /// The context a stored event carries (its event id is not a command id and is left out); `None` if its
    /// metadata is not in the repository's layout.
    pub fn of(event: &EventRef<'_>) -> Option<EventContext> {
        EventContext::decode(event.metadata())
    }

    /// The event id of the `i`-th event of this context's command, if it has a command id.
    pub(super) fn event_id(&self, i: usize) -> Option<u128> {
        self.command_id.map(|c| c.wrapping_add(i as u128))
    }
}
