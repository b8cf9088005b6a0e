//! One segment file: create it (preallocated, header, synced, directory synced), open and check it, walk its
//! frames. Knows files, maps and frames; nothing about streams.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::corruption::Corruption;
use crate::error::{Error, Result};
use crate::format::{
    segment_file_name, DurableSlot, HeaderProblem, SegmentHeader, SegmentName, FORMAT_VERSION, FRAME_ALIGN,
    SEGMENT_HEADER_LEN,
};
use crate::io as sys;
use crate::map::{MapWriter, SegmentMap};

/// Suffix of a segment file being prepared; such files are removed on open.
pub const SEGMENT_TMP_SUFFIX: &str = ".tmp";

/// Smallest segment capacity accepted: header plus room for real frames.
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// Largest segment capacity accepted: the index keeps frame offsets as u32, so no frame may start at or past
/// 4 GiB.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;

/// An open segment.
pub(crate) struct Segment {
    pub header: SegmentHeader,
    pub slot: Option<DurableSlot>,
    pub file: File,
    pub map: Arc<SegmentMap>,
}

impl Segment {
    /// Creates segment number `name.seq` with base `name.base` in `dir`: create `<name>.tmp` → preallocate →
    /// header → fdatasync → rename to the segment name (never over an existing file) → directory fsync. A
    /// crash at any point leaves either no segment (a stray `.tmp` that open removes) or a whole, empty one;
    /// never a short or headerless file under a segment name.
    pub fn create(
        dir: &Path,
        log_id: [u8; 16],
        name: SegmentName,
        capacity: u64,
    ) -> Result<(Segment, MapWriter)> {
        assert!(capacity >= SEGMENT_BYTES_MIN && capacity.is_multiple_of(16));
        let SegmentName { base, seq } = name;
        let path = dir.join(segment_file_name(base, seq));
        let tmp = dir.join(format!("{}{SEGMENT_TMP_SUFFIX}", segment_file_name(base, seq)));
        // A leftover from a crash during an earlier attempt holds nothing of value.
        let _ = sys::remove(&tmp);
        let file = sys::create_new(&tmp).map_err(|e| Error::io("create segment", &tmp, e))?;
        let header =
            SegmentHeader { log_id, base_position: base, seq, capacity, created_micros: now_micros() };
        let prepare = || -> std::io::Result<()> {
            sys::allocate(&file, &tmp, capacity)?;
            sys::write_at(&file, &tmp, 0, &header.encode())?;
            sys::sync_file(&file, &tmp)
        };
        if let Err(e) = prepare() {
            let _ = sys::remove(&tmp);
            return Err(Error::io("prepare new segment", &tmp, e));
        }
        if let Err(e) = sys::rename_no_replace(&tmp, &path) {
            let _ = sys::remove(&tmp);
            return Err(Error::io("name new segment", &path, e));
        }
        let publish = || -> std::io::Result<SegmentMap> {
            sys::sync_dir(dir)?;
            SegmentMap::writable(&file, &path, name, capacity)
        };
        let map = match publish() {
            Ok(map) => Arc::new(map),
            Err(e) => {
                // Never leave a segment the writer will not use: it would claim positions the writer then
                // puts in the current segment. Best effort; if the removal fails too, the caller stops writing.
                let _ = sys::remove(&path);
                return Err(Error::io("prepare new segment", &path, e));
            }
        };
        let writer = map.take_writer().expect("fresh map has no writer");
        Ok((Segment { header, slot: None, file, map }, writer))
    }

    /// Opens an existing segment file and checks its header against its name and the log.
    ///
    /// Only the last segment may be shorter than its capacity (a tool or file system cut its tail): writable,
    /// it is extended with zeros again before mapping; read-only, only its bytes are mapped. Bytes past the
    /// capacity are never looked at.
    pub fn open(
        path: &Path,
        name: SegmentName,
        log_id: Option<[u8; 16]>,
        last: bool,
        writable: bool,
    ) -> Result<Segment> {
        let file = sys::open(path, writable).map_err(|e| Error::io("open segment", path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io("stat segment", path, e))?.len();
        let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
        if file_len < SEGMENT_HEADER_LEN {
            return Err(Error::corrupt(path, 0, Corruption::SegmentShort { len: file_len }));
        }
        sys::read_at(&file, path, 0, &mut head).map_err(|e| Error::io("read segment header", path, e))?;
        let header = check_header(path, &head, name, log_id)?;
        if file_len < header.capacity && !last {
            let kind = Corruption::SealedSegmentShort { len: file_len, capacity: header.capacity };
            return Err(Error::corrupt(path, file_len, kind));
        }
        let map_len = if file_len >= header.capacity {
            header.capacity
        } else if writable {
            sys::allocate(&file, path, header.capacity)
                .map_err(|e| Error::io("re-extend short segment", path, e))?;
            header.capacity
        } else {
            file_len / FRAME_ALIGN * FRAME_ALIGN
        };
        let slot = DurableSlot::newest(&head);
        if let Some(s) = slot {
            if s.durable_end < SEGMENT_HEADER_LEN
                || s.durable_end > header.capacity
                || s.durable_end % FRAME_ALIGN != 0
            {
                return Err(Error::corrupt(path, s.file_offset(), Corruption::DurableSlotOutside));
            }
        }
        // A reader's last segment may still be appended to by a writer elsewhere: nothing in it is committed
        // until the reader indexes it (src/map.rs, invariant 5).
        let map = if writable {
            SegmentMap::writable(&file, path, name, map_len)
        } else if last {
            SegmentMap::following(&file, path, name, map_len)
        } else {
            SegmentMap::read_only(&file, path, name, map_len)
        }
        .map_err(|e| Error::io("map", path, e))?;
        Ok(Segment { header, slot, file, map: Arc::new(map) })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.map.path().to_path_buf()
    }
}

/// Decodes a segment header and checks it against its file name (base and number), the log's id and the
/// capacity range.
fn check_header(
    path: &Path,
    head: &[u8],
    name: SegmentName,
    log_id: Option<[u8; 16]>,
) -> Result<SegmentHeader> {
    let header = SegmentHeader::decode(head).map_err(|p| match p {
        HeaderProblem::Version(found) => {
            Error::UnsupportedVersion { path: path.to_path_buf(), found, supported: FORMAT_VERSION }
        }
        HeaderProblem::BadMagic => Error::InvalidDirectory {
            path: path.to_path_buf(),
            reason: "not a foldlog segment (bad magic)".into(),
        },
        HeaderProblem::Short | HeaderProblem::Damaged => {
            Error::corrupt(path, 0, Corruption::SegmentHeaderDamaged)
        }
    })?;
    if header.base_position != name.base {
        return Err(Error::corrupt(
            path,
            32,
            Corruption::BaseDisagreesWithName { base: header.base_position },
        ));
    }
    if header.seq != name.seq {
        return Err(Error::corrupt(path, 56, Corruption::NumberDisagreesWithName { seq: header.seq }));
    }
    if log_id.is_some_and(|id| id != header.log_id) {
        return Err(Error::InvalidDirectory {
            path: path.to_path_buf(),
            reason: "segment belongs to another log (log id differs)".into(),
        });
    }
    if header.capacity < SEGMENT_BYTES_MIN
        || header.capacity > SEGMENT_BYTES_MAX
        || !header.capacity.is_multiple_of(16)
    {
        return Err(Error::corrupt(path, 40, Corruption::CapacityInvalid { capacity: header.capacity }));
    }
    Ok(header)
}

/// Wall-clock microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
