//! A check of every frame of every segment that does not need the store to open: `foldlog verify`'s first half.
//!
//! [`verify_dir`] opens each segment file read-only, decodes its header and walks its frames front to back
//! with the same checks a read makes (bounds, CRC, header fields, rkyv validation), consumer-position frames
//! included, and checks that global positions run on without a gap or repeat from segment to segment. A damaged
//! range is reported and the walk resynchronises at the next valid frame boundary (frames are 8-aligned), so
//! one report lists every damaged range, not only the first. Work is bounded (the resynchronising search has a
//! budget per segment) and no byte pattern makes it panic.
//!
//! What counts as damage follows the durable point each segment header records (docs/format.md, "Finding the
//! end of the written region"): below it every frame must be valid and a sealed segment's frames must end
//! exactly there; past it, in the last segment only, a bad frame or a batch without its `COMMIT` frame is a torn
//! tail, reported as such but not as damage, since it was never promised durable.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::corruption::{Corruption, FrameFault, Region};
use crate::error::{Error, Result};
use crate::format::{
    frame, frame_len_field, padded, parse_segment_file_name, DurableSlot, HeaderProblem, SegmentHeader,
    SegmentName, FLAG_COMMIT, FORMAT_VERSION, FRAME_ALIGN, KIND_CONSUMER, KIND_EVENT, KIND_MASK,
    SEGMENT_HEADER_LEN, SEGMENT_HEADER_USIZE, SLOT_FLAG_SEALED,
};
use crate::io as sys;
use crate::map::SegmentMap;
use crate::record::{decode_frame, Body, EventRef, Frame, FrameProblem, SegView};
use crate::segment::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};

/// What [`verify_dir`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The directory checked.
    pub dir: PathBuf,
    /// One entry per segment file, in log order.
    pub segments: Vec<SegmentCheck>,
    /// Every damaged range found, in log order. Empty means the log is intact.
    pub damage: Vec<Damage>,
    /// The end of the last segment that was never promised durable and does not hold a whole batch: a crash
    /// left it, the next writable open cuts it. Not damage.
    pub torn_tail: Option<TornTail>,
    /// Valid events seen (torn tail excluded).
    pub events: u64,
    /// Valid consumer-position frames seen.
    pub consumer_frames: u64,
    /// Valid stream-control frames (truncations and deletions) seen.
    pub control_frames: u64,
    /// Valid gap frames seen: runs of positions whose events a scavenge removed.
    pub gap_frames: u64,
    /// The positions those gap frames stand for.
    pub removed_positions: u64,
    /// One past the last valid event's position (the first segment's base if there is none).
    pub next_position: u64,
}

impl VerifyReport {
    /// True if no damage was found.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// One segment file as walked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentCheck {
    /// The file.
    pub path: PathBuf,
    /// Global position of its first event, from its header (`None` if the header is unreadable).
    pub base_position: Option<u64>,
    /// Valid frames walked (events and consumer positions).
    pub frames: u64,
    /// Valid events among them.
    pub events: u64,
    /// Offset where its frames end.
    pub frames_end: u64,
    /// Offset below which its header says every frame was synced (128, the header's end, if no sync was
    /// recorded).
    pub durable_end: u64,
}

/// One damaged range of a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Offset of the first damaged byte (a frame or header start).
    pub offset: u64,
    /// Length of the range skipped before the walk found a valid frame again (or reached the end of what
    /// must be valid).
    pub len: u64,
    /// Event positions that are missing or unreadable because of it.
    pub positions: Affected,
    /// What is wrong: the same kinds a store's open reports as [`Error::Corrupt`].
    pub problem: Corruption,
    /// The search for the next valid frame after this damage spent its budget and stopped, so `len` runs
    /// to the end of what must be valid and later intact frames there went unreported.
    pub search_stopped: bool,
}

impl fmt::Display for Damage {
    /// The problem, and a note when the search after it stopped early.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problem)?;
        if self.search_stopped {
            f.write_str(" (search for the next valid frame stopped: budget spent)")?;
        }
        Ok(())
    }
}

/// Which global positions a damaged range affects.
// Deliberately exhaustive: the positions are one interval, and the three variants are every shape one can
// have (empty, bounded, unbounded), so tools can map it exhaustively (the CLI does, to a first and an end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Affected {
    /// No event is missing (the range held consumer positions, padding or header fields only).
    None,
    /// These positions are missing or unreadable.
    Range(Range<u64>),
    /// Every position from this one on: no valid event follows the damage.
    From(u64),
}

impl fmt::Display for Affected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Affected::None => f.write_str("no event positions"),
            Affected::Range(r) if r.end - r.start == 1 => write!(f, "position {}", r.start),
            Affected::Range(r) => {
                write!(f, "positions {}..={} ({} events)", r.start, r.end - 1, r.end - r.start)
            }
            Affected::From(p) => write!(f, "positions {p} and every later one"),
        }
    }
}

/// The torn end of the last segment (see [`VerifyReport::torn_tail`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornTail {
    /// The last segment file.
    pub path: PathBuf,
    /// Where the log ends.
    pub offset: u64,
    /// Bytes of frames past it that a writable open would cut.
    pub len: u64,
}

/// Walks every frame of every segment in `dir` without opening the store (see the module docs).
///
/// Takes a shared lock on `LOCK` when there is one, so it fails with [`Error::Locked`] while a writer has the
/// store open, and writes nothing. A directory without segment files is [`Error::InvalidDirectory`]; a
/// segment written by a newer format is [`Error::UnsupportedVersion`]; I/O failures are [`Error::Io`]. Damage
/// is never an error: it is in the report.
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    walk_dir(dir.as_ref(), None)
}

/// One whole batch as the walk found it (every frame valid, its `COMMIT` frame seen), handed to the sink of
/// [`walk_dir`]: what `salvage` copies.
pub(crate) struct FoundBatch<'a> {
    /// The events, in frame order.
    pub events: &'a [EventRef<'a>],
    /// The consumer frames (name, position, deleted), in frame order.
    pub consumers: &'a [(&'a str, u64, bool)],
    /// The stream-control frames (stream, truncation point, deleted), in frame order.
    pub controls: &'a [(&'a str, u64, bool)],
}

/// A receiver of every whole batch the walk finds.
pub(crate) type BatchSink<'s> = &'s mut dyn FnMut(&FoundBatch<'_>);

/// [`verify_dir`], also handing every whole batch to `sink` in log order. Batches of a segment that belongs
/// to another log (its log id differs) are reported as damage by the walk and not handed on.
pub(crate) fn walk_dir(dir: &Path, sink: Option<BatchSink<'_>>) -> Result<VerifyReport> {
    if dir.as_os_str().is_empty() {
        return Err(Error::InvalidDirectory { path: dir.to_path_buf(), reason: "the path is empty".into() });
    }
    let entries = sys::list_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::InvalidDirectory { path: dir.to_path_buf(), reason: "does not exist".into() }
        }
        std::io::ErrorKind::NotADirectory => {
            Error::InvalidDirectory { path: dir.to_path_buf(), reason: "not a directory".into() }
        }
        _ => Error::io("list directory", dir, e),
    })?;
    // Shared with other readers and beside a writer; only a tool removing the store keeps it out.
    let lock = match sys::lock_dir(dir, false).map_err(|e| Error::io("lock directory", dir, e))? {
        sys::DirLock::Held(file) => Some(file),
        sys::DirLock::Unsupported => None,
        sys::DirLock::Conflict => return Err(Error::Locked { path: dir.to_path_buf() }),
    };
    let mut names: Vec<(String, bool)> =
        entries.into_iter().filter(|(name, _)| parse_segment_file_name(name).is_some()).collect();
    if names.is_empty() {
        return Err(Error::InvalidDirectory { path: dir.to_path_buf(), reason: "no segment files".into() });
    }
    // Segment names sort in log order (docs/format.md).
    names.sort_unstable();
    let mut walk = Walk {
        report: VerifyReport { dir: dir.to_path_buf(), ..VerifyReport::default() },
        sink,
        ..Walk::default()
    };
    let n = names.len();
    for (i, (name, regular)) in names.into_iter().enumerate() {
        let path = dir.join(&name);
        if !regular {
            walk.damage(&path, 0, 0, Corruption::NotRegularFile);
            continue;
        }
        walk.segment(&path, i + 1 == n)?;
    }
    walk.finish();
    drop(lock);
    Ok(walk.report)
}

#[derive(Default)]
struct Walk<'s> {
    report: VerifyReport,
    /// Receives every whole batch (salvage); `None` for a plain verify.
    sink: Option<BatchSink<'s>>,
    /// The current segment carries another log's id: its batches are not handed to the sink.
    foreign: bool,
    log_id: Option<[u8; 16]>,
    /// The position the next event must carry.
    expected: Option<u64>,
    /// Damage entries waiting for the next valid event to bound their affected positions: (index, from).
    open_damage: Vec<(usize, u64)>,
    /// Sequence number the next segment must carry (0, 1, 2, …).
    next_seq: u32,
    /// The current segment's number, which its frames' CRCs cover.
    seq: u32,
    /// The current segment's base position (its header's; the expected position if the header is damaged),
    /// which its events' positions count from.
    base: u64,
}

/// How many bytes the resynchronising search may CRC per segment, as a multiple of the segment's length.
const RESYNC_BUDGET_FACTOR: u64 = 4;

impl Walk<'_> {
    fn damage(&mut self, path: &Path, offset: u64, len: u64, problem: Corruption) {
        let from = self.expected.unwrap_or(0);
        self.open_damage.push((self.report.damage.len(), from));
        self.note(path, offset, len, problem);
    }

    /// Damage that hides no event by nature (a header field, a durable slot).
    fn note(&mut self, path: &Path, offset: u64, len: u64, problem: Corruption) {
        self.report.damage.push(Damage {
            path: path.to_path_buf(),
            offset,
            len,
            positions: Affected::None,
            problem,
            search_stopped: false,
        });
    }

    fn event(&mut self, position: u64) {
        for (i, from) in self.open_damage.drain(..) {
            if let Some(d) = self.report.damage.get_mut(i).filter(|_| position > from) {
                d.positions = Affected::Range(from..position);
            }
        }
        self.expected = Some(position.saturating_add(1));
        self.report.events += 1;
    }

    fn finish(&mut self) {
        let end = self.expected.unwrap_or(0);
        for (i, from) in self.open_damage.drain(..) {
            // Damage in the last stretch of the log: the events it hid cannot be counted, so every position
            // from the first possibly lost one is suspect.
            if let Some(d) =
                self.report.damage.get_mut(i).filter(|d| from < end || d.positions == Affected::None)
            {
                d.positions = Affected::From(from.min(end));
            }
        }
        self.report.next_position = end;
    }

    /// Checks a decoded header against the walk so far (number, log id, base position) and its own fields;
    /// returns the offset up to which the segment's frames may be read.
    fn header(&mut self, path: &Path, h: &SegmentHeader, file_len: u64, mut limit: u64, last: bool) -> u64 {
        if h.seq != self.next_seq {
            self.damage(path, 56, 4, Corruption::SegmentNumber { found: h.seq, expected: self.next_seq });
        }
        self.seq = h.seq;
        self.next_seq = h.seq.saturating_add(1);
        self.foreign = *self.log_id.get_or_insert(h.log_id) != h.log_id;
        if self.foreign {
            self.note(path, 16, 16, Corruption::ForeignSegment);
        }
        match self.expected {
            Some(e) if e != h.base_position => {
                self.damage(path, 32, 8, Corruption::SegmentGap { base: h.base_position, expected: e });
            }
            _ => {}
        }
        self.expected = Some(h.base_position);
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&h.capacity)
            || !h.capacity.is_multiple_of(FRAME_ALIGN)
        {
            self.note(path, 40, 8, Corruption::CapacityInvalid { capacity: h.capacity });
        } else {
            limit = limit.min(h.capacity);
        }
        if file_len < h.capacity && !last {
            let problem = Corruption::SealedSegmentShort { len: file_len, capacity: h.capacity };
            self.damage(path, file_len, h.capacity - file_len, problem);
        }
        limit
    }

    /// The newest durable slot's end, if it lies inside the segment (else the header's end, with a note);
    /// a last segment whose newest slot is SEALED lost its successor.
    fn durable_end(&mut self, path: &Path, head: &[u8], limit: u64, last: bool) -> u64 {
        let durable_end = match DurableSlot::newest(head) {
            Some(s)
                if s.durable_end >= SEGMENT_HEADER_LEN
                    && s.durable_end <= limit
                    && s.durable_end.is_multiple_of(FRAME_ALIGN) =>
            {
                s.durable_end
            }
            Some(s) => {
                self.note(path, s.file_offset(), 32, Corruption::DurableSlotOutside);
                SEGMENT_HEADER_LEN
            }
            None => SEGMENT_HEADER_LEN,
        };
        // A writer beside this walk may have rolled since the listing: then the successor is there now.
        if last
            && DurableSlot::newest(head).is_some_and(|s| s.flags & SLOT_FLAG_SEALED != 0)
            && !self.segment_exists(self.seq.checked_add(1))
        {
            self.damage(path, 64, 64, Corruption::SuccessorMissing { seq: u64::from(self.seq) + 1 });
        }
        durable_end
    }

    /// Whether the directory holds segment number `seq` now (not in the listing the walk started from).
    fn segment_exists(&self, seq: Option<u32>) -> bool {
        let Some(seq) = seq else { return false };
        sys::list_dir(&self.report.dir).is_ok_and(|names| {
            names.iter().any(|(name, _)| parse_segment_file_name(name).is_some_and(|n| n.seq == seq))
        })
    }

    fn segment(&mut self, path: &Path, last: bool) -> Result<()> {
        // Judged anew for each segment; a header that does not decode leaves its frames to their own checks.
        self.foreign = false;
        let file = sys::open(path, false).map_err(|e| Error::io("open segment", path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io("stat segment", path, e))?.len();
        let mut check = SegmentCheck {
            path: path.to_path_buf(),
            durable_end: SEGMENT_HEADER_LEN,
            ..SegmentCheck::default()
        };
        if file_len < SEGMENT_HEADER_LEN {
            self.damage(path, 0, file_len, Corruption::SegmentShort { len: file_len });
            self.report.segments.push(check);
            return Ok(());
        }
        // A writer may be appending to the last segment: its head, loaded before the slots are read, bounds
        // what is read there (src/head.rs).
        let live = last && crate::head::writer_is_live(&self.report.dir) != Some(false);
        let writer_head = if live { crate::head::peek(&self.report.dir) } else { None };
        let mut head = [0u8; SEGMENT_HEADER_USIZE];
        sys::read_at(&file, path, 0, &mut head).map_err(|e| Error::io("read segment header", path, e))?;
        let mut limit = file_len / FRAME_ALIGN * FRAME_ALIGN;
        match SegmentHeader::decode(&head) {
            Ok(h) => {
                check.base_position = Some(h.base_position);
                self.base = h.base_position;
                limit = self.header(path, &h, file_len, limit, last);
            }
            Err(HeaderProblem::Version(found)) => {
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Err(HeaderProblem::BadMagic) => {
                // Its frames are not read: nothing says where they would be.
                self.damage(path, 0, file_len, Corruption::NotASegment);
                self.report.segments.push(check);
                return Ok(());
            }
            Err(HeaderProblem::Short | HeaderProblem::Damaged) => {
                // Its number cannot be read: take it to be the expected one.
                self.seq = self.next_seq;
                self.next_seq = self.seq.saturating_add(1);
                self.base = self.expected.unwrap_or(0);
                self.note(path, 0, SEGMENT_HEADER_LEN, Corruption::SegmentHeaderDamaged);
            }
        }
        let durable_end = self.durable_end(path, &head, limit, last);
        check.durable_end = durable_end;
        if let Some((_, h)) = writer_head.filter(|(id, _)| Some(*id) == self.log_id) {
            limit = match h.seq.cmp(&self.seq) {
                std::cmp::Ordering::Equal => limit.min(h.end.max(durable_end)),
                // A roll in progress: the segment's successor exists, the head is not there yet.
                std::cmp::Ordering::Less => durable_end,
                // Rolled since the listing: this segment is complete.
                std::cmp::Ordering::Greater => limit,
            };
        }
        let name = SegmentName { base: self.base, seq: self.seq };
        let map = SegmentMap::read_only(&file, path, name, limit).map_err(|e| Error::io("map", path, e))?;
        let bytes = map.committed_from(SEGMENT_HEADER_LEN).unwrap_or_default();
        self.frames(path, bytes, last, durable_end, &mut check);
        self.report.segments.push(check);
        Ok(())
    }

    /// Walks the frames of one segment; `bytes` starts at file offset 128.
    fn frames(&mut self, path: &Path, bytes: &[u8], last: bool, durable_end: u64, check: &mut SegmentCheck) {
        // Every CRC is checked: a name definition in damage must not pass unchecked.
        let view = SegView { bytes, seq: self.seq, base: self.base, checked_below: 0, checked: None };
        let mut walk = FrameWalk::new(view, durable_end);
        while walk.has_room() {
            match decode_frame(&walk.view, walk.at) {
                Ok(f) => self.valid_frame(path, &mut walk, &f, check),
                Err(problem) if walk.at >= durable_end => {
                    // Past the durable point the first bad frame ends the written region: a torn tail in the
                    // last segment, never-written space in a sealed one (whose end is checked below).
                    walk.stop(problem);
                    break;
                }
                Err(problem) => {
                    if !self.damaged_frame(path, &mut walk, problem) {
                        break;
                    }
                }
            }
        }
        // Frames after the last COMMIT belong to a batch that never completed.
        check.frames_end = walk.last_commit_end;
        if !walk.gave_up {
            self.segment_end(path, &walk, last);
        }
    }

    /// A frame that passed every check: it joins the batch, and its COMMIT flag ends the batch.
    fn valid_frame<'b>(
        &mut self,
        path: &Path,
        walk: &mut FrameWalk<'b>,
        f: &Frame<'b>,
        check: &mut SegmentCheck,
    ) {
        match f.body {
            Body::Event(e) => walk.batch.events.push(e),
            Body::Consumer(c) => {
                walk.batch.consumer_frames += 1;
                walk.batch.consumers.push((c.name, c.position, c.delete));
            }
            Body::Control(c) => {
                walk.batch.control_frames += 1;
                walk.batch.controls.push((c.stream, c.truncate_before, c.deleted));
            }
            Body::Gap(g) => walk.batch.gaps.push((walk.batch.events.len(), g.first, g.count)),
            Body::Name => {}
        }
        walk.batch.frames += 1;
        walk.at += f.len;
        if f.commit {
            walk.last_commit_end = walk.at;
            self.batch(path, walk.at, &mut walk.batch, check);
        }
    }

    /// A bad frame below the durable point: damage up to the next valid frame (or the durable end). False if
    /// the walk cannot go on (no valid frame follows, or the search budget ran out).
    fn damaged_frame(&mut self, path: &Path, walk: &mut FrameWalk<'_>, problem: FrameProblem) -> bool {
        let (at, durable_end) = (walk.at, walk.durable_end);
        let found = resync(&walk.view, at + FRAME_ALIGN, durable_end, &mut walk.budget);
        let to = found.unwrap_or(durable_end);
        let what = Corruption::Frame { fault: problem.into(), region: Region::BelowDurable { durable_end } };
        // The frames of the damaged batch read so far are lost with it; so are the frames after the damage up
        // to the next COMMIT, unless the damaged frame provably ended its batch (its header is intact, flags
        // COMMIT, and its length leads exactly to where the walk resumes).
        let ends_batch = walk.prefix(at).is_some_and(|(len, head)| {
            matches!(head & KIND_MASK, KIND_EVENT | KIND_CONSUMER)
                && head & FLAG_COMMIT != 0
                && at + padded(u64::from(len)) == to
        });
        walk.batch.clear();
        walk.batch.tainted = !ends_batch;
        self.damage(path, at, to - at, what);
        if let Some(d) = self.report.damage.last_mut() {
            d.search_stopped = walk.budget == 0;
        }
        walk.at = to;
        walk.gave_up = found.is_none();
        !walk.gave_up
    }

    /// Judges where a segment's whole batches end against its durable end: a torn tail past it in the last
    /// segment, damage anywhere else.
    fn segment_end(&mut self, path: &Path, walk: &FrameWalk<'_>, last: bool) {
        let (at, frames_end, durable_end) = (walk.at, walk.last_commit_end, walk.durable_end);
        let torn_end = match walk.stopped_at {
            Some((FrameProblem::Empty, _)) | None => at,
            Some((_, claimed)) => at + claimed.max(FRAME_ALIGN),
        };
        if last && frames_end >= durable_end {
            if torn_end > frames_end {
                self.report.torn_tail = Some(TornTail {
                    path: path.to_path_buf(),
                    offset: frames_end,
                    len: torn_end - frames_end,
                });
            }
        } else if last {
            let problem = Corruption::EndsBelowDurable { frames_end, durable_end };
            self.damage(path, frames_end, durable_end - frames_end, problem);
        } else if frames_end != durable_end || at > frames_end {
            let (from, to) = (frames_end.min(durable_end), durable_end.max(at));
            let problem = Corruption::SealedEnd { batches_end: frames_end, durable_end };
            self.damage(path, from, to - from, problem);
        }
    }

    /// A whole batch ending at `end`: its events take their positions, and the sink (if any) receives it
    /// unless a frame of it was lost to damage.
    fn batch(&mut self, path: &Path, end: u64, batch: &mut PendingBatch<'_>, check: &mut SegmentCheck) {
        let whole = !std::mem::take(&mut batch.tainted);
        if let Some(sink) = self.sink.as_mut().filter(|_| whole && !self.foreign) {
            sink(&FoundBatch {
                events: &batch.events,
                consumers: &batch.consumers,
                controls: &batch.controls,
            });
        }
        check.frames += batch.frames;
        self.report.consumer_frames += batch.consumer_frames;
        self.report.control_frames += batch.control_frames;
        let events = std::mem::take(&mut batch.events);
        let gaps = std::mem::take(&mut batch.gaps);
        batch.clear();
        let mut gap_at = gaps.iter().peekable();
        for (i, position) in events.iter().map(EventRef::position).chain([u64::MAX]).enumerate() {
            // The gaps read before this event (or, for the end marker, after the last one).
            while let Some(&(_, first, count)) = gap_at.next_if(|g| g.0 <= i) {
                self.gap(path, end, first, count);
            }
            if position == u64::MAX {
                break;
            }
            // A gap right after damage is the damage's (its positions are bounded by this event); any other
            // gap or repeat is damage of its own.
            let explained = |e: u64| position > e && !self.open_damage.is_empty();
            if let Some(e) = self.expected.filter(|e| *e != position && !explained(*e)) {
                // The offset is the batch's end: which of its frames holds the position is not kept.
                let fault = FrameFault::Position { found: position, expected: Some(e) };
                self.damage(path, end, 0, Corruption::Frame { fault, region: Region::Log });
            }
            check.events += 1;
            self.event(position);
        }
        batch.events = events;
        batch.events.clear();
        batch.gaps = gaps;
        batch.gaps.clear();
    }

    /// A gap frame of a whole batch: it must start where the positions before it end, and takes its run.
    fn gap(&mut self, path: &Path, end: u64, first: u64, count: u64) {
        let explained = |e: u64| first > e && !self.open_damage.is_empty();
        if let Some(e) = self.expected.filter(|e| *e != first && !explained(*e)) {
            let fault = FrameFault::Position { found: first, expected: Some(e) };
            self.damage(path, end, 0, Corruption::Frame { fault, region: Region::Log });
        }
        self.report.gap_frames += 1;
        self.report.removed_positions += count;
        // The run ends at most one before `u64::MAX` (the decoder checked).
        let last = first + count - 1;
        for (i, from) in self.open_damage.drain(..) {
            if let Some(d) = self.report.damage.get_mut(i).filter(|_| first > from) {
                d.positions = Affected::Range(from..first);
            }
        }
        self.expected = Some(last + 1);
    }
}

/// The frames of a batch whose COMMIT frame has not been seen yet.
#[derive(Default)]
struct PendingBatch<'b> {
    events: Vec<EventRef<'b>>,
    /// Its gap frames: how many of `events` came before each, its first position and its count.
    gaps: Vec<(usize, u64, u64)>,
    /// Its consumer frames: name, position, and whether the consumer is deleted.
    consumers: Vec<(&'b str, u64, bool)>,
    /// Its stream-control frames: stream, truncation point, and whether the stream is deleted.
    controls: Vec<(&'b str, u64, bool)>,
    /// Valid frames, and consumer and stream-control frames among them.
    frames: u64,
    consumer_frames: u64,
    control_frames: u64,
    /// The batch lost a frame to damage: it is counted as verify always did, but not handed to the sink, so a
    /// salvaged copy never holds part of an atomic batch.
    tainted: bool,
}

impl PendingBatch<'_> {
    /// Forgets the frames read so far (not `tainted`, which the caller decides).
    fn clear(&mut self) {
        self.events.clear();
        self.gaps.clear();
        self.consumers.clear();
        self.controls.clear();
        (self.frames, self.consumer_frames, self.control_frames) = (0, 0, 0);
    }
}

/// One segment's frames being walked: where the walk is, the batch being read and how the walk stopped.
struct FrameWalk<'b> {
    /// The segment's bytes from file offset 128.
    view: SegView<'b>,
    durable_end: u64,
    /// The file offset where `bytes` end.
    limit: u64,
    /// Bytes the resynchronising search may still CRC.
    budget: u64,
    /// File offset of the next frame.
    at: u64,
    last_commit_end: u64,
    batch: PendingBatch<'b>,
    /// The problem and claimed length of the frame the walk stopped at, if it stopped at a bad one.
    stopped_at: Option<(FrameProblem, u64)>,
    /// No valid frame was found after damage: the rest of the segment is not judged.
    gave_up: bool,
}

impl<'b> FrameWalk<'b> {
    fn new(view: SegView<'b>, durable_end: u64) -> FrameWalk<'b> {
        let limit = SEGMENT_HEADER_LEN + view.bytes.len() as u64;
        FrameWalk {
            view,
            durable_end,
            limit,
            budget: RESYNC_BUDGET_FACTOR.saturating_mul(limit).saturating_add(1 << 20),
            at: SEGMENT_HEADER_LEN,
            last_commit_end: SEGMENT_HEADER_LEN,
            batch: PendingBatch::default(),
            stopped_at: None,
            gave_up: false,
        }
    }

    /// Whether a frame's length field still fits at the next frame's offset.
    fn has_room(&self) -> bool {
        self.prefix(self.at).is_some()
    }

    /// The length field and head byte of the frame at `at` (unchecked), if they fit.
    fn prefix(&self, at: u64) -> Option<(u32, u8)> {
        let from = usize::try_from(at.checked_sub(SEGMENT_HEADER_LEN)?).ok()?;
        let rest = self.view.bytes.get(from..)?;
        Some((frame_len_field(rest)?, rest.get(frame::HEAD).copied().unwrap_or(0)))
    }

    /// Ends the walk at a bad frame past the durable point, keeping the length it claims.
    fn stop(&mut self, problem: FrameProblem) {
        let claimed = self.prefix(self.at).map_or(0, |(len, _)| u64::from(len));
        self.stopped_at = Some((problem, padded(claimed).min(self.limit - self.at)));
    }
}

/// The offset of the next valid frame in `[from, to)`, or `None`. Candidates are filtered by their length
/// (non-zero, fits) and kind before their CRC is computed, and the CRC work is charged to `budget`; when it
/// runs out the search stops. An event whose names were defined in the damage is not valid: its stream or
/// type cannot be known.
fn resync(view: &SegView<'_>, from: u64, to: u64, budget: &mut u64) -> Option<u64> {
    let mut at = from;
    while at < to && *budget > 0 {
        let rest = view.bytes.get(usize::try_from(at - SEGMENT_HEADER_LEN).ok()?..)?;
        let len = u64::from(frame_len_field(rest)?);
        let kind = rest.get(frame::HEAD).map_or(0, |h| h & KIND_MASK);
        if len > frame::HEAD as u64 && padded(len) <= rest.len() as u64 && kind != 0 {
            *budget = budget.saturating_sub(len);
            if decode_frame(view, at).is_ok() {
                return Some(at);
            }
        }
        at += FRAME_ALIGN;
    }
    None
}
