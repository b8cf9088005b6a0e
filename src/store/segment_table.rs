//! The table of segment maps that readers borrow from without a lock.

use super::*;

pub(super) const TABLE_CHUNK: usize = 1024;

pub(super) const TABLE_CHUNKS: usize = 1024;

/// One version of a slot: the map, and the one a scavenge put in its place (set once, never cleared).
pub(super) struct Version {
    map: Arc<SegmentMap>,
    newer: OnceLock<Box<Version>>,
}

/// One chunk of [`SegmentTable`] slots.
pub(super) type Chunk = Box<[OnceLock<Version>]>;

/// Table of segment maps. A slot is filled once when its segment is created or opened, and a scavenge may
/// put a rewritten map in its place ([`SegmentTable::replace`]); no map is ever dropped while the store
/// lives, so readers borrow events for the store's lifetime without a lock or a reference count, and a
/// reader still walking the old map reads it to the end. Bounded: at most 1,048,576 segments.
pub(super) struct SegmentTable {
    pub(super) chunks: Box<[OnceLock<Chunk>]>,
    pub(super) len: AtomicUsize,
}

impl SegmentTable {
    pub(super) fn new() -> SegmentTable {
        SegmentTable {
            chunks: (0..TABLE_CHUNKS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// Adds a map; only the writer (or open) calls this.
    pub(super) fn push(&self, map: Arc<SegmentMap>) -> Result<usize> {
        let i = self.len.load(Ordering::Acquire);
        let chunk = self.chunks.get(i / TABLE_CHUNK).ok_or_else(|| {
            Error::InvalidArgument(format!("too many segments (max {})", TABLE_CHUNK * TABLE_CHUNKS))
        })?;
        let chunk = chunk.get_or_init(|| (0..TABLE_CHUNK).map(|_| OnceLock::new()).collect());
        let filled = chunk[i % TABLE_CHUNK].set(Version { map, newer: OnceLock::new() }).is_ok();
        assert!(filled, "segment slot filled twice");
        self.len.store(i + 1, Ordering::Release);
        Ok(i)
    }

    /// Puts `map` in slot `i`'s place for every later [`SegmentTable::get`]; the old map stays mapped until
    /// the table is dropped. Only the writer calls this, under the index's write lock, so that a reader
    /// that takes a location from the index and the map from here under the index's read lock gets a pair
    /// that belong together.
    pub(super) fn replace(&self, i: usize, map: Arc<SegmentMap>) -> Result<()> {
        let mut v = self.version(i).ok_or_else(|| Error::InvalidArgument(format!("no segment slot {i}")))?;
        while let Some(n) = v.newer.get() {
            v = n;
        }
        let set = v.newer.set(Box::new(Version { map, newer: OnceLock::new() })).is_ok();
        assert!(set, "only the writer replaces maps");
        Ok(())
    }

    fn version(&self, i: usize) -> Option<&Version> {
        if i >= self.len.load(Ordering::Acquire) {
            return None;
        }
        self.chunks.get(i / TABLE_CHUNK)?.get()?.get(i % TABLE_CHUNK)?.get()
    }

    /// Slot `i`'s newest map.
    pub(super) fn get(&self, i: usize) -> Option<&SegmentMap> {
        let mut v = self.version(i)?;
        while let Some(n) = v.newer.get() {
            v = n;
        }
        Some(&v.map)
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}
