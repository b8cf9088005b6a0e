//! Walking a segment's frames into the index: committed batches only, positions, stream versions and
//! consumer frames' places checked; the sealed-segment rule; the index rebuilt from the log.

use super::*;

/// How a walk over a segment's frames ended.
pub(super) struct Scan {
    /// Offset just past the last frame of the last complete (committed) batch.
    pub(super) committed_end: u64,
    /// Offset of the first frame not accepted.
    pub(super) stop: u64,
    /// Why the walk stopped there; `None` for a zero length (the clean end of the written region).
    pub(super) reason: Option<FrameFault>,
}

/// A frame of a batch whose COMMIT frame has not been seen yet.
pub(super) enum Pending<'a> {
    Event { off: u64, len: u64, event: EventRef<'a> },
    Consumer { off: u64, len: u64, name: &'a str, position: u64, delete: bool },
    Control { off: u64, len: u64, stream: &'a str, before: u64, deleted: bool },
    Gap { off: u64, len: u64, first: u64, count: u64 },
}

impl Pending<'_> {
    /// The global positions the frame takes.
    fn positions(&self) -> u64 {
        match self {
            Pending::Event { .. } => 1,
            Pending::Gap { count, .. } => *count,
            Pending::Consumer { .. } | Pending::Control { .. } => 0,
        }
    }
}

/// Where a walk over a segment's frames starts: the segment's slot in the table, its sequence number and
/// base position, and the file offset of the first frame to read.
#[derive(Clone, Copy)]
pub(super) struct Place {
    pub(super) slot: usize,
    pub(super) seq: u32,
    pub(super) base: u64,
    pub(super) from: u64,
    /// The segment's capacity in bytes: it bounds the positions the segment's gap frames may stand for.
    pub(super) capacity: u64,
}

/// Walks the frames of a segment (`bytes` from file offset `SEGMENT_HEADER_LEN`) from `at.from` on, adding
/// each committed batch to the index as a whole. `verified` is the map's watermark: frames below it passed
/// their CRC check in this process already. Stops at the first frame that is empty, invalid, out of
/// position or out of stream order. Bounded: every step advances by at least one 8-byte frame.
pub(super) fn index_frames(
    bytes: &[u8],
    at: Place,
    verified: u64,
    index: &mut Index,
    report: &mut RecoveryReport,
) -> Scan {
    let Place { slot, seq, base, from, capacity } = at;
    let mut pending: Vec<Pending<'_>> = Vec::new();
    let mut committed_end = from;
    let mut off = from;
    loop {
        let here = off;
        let stop = |reason: Option<FrameFault>| Scan { committed_end, stop: here, reason };
        // A walk that starts where the checked frames end has checked every frame below `off`, so the name
        // definitions there need no second CRC; one resumed from a checkpoint has not.
        let checked_below = if verified >= from { off } else { verified };
        let view = SegView { bytes, seq, base, checked_below, checked: None };
        if off - SEGMENT_HEADER_LEN >= bytes.len() as u64 {
            return stop(None);
        }
        let frame = match decode_frame(&view, off) {
            Ok(f) => f,
            Err(crate::record::FrameProblem::Empty) => return stop(None),
            Err(p) => return stop(Some(p.into())),
        };
        match frame.body {
            Body::Event(event) => {
                let expect = next_in_batch(index, &pending);
                if Some(event.position()) != expect {
                    return stop(Some(FrameFault::Position { found: event.position(), expected: expect }));
                }
                pending.push(Pending::Event { off, len: frame.len, event });
            }
            Body::Gap(g) => {
                let expect = next_in_batch(index, &pending);
                if Some(g.first) != expect {
                    return stop(Some(FrameFault::Position { found: g.first, expected: expect }));
                }
                // A segment never held more events than its capacity has room for event frames: a gap that
                // claims more is not a scavenge's, and would make the index allocate for nothing.
                let held = index.segments().get(slot).map_or(0, SegIndex::len);
                let taken: u64 = pending.iter().map(Pending::positions).sum();
                if held + taken + g.count > capacity / crate::format::frame::EVENT_FIXED_LEN as u64 {
                    return stop(Some(FrameFault::Gap { first: g.first, count: g.count }));
                }
                pending.push(Pending::Gap { off, len: frame.len, first: g.first, count: g.count });
            }
            Body::Consumer(c) => {
                let (name, position, delete) = (c.name, c.position, c.delete);
                pending.push(Pending::Consumer { off, len: frame.len, name, position, delete });
            }
            Body::Control(c) => {
                let (stream, before, deleted) = (c.stream, c.truncate_before, c.deleted);
                pending.push(Pending::Control { off, len: frame.len, stream, before, deleted });
            }
            Body::Name => {}
        }
        off += frame.len;
        if !frame.commit {
            continue;
        }
        if let Err(why) = versions_follow(index, &pending) {
            return stop(Some(why));
        }
        for p in pending.drain(..) {
            match p {
                Pending::Event { off, len, event } => {
                    let added = index.add_event(
                        FrameAt { seg: slot, offset: off, len },
                        event.stream_id(),
                        event.stream_version(),
                        event.position(),
                        event.event_id(),
                    );
                    assert!(added.is_ok(), "versions were checked by versions_follow");
                    index.add_labels(event.position(), event.event_type(), event.tags());
                    report.events_scanned += 1;
                }
                Pending::Consumer { off, len, name, position, delete } => {
                    index.add_consumer(FrameAt { seg: slot, offset: off, len }, name, position, delete);
                }
                Pending::Control { off, len, stream, before, deleted } => {
                    index.add_control(FrameAt { seg: slot, offset: off, len }, stream, before, deleted);
                }
                Pending::Gap { off, len, first, count } => {
                    index.add_gap(FrameAt { seg: slot, offset: off, len }, first, count);
                }
            }
        }
        committed_end = off;
    }
}

/// The position the next event or gap of a batch must take: after the index's and the batch's so far. The
/// last position is never used, so `next_position` always fits; `None` past it.
fn next_in_batch(index: &Index, pending: &[Pending<'_>]) -> Option<u64> {
    let taken: u64 = pending.iter().map(Pending::positions).sum();
    index.next_position().checked_add(taken).filter(|&p| p < u64::MAX)
}

/// Checks that every event of a batch continues its stream's versions (a new stream may start anywhere).
pub(super) fn versions_follow(index: &Index, pending: &[Pending<'_>]) -> Result<(), FrameFault> {
    let mut next: Vec<(&str, u64)> = Vec::new();
    for p in pending {
        let Pending::Event { event, .. } = p else { continue };
        let stream = event.stream_id();
        let local = next.iter_mut().find(|(s, _)| *s == stream);
        let expected = match &local {
            Some((_, v)) => Some(*v),
            None => index.stream(stream).map(|s| s.first_version + s.len()),
        };
        let v = event.stream_version();
        if let Some(e) = expected.filter(|&e| e != v) {
            return Err(FrameFault::Version { stream: stream.to_owned(), found: v, expected: e });
        }
        if v > STREAM_VERSION_MAX {
            return Err(FrameFault::VersionPastMax { stream: stream.to_owned(), version: v });
        }
        match local {
            Some(entry) => entry.1 = v + 1,
            None => next.push((stream, v + 1)),
        }
    }
    Ok(())
}

pub(super) fn scan_sealed(
    seg: &Segment,
    at: Place,
    index: &mut Index,
    report: &mut RecoveryReport,
) -> Result<()> {
    let path = seg.path();
    // A roll makes a slot naming the segment's exact end durable before the next segment exists, so the
    // walk must end exactly there: earlier is lost frames, and bytes past it were never written (a flipped
    // bit there is not the log's business).
    let durable = seg.slot.ok_or_else(|| Error::corrupt(&path, 64, Corruption::NoDurableSlot))?.durable_end;
    // Final bytes: a sealed segment is never written again (a reader's segment that the writer rolled while
    // the reader opened was mapped as the last one, with nothing revealed yet).
    if at.from > durable {
        return Err(Error::corrupt(&path, at.from, Corruption::ResumeOutside { from: at.from }));
    }
    let bytes = seg
        .map
        .final_bytes(SEGMENT_HEADER_LEN, durable)
        .ok_or_else(|| Error::corrupt(&path, at.from, Corruption::ResumeOutside { from: at.from }))?;
    let scan = index_frames(bytes, at, seg.map.verified(), index, report);
    if let Some(fault) = scan.reason {
        // A sealed segment was synced in full before its successor was created: nothing in it may be torn.
        return Err(Error::corrupt(&path, scan.stop, Corruption::Frame { fault, region: Region::Sealed }));
    }
    if scan.committed_end != durable {
        // Its whole batches end early, or a batch runs on to the durable end without its COMMIT frame.
        let kind = Corruption::SealedEnd { batches_end: scan.committed_end, durable_end: durable };
        return Err(Error::corrupt(&path, scan.committed_end, kind));
    }
    seg.map.reveal(durable);
    index.set_segment_end(at.slot, durable);
    index.seal_segment(at.slot);
    if at.from == SEGMENT_HEADER_LEN {
        seg.map.mark_verified(SEGMENT_HEADER_LEN, durable);
    }
    Ok(())
}

impl Inner {
    /// Runs `f` on the index; if it needs a saved checkpoint list that turns out damaged, rebuilds the index
    /// from the log and runs it again.
    pub(crate) fn with_index<T>(&self, mut f: impl FnMut(&Index) -> Result<T, Stale>) -> Result<T> {
        let first = f(&self.read_index());
        match first {
            Ok(t) => Ok(t),
            Err(stale) => {
                self.rebuild_index(stale.reason)?;
                f(&self.read_index()).map_err(|s| {
                    Error::corrupt(self.dir.join(CHECKPOINT_FILE), 0, Corruption::CheckpointList(s.reason))
                })
            }
        }
    }

    /// Rebuilds the index from the log, for when a checkpoint list fails its check after open.
    pub(super) fn rebuild_index(&self, reason: CheckpointRefusal) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.rebuild_index_locked(reason)
    }

    /// As [`Inner::rebuild_index`]; the caller holds the writer lock, so the log does not move meanwhile.
    pub(super) fn rebuild_index_locked(&self, reason: CheckpointRefusal) -> Result<()> {
        let fresh = self.index_from_log(&[])?;
        *self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        if !self.options.read_only {
            // As at open: the checkpoint that failed must not be trusted by a later open.
            remove_checkpoint(&self.dir)?;
        }
        let mut report = self.report.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        report.checkpoint = CheckpointUse::RebuiltAfterOpen(reason);
        Ok(())
    }

    /// The index built again from every segment's frames, up to the ends the current index knows; `fresh`
    /// gives some slots another map and end (a scavenge's rewritten segments). Under the writer lock (or on
    /// a read-only handle, which has no writer), so the log does not move meanwhile.
    pub(super) fn index_from_log(&self, fresh: &[(usize, Arc<SegmentMap>, u64)]) -> Result<Index> {
        let (bounds, next) = {
            let ix = self.read_index();
            (ix.segments().iter().map(|s| (s.base, s.seq, s.end)).collect::<Vec<_>>(), ix.next_position())
        };
        let mut index = Index::new(self.options.event_ids_remembered);
        let mut scratch = RecoveryReport::default();
        for (slot, &(base, seq, end)) in bounds.iter().enumerate() {
            let table_short = || Error::corrupt(&self.dir, 0, Corruption::SegmentTableShort { slot });
            let (map, end) = if let Some((_, map, end)) = fresh.iter().find(|f| f.0 == slot) {
                (&**map, *end)
            } else {
                (self.segments.get(slot).ok_or_else(table_short)?, end)
            };
            let bytes = map.committed_from(SEGMENT_HEADER_LEN).unwrap_or(&[]);
            let bytes = bytes.get(..(end - SEGMENT_HEADER_LEN) as usize).unwrap_or(bytes);
            index.push_segment(SegIndex::new(base, seq, SEGMENT_HEADER_LEN));
            let at = Place { slot, seq, base, from: SEGMENT_HEADER_LEN, capacity: map.len() };
            let scan = index_frames(bytes, at, map.verified(), &mut index, &mut scratch);
            if scan.reason.is_some() || scan.committed_end != end {
                let kind = match scan.reason {
                    Some(fault) => Corruption::Frame { fault, region: Region::Rebuild },
                    None => Corruption::RebuildEndsEarly { batches_end: scan.committed_end, end },
                };
                return Err(Error::corrupt(map.path(), scan.stop, kind));
            }
            index.set_segment_end(slot, end);
            index.seal_segment(slot);
        }
        if index.next_position() != next {
            let kind = Corruption::RebuildDisagrees { rebuilt: index.next_position(), expected: next };
            return Err(Error::corrupt(&self.dir, 0, kind));
        }
        Ok(index)
    }
}
