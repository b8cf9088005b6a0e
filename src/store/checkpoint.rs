//! Judging an index checkpoint against the segment files: fits, refused (derived data, rebuilt) or proof
//! that durable data was lost.

use super::*;

/// Removes the checkpoint (already gone is fine) and makes the removal durable.
pub(super) fn remove_checkpoint(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    match sys::remove(&path) {
        Ok(()) => sys::sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove refused checkpoint", &path, e)),
    }
}

/// Why a checkpoint that decoded cleanly does not fit the segment files.
pub(super) enum Misfit {
    /// Its shape does not fit (a forged or buggy file): derived data, rebuilt from the log.
    Refused(CheckpointRefusal),
    /// It names segments or events the log no longer has. It was written only after the log it describes
    /// was synced, so this is evidence that durable data was lost.
    Lost(CheckpointLoss),
}

/// Cheap consistency checks of a decoded checkpoint against the segment files present.
pub(super) fn checkpoint_fits(ix: &Index, segs: &[Segment]) -> Result<(), Misfit> {
    if let Some(missing) = ix.segments().get(segs.len()) {
        return Err(Misfit::Lost(CheckpointLoss::SegmentMissing { seq: missing.seq, base: missing.base }));
    }
    for (i, (s, seg)) in ix.segments().iter().zip(segs).enumerate() {
        if s.base != seg.header.base_position || s.seq != seg.header.seq {
            return Err(Misfit::Lost(CheckpointLoss::SegmentMismatch {
                base: s.base,
                seq: s.seq,
                file: seg.path(),
            }));
        }
        // Every real end is a frame boundary inside the segment, and inside a sealed segment's durable
        // part; anything else would send the scan (or a later rebuild) to bytes that are not frames.
        let sealed = i + 1 < segs.len();
        let durable = seg.slot.map_or(SEGMENT_HEADER_LEN, |d| d.durable_end);
        if s.end > seg.header.capacity
            || s.end < SEGMENT_HEADER_LEN
            || !s.end.is_multiple_of(crate::format::FRAME_ALIGN)
            || (sealed && s.end > durable)
        {
            return Err(Misfit::Refused(CheckpointRefusal::NotFrameBoundary {
                end: s.end,
                segment: seg.path(),
            }));
        }
    }
    let Some(last) = ix.next_position().checked_sub(1) else { return Ok(()) };
    // The last covered event must still be there, with the position the checkpoint claims.
    let (si, off) = ix
        .locate(last)
        .map_err(|s| Misfit::Refused(s.reason))?
        .ok_or(Misfit::Refused(CheckpointRefusal::LastEventUnlocated))?;
    match read_event_frame(&segs[si], off) {
        Ok(Some(position)) if position == last => Ok(()),
        Ok(_) => Err(Misfit::Lost(CheckpointLoss::EventMoved { position: last })),
        // Not evidence of anything: the index is rebuilt from the log, which reports its own I/O errors.
        Err(e) => Err(Misfit::Refused(CheckpointRefusal::LastEventUnreadable(e.to_string()))),
    }
}

/// The position of the event frame at `off` of `seg`, read through the file (the last segment's map has
/// published nothing yet); `None` if the bytes there are not a valid event frame.
pub(super) fn read_event_frame(seg: &Segment, off: u64) -> std::io::Result<Option<u64>> {
    let mut prefix = [0u8; 8];
    let path = seg.path();
    sys::read_at(&seg.file, &path, off, &mut prefix)?;
    let len = crate::format::frame_len_field(&prefix).map_or(0, u64::from);
    if len == 0 || off + len > seg.header.capacity {
        return Ok(None);
    }
    let mut frame = vec![0u8; len as usize];
    sys::read_at(&seg.file, &path, off, &mut frame)?;
    let at = FramePlace { seq: seg.header.seq, offset: off };
    Ok(crate::record::event_position(&frame, at, seg.header.base_position))
}

/// The index checkpoint, if it fits the log: the index it holds and where the scan resumes. A checkpoint
/// that is damaged or does not fit is refused (removed when writable, so it is never judged again) and the
/// index rebuilt; one that proves events durable that the log no longer holds is corruption in strict mode.
pub(super) fn load_checkpoint(
    dir: &Path,
    log_id: [u8; 16],
    opened: &[Segment],
    options: &Options,
    report: &mut RecoveryReport,
) -> Result<(Index, Option<Resume>)> {
    let ids_cap = options.event_ids_remembered;
    let path = dir.join(CHECKPOINT_FILE);
    let refused = match open_checkpoint(path.clone(), log_id, ids_cap)? {
        None => return Ok((Index::new(ids_cap), None)),
        Some(Err(why)) => why,
        Some(Ok((ix, resume))) => match checkpoint_fits(&ix, opened) {
            Ok(()) => {
                report.checkpoint = CheckpointUse::Used(ix.next_position());
                return Ok((ix, Some(resume)));
            }
            Err(Misfit::Lost(loss)) if options.recovery == Recovery::Strict => {
                return Err(Error::corrupt(&path, 0, Corruption::CheckpointLost(loss)));
            }
            Err(Misfit::Lost(loss)) => CheckpointRefusal::LossAccepted(loss),
            Err(Misfit::Refused(why)) => why,
        },
    };
    report.checkpoint = CheckpointUse::Rebuilt(refused);
    if !options.read_only {
        // A refused checkpoint must not survive to be judged again: a later open, after the log changed
        // under it (a cut tail, say), could find it fitting and trust what was refused once.
        remove_checkpoint(dir)?;
    }
    Ok((Index::new(ids_cap), None))
}
