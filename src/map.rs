//! Memory maps of segment files: the only place that turns mapped memory into Rust references.
//!
//! # Safety argument
//!
//! A [`SegmentMap`] maps a whole segment file (shared, page-aligned base). Soundness rests on these invariants,
//! each enforced here or by the directory lock:
//!
//! 1. **Committed bytes are immutable.** `committed` only grows. Shared slices are handed out only for
//!    `[SEGMENT_HEADER_LEN, committed)`, and no code in this process writes there again: the one
//!    [`MapWriter`] (at most one per map, checked with `writer_taken`) asserts every store is at or past
//!    `committed`, except the durable slots in the header, which lie below `SEGMENT_HEADER_LEN` and are never
//!    handed out as slices.
//! 2. **The file is never shorter than the map.** Segments are preallocated to their full length before they
//!    are mapped, and foldlog never truncates a segment file; torn tails are zeroed in place. Other processes
//!    are kept out by the exclusive directory lock; someone who ignores the lock and truncates or rewrites a
//!    mapped file is out of scope (SECURITY.md), as memmap2 documents it must be.
//! 3. **Maps live as long as any borrow.** Slices borrow `&self`; the store keeps every map alive until it is
//!    dropped, so borrowed events cannot outlive their bytes.
//! 4. **Publication is ordered.** The writer stores bytes, then publishes `committed` with `Release`; readers
//!    load it with `Acquire` before slicing, so they never see a half-written frame.
//! 5. **Other processes read only what the writer published.** A read-only handle beside a live writer
//!    (in another process) maps the same files. The writer stores a frame's bytes, then the head word in
//!    `LOCK` ([`HeadMap`], `Release`); the reader loads the head word (`Acquire`) and reads frames only
//!    below it ([`SegmentMap::final_bytes`]). Bytes below the head are final: the writer never stores
//!    there again (invariant 1, in its process), and a later writer's recovery only zeroes bytes past the
//!    last valid frame, which is at or past every head published before. A read-only map of the last
//!    segment therefore starts with nothing committed and grows ([`SegmentMap::reveal`]) as the reader
//!    indexes what the head allows.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::checked::CheckedFrames;
use crate::format::{head, SegmentName, SEGMENT_HEADER_LEN};
use crate::io as sys;
use crate::record::SegView;

/// A mapped segment file whose committed prefix may be borrowed by any number of readers.
pub(crate) struct SegmentMap {
    raw: MmapRaw,
    len: u64,
    committed: AtomicU64,
    /// Frames in `[SEGMENT_HEADER_LEN, verified)` passed their CRC check in this process. Only grows, and
    /// only from a frame boundary to a frame boundary.
    verified: AtomicU64,
    /// Frames above `verified` that passed their CRC check in this process: what reads through the index
    /// checked.
    checked: CheckedFrames,
    writer_taken: AtomicBool,
    /// Mapped without write access: no `MapWriter`, and `final_bytes` may read past `committed`.
    read_only: bool,
    /// The segment's number and base position, which its frames' CRCs and positions are relative to.
    name: SegmentName,
    path: PathBuf,
    /// macOS: `msync` reaches the drive's cache only; a flush also needs `F_FULLFSYNC` on the file.
    #[cfg(target_vendor = "apple")]
    file: Option<File>,
}

impl std::fmt::Debug for SegmentMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentMap")
            .field("path", &self.path)
            .field("committed", &self.committed())
            .finish_non_exhaustive()
    }
}

impl SegmentMap {
    /// Maps `file` (of exactly `len` bytes) read-only; everything is committed and nothing can be written.
    pub fn read_only(file: &File, path: &Path, name: SegmentName, len: u64) -> io::Result<SegmentMap> {
        sys::before_map(path)?;
        let raw = MmapOptions::new().len(usize_len(len)?).map_raw_read_only(file)?;
        Ok(SegmentMap::new(raw, path, name, len, len, true))
    }

    /// Maps `file` (of exactly `len` bytes) read-only with nothing committed: the last segment of a
    /// read-only handle, which a writer in another process may still be appending to. The reader reveals
    /// frames as it indexes them.
    pub fn following(file: &File, path: &Path, name: SegmentName, len: u64) -> io::Result<SegmentMap> {
        sys::before_map(path)?;
        let raw = MmapOptions::new().len(usize_len(len)?).map_raw_read_only(file)?;
        Ok(SegmentMap::new(raw, path, name, len, SEGMENT_HEADER_LEN, true))
    }

    /// Maps `file` (of exactly `len` bytes) for writing; only the header counts as committed until the writer
    /// publishes more.
    pub fn writable(file: &File, path: &Path, name: SegmentName, len: u64) -> io::Result<SegmentMap> {
        sys::before_map(path)?;
        let raw = MmapOptions::new().len(usize_len(len)?).map_raw(file)?;
        #[allow(unused_mut, reason = "only macOS keeps the file")]
        let mut map = SegmentMap::new(raw, path, name, len, SEGMENT_HEADER_LEN, false);
        #[cfg(target_vendor = "apple")]
        {
            map.file = Some(file.try_clone()?);
        }
        Ok(map)
    }

    fn new(
        raw: MmapRaw,
        path: &Path,
        name: SegmentName,
        len: u64,
        committed: u64,
        read_only: bool,
    ) -> SegmentMap {
        assert!(len >= SEGMENT_HEADER_LEN && raw.len() as u64 == len);
        assert_eq!(raw.as_ptr() as usize % 16, 0, "map base must be aligned for zero-copy payloads");
        SegmentMap {
            raw,
            len,
            committed: AtomicU64::new(committed),
            verified: AtomicU64::new(SEGMENT_HEADER_LEN),
            checked: CheckedFrames::new(len),
            writer_taken: AtomicBool::new(read_only),
            read_only,
            name,
            path: path.to_path_buf(),
            #[cfg(target_vendor = "apple")]
            file: None,
        }
    }

    /// The mapped file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the map (the segment's capacity).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// End of the committed (immutable, readable) region.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// End of the prefix of frames whose CRC this process has checked.
    pub fn verified(&self) -> u64 {
        self.verified.load(Ordering::Acquire)
    }

    /// Records that the frames in `[from, to)` passed their CRC check; extends the verified prefix only if it
    /// ends at `from` (checks elsewhere are not contiguous and are simply not remembered).
    pub fn mark_verified(&self, from: u64, to: u64) {
        debug_assert!(from <= to && to <= self.committed());
        let _ = self.verified.compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The segment's number and base position.
    pub fn name(&self) -> SegmentName {
        self.name
    }

    /// The committed frames, up to `end` at most (a sealed segment's end), for decoding. Unless
    /// `crc_every_read`, frames below the verified watermark, and those the map remembers checking, skip their
    /// CRC, and the view remembers the frames it checks.
    pub fn view(&self, end: u64, crc_every_read: bool) -> SegView<'_> {
        self.view_with(end, crc_every_read, true)
    }

    /// As [`SegmentMap::view`], for a walk over consecutive frames from `from`: one that starts at the verified
    /// watermark extends it as it goes (`mark_verified`), and has no use for remembering frames one by one.
    pub fn walk_view(&self, end: u64, crc_every_read: bool, from: u64) -> SegView<'_> {
        self.view_with(end, crc_every_read, from > self.verified())
    }

    fn view_with(&self, end: u64, crc_every_read: bool, remember: bool) -> SegView<'_> {
        let bytes = self.committed_from(SEGMENT_HEADER_LEN).unwrap_or_default();
        let bound = usize::try_from(end.saturating_sub(SEGMENT_HEADER_LEN)).unwrap_or(usize::MAX);
        SegView {
            bytes: bytes.get(..bound).unwrap_or(bytes),
            seq: self.name.seq,
            base: self.name.base,
            checked_below: if crc_every_read { 0 } else { self.verified() },
            checked: (!crc_every_read && remember).then_some(&self.checked),
        }
    }

    /// The committed bytes `[start, committed)`, or `None` if `start` is outside the frame region.
    pub fn committed_from(&self, start: u64) -> Option<&[u8]> {
        let end = self.committed();
        if start < SEGMENT_HEADER_LEN || start > end {
            return None;
        }
        // SAFETY: `SEGMENT_HEADER_LEN <= start <= end <= len`, so the range lies inside the live mapping
        // (invariant 2), and bytes below `committed` are never written again (invariant 1), so a shared
        // slice cannot alias a store. The borrow of `self` keeps the mapping alive (invariant 3).
        Some(unsafe {
            std::slice::from_raw_parts(self.raw.as_ptr().add(start as usize), (end - start) as usize)
        })
    }

    /// The bytes `[start, end)` of a read-only map, committed or not, for a reader that knows them final:
    /// below the head a live writer published, or in a store no writer has open. `None` outside the frame
    /// region.
    pub fn final_bytes(&self, start: u64, end: u64) -> Option<&[u8]> {
        if !self.read_only || start < SEGMENT_HEADER_LEN || start > end || end > self.len {
            return None;
        }
        // SAFETY: `SEGMENT_HEADER_LEN <= start <= end <= len`: inside the live mapping (invariant 2). The map is
        // read-only, so nothing in this process stores to it, and the caller reads only bytes no writer in
        // another process stores to again (invariant 5).
        Some(unsafe {
            std::slice::from_raw_parts(self.raw.as_ptr().add(start as usize), (end - start) as usize)
        })
    }

    /// Makes `[committed, end)` of a read-only map readable: frames a reader indexed from
    /// [`SegmentMap::final_bytes`]. Only grows.
    pub fn reveal(&self, end: u64) {
        assert!(self.read_only && end <= self.len, "revealed past the map, or through a writable one");
        self.committed.fetch_max(end, Ordering::AcqRel);
    }

    /// A copy of the segment header (its durable slots included), read while a writer in another process
    /// may be storing a slot: a torn slot fails its CRC and the other slot is used.
    pub fn header_copy(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: the header lies inside the mapping (`len >= SEGMENT_HEADER_LEN`, checked in `new`), and
            // is never handed out as a slice; a volatile byte read of memory another process may store to
            // copies whatever is there, which the slot CRCs then judge.
            *b = unsafe { std::ptr::read_volatile(self.raw.as_ptr().add(i)) };
        }
        out
    }

    /// Takes the one writer of this map; `None` if it was taken already or the map is read-only.
    pub fn take_writer(self: &Arc<SegmentMap>) -> Option<MapWriter> {
        let taken = self.writer_taken.swap(true, Ordering::AcqRel);
        (!taken).then(|| MapWriter { map: Arc::clone(self) })
    }

    /// `msync(MS_SYNC)` of the pages covering `[offset, offset + len)`.
    pub fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        sys::sync_with(&self.path, (offset, offset.saturating_add(len)), || {
            self.raw.flush_range(offset as usize, len as usize)?;
            #[cfg(target_vendor = "apple")]
            if let Some(file) = &self.file {
                sys::full_sync(file)?;
            }
            Ok(())
        })
    }
}

fn usize_len(len: u64) -> io::Result<usize> {
    usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

/// The single writer of a [`SegmentMap`]: stores bytes past the committed end and publishes them.
pub(crate) struct MapWriter {
    map: Arc<SegmentMap>,
}

impl MapWriter {
    /// The map written to.
    pub fn map(&self) -> &Arc<SegmentMap> {
        &self.map
    }

    /// The uncommitted bytes `[start, end)`, for recovery to inspect before it publishes anything.
    pub fn uncommitted(&self, start: u64, end: u64) -> &[u8] {
        let committed = self.map.committed();
        assert!(committed <= start && start <= end && end <= self.map.len, "uncommitted range out of bounds");
        // SAFETY: the range is inside the mapping (invariant 2) and at or past `committed`, where no reader
        // holds a slice (invariant 1). Only this writer stores there, and storing needs `&mut self`, which
        // cannot coexist with this shared borrow.
        unsafe {
            std::slice::from_raw_parts(self.map.raw.as_ptr().add(start as usize), (end - start) as usize)
        }
    }

    /// Mutable bytes `[start, end)` past the committed end, for encoding frames in place. What is stored here
    /// counts as written (for the persistence recorder) only once [`MapWriter::commit_frames`] says so, or is
    /// undone with [`MapWriter::zero`]; a store that leaves the bytes as they were (`redirty`) needs neither.
    pub fn tail_mut(&mut self, start: u64, end: u64) -> &mut [u8] {
        let committed = self.map.committed();
        assert!(committed <= start && start <= end && end <= self.map.len, "tail range out of bounds");
        // SAFETY: as in `uncommitted`; the `&mut self` borrow makes this the only reference to these bytes.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.map.raw.as_mut_ptr().add(start as usize),
                (end - start) as usize,
            )
        }
    }

    /// The frames encoded into `[start, end)` through [`MapWriter::tail_mut`] are whole: records them as
    /// written (the persistence recorder, `testing` only) and returns them, for the caller to index before
    /// it syncs and publishes them.
    pub fn commit_frames(&mut self, start: u64, end: u64) -> &[u8] {
        sys::after_map_write(&self.map.path, start, self.uncommitted(start, end));
        self.uncommitted(start, end)
    }

    /// Zeroes every 4 KiB page-aligned chunk of `[start, end)` that holds a non-zero byte, recording each as
    /// written; returns the end of the last chunk zeroed, or `None` if all was zero already.
    pub fn zero(&mut self, start: u64, end: u64) -> Option<u64> {
        let mut zeroed_to = None;
        let mut at = start;
        while at < end {
            let chunk_end = ((at / 4096 + 1) * 4096).min(end);
            if self.uncommitted(at, chunk_end).iter().any(|&b| b != 0) {
                self.tail_mut(at, chunk_end).fill(0);
                sys::after_map_write(&self.map.path, at, self.uncommitted(at, chunk_end));
                zeroed_to = Some(chunk_end);
            }
            at = chunk_end;
        }
        zeroed_to
    }

    /// Stores `bytes` into the header (durable slots), which readers never borrow.
    pub fn write_header(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let end = offset + bytes.len() as u64;
        assert!(end <= SEGMENT_HEADER_LEN, "header write past the header");
        sys::before_map_write(&self.map.path)?;
        // SAFETY: `[offset, end)` lies in the header, inside the mapping; `committed_from` never hands out
        // slices below SEGMENT_HEADER_LEN, and `&mut self` excludes other writers.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.raw.as_mut_ptr().add(offset as usize),
                bytes.len(),
            );
        }
        sys::after_map_write(&self.map.path, offset, bytes);
        Ok(())
    }

    /// Makes `[old committed, end)` readable. The bytes must be final: they are never written again.
    pub fn publish(&mut self, end: u64) {
        let old = self.map.committed();
        assert!(old <= end && end <= self.map.len, "committed watermark must only grow");
        self.map.committed.store(end, Ordering::Release);
    }

    /// As [`MapWriter::publish`], for frames whose CRC this process computed or checked itself.
    pub fn publish_verified(&mut self, end: u64) {
        let old = self.map.committed();
        self.publish(end);
        self.map.mark_verified(old, end);
    }
}

/// The head record at the start of `LOCK` (docs/format.md, "The head record"), mapped shared: the writer
/// stores the head word after every commit (invariant 5) and the durable word after every sync; readers in
/// other processes load them. The durable word is only a number to readers: they never slice memory by it.
pub(crate) struct HeadMap {
    raw: MmapRaw,
    writable: bool,
}

impl HeadMap {
    /// Maps the record of a `LOCK` file at least [`head::LEN`] bytes long, for storing.
    pub fn writable(file: &File, path: &Path) -> io::Result<HeadMap> {
        sys::before_map(path)?;
        let raw = MmapOptions::new().len(head::LEN).map_raw(file)?;
        Ok(HeadMap::new(raw, true))
    }

    /// Maps the record of a `LOCK` file at least [`head::LEN`] bytes long, for loading only.
    pub fn read_only(file: &File, path: &Path) -> io::Result<HeadMap> {
        sys::before_map(path)?;
        let raw = MmapOptions::new().len(head::LEN).map_raw_read_only(file)?;
        Ok(HeadMap::new(raw, false))
    }

    fn new(raw: MmapRaw, writable: bool) -> HeadMap {
        assert!(raw.len() >= head::LEN && (raw.as_ptr() as usize).is_multiple_of(8));
        HeadMap { raw, writable }
    }

    /// The atomic word at `at`: [`head::HEAD`] or [`head::DURABLE`].
    fn word(&self, at: Range<usize>) -> &AtomicU64 {
        assert!(at == head::HEAD || at == head::DURABLE, "only the record's two words are atomics");
        // SAFETY: both words lie inside the mapping (`len >= head::LEN`, checked in `new`) and are 8-byte
        // aligned (page-aligned base, offsets multiples of 8, asserted in format.rs). Every access to these
        // 8 bytes, in any process, is through this atomic; the reference borrows `self`, which keeps the
        // mapping alive.
        #[expect(clippy::cast_ptr_alignment, reason = "8-byte aligned: see the SAFETY paragraph above")]
        unsafe {
            &*self.raw.as_ptr().add(at.start).cast::<AtomicU64>()
        }
    }

    /// The head word (`Acquire`: the frames below it are visible once it is).
    pub fn load(&self) -> u64 {
        self.word(head::HEAD).load(Ordering::Acquire)
    }

    /// Publishes a head word (`Release`: after the frames below it). Writable maps only.
    pub fn store(&self, word: u64) {
        assert!(self.writable, "head stored through a read-only map");
        self.word(head::HEAD).store(word, Ordering::Release);
    }

    /// The durable word: a position below which every event is durable (`Acquire`, paired with the store).
    pub fn load_durable(&self) -> u64 {
        self.word(head::DURABLE).load(Ordering::Acquire)
    }

    /// Publishes the durable word (`Release`: after the sync that made it true); it never moves back, as two
    /// threads may publish (the writer and the group-commit thread). Writable maps only.
    pub fn store_durable(&self, position: u64) {
        assert!(self.writable, "durable position stored through a read-only map");
        self.word(head::DURABLE).fetch_max(position, Ordering::Release);
    }

    /// A copy of the fixed bytes before the head word (magic, version, log id).
    pub fn fixed(&self) -> [u8; head::HEAD.start] {
        let mut out = [0u8; head::HEAD.start];
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the mapping (checked in `new`); a volatile read copies what another process may
            // be storing, and the caller compares the copy with what it expects.
            *b = unsafe { std::ptr::read_volatile(self.raw.as_ptr().add(i)) };
        }
        out
    }

    /// Stores the fixed bytes, only where they differ (a reader's copy of an unchanged record stays whole).
    pub fn set_fixed(&self, fixed: &[u8; head::HEAD.start]) {
        assert!(self.writable, "head stored through a read-only map");
        for (i, &b) in fixed.iter().enumerate() {
            // SAFETY: inside a writable mapping (checked in `new` and above), below the head word, and never
            // borrowed as a slice; volatile, because readers in other processes copy these bytes.
            unsafe {
                let p = self.raw.as_mut_ptr().add(i);
                if std::ptr::read_volatile(p) != b {
                    std::ptr::write_volatile(p, b);
                }
            }
        }
    }
}

/// Asks the CPU to bring the cache line holding `items[at]` in ahead of a read (a hint; nothing when `at` is
/// out of bounds or the target has no prefetch instruction). Readers use it for the frames and name
/// definitions a few events ahead, which sit at places in the map the hardware prefetcher cannot guess, and for
/// the index entries that locate them.
#[inline]
pub(crate) fn prefetch<T>(items: &[T], at: usize) {
    let Some(byte) = items.get(at) else { return };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint that never faults and has no effect on memory; the pointer comes from a
    // live reference in any case (into the map, or into the index's lists). SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(byte).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}
