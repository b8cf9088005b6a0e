//! Opening a directory: listing and numbering the segments, creating a new log, recovering the last
//! segment (torn tail cut, pages re-dirtied) and building the writer.

use super::*;

/// Snapshot directory name (written by the repository); its presence proves the log once held events.
pub(super) const SNAPSHOT_DIR: &str = "snapshots";

pub(super) struct Listing {
    pub(super) segments: Vec<(SegmentName, PathBuf)>,
    pub(super) temps: Vec<PathBuf>,
}

pub(super) fn list(dir: &Path) -> Result<Listing> {
    let mut segments = Vec::new();
    let mut temps = Vec::new();
    for (name, regular) in sys::list_dir(dir).map_err(|e| Error::io("list directory", dir, e))? {
        if let Some(seg) = parse_segment_file_name(&name) {
            if !regular {
                return Err(Error::InvalidDirectory {
                    path: dir.join(&name),
                    reason: "a segment name that is not a regular file (symlink or directory)".into(),
                });
            }
            segments.push((seg, dir.join(&name)));
        } else if is_version_1_segment_name(&name) {
            // Format 1 named segments by base alone; such a log is not readable here, and starting a new
            // log beside it would look like an empty store.
            return Err(Error::UnsupportedVersion {
                path: dir.join(&name),
                found: 1,
                supported: FORMAT_VERSION,
            });
        } else if regular
            && (name.starts_with(&format!("{CHECKPOINT_FILE}.tmp-"))
                || name
                    .strip_suffix(SEGMENT_TMP_SUFFIX)
                    .is_some_and(|n| parse_segment_file_name(n).is_some()))
        {
            temps.push(dir.join(&name));
        }
    }
    // By sequence number: that is the log's order (bases may repeat).
    segments.sort_unstable_by_key(|(name, _)| (name.seq, name.base));
    listing_checked(dir, Listing { segments, temps })
}

/// `<20 digits>.seg`: a segment of format version 1.
pub(crate) fn is_version_1_segment_name(name: &str) -> bool {
    name.strip_suffix(".seg").is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Segments are numbered 0, 1, 2, … with no gap: a missing number is a lost segment, never a log that
/// happens to be shorter.
pub(super) fn listing_checked(dir: &Path, listing: Listing) -> Result<Listing> {
    for (expect, (name, path)) in (0u32..).zip(&listing.segments) {
        if name.seq != expect {
            let kind = Corruption::SegmentNumber { found: name.seq, expected: expect };
            return Err(Error::corrupt(if name.seq > expect { path } else { dir }, 0, kind));
        }
    }
    Ok(listing)
}

/// With no segment file at all, the directory must show no sign of a log that was there: an index
/// checkpoint or snapshots are written only after events were durable, so either one means the segments
/// were lost, and starting an empty log over them would be a silent loss of everything.
pub(crate) fn check_no_lost_log(dir: &Path) -> Result<()> {
    for evidence in [CHECKPOINT_FILE, SNAPSHOT_DIR] {
        let path = dir.join(evidence);
        if path.symlink_metadata().is_ok() {
            return Err(Error::corrupt(&path, 0, Corruption::SegmentsLost { evidence }));
        }
    }
    Ok(())
}

pub(super) fn open_inner(dir: &Path, mut options: Options) -> Result<Inner> {
    let started = Instant::now();
    crate::directory::check_before_open(dir, &options)?;
    options.segment_size_bytes =
        (options.segment_size_bytes / 16 * 16).clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
    if options.read_only {
        return open_reader(dir, options, started);
    }
    if !dir.exists() {
        if !options.create_if_missing {
            return Err(Error::InvalidDirectory { path: dir.to_path_buf(), reason: "does not exist".into() });
        }
        sys::create_dir(dir).map_err(|e| Error::io("create directory", dir, e))?;
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock = sys::open_lock_file(&lock_path).map_err(|e| Error::io("open lock file", &lock_path, e))?;
    if !sys::try_lock(&lock, &lock_path, true).map_err(|e| Error::io("lock", &lock_path, e))? {
        return Err(Error::Locked { path: dir.to_path_buf() });
    }
    // Best effort: where the mark cannot be placed, readers cannot ask for it either and go by the head.
    let _ = sys::mark_writer_live(&lock, &lock_path);
    let listing = list(dir)?;
    for t in &listing.temps {
        let _ = sys::remove(t);
    }
    if listing.segments.is_empty() {
        check_no_lost_log(dir)?;
        if !options.create_if_missing {
            return Err(Error::InvalidDirectory {
                path: dir.to_path_buf(),
                reason: "no segment files".into(),
            });
        }
        return create_log(dir, options, lock, started);
    }
    let parts = recover(dir, &options, &listing, Role::Writer, started)?;
    let at = parts
        .writer
        .as_ref()
        .map_or(Head { seq: 0, end: SEGMENT_HEADER_LEN }, |w| Head { seq: w.seg_seq, end: w.end });
    let head = HeadPublisher::start(&lock, &lock_path, parts.log_id, at)?;
    Ok(build_inner(dir, options, parts, HeadRole::Publisher(head), Some(lock)))
}

/// A read-only open: a shared hold on the directory (never on `LOCK`, so a writer in another process runs
/// beside it), then recovery as far as the writer's head allows. A writer may roll or checkpoint while this
/// open reads; a listing that changed meanwhile explains corruption found, and the open starts over.
fn open_reader(dir: &Path, options: Options, started: Instant) -> Result<Inner> {
    if !dir.exists() {
        return Err(Error::InvalidDirectory { path: dir.to_path_buf(), reason: "does not exist".into() });
    }
    let lock = match sys::lock_dir(dir, false).map_err(|e| Error::io("lock directory", dir, e))? {
        sys::DirLock::Held(file) => Some(file),
        sys::DirLock::Unsupported => None,
        sys::DirLock::Conflict => return Err(Error::Locked { path: dir.to_path_buf() }),
    };
    let mut attempts = 0;
    loop {
        let listing = list(dir)?;
        if listing.segments.is_empty() {
            check_no_lost_log(dir)?;
            return Err(Error::InvalidDirectory {
                path: dir.to_path_buf(),
                reason: "no segment files".into(),
            });
        }
        let writer_live = crate::head::writer_is_live(dir);
        match recover(dir, &options, &listing, Role::Reader { writer_live }, started) {
            // A writer that started while this open read every valid frame may have been storing some: look
            // again with its head.
            Ok(_) if writer_live == Some(false) && crate::head::writer_is_live(dir) == Some(true) => {
                attempts += 1;
                if attempts >= READER_OPEN_ATTEMPTS {
                    return Err(Error::Locked { path: dir.to_path_buf() });
                }
            }
            Ok(parts) => {
                let watcher = HeadWatcher::new(dir, parts.log_id);
                // Beside a live writer (or where that cannot be told) only what it synced is durable, loaded
                // after recovery read its head; with none, every valid frame counts, as it always has.
                let published = if writer_live == Some(false) { None } else { watcher.load() };
                let inner = build_inner(dir, options, parts, HeadRole::Watcher(watcher), lock);
                if let Some(p) = published {
                    inner.durable.fetch_min(p.durable, Ordering::AcqRel);
                }
                return Ok(inner);
            }
            Err(e @ Error::Corrupt { .. }) => {
                attempts += 1;
                let moved = list(dir).is_ok_and(|now| now.segments != listing.segments);
                if !moved || attempts >= READER_OPEN_ATTEMPTS {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// How often a read-only open starts over when the writer's rolls keep changing the listing under it.
const READER_OPEN_ATTEMPTS: u32 = 8;

/// What recovery built, for `build_inner`.
pub(super) struct Recovered {
    pub(super) log_id: [u8; 16],
    pub(super) segments: SegmentTable,
    pub(super) index: Index,
    pub(super) writer: Option<Writer>,
    pub(super) report: RecoveryReport,
}

/// Who recovers.
#[derive(Clone, Copy)]
enum Role {
    Writer,
    /// A read-only open; whether a writer had the store open when it began (`None`: cannot be told).
    Reader {
        writer_live: Option<bool>,
    },
}

/// Opens the listed segments, loads the checkpoint and recovers the log. A reader beside a live writer reads
/// the last segment only as far as the writer's head (loaded after the checkpoint, so it covers at least what
/// the checkpoint does); with no writer, every valid frame, as a writer's recovery would.
fn recover(
    dir: &Path,
    options: &Options,
    listing: &Listing,
    role: Role,
    started: Instant,
) -> Result<Recovered> {
    let reader = matches!(role, Role::Reader { .. });
    let mut report = RecoveryReport::default();
    let mut opened = open_segments(listing, !reader)?;
    if reader {
        catch_up(dir, &mut opened)?;
    }
    report.segments = opened.len();
    let log_id = opened[0].header.log_id;
    let (index, resume) = load_checkpoint(dir, log_id, &opened, options, &mut report)?;
    let bound = match (role, opened.last()) {
        (Role::Reader { writer_live: Some(false) } | Role::Writer, _) | (_, None) => u64::MAX,
        (Role::Reader { .. }, Some(last)) => {
            tail_bound(HeadWatcher::new(dir, log_id).load().map(|p| p.head), last)
        }
    };
    let segments = SegmentTable::new();
    let (index, writer) = recover_segments(options, opened, index, resume, &segments, &mut report, bound)?;
    report.events = index.next_position();
    report.elapsed = started.elapsed();
    Ok(Recovered { log_id, segments, index, writer, report })
}

/// How far a reader may read the last segment: to the writer's head when it is in this segment (at least the
/// durable end), only the durable part when the head is elsewhere (a roll in progress), and every valid frame
/// when no writer published a head (nobody is appending).
pub(super) fn tail_bound(head: Option<Head>, last: &Segment) -> u64 {
    let durable = last.slot.map_or(SEGMENT_HEADER_LEN, |s| s.durable_end);
    match head {
        None => last.map.len(),
        Some(h) if h.seq == last.header.seq => h.end.max(durable).min(last.map.len()),
        // Rolled since the listing: the slot read at open may be older than the one naming the segment's
        // final end, which was durable before the head moved on; read it again.
        Some(h) if h.seq > last.header.seq => {
            DurableSlot::newest(&last.map.header_copy()).map_or(durable, |s| s.durable_end.max(durable))
        }
        Some(_) => durable,
    }
}

/// A new, empty log: its first segment (number 0, base 0) and a writer.
pub(super) fn create_log(dir: &Path, options: Options, lock: File, started: Instant) -> Result<Inner> {
    let log_id = random_log_id();
    let first = SegmentName { base: 0, seq: 0 };
    let (seg, map) = Segment::create(dir, log_id, first, options.segment_size_bytes)?;
    let direct = matches!(options.durability, Durability::Always);
    let segments = SegmentTable::new();
    segments.push(Arc::clone(&seg.map))?;
    let mut index = Index::new(options.event_ids_remembered);
    index.push_segment(SegIndex::new(0, 0, SEGMENT_HEADER_LEN));
    let report =
        RecoveryReport { segments: 1, clean: true, elapsed: started.elapsed(), ..RecoveryReport::default() };
    let slot = DurableSlot { seq: 0, durable_end: SEGMENT_HEADER_LEN, next_position: 0, flags: 0 };
    let file = seg.file;
    let writer =
        Writer::new(0, 0, 0, map, SEGMENT_HEADER_LEN, 0, SEGMENT_HEADER_LEN, slot, false, (file, direct));
    let lock_path = dir.join(LOCK_FILE);
    let head = HeadPublisher::start(&lock, &lock_path, log_id, Head { seq: 0, end: SEGMENT_HEADER_LEN })?;
    let parts = Recovered { log_id, segments, index, writer: Some(writer), report };
    Ok(build_inner(dir, options, parts, HeadRole::Publisher(head), Some(lock)))
}

/// Opens every listed segment; the first one's log id is the reference.
pub(super) fn open_segments(listing: &Listing, writable: bool) -> Result<Vec<Segment>> {
    let n = listing.segments.len();
    let mut opened: Vec<Segment> = Vec::with_capacity(n);
    for (i, (name, path)) in listing.segments.iter().enumerate() {
        let last = i + 1 == n;
        let log_id = opened.first().map(|s| s.header.log_id);
        opened.push(Segment::open(path, *name, log_id, last, writable && last)?);
    }
    Ok(opened)
}

/// A reader's listing falls behind a live writer that rolls while the reader opens its segments one by one:
/// opens the segments listed since, until a listing shows none, so that the checkpoint (read next, and
/// possibly newer than the first listing) finds every segment it names. A segment that stops
/// being the last gets its newest slot read again: the one naming its final end came after the open.
fn catch_up(dir: &Path, opened: &mut Vec<Segment>) -> Result<()> {
    loop {
        let Some(last) = opened.last() else { return Ok(()) };
        let (seq, log_id) = (last.header.seq, last.header.log_id);
        let newer: Vec<(SegmentName, PathBuf)> =
            list(dir)?.segments.into_iter().filter(|(name, _)| name.seq > seq).collect();
        if newer.is_empty() {
            return Ok(());
        }
        for (name, path) in newer {
            if let Some(prev) = opened.last_mut() {
                prev.slot = DurableSlot::newest(&prev.map.header_copy());
            }
            opened.push(Segment::open(&path, name, Some(log_id), true, false)?);
        }
    }
}

/// Indexes the segments the checkpoint does not cover (sealed ones must be whole, up to their durable end),
/// recovers the last one and builds the writer.
pub(super) fn recover_segments(
    options: &Options,
    opened: Vec<Segment>,
    mut index: Index,
    resume: Option<Resume>,
    segments: &SegmentTable,
    report: &mut RecoveryReport,
    bound: u64,
) -> Result<(Index, Option<Writer>)> {
    debug_assert!(resume.is_none_or(|r| index.segments().last().is_some_and(|s| s.base == r.segment_base)));
    let n = opened.len();
    let mut writer = None;
    for (i, seg) in opened.into_iter().enumerate() {
        let last = i + 1 == n;
        let covered = index.segments().get(i).is_some();
        if !covered {
            if seg.header.base_position != index.next_position() {
                let kind = Corruption::SegmentGap {
                    base: seg.header.base_position,
                    expected: index.next_position(),
                };
                return Err(Error::corrupt(seg.path(), 32, kind));
            }
            index.push_segment(SegIndex::new(seg.header.base_position, seg.header.seq, SEGMENT_HEADER_LEN));
        }
        let slot_index = segments.push(Arc::clone(&seg.map))?;
        debug_assert_eq!(slot_index, i);
        let at = Place {
            slot: slot_index,
            seq: seg.header.seq,
            base: seg.header.base_position,
            from: index.segments()[i].end,
            capacity: seg.map.len(),
        };
        // Sealed segments fully covered by the checkpoint are trusted; the last covered one and the rest are read.
        if !last && covered && index.segments().get(i + 1).is_some() {
            // A reader mapped a segment that was last when it listed as a following map, with nothing
            // revealed; the checkpoint vouches for its frames.
            seg.map.reveal(index.segments()[i].end);
            continue;
        }
        report.segments_scanned += 1;
        if last {
            writer = recover_last(options, &seg, at, &mut index, report, bound)?;
        } else {
            scan_sealed(&seg, at, &mut index, report)?;
        }
    }
    Ok((index, writer))
}

/// Recovers the last segment: index its committed batches, judge the tail (torn, or corruption below the
/// durable point), zero it when writable, and build the writer. A reader reads no further than `bound`
/// (see [`tail_bound`]).
pub(super) fn recover_last(
    options: &Options,
    seg: &Segment,
    at: Place,
    index: &mut Index,
    report: &mut RecoveryReport,
    bound: u64,
) -> Result<Option<Writer>> {
    let path = seg.path();
    let cap = seg.map.len();
    let durable = seg.slot.map_or(SEGMENT_HEADER_LEN, |s| s.durable_end);
    let clean_slot = seg.slot.is_some_and(|s| s.flags & SLOT_FLAG_CLEAN != 0);
    let sealed_slot = seg.slot.is_some_and(|s| s.flags & SLOT_FLAG_SEALED != 0);
    if sealed_slot && options.recovery == Recovery::Strict {
        return Err(Error::corrupt(&path, 64, Corruption::SuccessorMissing { seq: u64::from(at.seq) + 1 }));
    }
    let mut map_writer = if options.read_only { None } else { seg.map.take_writer() };
    let outside = || Error::corrupt(&path, at.from, Corruption::ResumeOutside { from: at.from });
    if at.from > cap || at.from < SEGMENT_HEADER_LEN {
        return Err(outside());
    }
    // The whole segment past its header: the walk starts at `at.from`, and name definitions before it are
    // read where events refer to them.
    let bytes: &[u8] = match &map_writer {
        Some(w) => w.uncommitted(SEGMENT_HEADER_LEN, cap),
        None => seg.map.final_bytes(SEGMENT_HEADER_LEN, bound.min(cap).max(at.from)).ok_or_else(outside)?,
    };
    let scan = index_frames(bytes, at, seg.map.verified(), index, report);
    let committed_end = scan.committed_end;
    if committed_end < durable && options.recovery == Recovery::Strict {
        let kind = match scan.reason {
            Some(fault) => Corruption::Frame { fault, region: Region::BelowDurable { durable_end: durable } },
            None => Corruption::EndsBelowDurable { frames_end: committed_end, durable_end: durable },
        };
        return Err(Error::corrupt(&path, scan.stop, kind));
    }
    report.clean = clean_slot && scan.reason.is_none() && scan.stop == durable && committed_end == durable;
    index.set_segment_end(at.slot, committed_end);
    let Some(mut w) = map_writer.take() else {
        seg.map.reveal(committed_end);
        seg.map.mark_verified(at.from, committed_end);
        return Ok(None);
    };
    let mut synced_end = if report.clean { committed_end } else { durable.min(committed_end) };
    if !report.clean && synced_end < committed_end {
        redirty(&mut w, synced_end, committed_end);
    }
    if !report.clean && cut_torn_tail(seg, &mut w, committed_end, report)? {
        synced_end = committed_end;
    }
    w.publish(committed_end);
    if at.from == SEGMENT_HEADER_LEN {
        w.map().mark_verified(SEGMENT_HEADER_LEN, committed_end);
    }
    let slot_rec = seg.slot.unwrap_or(DurableSlot {
        seq: 0,
        durable_end: SEGMENT_HEADER_LEN,
        next_position: seg.header.base_position,
        flags: 0,
    });
    // A CLEAN or SEALED slot must be replaced before the first new frame is stored (see `mark_dirty`).
    let replace_slot = clean_slot || sealed_slot;
    let next = index.next_position();
    let (slot, seq, base) = (at.slot, at.seq, at.base);
    let file = seg.file.try_clone().map_err(|e| Error::io("open segment", &path, e))?;
    let io = (file, matches!(options.durability, Durability::Always));
    Ok(Some(Writer::new(slot, seq, base, w, committed_end, next, synced_end, slot_rec, replace_slot, io)))
}

/// The frames past the durable point were read from the page cache, but after a failed fsync the kernel may
/// have marked pages clean that never reached the disk, and it would never write them again: a later sync
/// would then vouch for bytes the disk lacks. Touching every such page makes it dirty, so the next sync
/// writes what this open accepted.
pub(super) fn redirty(w: &mut MapWriter, synced_end: u64, committed_end: u64) {
    let first = (synced_end / 4096 * 4096).max(SEGMENT_HEADER_LEN);
    for page in w.tail_mut(first, committed_end).chunks_mut(4096) {
        let b = std::hint::black_box(page[0]);
        page[0] = b;
    }
}

/// Zeroes everything non-zero past the end of the log and syncs; true if there was anything. A crash can
/// leave later pages of an unsynced write on disk while earlier ones were lost, and such stale frames must
/// never reappear behind new ones. Only ranges the file system reports as data can hold anything:
/// preallocated blocks never written are holes that read as zeros, so a 64 MiB segment with a short tail
/// costs a few pages, not a scan.
pub(super) fn cut_torn_tail(
    seg: &Segment,
    w: &mut MapWriter,
    committed_end: u64,
    report: &mut RecoveryReport,
) -> Result<bool> {
    let path = seg.path();
    let cap = seg.map.len();
    let ranges = sys::data_ranges(&seg.file, &path, committed_end, cap)
        .map_err(|e| Error::io("find written ranges", &path, e))?;
    let mut discarded_to = committed_end;
    for (from, to) in ranges {
        if let Some(zeroed_to) = w.zero(from.max(committed_end), to) {
            discarded_to = zeroed_to;
        }
    }
    if discarded_to == committed_end {
        return Ok(false);
    }
    report.torn_tail = Some((path.clone(), committed_end, discarded_to - committed_end));
    w.map().flush_range(0, cap).map_err(|e| Error::io("sync after cutting the torn tail", &path, e))?;
    Ok(true)
}

pub(super) fn random_log_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for (i, half) in id.chunks_mut(8).enumerate() {
        // RandomState is seeded from the OS's randomness; mixing in time and pid keeps ids distinct even if two
        // states started equal.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        h.write_u32(std::process::id());
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}
