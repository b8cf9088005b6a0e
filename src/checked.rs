//! Which frames of a segment this process has CRC-checked, beyond the segment's verified prefix.
//!
//! A sequential reader extends a contiguous *verified* prefix ([`crate::map::SegmentMap::mark_verified`]). A read
//! through the index lands anywhere: on a freshly opened handle its frames lie above that prefix, and without a
//! memory of them every later read of the same stream would check their CRC again (on the 1 M-event benchmark
//! log a third of a cold read of 100 events). [`CheckedFrames`] remembers them: a bit per [`GRAIN`] bytes of the
//! segment, allocated the first time a frame above the prefix is checked, 1/128 of the segment's length.
//!
//! Losing a bit is safe (the frame is checked again); inventing one is not. So a bit is set with a plain load
//! and store rather than a read-modify-write: two readers setting bits of one word at once may drop one of them,
//! but a word only ever holds bits that some reader set after a passing check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::format::{frame, padded, SEGMENT_HEADER_LEN};

/// Bytes of the segment per bit: the least a frame takes, so that no two frames start in one grain.
const GRAIN: u64 = 16;
const _: () = assert!(padded(frame::HEAD as u64 + 1) >= GRAIN, "a frame takes at least one grain");

/// Bits per word.
const WORD_BITS: u64 = 64;

/// The frames of one segment checked above its verified prefix.
#[derive(Debug)]
pub(crate) struct CheckedFrames {
    /// A bit per grain of `[SEGMENT_HEADER_LEN, len)`, made on the first insert.
    bits: OnceLock<Box<[AtomicU64]>>,
    words: usize,
}

impl CheckedFrames {
    /// Nothing checked yet, for a segment of `len` bytes.
    pub fn new(len: u64) -> CheckedFrames {
        let grains = len.saturating_sub(SEGMENT_HEADER_LEN).div_ceil(GRAIN);
        let words = usize::try_from(grains.div_ceil(WORD_BITS)).unwrap_or(0);
        CheckedFrames { bits: OnceLock::new(), words }
    }

    /// Whether the frame at file offset `offset` passed its check in this process.
    pub fn contains(&self, offset: u64) -> bool {
        let Some((word, mask)) = self.slot(offset) else { return false };
        self.bits.get().and_then(|b| b.get(word)).is_some_and(|w| w.load(Ordering::Acquire) & mask != 0)
    }

    /// Records that the frame at file offset `offset` passed its check. Offsets outside the segment's frame
    /// region are not recorded.
    pub fn insert(&self, offset: u64) {
        let Some((word, mask)) = self.slot(offset) else { return };
        let bits = self.bits.get_or_init(|| (0..self.words).map(|_| AtomicU64::new(0)).collect());
        if let Some(w) = bits.get(word) {
            // Not `fetch_or`: see the module comment. A lost bit costs one more check, nothing else.
            let old = w.load(Ordering::Relaxed);
            if old & mask == 0 {
                w.store(old | mask, Ordering::Release);
            }
        }
    }

    /// The word and bit of the frame at `offset`; `None` outside the frame region or off a frame boundary.
    fn slot(&self, offset: u64) -> Option<(usize, u64)> {
        let rel = offset.checked_sub(SEGMENT_HEADER_LEN)?;
        if rel % crate::format::FRAME_ALIGN != 0 {
            return None;
        }
        let grain = rel / GRAIN;
        let word = usize::try_from(grain / WORD_BITS).ok().filter(|&w| w < self.words)?;
        Some((word, 1 << (grain % WORD_BITS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exactly_the_frames_inserted() {
        let checked = CheckedFrames::new(SEGMENT_HEADER_LEN + 4096);
        assert!(!checked.contains(SEGMENT_HEADER_LEN));
        checked.insert(SEGMENT_HEADER_LEN + 160);
        checked.insert(SEGMENT_HEADER_LEN + 4080);
        assert!(checked.contains(SEGMENT_HEADER_LEN + 160));
        assert!(checked.contains(SEGMENT_HEADER_LEN + 4080));
        // The next frame can start one grain on at the earliest; it, the one before and the first stay unchecked.
        assert!(!checked.contains(SEGMENT_HEADER_LEN + 176));
        assert!(!checked.contains(SEGMENT_HEADER_LEN + 144));
        assert!(!checked.contains(SEGMENT_HEADER_LEN));
    }

    #[test]
    fn offsets_outside_the_frames_are_never_checked() {
        let checked = CheckedFrames::new(SEGMENT_HEADER_LEN + 4096);
        for offset in [0, SEGMENT_HEADER_LEN - 8, SEGMENT_HEADER_LEN + 4096, SEGMENT_HEADER_LEN + 3, u64::MAX]
        {
            checked.insert(offset);
            assert!(!checked.contains(offset), "offset {offset}");
        }
        // Nothing recorded means nothing allocated.
        assert!(checked.bits.get().is_none());
    }
}
