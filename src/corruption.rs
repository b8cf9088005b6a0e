//! Why bytes on disk are refused, as types: what [`Error::Corrupt`](crate::Error::Corrupt) and the verify
//! report carry ([`Corruption`]), and why an index checkpoint was not used ([`CheckpointRefusal`],
//! [`CheckpointLoss`]).
//!
//! A caller acts on the kind (restore a lost segment, cut a torn tail, ignore a refused checkpoint), so the
//! kind is a variant and the English is only its `Display`. Every enum is `#[non_exhaustive]`: a new check
//! is a new variant, not a breaking release.

use std::fmt;
use std::path::PathBuf;

use crate::record::FrameProblem;

/// What is wrong with bytes of the log that must be valid. The location (file, offset) is beside it, in
/// [`Error::Corrupt`](crate::Error::Corrupt) or [`Damage`](crate::verify::Damage).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// A frame that must be valid is not: `fault` says what is wrong with it, `region` why it had to be
    /// valid there.
    Frame {
        /// What is wrong with the frame.
        fault: FrameFault,
        /// Why the frame had to be valid.
        region: Region,
    },
    /// The file is shorter than a segment header.
    SegmentShort {
        /// The file's length in bytes.
        len: u64,
    },
    /// The segment header fails its checks (CRC, reserved bytes).
    SegmentHeaderDamaged,
    /// The file has a segment's name but not a segment's magic number.
    NotASegment,
    /// A segment name that is not a regular file (a symlink or a directory).
    NotRegularFile,
    /// The segment carries another log's id.
    ForeignSegment,
    /// The header's base position is not the one in the file name.
    BaseDisagreesWithName {
        /// The base position in the header.
        base: u64,
    },
    /// The header's sequence number is not the one in the file name.
    NumberDisagreesWithName {
        /// The number in the header.
        seq: u32,
    },
    /// The capacity in the header is out of range or not a multiple of 16.
    CapacityInvalid {
        /// The capacity in the header.
        capacity: u64,
    },
    /// A sealed segment's file is shorter than its header says: its end was cut.
    SealedSegmentShort {
        /// The file's length in bytes.
        len: u64,
        /// The capacity its header names.
        capacity: u64,
    },
    /// The newest durable slot names an end outside the segment.
    DurableSlotOutside,
    /// A sealed segment has no valid durable slot, so where its frames end cannot be known.
    NoDurableSlot,
    /// Segment numbers run 0, 1, 2, … with no gap or repeat; this one breaks the run.
    SegmentNumber {
        /// The number found.
        found: u32,
        /// The number that belongs here.
        expected: u32,
    },
    /// The last segment was sealed (its successor existed once), and its successor is missing.
    SuccessorMissing {
        /// The missing segment's number.
        seq: u64,
    },
    /// The writer published a head in a segment that is not there.
    HeadSegmentMissing {
        /// The missing segment's number.
        seq: u32,
    },
    /// A segment does not start where the log before it ends: a segment is missing or misplaced.
    SegmentGap {
        /// The segment's base position.
        base: u64,
        /// Where the log before it ends.
        expected: u64,
    },
    /// There are no segment files, but a file written only after events were durable is there: the log's
    /// segments were lost. The error's path is that file.
    SegmentsLost {
        /// The file or directory that proves a log existed (`index.ckpt`, `snapshots`, `KEYS`).
        evidence: &'static str,
    },
    /// A sealed segment's whole batches do not end exactly at its durable end.
    SealedEnd {
        /// Where its whole batches end.
        batches_end: u64,
        /// Where its header says its frames end.
        durable_end: u64,
    },
    /// The last segment's frames end below the end its header says was synced.
    EndsBelowDurable {
        /// Where its whole batches end.
        frames_end: u64,
        /// Where its header says its synced frames end.
        durable_end: u64,
    },
    /// A sealed segment's durable end is behind frames already read from it.
    DurableEndBehind {
        /// Its durable end.
        durable_end: u64,
        /// Where reading had got to.
        read: u64,
    },
    /// The place a walk was to resume from lies outside what may be read of the segment.
    ResumeOutside {
        /// The offset the walk was to resume from.
        from: u64,
    },
    /// The writer's published head lies outside its segment.
    HeadOutside {
        /// The head's end offset.
        end: u64,
    },
    /// The index checkpoint names segments or events the log no longer has. A checkpoint is written only
    /// after the log it describes was synced, so this proves durable data was lost.
    CheckpointLost(CheckpointLoss),
    /// A checkpoint list was refused again after the index was rebuilt without it (a bug, not a disk fault).
    CheckpointList(CheckpointRefusal),
    /// Reading a segment again to rebuild the index, its whole batches end before the end indexed before.
    RebuildEndsEarly {
        /// Where its whole batches end now.
        batches_end: u64,
        /// Where they ended when the segment was indexed before.
        end: u64,
    },
    /// The index rebuilt from the log does not end where the log does.
    RebuildDisagrees {
        /// Where the rebuilt index ends.
        rebuilt: u64,
        /// Where the log ends.
        expected: u64,
    },
    /// The store's table of segments has no entry the index refers to (a bug, not a disk fault).
    SegmentTableShort {
        /// The missing entry.
        slot: usize,
    },
    /// No segment holds a position below the log's end (a bug, not a disk fault).
    PositionUnlocated {
        /// The position.
        position: u64,
    },
    /// A frame would start past the 4 GiB a segment may hold.
    OffsetPastLimit {
        /// The offset.
        offset: u64,
    },
    /// The writer moved past the last segment number there is.
    SegmentNumbersExhausted,
    /// An event of the retention rules' stream (`$foldlog/retention`, docs/format.md "System streams") is not
    /// a rule this build reads: its frame is sound, its payload is not.
    RetentionRule {
        /// The rule event's version in that stream.
        version: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file (`KEYS`, feature `encryption`) fails its checks: `what` says which (its header, or a key
    /// record in the middle of the file, which no crash leaves behind: appends tear only the last record).
    KeyFile {
        /// What is wrong.
        what: &'static str,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Frame { fault, region } => match region {
                Region::Log => write!(f, "{fault}"),
                Region::Sealed => write!(f, "in a sealed segment: {fault}"),
                Region::BelowDurable { durable_end } => {
                    write!(f, "{fault} below the durable point {durable_end} (not a torn tail)")
                }
                Region::BelowWriterHead => write!(f, "below the writer's head: {fault}"),
                Region::Rebuild => write!(f, "while rebuilding the index: {fault}"),
            },
            Corruption::SegmentShort { len } => {
                write!(f, "file is {len} bytes, shorter than a segment header")
            }
            Corruption::SegmentHeaderDamaged => f.write_str("segment header damaged"),
            Corruption::NotASegment => f.write_str("not a foldlog segment (bad magic)"),
            Corruption::NotRegularFile => {
                f.write_str("a segment name that is not a regular file (symlink or directory)")
            }
            Corruption::ForeignSegment => f.write_str("segment belongs to another log (log id differs)"),
            Corruption::BaseDisagreesWithName { base } => {
                write!(f, "header base position {base} disagrees with the file name")
            }
            Corruption::NumberDisagreesWithName { seq } => {
                write!(f, "header sequence number {seq} disagrees with the file name")
            }
            Corruption::CapacityInvalid { capacity } => {
                write!(f, "capacity {capacity} in the header is invalid")
            }
            Corruption::SealedSegmentShort { len, capacity } => {
                write!(f, "sealed segment is {len} bytes, its header says {capacity}")
            }
            Corruption::DurableSlotOutside => f.write_str("durable slot points outside the segment"),
            Corruption::NoDurableSlot => f.write_str("a sealed segment has no valid durable slot"),
            other => other.fmt_log(f),
        }
    }
}

impl Corruption {
    /// The messages of what is wrong with the log as a whole (segments, batches, checkpoint, index); `fmt`
    /// writes those of one file or frame itself.
    fn fmt_log(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::SegmentNumber { found, expected } if found > expected => write!(
                f,
                "segment number {found} where number {expected} belongs (segment number {expected} is missing: \
                 a segment file was lost)"
            ),
            Corruption::SegmentNumber { found, expected } => {
                write!(f, "segment number {found} where number {expected} belongs (a second segment numbered {found})")
            }
            Corruption::SuccessorMissing { seq } => write!(
                f,
                "this segment was sealed, so segment number {seq} must follow it, and it is missing"
            ),
            Corruption::HeadSegmentMissing { seq } => {
                write!(f, "the writer moved to segment number {seq}, which is missing")
            }
            Corruption::SegmentGap { base, expected } => write!(
                f,
                "segment starts at position {base} but the log before it ends at {expected} (a segment is \
                 missing or misplaced)"
            ),
            Corruption::SegmentsLost { evidence } => {
                write!(f, "no segment files, but {evidence} exists: the log's segments were lost")
            }
            Corruption::SealedEnd { batches_end, durable_end } => write!(
                f,
                "sealed segment's whole batches end at offset {batches_end}, its header says {durable_end}"
            ),
            Corruption::EndsBelowDurable { frames_end, durable_end } => write!(
                f,
                "frames end at offset {frames_end}, but the segment header says frames up to {durable_end} were \
                 synced (not a torn tail)"
            ),
            Corruption::DurableEndBehind { durable_end, read } => write!(
                f,
                "a sealed segment's durable end {durable_end} is behind what was read from it ({read})"
            ),
            Corruption::ResumeOutside { from } => {
                write!(f, "resume offset {from} outside the segment (or the part of it that may be read)")
            }
            Corruption::HeadOutside { end } => write!(f, "the writer's head {end} is outside the segment"),
            Corruption::CheckpointLost(loss) => {
                write!(f, "{loss}: the checkpoint proves events durable that the log no longer holds")
            }
            Corruption::CheckpointList(why) => write!(f, "a checkpoint list refused after a rebuild: {why}"),
            Corruption::RebuildEndsEarly { batches_end, end } => write!(
                f,
                "while rebuilding the index: the log ends early (whole batches end at offset {batches_end}, \
                 they ended at {end} before)"
            ),
            Corruption::RebuildDisagrees { rebuilt, expected } => write!(
                f,
                "rebuilt index disagrees with the log's end (it ends at position {rebuilt}, the log at {expected})"
            ),
            Corruption::SegmentTableShort { slot } => write!(f, "segment slot {slot} missing from the segment table"),
            Corruption::PositionUnlocated { position } => write!(f, "no segment holds position {position}"),
            Corruption::OffsetPastLimit { offset } => write!(f, "offset {offset} past 4 GiB"),
            Corruption::SegmentNumbersExhausted => f.write_str("segment numbers exhausted"),
            Corruption::RetentionRule { version, reason } => {
                write!(f, "retention rule at version {version} of $foldlog/retention: {reason}")
            }
            Corruption::KeyFile { what } => write!(f, "key file: {what}"),
            // Only `fmt` calls this, for the variants it does not write itself.
            other => fmt::Debug::fmt(other, f),
        }
    }
}

/// What is wrong with one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameFault {
    /// A zero length: no frame was written here.
    Empty,
    /// The header or body runs past the end of the bytes.
    Truncated,
    /// The CRC does not match.
    Checksum,
    /// Unknown kind or flags, or non-zero reserved bytes.
    Header,
    /// The CRC matched but the fields do not fit together (a length past the frame, bad UTF-8, a version or
    /// position out of range).
    Body,
    /// The frame refers to a name definition (a stream id, type, tag or consumer name) at this offset that
    /// is not one of the right sort earlier in the segment.
    Name {
        /// The offset it refers to.
        offset: u64,
    },
    /// An event frame carries the wrong global position.
    Position {
        /// The position it carries.
        found: u64,
        /// The position that belongs here (`None`: no position can follow).
        expected: Option<u64>,
    },
    /// A gap frame stands for more positions than its segment could ever have held events.
    Gap {
        /// The gap's first position.
        first: u64,
        /// The positions it claims.
        count: u64,
    },
    /// An event does not continue its stream's versions.
    Version {
        /// The stream.
        stream: String,
        /// The version it carries.
        found: u64,
        /// The version that belongs here.
        expected: u64,
    },
    /// An event's stream version is past [`STREAM_VERSION_MAX`](crate::STREAM_VERSION_MAX).
    VersionPastMax {
        /// The stream.
        stream: String,
        /// The version it carries.
        version: u64,
    },
    /// The index points at a frame that is not the stream's event it expects.
    NotIndexed {
        /// The stream.
        stream: String,
        /// The version the index expects there.
        version: u64,
    },
    /// The tag and type indexes point at a frame that is not the event at this position, or one that does
    /// not match the query they answered.
    NotInQuery {
        /// The position the indexes named.
        position: u64,
    },
}

impl From<FrameProblem> for FrameFault {
    fn from(p: FrameProblem) -> FrameFault {
        match p {
            FrameProblem::Empty => FrameFault::Empty,
            FrameProblem::Truncated => FrameFault::Truncated,
            FrameProblem::Checksum => FrameFault::Checksum,
            FrameProblem::Header => FrameFault::Header,
            FrameProblem::Body => FrameFault::Body,
            FrameProblem::Name(offset) => FrameFault::Name { offset },
        }
    }
}

impl fmt::Display for FrameFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameFault::Empty => f.write_str("no frame (zero length)"),
            FrameFault::Truncated => f.write_str("frame runs past the end of the segment"),
            FrameFault::Checksum => f.write_str("frame CRC mismatch"),
            FrameFault::Header => f.write_str("frame header has unknown kind, flags or reserved bytes"),
            FrameFault::Body => f.write_str("frame fields do not fit together"),
            FrameFault::Name { offset } => {
                write!(f, "frame refers to a name at offset {offset} that is not defined there")
            }
            FrameFault::Position { found, expected: Some(e) } => {
                write!(f, "event has position {found} where {e} belongs")
            }
            FrameFault::Position { found, expected: None } => {
                write!(f, "event has position {found} where no position belongs")
            }
            FrameFault::Gap { first, count } => {
                write!(f, "a gap of {count} positions from {first} is longer than its segment could hold")
            }
            FrameFault::Version { stream, found, expected } => {
                write!(f, "stream {stream:?} has version {found} where {expected} belongs")
            }
            FrameFault::VersionPastMax { stream, version } => write!(
                f,
                "stream {stream:?} has version {version}, past the largest {}",
                crate::STREAM_VERSION_MAX
            ),
            FrameFault::NotIndexed { stream, version } => {
                write!(f, "index points at a frame that is not version {version} of stream {stream:?}")
            }
            FrameFault::NotInQuery { position } => {
                write!(f, "tag and type indexes point at a frame that is not a matching event at position {position}")
            }
        }
    }
}

/// Why a frame had to be valid where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Region {
    /// A frame of the committed log, found by a read or a verify walk.
    Log,
    /// A sealed segment, synced in full before its successor was created: nothing in it may be torn.
    Sealed,
    /// Below the durable point the segment header records: never a torn tail.
    BelowDurable {
        /// The durable point.
        durable_end: u64,
    },
    /// Below the head a live writer published.
    BelowWriterHead,
    /// A segment read again to rebuild the index, which it passed before.
    Rebuild,
}

/// Why an index checkpoint was not used (the index was rebuilt from the log instead). The checkpoint is
/// derived data: refusing it costs a longer open, never an event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointRefusal {
    /// The file is shorter than a checkpoint header.
    Short,
    /// Not a checkpoint's magic number.
    BadMagic,
    /// The header fails its CRC.
    HeaderChecksum,
    /// Written by another format version.
    Version {
        /// The version in the file.
        found: u32,
    },
    /// Belongs to another log (its log id differs).
    ForeignLog,
    /// The directory runs past the end of the file.
    DirectoryPastEnd,
    /// The directory fails its CRC.
    DirectoryChecksum,
    /// The directory does not decode (a count or length runs past it).
    DirectoryMalformed,
    /// Bytes follow the directory's last entry.
    TrailingBytes,
    /// A stream's length is zero or runs past the largest version.
    StreamLength {
        /// The stream.
        stream: String,
    },
    /// A stream is listed twice.
    StreamListedTwice {
        /// The stream.
        stream: String,
    },
    /// A remembered event id points past the end of the log it covers.
    EventIdPastEnd,
    /// A segment entry does not start where the one before it ends.
    SegmentBase {
        /// Its base position.
        base: u64,
        /// Where the segments before it end.
        expected: u64,
    },
    /// A segment entry's number breaks the run 0, 1, 2, …
    SegmentNumber {
        /// Its number.
        found: u32,
        /// The number that belongs there.
        expected: u32,
    },
    /// Segment lengths overflow a position.
    SegmentLengthOverflow,
    /// Segment lengths do not add up to the position the checkpoint covers.
    SegmentLengths,
    /// Stream lengths add up to more than the position the checkpoint covers.
    StreamLengths,
    /// An event type's or tag's list is empty or longer than the log.
    LabelLength {
        /// The type or tag.
        name: String,
    },
    /// An event type or tag is listed twice (or out of order) in its section.
    LabelListedTwice {
        /// The type or tag.
        name: String,
    },
    /// The event types' lists do not add up to the streams' (every event has one type and one stream), or
    /// pass the position the checkpoint covers.
    TypeLengths,
    /// The resume point does not match the last segment entry.
    ResumePoint,
    /// A list runs past the end of the file.
    ListPastEnd,
    /// A list is longer than this machine can address.
    ListTooLong,
    /// A list could not be read (the OS error's text).
    ListUnreadable(String),
    /// A list's table of chunk CRCs fails its CRC.
    ChunkTableChecksum {
        /// File offset of the table.
        at: u64,
    },
    /// A chunk of a list fails its CRC.
    ChunkChecksum {
        /// File offset of the chunk.
        at: u64,
    },
    /// A chunk of a list is out of order or out of range.
    ChunkOrder {
        /// File offset of the chunk.
        at: u64,
    },
    /// A segment's end is not a frame boundary in its file.
    NotFrameBoundary {
        /// The end the checkpoint names.
        end: u64,
        /// The segment file.
        segment: PathBuf,
    },
    /// The checkpoint cannot locate its own last event.
    LastEventUnlocated,
    /// Reading the checkpoint's last event failed (the OS error's text); the log reports its own I/O errors.
    LastEventUnreadable(String),
    /// It proves data lost ([`CheckpointLoss`]), which recovery mode `TruncateCorruption` accepts.
    LossAccepted(CheckpointLoss),
}

impl fmt::Display for CheckpointRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointRefusal::Short => f.write_str("shorter than its header"),
            CheckpointRefusal::BadMagic => f.write_str("bad magic"),
            CheckpointRefusal::HeaderChecksum => f.write_str("header CRC mismatch"),
            CheckpointRefusal::Version { found } => write!(f, "checkpoint version {found}"),
            CheckpointRefusal::ForeignLog => f.write_str("belongs to another log"),
            CheckpointRefusal::DirectoryPastEnd => f.write_str("directory runs past the end of the file"),
            CheckpointRefusal::DirectoryChecksum => f.write_str("directory CRC mismatch"),
            CheckpointRefusal::DirectoryMalformed => f.write_str("directory malformed"),
            CheckpointRefusal::TrailingBytes => f.write_str("trailing bytes in the directory"),
            CheckpointRefusal::StreamLength { stream } => {
                write!(f, "stream {stream:?} has an impossible length")
            }
            CheckpointRefusal::StreamListedTwice { stream } => write!(f, "stream {stream:?} listed twice"),
            CheckpointRefusal::EventIdPastEnd => f.write_str("an event id points past the end"),
            CheckpointRefusal::SegmentBase { base, expected } => {
                write!(f, "segment {base} does not follow position {expected}")
            }
            CheckpointRefusal::SegmentNumber { found, expected } => {
                write!(f, "segment number {found} where number {expected} belongs")
            }
            CheckpointRefusal::SegmentLengthOverflow => f.write_str("segment length overflows"),
            CheckpointRefusal::SegmentLengths => {
                f.write_str("segment lengths do not add up to next_position")
            }
            CheckpointRefusal::StreamLengths => {
                f.write_str("stream lengths add up to more than next_position")
            }
            CheckpointRefusal::LabelLength { name } => write!(f, "type or tag {name:?}: empty or too long"),
            CheckpointRefusal::LabelListedTwice { name } => {
                write!(f, "type or tag {name:?} listed twice or out of order")
            }
            CheckpointRefusal::TypeLengths => {
                f.write_str("event type lengths do not add up to the stream lengths, or pass next_position")
            }
            CheckpointRefusal::ResumePoint => f.write_str("resume point does not match the last segment"),
            CheckpointRefusal::ListPastEnd => f.write_str("list runs past the end of the checkpoint"),
            CheckpointRefusal::ListTooLong => f.write_str("list too long"),
            CheckpointRefusal::ListUnreadable(e) => write!(f, "reading a list: {e}"),
            CheckpointRefusal::ChunkTableChecksum { at } => {
                write!(f, "chunk table at offset {at} fails its CRC")
            }
            CheckpointRefusal::ChunkChecksum { at } => write!(f, "list chunk at offset {at} fails its CRC"),
            CheckpointRefusal::ChunkOrder { at } => {
                write!(f, "list chunk at offset {at} out of order or out of range")
            }
            CheckpointRefusal::NotFrameBoundary { end, segment } => {
                write!(f, "checkpoint offset {end} is not a frame boundary in {}", segment.display())
            }
            CheckpointRefusal::LastEventUnlocated => f.write_str("checkpoint cannot locate its last event"),
            CheckpointRefusal::LastEventUnreadable(e) => {
                write!(f, "reading the checkpoint's last event: {e}")
            }
            CheckpointRefusal::LossAccepted(loss) => {
                write!(f, "{loss} (accepted: recovery mode TruncateCorruption)")
            }
        }
    }
}

/// What an index checkpoint names that the log no longer has: evidence that durable data was lost, because
/// a checkpoint is written only after the log it describes was synced.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointLoss {
    /// It names a segment that does not exist.
    SegmentMissing {
        /// The segment's number.
        seq: u32,
        /// Its base position.
        base: u64,
    },
    /// A segment it names is not the file of that number.
    SegmentMismatch {
        /// The segment's base position in the checkpoint.
        base: u64,
        /// Its number in the checkpoint.
        seq: u32,
        /// The file found in its place.
        file: PathBuf,
    },
    /// Its last event is not where it says.
    EventMoved {
        /// The event's position.
        position: u64,
    },
}

impl fmt::Display for CheckpointLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointLoss::SegmentMissing { seq, base } => write!(
                f,
                "the checkpoint names segment number {seq} (from position {base}), which does not exist"
            ),
            CheckpointLoss::SegmentMismatch { base, seq, file } => {
                write!(f, "checkpoint segment {base}/{seq} does not match file {}", file.display())
            }
            CheckpointLoss::EventMoved { position } => {
                write!(f, "the event at position {position} is not where the checkpoint says")
            }
        }
    }
}
