//! Following a live log from a read-only handle: the writer (in another process) publishes its head in
//! `LOCK`; a refresh indexes the frames up to it, walks into the segments rolled since, and moves the
//! committed watermark (src/head.rs, src/map.rs invariant 5).

use super::*;

impl Inner {
    /// Indexes what the writer committed since the last refresh; returns the next position. A writer's handle
    /// (or a reader with no writer's head to go by) has nothing to do.
    pub(crate) fn refresh(&self) -> Result<u64> {
        // The (empty) writer slot serializes refreshes; a reader never holds it for long.
        let guard = self.lock_writer()?;
        let HeadRole::Watcher(watcher) = &self.head else {
            return Ok(self.committed.load(Ordering::Acquire));
        };
        if guard.is_some() {
            return Ok(self.committed.load(Ordering::Acquire));
        }
        let Some(Published { head, durable }) = watcher.load() else {
            return Ok(self.committed.load(Ordering::Acquire));
        };
        loop {
            let (slot, seq, from) = {
                let ix = self.read_index();
                let last = ix
                    .segments()
                    .last()
                    .ok_or_else(|| Error::corrupt(&self.dir, 0, Corruption::SegmentTableShort { slot: 0 }))?;
                (ix.segments().len() - 1, last.seq, last.end)
            };
            if head.seq > seq {
                // Rolled: the segment's slot names its final end, made durable before its successor existed.
                self.follow_sealed(slot, seq, from)?;
                self.follow_successor(seq)?;
                continue;
            }
            // A head behind this segment is a roll this reader saw in the listing before the writer
            // published it: nothing to read yet.
            if head.seq == seq && head.end > from {
                let (base, capacity) = self.segments.get(slot).map_or((0, 0), |m| (m.name().base, m.len()));
                self.follow_to(Place { slot, seq, base, from, capacity }, head.end)?;
            }
            break;
        }
        let next = self.read_index().next_position();
        // Durable is what the writer has synced, as far as this handle indexed it. Never backwards: a handle
        // opened with no writer live counted every valid frame as durable, and the next writer's word may name
        // less until it syncs.
        let durable = durable.min(next);
        let moved = self.durable.fetch_max(durable, Ordering::SeqCst) < durable;
        if self.committed.swap(next, Ordering::SeqCst) != next || moved {
            self.arrived();
            self.notify();
        }
        Ok(next)
    }

    /// Indexes segment `slot` from `from` to `end` (both frame boundaries the writer published): every frame
    /// there must be whole and in order, or it is corruption. Zeros (a head that outlived its frames in a
    /// machine crash, before a writer recovered) end the walk quietly.
    fn follow_to(&self, at: Place, end: u64) -> Result<u64> {
        let map = self
            .segments
            .get(at.slot)
            .ok_or_else(|| Error::corrupt(&self.dir, 0, Corruption::SegmentTableShort { slot: at.slot }))?;
        let outside = || Error::corrupt(map.path(), at.from, Corruption::HeadOutside { end });
        if at.from > end {
            return Err(outside());
        }
        let bytes = map.final_bytes(SEGMENT_HEADER_LEN, end.min(map.len())).ok_or_else(outside)?;
        let mut ix = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut scratch = RecoveryReport::default();
        let scan = index_frames(bytes, at, map.verified(), &mut ix, &mut scratch);
        // Revealed before the index lock is released: no reader finds a position whose bytes it cannot read.
        map.reveal(scan.committed_end);
        // The walk checked every CRC; reads need not again (extends only a prefix that ends at `from`).
        map.mark_verified(at.from, scan.committed_end);
        ix.set_segment_end(at.slot, scan.committed_end);
        drop(ix);
        if let Some(fault) = scan.reason {
            let kind = Corruption::Frame { fault, region: Region::BelowWriterHead };
            return Err(Error::corrupt(map.path(), scan.stop, kind));
        }
        Ok(scan.committed_end)
    }

    /// Finishes a segment the writer rolled away from: indexed exactly to its slot's durable end.
    fn follow_sealed(&self, slot: usize, seq: u32, from: u64) -> Result<()> {
        let map = self
            .segments
            .get(slot)
            .ok_or_else(|| Error::corrupt(&self.dir, 0, Corruption::SegmentTableShort { slot }))?;
        let end = DurableSlot::newest(&map.header_copy())
            .map(|s| s.durable_end)
            .ok_or_else(|| Error::corrupt(map.path(), 64, Corruption::NoDurableSlot))?;
        if end < from {
            let kind = Corruption::DurableEndBehind { durable_end: end, read: from };
            return Err(Error::corrupt(map.path(), end, kind));
        }
        let place = Place { slot, seq, base: map.name().base, from, capacity: map.len() };
        let reached = self.follow_to(place, end)?;
        if reached != end {
            let kind = Corruption::SealedEnd { batches_end: reached, durable_end: end };
            return Err(Error::corrupt(map.path(), reached, kind));
        }
        let mut ix = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        ix.seal_segment(slot);
        Ok(())
    }

    /// Opens segment number `seq + 1`, which the writer created before publishing a head in it.
    fn follow_successor(&self, seq: u32) -> Result<()> {
        let want = seq
            .checked_add(1)
            .ok_or_else(|| Error::corrupt(&self.dir, 0, Corruption::SegmentNumbersExhausted))?;
        let listing = list(&self.dir)?;
        let (name, path) = listing
            .segments
            .iter()
            .find(|(n, _)| n.seq == want)
            .ok_or_else(|| Error::corrupt(&self.dir, 0, Corruption::HeadSegmentMissing { seq: want }))?;
        let seg = Segment::open(path, *name, Some(self.log_id), true, false)?;
        let mut ix = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seg.header.base_position != ix.next_position() {
            let kind =
                Corruption::SegmentGap { base: seg.header.base_position, expected: ix.next_position() };
            return Err(Error::corrupt(path, 32, kind));
        }
        let slot = self.segments.push(Arc::clone(&seg.map))?;
        ix.push_segment(SegIndex::new(name.base, want, SEGMENT_HEADER_LEN));
        debug_assert_eq!(ix.segments().len(), slot + 1);
        Ok(())
    }
}
