//! The append-only table of segment maps that readers borrow from without a lock.

use super::*;

pub(super) const TABLE_CHUNK: usize = 1024;

pub(super) const TABLE_CHUNKS: usize = 1024;

/// One chunk of [`SegmentTable`] slots.
pub(super) type Chunk = Box<[OnceLock<Arc<SegmentMap>>]>;

/// Append-only table of segment maps. Slots are never cleared while the store lives, so readers can borrow
/// events for the store's lifetime without holding a lock. Bounded: at most 1,048,576 segments.
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
        assert!(chunk[i % TABLE_CHUNK].set(map).is_ok(), "segment slot filled twice");
        self.len.store(i + 1, Ordering::Release);
        Ok(i)
    }

    pub(super) fn get(&self, i: usize) -> Option<&SegmentMap> {
        if i >= self.len.load(Ordering::Acquire) {
            return None;
        }
        self.chunks.get(i / TABLE_CHUNK)?.get()?.get(i % TABLE_CHUNK)?.get().map(|a| &**a)
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}
