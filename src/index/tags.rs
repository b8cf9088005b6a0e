//! The tag and type indexes: for each tag and each event type, the ascending global positions of the events
//! that carry it. They answer queries (`crate::query`) and append conditions without reading a frame that
//! does not match.
//!
//! Memory per entry: 4 bytes while the position fits a u32 (8 past 2^32 events), in blocks of 64 entries
//! whose last one grows like a `Vec` (4, 8, 16, 32, 64 entries), so a tag with one event costs 16 bytes of
//! list, not a 256-byte block; plus per tag or type its name and about 100 bytes of map entry (docs/index.md).
//! A checkpoint saves the lists; its entries stay as sorted bytes until a name is first used
//! (`saved_table.rs`), as the streams' do.

use super::saved_table::SavedTable;
use smol_str::SmolStr;

/// The tags or event types a checkpoint saved.
pub(super) type SavedLabels = SavedTable<Postings>;
use super::{SavedPositions, Stale, WrittenAt};

/// Entries per full block.
const BLOCK: usize = 64;

/// A growing list of items in fixed blocks: full blocks boxed, the last one a `Vec` of at most 64.
#[derive(Debug, Default)]
struct Blocks<T> {
    // Boxed on purpose: a `Vec` of inline blocks would bring back the doubling slack, in whole blocks.
    full: Vec<Box<[T; BLOCK]>>,
    tail: Vec<T>,
}

impl<T: Copy + Default> Blocks<T> {
    fn len(&self) -> usize {
        self.full.len() * BLOCK + self.tail.len()
    }

    fn get(&self, i: usize) -> Option<T> {
        match self.full.get(i / BLOCK) {
            Some(block) => Some(block[i % BLOCK]),
            None => self.tail.get(i - self.full.len() * BLOCK).copied(),
        }
    }

    fn push(&mut self, item: T) {
        if self.tail.len() == BLOCK {
            let mut block = Box::new([T::default(); BLOCK]);
            block.copy_from_slice(&self.tail);
            self.full.push(block);
            self.tail = Vec::new();
        }
        self.tail.push(item);
    }

    fn memory_bytes(&self) -> usize {
        let item = std::mem::size_of::<T>();
        self.full.capacity() * 8 + self.full.len() * BLOCK * item + self.tail.capacity() * item
    }
}

/// The positions of one tag or type, ascending: the part a checkpoint saved (read lazily), then those added
/// since, as u32 while they fit and u64 after (positions only grow, so the two parts never interleave).
#[derive(Debug, Default)]
pub(crate) struct Postings {
    saved: Option<Box<(SavedPositions, u64)>>,
    narrow: Blocks<u32>,
    wide: Option<Box<Blocks<u64>>>,
    /// Where the checkpoint this index last wrote put the list, if it filled a chunk (boxed: a tag per event
    /// must stay cheap, and lists shorter than a chunk are encoded again each time).
    pub(super) written: Option<Box<WrittenAt>>,
}

impl Postings {
    /// A list whose first `count` positions a checkpoint saved.
    pub(super) fn saved(list: SavedPositions, count: u64) -> Postings {
        Postings { saved: Some(Box::new((list, count))), ..Postings::default() }
    }

    fn saved_count(&self) -> u64 {
        self.saved.as_ref().map_or(0, |s| s.1)
    }

    /// The part a checkpoint saved, if any.
    pub(super) fn saved_list(&self) -> Option<&SavedPositions> {
        self.saved.as_ref().map(|s| &s.0)
    }

    /// How many positions.
    pub fn len(&self) -> u64 {
        let wide = self.wide.as_ref().map_or(0, |w| w.len());
        self.saved_count() + (self.narrow.len() + wide) as u64
    }

    /// The `i`-th position.
    pub fn get(&self, i: u64) -> Result<Option<u64>, Stale> {
        let saved = self.saved_count();
        if i < saved {
            return self.saved.as_ref().map_or(Ok(None), |s| s.0.get(i));
        }
        let j = (i - saved) as usize;
        match self.narrow.get(j) {
            Some(p) => Ok(Some(u64::from(p))),
            None => Ok(self.wide.as_ref().and_then(|w| w.get(j - self.narrow.len()))),
        }
    }

    /// The first position at or after `p`, if any (a binary search; saved chunks are read as needed).
    #[cfg(test)]
    pub fn seek(&self, p: u64) -> Result<Option<u64>, Stale> {
        Ok(self.seek_from(p, None)?.1)
    }

    /// The index and value of the first position at or after `p`, searching from index `hint` on, which
    /// the caller knows holds no answer below it (every position before `hint` is below `p`); `None`: no
    /// walk to continue.
    ///
    /// A walk through a list seeks ascending bounds, and the answer is usually at or just past the last one:
    /// galloping from the hint finds it in one or two reads where a binary search of the whole list takes
    /// `log2(len)`, each a trip through the saved chunks. Without a hint, the first entry is tried (a read
    /// from the start), then the list is binary searched: galloping from the start to a bound near the end,
    /// as an append condition's check seeks, would take twice the reads.
    pub fn seek_from(&self, p: u64, hint: Option<u64>) -> Result<(u64, Option<u64>), Stale> {
        let len = self.len();
        let start = hint.unwrap_or(0).min(len);
        let (mut lo, mut hi, mut step) = (start, start, 1u64);
        // The entry at `hi` (none at `len`), once read.
        let mut at_hi = None;
        if hint.is_none() {
            match self.get(0)? {
                Some(q) if q < p => (lo, hi) = (1, len),
                first => return Ok((0, first)),
            }
        }
        // Gallop: find `hi` with get(hi) >= p (or the end), everything below `lo` being below `p`.
        while hi < len {
            match self.get(hi)? {
                Some(q) if q < p => {
                    lo = hi + 1;
                    hi = hi.saturating_add(step).min(len);
                    step = step.saturating_mul(2);
                }
                found => {
                    at_hi = found;
                    break;
                }
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid)? {
                Some(q) if q < p => lo = mid + 1,
                found => {
                    hi = mid;
                    at_hi = found;
                }
            }
        }
        Ok((hi, at_hi))
    }

    /// Adds `p`, past every position added so far; an event that names a tag twice is added once (the
    /// last position added is kept in RAM, so the check needs no saved chunk).
    fn push(&mut self, p: u64) {
        let last = match &self.wide {
            Some(w) => w.len().checked_sub(1).and_then(|i| w.get(i)),
            None => self.narrow.len().checked_sub(1).and_then(|i| self.narrow.get(i)).map(u64::from),
        };
        if last == Some(p) {
            return;
        }
        match u32::try_from(p) {
            Ok(p) if self.wide.is_none() => self.narrow.push(p),
            _ => self.wide.get_or_insert_with(Box::default).push(p),
        }
    }

    /// Every position, saved part first.
    #[cfg(test)]
    pub(super) fn all(&self) -> Result<Vec<u64>, Stale> {
        self.positions_from(0)
    }

    /// The positions from the `first`-th on, saved part first.
    pub(super) fn positions_from(&self, first: u64) -> Result<Vec<u64>, Stale> {
        if first >= self.len() {
            return Ok(Vec::new());
        }
        let mut v = Vec::with_capacity((self.len() - first) as usize);
        if let Some(saved) = &self.saved {
            saved.0.for_each_from(first, |p| v.push(p))?;
        }
        // Of those added since the checkpoint, the ones from `first` on.
        let skip = usize::try_from(first.saturating_sub(self.saved_count())).unwrap_or(usize::MAX);
        v.extend((skip..self.narrow.len()).filter_map(|i| self.narrow.get(i)).map(u64::from));
        if let Some(w) = &self.wide {
            v.extend((skip.saturating_sub(self.narrow.len())..w.len()).filter_map(|i| w.get(i)));
        }
        Ok(v)
    }

    pub(super) fn memory_bytes(&self) -> usize {
        let saved = self.saved.as_ref().map_or(0, |s| s.0.loaded_bytes() + 120);
        std::mem::size_of::<Self>()
            + saved
            + self.narrow.memory_bytes()
            + self.wide.as_ref().map_or(0, |w| w.memory_bytes() + 48)
            + self.written.as_ref().map_or(0, |_| size_of::<WrittenAt>())
    }
}

/// Positions per name (of tags, or of event types): the names added or appended to since the checkpoint in
/// a map, the names the checkpoint saved as its bytes until first used; a name lives in one or the other.
#[derive(Debug, Default)]
pub(crate) struct Labels {
    live: crate::index::FastMap<SmolStr, Postings>,
    saved: Option<SavedLabels>,
}

impl Labels {
    /// The positions of `name`, if any event carries it.
    pub fn get(&self, name: &str) -> Option<&Postings> {
        match self.live.get(name) {
            Some(p) => Some(p),
            None => self.saved.as_ref().and_then(|s| s.get(s.find(name)?)),
        }
    }

    /// Adds position `p` (past every position added so far) to `name`'s list.
    pub fn add(&mut self, name: &str, p: u64) {
        if let Some(list) = self.live.get_mut(name) {
            list.push(p);
            return;
        }
        let moved = self.saved.as_mut().and_then(|s| s.take(s.find(name)?));
        let (key, mut list) = moved.unwrap_or_else(|| (name.into(), Postings::default()));
        list.push(p);
        self.live.insert(SmolStr::new(key), list);
    }

    /// Every name appended to since open, and its positions.
    pub(super) fn live_mut(&mut self) -> impl Iterator<Item = (&str, &mut Postings)> {
        self.live.iter_mut().map(|(k, p)| (&**k, p))
    }

    /// Every name and its positions, in no particular order (makes every saved name's list).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Postings)> {
        let saved = self.saved.iter().flat_map(SavedLabels::iter);
        self.live.iter().map(|(k, p)| (&**k, p)).chain(saved)
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.live.len() + self.saved.as_ref().map_or(0, SavedLabels::len)
    }

    pub(super) fn set_saved(&mut self, saved: SavedLabels) {
        self.saved = Some(saved);
    }

    /// Bytes of RAM held (capacity; saved lists count once read).
    pub fn memory_bytes(&self) -> usize {
        let live: usize = self.live.iter().map(|(k, p)| k.len() + 16 + p.memory_bytes()).sum::<usize>()
            + self.live.capacity();
        live + self.saved.as_ref().map_or(0, SavedLabels::memory_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists grow in blocks, seek finds the first position at or after a bound, and positions past 2^32
    /// continue the same list.
    #[test]
    fn postings_grow_seek_and_widen() {
        let mut p = Postings::default();
        for i in 0..200u64 {
            p.push(i * 3);
        }
        p.push(1 << 33);
        p.push(1 << 33);
        assert_eq!(p.len(), 201, "a position added twice (a tag named twice by one event) is kept once");
        assert_eq!(p.get(64).unwrap(), Some(192));
        assert_eq!(p.seek(0).unwrap(), Some(0));
        assert_eq!(p.seek(100).unwrap(), Some(102));
        assert_eq!(p.seek(597).unwrap(), Some(597));
        assert_eq!(p.seek(598).unwrap(), Some(1 << 33));
        assert_eq!(p.seek((1 << 33) + 1).unwrap(), None);
        // From a hint: the same answers wherever the hint is, as long as nothing before it is an answer.
        for bound in [0, 1, 100, 102, 103, 400, 597, 598, 1 << 33, (1 << 33) + 1] {
            let (at, found) = p.seek_from(bound, None).unwrap();
            assert_eq!(found, p.seek(bound).unwrap());
            for hint in 0..=at {
                assert_eq!(p.seek_from(bound, Some(hint)).unwrap(), (at, found), "bound {bound} hint {hint}");
            }
        }
        let all = p.all().unwrap();
        assert_eq!(all.len(), 201);
        assert!(all.is_sorted());
    }

    /// A tag with one event costs one small allocation, not a block of 64.
    #[test]
    fn a_short_list_costs_little() {
        let mut labels = Labels::default();
        for i in 0..1000u64 {
            labels.add(&format!("student:{i}"), i);
        }
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels.get("student:7").map(Postings::len), Some(1));
        let per_tag = labels.memory_bytes() / 1000;
        assert!(per_tag < 160, "{per_tag} bytes per one-event tag");
    }
}
