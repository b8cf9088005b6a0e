//! The tags or event types a checkpoint saved: a directory section of entries sorted by name, found by binary
//! search and turned into [`Postings`] the first time a name is needed, as `saved_streams.rs` does for streams.
//! Open walks and checks every entry (lengths, order, UTF-8, counts) but builds nothing per name.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::sync::OnceLock;

use byteorder::{ByteOrder, LittleEndian as LE};

use super::checkpoint::{Lists, NARROW};
use super::tags::Postings;
use super::SavedPositions;
use crate::corruption::CheckpointRefusal;

/// Bytes of an entry after its name: event count, list offset (u64 each), list CRC (u32).
pub(super) const LABEL_ENTRY_FIXED: usize = 20;

/// A checkpoint's entries of one kind of label, kept as bytes, and the lists made from them so far.
#[derive(Debug)]
pub(crate) struct SavedLabels {
    dir: Box<[u8]>,
    /// Per name, in name order: where its entry starts in `dir`.
    entries: Vec<u32>,
    loaded: Box<[OnceLock<Box<Postings>>]>,
    /// Per name: moved out to the live map, where appends find it.
    moved: Vec<bool>,
    moved_count: usize,
    lists: Lists,
    width: u32,
    next_position: u64,
}

struct Entry<'a> {
    name: &'a str,
    count: u64,
    at: u64,
    crc: u32,
}

/// The entry at the start of `b` and its length; `None` if it does not fit or its name is not UTF-8.
fn parse(b: &[u8]) -> Option<(Entry<'_>, usize)> {
    let n = LE::read_u32(b.get(..4)?) as usize;
    let name = std::str::from_utf8(b.get(4..4 + n)?).ok()?;
    let f = b.get(4 + n..4 + n + LABEL_ENTRY_FIXED)?;
    let entry = Entry {
        name,
        count: LE::read_u64(f.get(0..8)?),
        at: LE::read_u64(f.get(8..16)?),
        crc: LE::read_u32(f.get(16..20)?),
    };
    Some((entry, 4 + n + LABEL_ENTRY_FIXED))
}

impl SavedLabels {
    /// Checks the `count` entries at the start of `dir` (each at least one and at most `next_position`
    /// events, names strictly increasing); returns them, the bytes they took and their events in total.
    pub(super) fn decode(
        dir: &[u8],
        count: usize,
        lists: Lists,
        (next_position, width): (u64, u32),
    ) -> Result<(SavedLabels, usize, u64), CheckpointRefusal> {
        let mut entries = Vec::with_capacity(count);
        let (mut at, mut events, mut previous) = (0usize, 0u64, None::<&str>);
        for _ in 0..count {
            let (e, len) = dir.get(at..).and_then(parse).ok_or(CheckpointRefusal::DirectoryMalformed)?;
            if e.count == 0 || e.count > next_position {
                return Err(CheckpointRefusal::LabelLength { name: e.name.to_owned() });
            }
            if previous.is_some_and(|p| p >= e.name) {
                return Err(CheckpointRefusal::LabelListedTwice { name: e.name.to_owned() });
            }
            previous = Some(e.name);
            events = events.saturating_add(e.count);
            entries.push(u32::try_from(at).map_err(|_| CheckpointRefusal::DirectoryMalformed)?);
            at += len;
        }
        let bytes = dir.get(..at).ok_or(CheckpointRefusal::DirectoryMalformed)?;
        let saved = SavedLabels {
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
        parse(self.dir.get(at..)?).map(|(e, _)| e)
    }

    /// The number of `name` in name order, if the checkpoint saved it and it was not moved out.
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)?.name.cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return (!self.moved.get(mid).copied().unwrap_or(true)).then_some(mid)
                }
            }
        }
        None
    }

    #[expect(
        clippy::unnecessary_box_returns,
        reason = "the slots hold boxes: a slot per saved name is made at open, so it must stay one pointer"
    )]
    fn make(&self, i: usize) -> Box<Postings> {
        // Every entry was parsed at open; one that no longer parses would be a bug, and an empty list (which
        // matches nothing) is the safe answer.
        let Some(e) = self.entry(i) else { return Box::default() };
        let limit = self.next_position;
        let list = if self.width == NARROW {
            SavedPositions::Narrow(self.lists.saved(e.at, e.count, e.crc, limit))
        } else {
            SavedPositions::Wide(self.lists.saved(e.at, e.count, e.crc, limit))
        };
        Box::new(Postings::saved(list, e.count))
    }

    /// Name number `i`'s positions.
    pub(super) fn get(&self, i: usize) -> Option<&Postings> {
        Some(self.loaded.get(i)?.get_or_init(|| self.make(i)))
    }

    /// Moves name number `i` out, to be appended to in the live map: its name and list.
    pub(super) fn take(&mut self, i: usize) -> Option<(Box<str>, Postings)> {
        let made = match self.loaded.get_mut(i)?.take() {
            Some(p) => p,
            None => self.make(i),
        };
        let name = self.entry(i)?.name.into();
        *self.moved.get_mut(i)? = true;
        self.moved_count += 1;
        Some((name, *made))
    }

    /// Every saved name not moved out, in name order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Postings)> {
        (0..self.entries.len())
            .filter(|&i| !self.moved.get(i).copied().unwrap_or(true))
            .filter_map(|i| Some((self.entry(i)?.name, self.get(i)?)))
    }

    /// Bytes of RAM held: the directory section, the entry table and the lists made so far.
    pub(super) fn memory_bytes(&self) -> usize {
        let made: usize = self.loaded.iter().filter_map(OnceLock::get).map(|p| p.memory_bytes()).sum();
        self.dir.len() + self.entries.capacity() * 5 + self.loaded.len() * 16 + made
    }
}
