//! The on-disk layout as constants and small header codecs; mirrors `docs/format.md` line by line.
//!
//! Nothing here does I/O: these functions turn headers into bytes and back, and say why bytes are invalid.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use byteorder::{ByteOrder, LittleEndian as LE};

/// Version of the on-disk format written by this code; any byte layout change of the log (segments and their
/// frames) or of a snapshot bumps it.
pub const FORMAT_VERSION: u32 = 3;

/// Version of the index checkpoint's layout. The checkpoint is derived data, so it has its own: a change to
/// it alone bumps this, and a checkpoint of another version is refused and the index rebuilt from the log,
/// which stays readable. 4: saved lists as varint differences, and the stream-control section (format 3's
/// first checkpoints had fixed-width items and no such section, and carried 3 here).
pub const CHECKPOINT_VERSION: u32 = 4;

/// First 8 bytes of every segment file: ASCII `FOLDSEG` and a zero byte.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FOLDSEG\0";
/// Size of the segment header; also the offset of the first frame.
pub const SEGMENT_HEADER_LEN: u64 = 128;
/// [`SEGMENT_HEADER_LEN`] as a `usize`, for buffers (one value, two types: asserted equal below).
pub const SEGMENT_HEADER_USIZE: usize = 128;
/// The segment header's length as its u32 header field stores it.
const SEGMENT_HEADER_FIELD: u32 = 128;
/// Bytes of the fixed header part covered by `header_crc` (the CRC itself sits at 60..64).
const SEGMENT_FIXED_LEN: usize = 64;
/// Offset of durable slot A; slot B follows it.
const SLOT_A_OFFSET: usize = 64;
/// Size of one durable slot.
pub const SLOT_LEN: usize = 32;
/// Slot flag: written by a clean close; nothing was stored at or after `durable_end`.
pub const SLOT_FLAG_CLEAN: u32 = 1;
/// Slot flag: written by a roll once the next segment exists; nothing follows `durable_end` here, and a
/// segment with the next sequence number must exist.
pub const SLOT_FLAG_SEALED: u32 = 2;
/// Every slot flag this version knows.
const SLOT_FLAGS_KNOWN: u32 = SLOT_FLAG_CLEAN | SLOT_FLAG_SEALED;
/// Largest `seq` a valid durable slot may carry.
pub const SLOT_SEQ_MAX: u64 = 1 << 62;

/// Every frame starts at a multiple of this (and so does every payload), so a payload is 8-aligned in the
/// (page-aligned) map: rkyv archives of types aligned to 8 or less are read in place.
pub const FRAME_ALIGN: u64 = 8;
/// Frame kind (low three bits of byte 8): an event, which takes the next global position.
pub const KIND_EVENT: u8 = 1;
/// Frame kind: a named consumer's position; takes no global position.
pub const KIND_CONSUMER: u8 = 2;
/// Frame kind: a name definition (a stream id, event type, tag or consumer name) that later frames of the
/// same segment refer to by its offset.
pub const KIND_NAME: u8 = 3;
/// Frame kind: a stream control (a truncation point, and maybe the stream's deletion); takes no global
/// position.
pub const KIND_CONTROL: u8 = 4;
/// Frame kind: a gap, the positions of events a scavenge removed (a run of them, in order); takes those
/// positions.
pub const KIND_GAP: u8 = 5;
/// The bits of byte 8 that hold the kind (room for kinds 6 and 7, which this version refuses).
pub const KIND_MASK: u8 = 0b111;
/// Frame flag: last frame of an atomic batch (events and consumer frames).
pub const FLAG_COMMIT: u8 = 1 << 3;
/// Event flag: a 16-byte event id follows the fixed fields.
pub const FLAG_EVENT_ID: u8 = 1 << 4;
/// Event flag: the extras word (tag count, metadata length) follows the event id.
pub const FLAG_EXTRAS: u8 = 1 << 5;
/// Consumer flag: the consumer is deleted (its position forgotten) rather than moved.
pub const FLAG_DELETE: u8 = 1 << 4;
/// Stream-control flag: the stream is deleted (no event may be appended to it again).
pub const FLAG_STREAM_DELETED: u8 = 1 << 4;
/// Name definition: what the name is.
pub const NAME_STREAM: u8 = 1;
/// Name definition: an event type, with its schema version as the value.
pub const NAME_TYPE: u8 = 2;
/// Name definition: a tag.
pub const NAME_TAG: u8 = 3;
/// Name definition: a consumer's name.
pub const NAME_CONSUMER: u8 = 4;
/// Most tags one event carries.
pub const TAGS_MAX: usize = 64;
/// Smallest and largest event timestamp: a signed 56-bit count of microseconds (years 828 to 3112).
pub const TIMESTAMP_MIN: i64 = -(1 << 55);
/// See [`TIMESTAMP_MIN`].
pub const TIMESTAMP_MAX: i64 = (1 << 55) - 1;

/// The frame layouts (docs/format.md, "Frames"): every kind shares the first nine bytes; each range is
/// chained after the one before, so no offset is written twice.
pub mod frame {
    use super::next;
    use std::ops::Range;

    /// u32 CRC32 of bytes 4..len, then the segment's number and the frame's offset (u32 each).
    pub const CRC: Range<usize> = 0..4;
    /// u32 length of the frame before padding; 0: nothing here (the end of the written region).
    pub const LEN: Range<usize> = next(CRC, 4);
    /// The kind (bits 0..3) and flags.
    pub const HEAD: usize = LEN.end;
    /// Event: i56 timestamp, microseconds since the Unix epoch. Name: what the name is (one byte), then zero.
    pub const TIMESTAMP: Range<usize> = next(HEAD..HEAD + 1, 7);
    /// Event and stream control: u32 offset of its stream's name definition. Consumer: of the consumer's name.
    pub const STREAM: Range<usize> = next(TIMESTAMP, 4);
    /// Event: u32 offset of its type's name definition. Consumer and stream control: zero.
    pub const TYPE: Range<usize> = next(STREAM, 4);
    /// Event: u32 stream version minus the stream definition's base version.
    pub const VERSION_DELTA: Range<usize> = next(TYPE, 4);
    /// Event: u32 global position minus the segment's base position.
    pub const POSITION_DELTA: Range<usize> = next(VERSION_DELTA, 4);
    /// Length of an event's fixed fields; the optional parts and the payload follow.
    pub const EVENT_FIXED_LEN: usize = POSITION_DELTA.end;
    /// Event, with `FLAG_EVENT_ID`: the u128 id (little-endian), right after the fixed fields.
    pub const EVENT_ID_LEN: usize = 16;
    /// Event, with `FLAG_EXTRAS`: u32 tag count then u32 metadata length, after the id.
    pub const EXTRAS_LEN: usize = 8;
    /// Consumer: u64 the position it has processed.
    pub const CONSUMER_POSITION: Range<usize> = next(TYPE, 8);
    /// Length of a consumer frame.
    pub const CONSUMER_LEN: usize = CONSUMER_POSITION.end;
    /// Stream control: u64 the truncation point; the stream's events below this version are hidden.
    pub const CONTROL_TRUNCATE_BEFORE: Range<usize> = next(TYPE, 8);
    /// Length of a stream-control frame.
    pub const CONTROL_LEN: usize = CONTROL_TRUNCATE_BEFORE.end;
    /// Gap: u32 the first removed position minus the segment's base position (where an event has its stream).
    pub const GAP_FIRST: Range<usize> = STREAM;
    /// Gap: u32 how many consecutive positions were removed, at least 1.
    pub const GAP_COUNT: Range<usize> = TYPE;
    /// Length of a gap frame.
    pub const GAP_LEN: usize = GAP_COUNT.end;
    /// Name: what the name is (`NAME_*`), in the byte events use for their timestamp's lowest byte.
    pub const NAME_WHAT: usize = TIMESTAMP.start;
    /// Name: u64 value (a stream's base version; a type's schema version; 0 for tags and consumers).
    pub const NAME_VALUE: Range<usize> = STREAM.start..TYPE.end;
    /// Name: the UTF-8 bytes start here and run to the frame's length.
    pub const NAME_BYTES: usize = 24;

    const _: () = assert!(EVENT_FIXED_LEN == 32, "docs/format.md: an event's fixed fields are 32 bytes");
    const _: () = assert!(CONSUMER_LEN == 32, "docs/format.md: a consumer frame is 32 bytes");
    const _: () = assert!(CONTROL_LEN == 32, "docs/format.md: a stream-control frame is 32 bytes");
    const _: () = assert!(NAME_VALUE.start == 16 && NAME_VALUE.end == NAME_BYTES);
    const _: () = assert!(GAP_LEN == 24, "docs/format.md: a gap frame is 24 bytes");
}

/// First 8 bytes of the index checkpoint: ASCII `FOLDIDX` and a zero byte.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"FOLDIDX\0";
/// Size of the checkpoint header; the body follows it.
pub const CHECKPOINT_HEADER_LEN: usize = ckpt::HEADER_CRC.end;

/// The `len` bytes right after the field `after`: header layouts chain their fields with it, so no offset is
/// written twice.
const fn next(after: std::ops::Range<usize>, len: usize) -> std::ops::Range<usize> {
    after.end..after.end + len
}

/// The index checkpoint header (docs/format.md, "Index checkpoint"), each field right after the one before,
/// so no offset is written twice.
pub mod ckpt {
    use super::next;
    use std::ops::Range;

    /// `FOLDIDX\0`.
    pub const MAGIC: Range<usize> = 0..8;
    /// u32 checkpoint version (`CHECKPOINT_VERSION`).
    pub const VERSION: Range<usize> = next(MAGIC, 4);
    /// u32 bytes per saved stream position: 4 when `NEXT_POSITION` ≤ 2^32, else 8.
    pub const POSITION_WIDTH: Range<usize> = next(VERSION, 4);
    /// The log id the checkpoint belongs to.
    pub const LOG_ID: Range<usize> = next(POSITION_WIDTH, 16);
    /// u64: every event below it is in the checkpoint.
    pub const NEXT_POSITION: Range<usize> = next(LOG_ID, 8);
    /// u64: base position of the segment where the scan resumes.
    pub const RESUME_SEGMENT: Range<usize> = next(NEXT_POSITION, 8);
    /// u64: offset in that segment just past the last covered frame.
    pub const RESUME_OFFSET: Range<usize> = next(RESUME_SEGMENT, 8);
    /// u64 length of the directory after the header.
    pub const DIR_LEN: Range<usize> = next(RESUME_OFFSET, 8);
    /// u32 CRC32 of the directory.
    pub const DIR_CRC: Range<usize> = next(DIR_LEN, 4);
    /// Zero.
    pub const RESERVED_2: Range<usize> = next(DIR_CRC, 8);
    /// u32 CRC32 of every header byte before it.
    pub const HEADER_CRC: Range<usize> = next(RESERVED_2, 4);

    const _: () = assert!(HEADER_CRC.end == 80, "docs/format.md: the checkpoint header is 80 bytes");
}

/// The fixed part of a snapshot file's header (docs/format.md, "Snapshot files"), chained like [`ckpt`]; the
/// stream id follows it, then padding, the state and a CRC.
pub mod snap {
    use super::next;
    use std::ops::Range;

    /// `FOLDSNP\0`.
    pub const MAGIC: Range<usize> = 0..8;
    /// u32 snapshot format version.
    pub const VERSION: Range<usize> = next(MAGIC, 4);
    /// u32 offset of the state bytes.
    pub const HEADER_LEN: Range<usize> = next(VERSION, 4);
    /// u64 version of the last event folded into the state.
    pub const STREAM_VERSION: Range<usize> = next(HEADER_LEN, 8);
    /// u64 global position of that event.
    pub const POSITION: Range<usize> = next(STREAM_VERSION, 8);
    /// i64 that event's timestamp.
    pub const TIMESTAMP: Range<usize> = next(POSITION, 8);
    /// u32 the state's schema version.
    pub const STATE_VERSION: Range<usize> = next(TIMESTAMP, 4);
    /// u32 length of the stream id that follows the fixed part.
    pub const STREAM_ID_LEN: Range<usize> = next(STATE_VERSION, 4);
    /// u64 length of the state bytes.
    pub const STATE_LEN: Range<usize> = next(STREAM_ID_LEN, 8);
    /// Zero.
    pub const RESERVED: Range<usize> = next(STATE_LEN, 8);
    /// Length of the fixed part.
    pub const FIXED_LEN: usize = RESERVED.end;

    const _: () = assert!(FIXED_LEN == 64, "docs/format.md: the fixed snapshot header is 64 bytes");
}

/// The head record at the start of `LOCK` (docs/format.md, "The head record"): where the running writer's
/// committed log ends and how much of it is durable, for read-only handles in other processes. Runtime
/// coordination, not recovery data: no open depends on it, and a missing or foreign record only makes readers
/// fall back to the durable slots.
pub mod head {
    use super::next;
    use std::ops::Range;

    /// `FOLDHED\0`.
    pub const MAGIC: Range<usize> = 0..8;
    /// u32 head record version ([`RECORD_VERSION`]).
    pub const VERSION: Range<usize> = next(MAGIC, 4);
    /// Zero.
    pub const RESERVED: Range<usize> = next(VERSION, 4);
    /// The log id the head belongs to.
    pub const LOG_ID: Range<usize> = next(RESERVED, 16);
    /// u64, stored and loaded atomically: the active segment's number in the high 32 bits, the end of its
    /// committed frames divided by 8 in the low 32 bits (see [`pack`]). Zero: nothing published.
    pub const HEAD: Range<usize> = next(LOG_ID, 8);
    /// u64, stored and loaded atomically: the global position below which every event is durable (synced by
    /// the writer). Zero: nothing durable yet, or a writer that predates the field.
    pub const DURABLE: Range<usize> = next(HEAD, 8);
    /// Zero.
    pub const RESERVED_2: Range<usize> = next(DURABLE, 16);
    /// Length of the record; `LOCK` is grown to it by the writer.
    pub const LEN: usize = RESERVED_2.end;

    /// The magic bytes.
    pub const MAGIC_BYTES: [u8; 8] = *b"FOLDHED\0";
    /// The head record's version: 2 since format 3 (the end is counted in units of 8 bytes, not 16).
    pub const RECORD_VERSION: u32 = 2;

    const _: () = assert!(LEN == 64, "docs/format.md: the head record is 64 bytes");
    const _: () = assert!(HEAD.start.is_multiple_of(8), "the head word is loaded atomically: 8-byte aligned");
    const _: () = assert!(DURABLE.start == 40, "docs/format.md: the durable word is at 40 (8-byte aligned)");

    /// The head word for `end` (a frame boundary, so a multiple of 8, at most 4 GiB) in segment `seq`.
    pub const fn pack(seq: u32, end: u64) -> u64 {
        ((seq as u64) << 32) | (end / 8)
    }

    /// The segment number and end offset in a head word; `None` for zero (nothing published yet).
    pub const fn unpack(word: u64) -> Option<(u32, u64)> {
        if word == 0 {
            return None;
        }
        Some(((word >> 32) as u32, (word & 0xFFFF_FFFF) * 8))
    }

    /// The record's fixed bytes (everything before the head word) for a log.
    pub fn fixed(log_id: [u8; 16]) -> [u8; HEAD.start] {
        let mut b = [0u8; HEAD.start];
        b[MAGIC].copy_from_slice(&MAGIC_BYTES);
        b[VERSION].copy_from_slice(&RECORD_VERSION.to_le_bytes());
        b[LOG_ID].copy_from_slice(&log_id);
        b
    }
}

/// Largest stream version: 2^63 − 2, so that a version and the one after it (the end of a version range,
/// the next expected version) both fit a signed 64-bit integer, as SQL and most languages hold them. An append
/// that would go past it is refused before anything is written; a larger version found on disk is corruption.
pub const STREAM_VERSION_MAX: u64 = i64::MAX as u64 - 1;

/// Longest stream id, in bytes.
pub const STREAM_ID_BYTES_MAX: usize = 1024;
/// Longest event type name (and consumer name), in bytes.
pub const NAME_BYTES_MAX: usize = 256;

/// Segment file names: 20 digits of base position, `-`, 10 digits of sequence number, then this extension.
pub const SEGMENT_EXTENSION: &str = "seg";
/// The index checkpoint's file name.
pub const CHECKPOINT_FILE: &str = "index.ckpt";
/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";
/// The key file's name (encrypted streams' keys, feature `encryption`; docs/format.md, "Key file"). Named here,
/// outside the feature, so that every build recognises it as foldlog's own (src/directory.rs).
pub const KEY_FILE: &str = "KEYS";

const _: () = assert!(SEGMENT_HEADER_LEN == (SEGMENT_FIXED_LEN + 2 * SLOT_LEN) as u64);
const _: () = assert!(SEGMENT_HEADER_LEN == SEGMENT_HEADER_USIZE as u64);
const _: () = assert!(SEGMENT_HEADER_FIELD as u64 == SEGMENT_HEADER_LEN);
const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!((frame::EVENT_FIXED_LEN as u64).is_multiple_of(FRAME_ALIGN));

/// What a segment's file name says: its base position and its sequence number in the log.
///
/// Two segments may share a base (one that holds only consumer-position frames takes no position), never a
/// sequence number, so the pair names a segment uniquely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// Global position of the segment's first event (or of the next event, if it holds none).
    pub base: u64,
    /// The segment's number: 0 for the log's first, one more for each later one.
    pub seq: u32,
}

/// The file name of segment number `seq`, whose first event is `base`.
pub fn segment_file_name(base: u64, seq: u32) -> String {
    format!("{base:020}-{seq:010}.{SEGMENT_EXTENSION}")
}

/// The base position and sequence number named by a segment file name, or `None` if the name is not a
/// segment's.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentName> {
    let stem = name.strip_suffix(".seg")?;
    let (base, seq) = stem.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(base, 20) || !digits(seq, 10) {
        return None;
    }
    Some(SegmentName { base: base.parse().ok()?, seq: seq.parse().ok()? })
}

/// The 16 bytes an event id is stored as in the index checkpoint (docs/format.md): big-endian, the one place
/// the format is not little-endian (event frames store it little-endian).
#[expect(
    clippy::big_endian_bytes,
    reason = "the checkpoint stores event ids big-endian, so that the bytes sort as the ids do"
)]
pub fn event_id_bytes(id: u128) -> [u8; 16] {
    id.to_be_bytes()
}

/// The event id stored as `bytes` (see [`event_id_bytes`]).
#[expect(
    clippy::big_endian_bytes,
    reason = "the checkpoint stores event ids big-endian; see `event_id_bytes`"
)]
pub fn event_id_from_bytes(bytes: [u8; 16]) -> u128 {
    u128::from_be_bytes(bytes)
}

/// Rounds a frame's length up to the frame alignment: where the next frame starts.
pub const fn padded(len: u64) -> u64 {
    len.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// The fixed part of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Random id shared by every segment of one log.
    pub log_id: [u8; 16],
    /// Global position of the segment's first event (of the next event if it holds none).
    pub base_position: u64,
    /// The segment's sequence number: 0 for the first segment of the log, one more for each later one.
    pub seq: u32,
    /// File size in bytes.
    pub capacity: u64,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: i64,
}

/// Why a segment header could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Fewer bytes than a header.
    Short,
    /// The magic bytes are not foldlog's.
    BadMagic,
    /// Written by a newer (or unknown) format version.
    Version(u32),
    /// The CRC or a fixed field does not match.
    Damaged,
}

impl SegmentHeader {
    /// Encodes the fixed header part (64 bytes, CRC included).
    pub fn encode(&self) -> [u8; SEGMENT_FIXED_LEN] {
        let mut b = [0u8; SEGMENT_FIXED_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        LE::write_u32(&mut b[8..12], FORMAT_VERSION);
        LE::write_u32(&mut b[12..16], SEGMENT_HEADER_FIELD);
        b[16..32].copy_from_slice(&self.log_id);
        LE::write_u64(&mut b[32..40], self.base_position);
        LE::write_u64(&mut b[40..48], self.capacity);
        LE::write_i64(&mut b[48..56], self.created_micros);
        LE::write_u32(&mut b[56..60], self.seq);
        let crc = crc32fast::hash(&b[0..60]);
        LE::write_u32(&mut b[60..64], crc);
        b
    }

    /// Decodes and checks the fixed header part from the start of a segment file.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let b: &[u8; SEGMENT_FIXED_LEN] = bytes.first_chunk().ok_or(HeaderProblem::Short)?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        let crc_ok = crc32fast::hash(&b[0..60]) == LE::read_u32(&b[60..64]);
        let version = LE::read_u32(&b[8..12]);
        if version != FORMAT_VERSION {
            // A newer writer may have changed the header too, so the version is judged before the CRC.
            return Err(if crc_ok { HeaderProblem::Version(version) } else { HeaderProblem::Damaged });
        }
        if !crc_ok || LE::read_u32(&b[12..16]) != SEGMENT_HEADER_FIELD {
            return Err(HeaderProblem::Damaged);
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&b[16..32]);
        Ok(SegmentHeader {
            log_id,
            base_position: LE::read_u64(&b[32..40]),
            capacity: LE::read_u64(&b[40..48]),
            created_micros: LE::read_i64(&b[48..56]),
            seq: LE::read_u32(&b[56..60]),
        })
    }
}

/// A durable slot: all frames below `durable_end` are on stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableSlot {
    /// Write counter; odd values live in slot A, even in slot B.
    pub seq: u64,
    /// File offset below which every frame was synced.
    pub durable_end: u64,
    /// Position of the first event at or after `durable_end`.
    pub next_position: u64,
    /// `SLOT_FLAG_*` bits.
    pub flags: u32,
}

impl DurableSlot {
    /// File offset where this slot is stored.
    pub fn file_offset(&self) -> u64 {
        (SLOT_A_OFFSET + if self.seq % 2 == 1 { 0 } else { SLOT_LEN }) as u64
    }

    /// Encodes the slot with its CRC.
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        LE::write_u64(&mut b[0..8], self.seq);
        LE::write_u64(&mut b[8..16], self.durable_end);
        LE::write_u64(&mut b[16..24], self.next_position);
        LE::write_u32(&mut b[24..28], self.flags);
        let crc = crc32fast::hash(&b[0..28]);
        LE::write_u32(&mut b[28..32], crc);
        b
    }

    fn decode(b: &[u8]) -> Option<DurableSlot> {
        let b: &[u8; SLOT_LEN] = b.first_chunk()?;
        if crc32fast::hash(&b[0..28]) != LE::read_u32(&b[28..32]) {
            return None;
        }
        let slot = DurableSlot {
            seq: LE::read_u64(&b[0..8]),
            durable_end: LE::read_u64(&b[8..16]),
            next_position: LE::read_u64(&b[16..24]),
            flags: LE::read_u32(&b[24..28]),
        };
        // A writer starts at 1 and adds one per sync, so it never gets near 2^62 (146,000 years at one sync a
        // microsecond); a larger `seq` was not written by foldlog, and trusting it would overflow `seq + 1`.
        (slot.seq > 0 && slot.seq <= SLOT_SEQ_MAX && slot.flags & !SLOT_FLAGS_KNOWN == 0).then_some(slot)
    }

    /// The newest valid slot of a segment header, or `None` if neither slot holds a valid record.
    pub fn newest(header: &[u8]) -> Option<DurableSlot> {
        let a = header.get(SLOT_A_OFFSET..).and_then(DurableSlot::decode);
        let b = header.get(SLOT_A_OFFSET + SLOT_LEN..).and_then(DurableSlot::decode);
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.seq >= b.seq { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

/// The CRC of a frame: over its bytes 4..len (`covered`), then the number of its segment and its offset
/// there, so that a frame written to the wrong place (a misdirected write, a stale copy) fails its check.
pub fn frame_crc(covered: &[u8], seq: u32, offset: u32) -> u32 {
    let ([s0, s1, s2, s3], [o0, o1, o2, o3]) = (seq.to_le_bytes(), offset.to_le_bytes());
    let place = [s0, s1, s2, s3, o0, o1, o2, o3];
    let mut h = crc32fast::Hasher::new();
    h.update(covered);
    // One call for both: each `update` pays a fixed cost, as much as hashing a short frame's body.
    h.update(&place);
    h.finalize()
}

/// The `LEN` field of the frame at the start of `bytes`; `None` if its CRC and length fields do not fit.
pub fn frame_len_field(bytes: &[u8]) -> Option<u32> {
    let b: &[u8; 8] = bytes.first_chunk()?;
    Some(LE::read_u32(&b[frame::LEN]))
}

/// An i56 timestamp as stored in an event frame (7 bytes, little-endian); `None` outside
/// [`TIMESTAMP_MIN`]..=[`TIMESTAMP_MAX`].
pub fn timestamp_bytes(micros: i64) -> Option<[u8; 7]> {
    if !(TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(&micros) {
        return None;
    }
    let mut b = [0u8; 8];
    LE::write_i64(&mut b, micros);
    let mut out = [0u8; 7];
    out.copy_from_slice(b.get(..7)?);
    Some(out)
}

/// The timestamp stored as `bytes` (see [`timestamp_bytes`]), sign-extended.
pub fn timestamp_from_bytes(bytes: [u8; 7]) -> i64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(bytes) {
        *d = s;
    }
    // Shift the 56 bits to the top and back, so the sign bit fills the highest byte.
    (LE::read_i64(&b) << 8) >> 8
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests index and convert what they just built"
)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_and_round_trip() {
        assert_eq!(segment_file_name(0, 0), "00000000000000000000-0000000000.seg");
        let max = SegmentName { base: u64::MAX, seq: u32::MAX };
        assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX, u32::MAX)), Some(max));
        assert_eq!(parse_segment_file_name("00000000000000000000.seg"), None, "a version 1 name");
        assert_eq!(parse_segment_file_name("0000000000000000001-0000000000.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a-0000000000.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000000-9999999999.seg"), None, "seq past u32");
        assert_eq!(parse_segment_file_name("00000000000000000001-0000000000.seg.tmp"), None);
        assert!(segment_file_name(9, 3) < segment_file_name(10, 2));
        assert!(segment_file_name(9, 3) < segment_file_name(9, 4));
    }

    #[test]
    fn crc_is_ieee() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn timestamps_round_trip_at_the_edges() {
        for t in [0, 1, -1, TIMESTAMP_MIN, TIMESTAMP_MAX, 1_764_000_000_000_000, -30_000_000_000_000_000] {
            assert_eq!(timestamp_from_bytes(timestamp_bytes(t).unwrap()), t, "{t}");
        }
        assert_eq!(timestamp_bytes(TIMESTAMP_MAX + 1), None);
        assert_eq!(timestamp_bytes(TIMESTAMP_MIN - 1), None);
        assert_eq!(timestamp_bytes(i64::MIN), None);
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            log_id: [7; 16],
            base_position: 42,
            seq: 3,
            capacity: 1 << 20,
            created_micros: 5,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..64 {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(SegmentHeader::decode(&d).is_err(), "flip at {i} accepted");
        }
        assert_eq!(SegmentHeader::decode(&b[..10]), Err(HeaderProblem::Short));
    }

    #[test]
    fn newest_slot_wins_and_torn_slot_falls_back() {
        let mut hdr = [0u8; SEGMENT_HEADER_LEN as usize];
        assert_eq!(DurableSlot::newest(&hdr), None);
        let s1 = DurableSlot { seq: 1, durable_end: 256, next_position: 3, flags: 0 };
        let s2 = DurableSlot { seq: 2, durable_end: 512, next_position: 9, flags: 0 };
        for s in [s1, s2] {
            let at = s.file_offset() as usize;
            hdr[at..at + SLOT_LEN].copy_from_slice(&s.encode());
        }
        assert_eq!(DurableSlot::newest(&hdr), Some(s2));
        hdr[s2.file_offset() as usize + 9] ^= 1;
        assert_eq!(DurableSlot::newest(&hdr), Some(s1));
    }
}
