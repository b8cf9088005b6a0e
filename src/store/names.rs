//! The name definitions of the active segment that the writer refers to. A stream id, event type, tag or
//! consumer name is written once per segment, as a name frame, and every later frame of the segment refers
//! to it by its offset (docs/format.md, "Name definitions"). Forgotten at every roll and every open: a
//! name defined again costs a few bytes, never correctness.

use smol_str::SmolStr;

use crate::index::FastMap;

/// A stream's definition: where it is, and the version its events' deltas count from.
#[derive(Clone, Copy, Debug)]
pub(super) struct StreamDef {
    pub(super) offset: u32,
    pub(super) base: u64,
}

/// The definitions the writer may refer to in the active segment.
#[derive(Default)]
pub(super) struct Names {
    streams: FastMap<SmolStr, StreamDef>,
    /// Per type name: (schema version, offset) of each of its definitions (a type is defined once per schema
    /// version it is written with).
    types: FastMap<SmolStr, Vec<(u32, u32)>>,
    tags: FastMap<String, u32>,
    consumers: FastMap<String, u32>,
}

impl Names {
    /// The stream's definition, if one covers versions `first..=last` (each a u32 delta above its base).
    pub(super) fn stream(&self, stream: &str, first: u64, last: u64) -> Option<StreamDef> {
        let d = *self.streams.get(stream)?;
        (d.base <= first && u32::try_from(last - d.base).is_ok()).then_some(d)
    }

    /// The stream's definition, whatever its base version (a stream-control frame names the stream only).
    pub(super) fn any_stream(&self, stream: &str) -> Option<u32> {
        self.streams.get(stream).map(|d| d.offset)
    }

    /// The type's definition with this schema version.
    pub(super) fn event_type(&self, name: &str, schema: u32) -> Option<u32> {
        self.types.get(name)?.iter().find(|&&(s, _)| s == schema).map(|&(_, at)| at)
    }

    /// The tag's definition.
    pub(super) fn tag(&self, name: &str) -> Option<u32> {
        self.tags.get(name).copied()
    }

    /// The consumer name's definition.
    pub(super) fn consumer(&self, name: &str) -> Option<u32> {
        self.consumers.get(name).copied()
    }

    /// Records a definition just encoded.
    pub(super) fn defined(&mut self, what: Defined<'_>, offset: u32) {
        match what {
            Defined::Stream(name, base) => {
                self.streams.insert(SmolStr::new(name), StreamDef { offset, base });
            }
            Defined::Type(name, schema) => match self.types.get_mut(name) {
                Some(defs) => defs.push((schema, offset)),
                None => {
                    self.types.insert(SmolStr::new(name), vec![(schema, offset)]);
                }
            },
            Defined::Tag(name) => {
                self.tags.insert(name.to_owned(), offset);
            }
            Defined::Consumer(name) => {
                self.consumers.insert(name.to_owned(), offset);
            }
        }
    }

    /// Forgets the definitions at or past `offset`: a batch that was not written. Rare (a full segment, and
    /// then a roll forgets everything anyway), so a pass over every name is fine.
    pub(super) fn forget_from(&mut self, offset: u64) {
        let keep = |at: u32| u64::from(at) < offset;
        self.streams.retain(|_, d| keep(d.offset));
        for defs in self.types.values_mut() {
            defs.retain(|&(_, at)| keep(at));
        }
        self.tags.retain(|_, at| keep(*at));
        self.consumers.retain(|_, at| keep(*at));
    }

    /// Forgets every definition: a new segment.
    pub(super) fn clear(&mut self) {
        self.streams.clear();
        self.types.clear();
        self.tags.clear();
        self.consumers.clear();
    }
}

/// A name the writer defines, with its value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Defined<'a> {
    /// A stream id and the version its events count from.
    Stream(&'a str, u64),
    /// An event type and its schema version.
    Type(&'a str, u32),
    /// A tag.
    Tag(&'a str),
    /// A consumer's name.
    Consumer(&'a str),
}

impl Defined<'_> {
    /// The name frame's sort (`NAME_*`), value and name.
    pub(super) fn parts(&self) -> (u8, u64, &str) {
        use crate::format::{NAME_CONSUMER, NAME_STREAM, NAME_TAG, NAME_TYPE};
        match *self {
            Defined::Stream(n, base) => (NAME_STREAM, base, n),
            Defined::Type(n, schema) => (NAME_TYPE, u64::from(schema), n),
            Defined::Tag(n) => (NAME_TAG, 0, n),
            Defined::Consumer(n) => (NAME_CONSUMER, 0, n),
        }
    }
}
