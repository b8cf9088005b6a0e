//! The streams a checkpoint saved: its directory's stream entries, sorted by id, found by binary search and
//! turned into a [`StreamIndex`] the first time a stream is needed. Open walks and checks every entry
//! (lengths, order, UTF-8, counts) but builds nothing per stream, so opening a log of 10,000 streams costs a
//! pass over its directory, not a map of 10,000 entries (issue 12, item 4).

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::sync::OnceLock;

use byteorder::{ByteOrder, LittleEndian as LE};

use super::checkpoint::{Lists, NARROW};
use super::{Positions, SavedPositions, StreamIndex};
use crate::corruption::CheckpointRefusal;
use crate::format::STREAM_VERSION_MAX;

/// Bytes of an entry after its id: first version, event count, list offset (u64 each), list CRC (u32).
const ENTRY_FIXED: usize = 28;

/// A checkpoint's stream entries, kept as bytes, and the streams made from them so far.
#[derive(Debug)]
pub(crate) struct SavedStreams {
    /// The stream section of the directory (after its count).
    dir: Box<[u8]>,
    /// Per stream, in id order: where its entry starts in `dir`.
    entries: Vec<u32>,
    /// Per stream: its index, made from the entry on first use.
    loaded: Box<[OnceLock<Box<StreamIndex>>]>,
    /// Per stream: moved out to the index's own map, where appends find it (see [`SavedStreams::take`]).
    moved: Vec<bool>,
    moved_count: usize,
    lists: Lists,
    width: u32,
    next_position: u64,
}

/// One entry's fields.
struct Entry<'a> {
    id: &'a str,
    first_version: u64,
    count: u64,
    at: u64,
    crc: u32,
}

/// The entry at the start of `b` and its length; `None` if it does not fit or its id is not UTF-8.
fn parse(b: &[u8]) -> Option<(Entry<'_>, usize)> {
    let n = LE::read_u32(b.get(..4)?) as usize;
    let id = std::str::from_utf8(b.get(4..4 + n)?).ok()?;
    let f = b.get(4 + n..4 + n + ENTRY_FIXED)?;
    let entry = Entry {
        id,
        first_version: LE::read_u64(f.get(0..8)?),
        count: LE::read_u64(f.get(8..16)?),
        at: LE::read_u64(f.get(16..24)?),
        crc: LE::read_u32(f.get(24..28)?),
    };
    Some((entry, 4 + n + ENTRY_FIXED))
}

impl SavedStreams {
    /// Checks the `count` entries at the start of `dir` (each one's length and version range, ids strictly
    /// increasing, so none is listed twice); returns them, the bytes they took and their events in total.
    pub(super) fn decode(
        dir: &[u8],
        count: usize,
        lists: Lists,
        (next_position, width): (u64, u32),
    ) -> Result<(SavedStreams, usize, u64), CheckpointRefusal> {
        let mut entries = Vec::with_capacity(count);
        let (mut at, mut events, mut previous) = (0usize, 0u64, None::<&str>);
        for _ in 0..count {
            let (e, len) = dir.get(at..).and_then(parse).ok_or(CheckpointRefusal::DirectoryMalformed)?;
            let too_long =
                e.first_version.checked_add(e.count).is_none_or(|end| end > STREAM_VERSION_MAX + 1);
            if e.count == 0 || too_long {
                return Err(CheckpointRefusal::StreamLength { stream: e.id.to_owned() });
            }
            if previous.is_some_and(|p| p >= e.id) {
                return Err(CheckpointRefusal::StreamListedTwice { stream: e.id.to_owned() });
            }
            previous = Some(e.id);
            events = events.checked_add(e.count).ok_or(CheckpointRefusal::StreamLengths)?;
            entries.push(u32::try_from(at).map_err(|_| CheckpointRefusal::DirectoryMalformed)?);
            at += len;
        }
        let bytes = dir.get(..at).ok_or(CheckpointRefusal::DirectoryMalformed)?;
        let loaded = (0..count).map(|_| OnceLock::new()).collect();
        let (moved, moved_count) = (vec![false; count], 0);
        let saved = SavedStreams {
            dir: bytes.into(),
            entries,
            loaded,
            moved,
            moved_count,
            lists,
            width,
            next_position,
        };
        Ok((saved, at, events))
    }

    /// Streams saved and not moved out.
    pub(super) fn len(&self) -> usize {
        self.entries.len() - self.moved_count
    }

    fn entry(&self, i: usize) -> Option<Entry<'_>> {
        let at = *self.entries.get(i)? as usize;
        parse(self.dir.get(at..)?).map(|(e, _)| e)
    }

    /// The number of stream `id` in id order, if the checkpoint saved it and it was not moved out.
    pub(super) fn find(&self, id: &str) -> Option<usize> {
        let i = self.position(id)?;
        (!self.moved.get(i).copied().unwrap_or(true)).then_some(i)
    }

    fn position(&self, id: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)?.id.cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn make(&self, i: usize) -> Box<StreamIndex> {
        // Every entry was parsed at open; one that no longer parses would be a bug, and an empty stream
        // (which a read finds nothing in) is the safe answer.
        let Some(e) = self.entry(i) else { return Box::new(StreamIndex::empty(0)) };
        let limit = self.next_position;
        let saved = if self.width == NARROW {
            SavedPositions::Narrow(self.lists.saved(e.at, e.count, e.crc, limit))
        } else {
            SavedPositions::Wide(self.lists.saved(e.at, e.count, e.crc, limit))
        };
        Box::new(StreamIndex {
            first_version: e.first_version,
            saved: Some(saved),
            saved_count: e.count,
            positions: Positions::default(),
        })
    }

    /// Stream number `i`.
    pub(super) fn get(&self, i: usize) -> Option<&StreamIndex> {
        Some(self.loaded.get(i)?.get_or_init(|| self.make(i)))
    }

    /// Moves stream number `i` out, to be appended to in the index's own map (where the next append finds it
    /// without a search): its id and index.
    pub(super) fn take(&mut self, i: usize) -> Option<(Box<str>, StreamIndex)> {
        let made = match self.loaded.get_mut(i)?.take() {
            Some(s) => s,
            None => self.make(i),
        };
        let id = self.entry(i)?.id.into();
        *self.moved.get_mut(i)? = true;
        self.moved_count += 1;
        Some((id, *made))
    }

    /// Every saved stream not moved out, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &StreamIndex)> {
        (0..self.entries.len())
            .filter(|&i| !self.moved.get(i).copied().unwrap_or(true))
            .filter_map(|i| Some((self.entry(i)?.id, self.get(i)?)))
    }

    /// Bytes of RAM held: the directory, the entry table and the streams made so far.
    pub(super) fn memory_bytes(&self) -> usize {
        let made: usize = self.loaded.iter().filter_map(OnceLock::get).map(|s| s.memory_bytes()).sum();
        self.dir.len() + self.entries.capacity() * 5 + self.loaded.len() * 16 + made
    }
}
