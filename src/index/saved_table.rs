//! A directory section of a checkpoint whose entries are sorted by name (streams, event types, tags): kept as
//! bytes, found by binary search, and turned into the index's own value (a [`StreamIndex`], a [`Postings`])
//! the first time a name is needed. Open walks and checks every entry (lengths, order, UTF-8, counts) but
//! builds nothing per name, so it costs a pass over the directory, not a map of every name (issue 12, item 4).
//! A name appended to moves out to the index's live map ([`SavedTable::take`]), where appends find it without
//! a search.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::sync::OnceLock;

use byteorder::{ByteOrder, LittleEndian as LE};

use super::checkpoint::{Lists, NARROW};
use super::tags::Postings;
use super::{Positions, SavedPositions, StreamIndex};
use crate::corruption::CheckpointRefusal;
use crate::format::STREAM_VERSION_MAX;

/// One entry's fields: the name, then (streams only) the first version, the event count, and where its
/// saved list is (offset, table CRC).
pub(super) struct Entry<'a> {
    name: &'a str,
    first_version: u64,
    count: u64,
    at: u64,
    crc: u32,
}

/// What a section's entries are made into, and the rules they are checked by.
pub(super) trait Saved: Sized {
    /// Streams store their first version before the count; types and tags do not.
    const FIRST_VERSION: bool;
    /// Refuses an entry whose lengths cannot be (empty, past the log).
    fn check(e: &Entry<'_>, next_position: u64) -> Result<(), CheckpointRefusal>;
    /// The refusal for an entry not after the one before (out of order, or listed twice).
    fn out_of_order(name: &str) -> CheckpointRefusal;
    /// The value for entry `e`, whose positions are `list`.
    fn make(e: &Entry<'_>, list: SavedPositions) -> Self;
    /// The value for an entry that no longer parses: a bug, and empty (it matches nothing) is the safe answer.
    fn empty() -> Self;
    /// Bytes of RAM it holds.
    fn memory_bytes(&self) -> usize;
}

impl Saved for StreamIndex {
    const FIRST_VERSION: bool = true;
    fn check(e: &Entry<'_>, _: u64) -> Result<(), CheckpointRefusal> {
        let too_long = e.first_version.checked_add(e.count).is_none_or(|end| end > STREAM_VERSION_MAX + 1);
        if e.count == 0 || too_long {
            return Err(CheckpointRefusal::StreamLength { stream: e.name.to_owned() });
        }
        Ok(())
    }
    fn out_of_order(name: &str) -> CheckpointRefusal {
        CheckpointRefusal::StreamListedTwice { stream: name.to_owned() }
    }
    fn make(e: &Entry<'_>, list: SavedPositions) -> StreamIndex {
        StreamIndex {
            first_version: e.first_version,
            saved: Some(list),
            saved_count: e.count,
            positions: Positions::default(),
            written: None,
        }
    }
    fn empty() -> StreamIndex {
        StreamIndex::empty(0)
    }
    fn memory_bytes(&self) -> usize {
        StreamIndex::memory_bytes(self)
    }
}

impl Saved for Postings {
    const FIRST_VERSION: bool = false;
    fn check(e: &Entry<'_>, next_position: u64) -> Result<(), CheckpointRefusal> {
        if e.count == 0 || e.count > next_position {
            return Err(CheckpointRefusal::LabelLength { name: e.name.to_owned() });
        }
        Ok(())
    }
    fn out_of_order(name: &str) -> CheckpointRefusal {
        CheckpointRefusal::LabelListedTwice { name: name.to_owned() }
    }
    fn make(e: &Entry<'_>, list: SavedPositions) -> Postings {
        Postings::saved(list, e.count)
    }
    fn empty() -> Postings {
        Postings::default()
    }
    fn memory_bytes(&self) -> usize {
        Postings::memory_bytes(self)
    }
}

/// Bytes of an entry after its name and (streams) first version: event count, list offset, list CRC.
const ENTRY_TAIL: usize = 20;

/// The smallest entry of a section of `T`: the name's length and the fixed fields (for `Reader::count`).
pub(super) const fn entry_min<T: Saved>() -> usize {
    4 + ENTRY_TAIL + if T::FIRST_VERSION { 8 } else { 0 }
}

/// The entry at the start of `b` and its length; `None` if it does not fit or its name is not UTF-8.
fn parse<T: Saved>(b: &[u8]) -> Option<(Entry<'_>, usize)> {
    let n = LE::read_u32(b.get(..4)?) as usize;
    let name = std::str::from_utf8(b.get(4..4 + n)?).ok()?;
    let mut at = 4 + n;
    let first_version = if T::FIRST_VERSION {
        at += 8;
        LE::read_u64(b.get(at - 8..at)?)
    } else {
        0
    };
    let f = b.get(at..at + ENTRY_TAIL)?;
    let entry = Entry {
        name,
        first_version,
        count: LE::read_u64(f.get(0..8)?),
        at: LE::read_u64(f.get(8..16)?),
        crc: LE::read_u32(f.get(16..20)?),
    };
    Some((entry, at + ENTRY_TAIL))
}

/// A checkpoint's entries of one section, kept as bytes, and the values made from them so far.
#[derive(Debug)]
pub(crate) struct SavedTable<T> {
    /// The section's bytes (after its count).
    dir: Box<[u8]>,
    /// Per name, in name order: where its entry starts in `dir`.
    entries: Vec<u32>,
    /// Per name: its value, made from the entry on first use (boxed: one pointer per name at open).
    loaded: Box<[OnceLock<Box<T>>]>,
    /// Per name: moved out to the index's live map (see [`SavedTable::take`]).
    moved: Vec<bool>,
    moved_count: usize,
    lists: Lists,
    width: u32,
    next_position: u64,
}

impl<T: Saved> SavedTable<T> {
    /// Checks the `count` entries at the start of `dir` (each by `T`'s rules, names strictly increasing, so
    /// none is listed twice); returns them, the bytes they took and their events in total (saturating: the
    /// caller compares the total with the log's).
    pub(super) fn decode(
        dir: &[u8],
        count: usize,
        lists: Lists,
        (next_position, width): (u64, u32),
    ) -> Result<(SavedTable<T>, usize, u64), CheckpointRefusal> {
        let mut entries = Vec::with_capacity(count);
        let (mut at, mut events, mut previous) = (0usize, 0u64, None::<&str>);
        for _ in 0..count {
            let (e, len) = dir.get(at..).and_then(parse::<T>).ok_or(CheckpointRefusal::DirectoryMalformed)?;
            T::check(&e, next_position)?;
            if previous.is_some_and(|p| p >= e.name) {
                return Err(T::out_of_order(e.name));
            }
            previous = Some(e.name);
            events = events.saturating_add(e.count);
            entries.push(u32::try_from(at).map_err(|_| CheckpointRefusal::DirectoryMalformed)?);
            at += len;
        }
        let bytes = dir.get(..at).ok_or(CheckpointRefusal::DirectoryMalformed)?;
        let saved = SavedTable {
            dir: bytes.into(),
            entries,
            loaded: (0..count).map(|_| OnceLock::new()).collect(),
            moved: vec![false; count],
            moved_count: 0,
            lists,
            width,
            next_position,
        };
        Ok((saved, at, events))
    }

    /// Names saved and not moved out.
    pub(super) fn len(&self) -> usize {
        self.entries.len() - self.moved_count
    }

    fn entry(&self, i: usize) -> Option<Entry<'_>> {
        let at = *self.entries.get(i)? as usize;
        parse::<T>(self.dir.get(at..)?).map(|(e, _)| e)
    }

    fn is_moved(&self, i: usize) -> bool {
        self.moved.get(i).copied().unwrap_or(true)
    }

    /// The number of `name` in name order, if the checkpoint saved it and it was not moved out.
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)?.name.cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return (!self.is_moved(mid)).then_some(mid),
            }
        }
        None
    }

    fn make(&self, i: usize) -> T {
        let Some(e) = self.entry(i) else { return T::empty() };
        let limit = self.next_position;
        let list = if self.width == NARROW {
            SavedPositions::Narrow(self.lists.saved(e.at, e.count, e.crc, limit))
        } else {
            SavedPositions::Wide(self.lists.saved(e.at, e.count, e.crc, limit))
        };
        T::make(&e, list)
    }

    /// Name number `i`'s value.
    pub(super) fn get(&self, i: usize) -> Option<&T> {
        Some(self.loaded.get(i)?.get_or_init(|| Box::new(self.make(i))))
    }

    /// Moves name number `i` out, to be appended to in the index's live map: its name and value.
    pub(super) fn take(&mut self, i: usize) -> Option<(Box<str>, T)> {
        let made = match self.loaded.get_mut(i)?.take() {
            Some(v) => *v,
            None => self.make(i),
        };
        let name = self.entry(i)?.name.into();
        *self.moved.get_mut(i)? = true;
        self.moved_count += 1;
        Some((name, made))
    }

    /// Every saved name not moved out, in name order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        (0..self.entries.len())
            .filter(|&i| !self.is_moved(i))
            .filter_map(|i| Some((self.entry(i)?.name, self.get(i)?)))
    }

    /// Bytes of RAM held: the section, the entry table and the values made so far.
    pub(super) fn memory_bytes(&self) -> usize {
        let made: usize = self.loaded.iter().filter_map(OnceLock::get).map(|v| v.memory_bytes()).sum();
        self.dir.len() + self.entries.capacity() * 5 + self.loaded.len() * 16 + made
    }
}
