//! The index checkpoint file: encoding an index, and decoding a checkpoint's header and directory (its lists
//! stay on disk, see `saved_list.rs`). Every byte decoded here came from disk: lengths are checked before
//! use, and anything that does not fit is a [`CheckpointRefusal`], never a panic.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::path::PathBuf;
use std::sync::Arc;

use byteorder::{ByteOrder, LittleEndian as LE};

use super::saved_list::{put_list, put_list_keeping, Item, SavedList, Source, SAVED_CHUNK_ITEMS};
use super::saved_table::{entry_min, SavedTable};
use super::{Index, Labels, Postings, SavedPositions, SegIndex, Stale, StreamIndex};
use crate::corruption::CheckpointRefusal;
use crate::error::{Error, Result};
use crate::format::{
    ckpt, event_id_bytes, event_id_from_bytes, CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC, CHECKPOINT_VERSION,
    STREAM_VERSION_MAX,
};
use crate::io as sys;

/// Where a checkpoint resumes the scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    pub segment_base: u64,
    pub offset: u64,
}

/// A checkpoint as encoded: its header, directory and lists, which make the file one after the other (kept
/// apart so that writing it copies none of them again).
pub(crate) struct Encoded {
    head: [u8; CHECKPOINT_HEADER_LEN],
    dir: Vec<u8>,
    data: Vec<u8>,
    placed: Placed,
}

/// Where the encoder put the lists of the index's own (not saved) segments, and of its streams and labels
/// that fill a chunk, by offset in the data section, for [`adopt_checkpoint`].
#[derive(Default)]
struct Placed {
    width: u32,
    /// Per segment, in order.
    segments: Vec<WrittenAt>,
    /// Streams of the index's own map that fill a chunk, by id (sorted).
    streams: Vec<(Box<str>, WrittenAt)>,
    /// Event types and tags whose lists fill a chunk, by name (sorted).
    types: Vec<(Box<str>, WrittenAt)>,
    tags: Vec<(Box<str>, WrittenAt)>,
}

/// Where a checkpoint this index wrote put one of its lists: the offset of its chunk table (in the data
/// section while encoding, in the file once adopted), its items then and the table's CRC. With the file
/// (`Index::written`) it is a saved list whose chunks the next checkpoint copies.
#[derive(Clone, Copy, Debug)]
pub(super) struct WrittenAt {
    at: u64,
    count: u64,
    crc: u32,
}

impl WrittenAt {
    /// Whether a list of `len` items can copy from here: lists only grow, so it always can; one that held
    /// fewer items than were written would be a bug, and is encoded instead of trusted.
    fn fits(&self, len: u64) -> bool {
        debug_assert!(self.count <= len, "a list shrank since it was written");
        self.count <= len
    }

    /// The list, in `source`, as a saved list.
    fn list<E: Item>(self, source: &Arc<Source>, limit: u64) -> SavedList<E> {
        SavedList::new(source, self.at, self.count, self.crc, limit)
    }

    /// The list of positions, in `source` written `width` bytes each.
    fn positions(self, (source, width): (&Arc<Source>, u32), limit: u64) -> SavedPositions {
        if width == NARROW {
            SavedPositions::Narrow(self.list(source, limit))
        } else {
            SavedPositions::Wide(self.list(source, limit))
        }
    }
}

/// The checkpoint `encoded`, just written at `path`, opened for the next checkpoint to copy from (see
/// [`adopt_checkpoint`]); `None` if it cannot be opened or is not the file written.
pub(crate) fn open_written(encoded: &Encoded, path: PathBuf) -> Option<Arc<Source>> {
    let file = sys::open(&path, false).ok()?;
    let len = file.metadata().ok()?.len();
    (len == encoded.len()).then(|| Arc::new(Source::new(file, path, len)))
}

/// Makes `index` remember where the checkpoint `encoded` (written and opened as `source` by [`open_written`],
/// and still there: the writer holds the directory) put its own lists, so that the next checkpoint copies
/// those that do not change instead of encoding them again. Without it (the file could not be opened) the
/// lists keep what they knew, and the next checkpoint encodes more.
pub(crate) fn adopt_checkpoint(index: &mut Index, encoded: &Encoded, source: Arc<Source>) {
    let data_start = (CHECKPOINT_HEADER_LEN + encoded.dir.len()) as u64;
    let placed = &encoded.placed;
    let in_file = |w: &WrittenAt| WrittenAt { at: data_start + w.at, ..*w };
    let find = |list: &[(Box<str>, WrittenAt)], name: &str| {
        list.binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .and_then(|i| list.get(i))
            .map(|(_, w)| in_file(w))
    };
    if placed.segments.len() == index.segments.len() {
        for (s, w) in index.segments.iter_mut().zip(&placed.segments) {
            s.written = Some(in_file(w));
        }
    } else {
        index.segments.iter_mut().for_each(|s| s.written = None);
    }
    for (id, s) in &mut index.streams {
        s.written = find(&placed.streams, id).map(Box::new);
    }
    for (labels, list) in [(&mut index.types, &placed.types), (&mut index.tags, &placed.tags)] {
        for (name, p) in labels.live_mut() {
            p.written = find(list, name).map(Box::new);
        }
    }
    index.written = Some((source, placed.width));
}

impl Encoded {
    /// The file's parts, in order.
    pub(crate) fn parts(&self) -> [&[u8]; 3] {
        [&self.head, &self.dir, &self.data]
    }

    /// The file's length.
    pub(crate) fn len(&self) -> u64 {
        (self.head.len() + self.dir.len() + self.data.len()) as u64
    }
}

/// Encodes a checkpoint of `index` (covering everything indexed) for log `log_id`, as the file's bytes.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn encode_checkpoint(index: &Index, log_id: [u8; 16]) -> Result<Vec<u8>, Stale> {
    encode_checkpoint_parts(index, log_id).map(|e| e.parts().concat())
}

/// Encodes a checkpoint of `index` (covering everything indexed) for log `log_id`. Reads any saved list it
/// has not loaded yet, so it fails with [`Stale`] if one of those is damaged.
pub(crate) fn encode_checkpoint_parts(index: &Index, log_id: [u8; 16]) -> Result<Encoded, Stale> {
    // Lists first (their offsets are needed by the directory), then the directory, then the header.
    // A capacity hint: 8 bytes an event indexed (docs/index.md); the events, not the next position, which
    // counts from the first segment's base.
    // Saved lists are copied (or read, where they changed) from the checkpoint that holds them, read whole
    // into memory once rather than chunk by chunk: the one opened always (after a reopen nearly all of its
    // lists are copied), the one last written when that saves reads (`worth_holding`).
    let _held = index.source.as_ref().and_then(Source::hold);
    let written = index.written.as_ref().map(|(source, width)| (source, *width));
    let _held_written =
        written.filter(|(source, _)| worth_holding(index, source)).and_then(|(s, _)| s.hold());
    let events: u64 = index.segments.iter().map(SegIndex::len).sum();
    let mut data = Vec::with_capacity(usize::try_from(events).map_or(0, |n| n.saturating_mul(8)));
    let width = position_width(index.next_position);
    let mut placed = Placed { width, ..Placed::default() };
    // A list's chunks that a checkpoint saved (the one the index was opened from, or the last one it wrote)
    // and that did not change since are copied as they are (their bytes do not depend on where they sit):
    // only what changed is decoded and encoded again.
    let seg_entries = put_segment_lists(&mut data, index, written.map(|w| w.0), &mut placed.segments)?;
    // Lists written at another width (the log passed 2^32 events since) cannot be copied.
    let written = written.filter(|&(_, w)| w == width);
    // The types' and tags' lists before the streams' (their order in the data section is free; the streams'
    // last keeps the tests that damage the file's last list aimed at a stream).
    let type_entries = put_label_lists(&mut data, &index.types, (width, written), &mut placed.types)?;
    let tag_entries = put_label_lists(&mut data, &index.tags, (width, written), &mut placed.tags)?;
    let stream_entries = put_stream_lists(&mut data, index, (width, written), &mut placed.streams)?;
    let mut dir = Vec::with_capacity(64 + index.stream_count() * 64);
    let w = &mut dir;
    put_u64(w, seg_entries.len() as u64);
    for &(s, start, crc) in &seg_entries {
        put_u64(w, s.base);
        put_u32(w, s.seq);
        put_u64(w, s.end);
        put_u64(w, s.len());
        put_u64(w, start);
        put_u32(w, crc);
    }
    put_u64(w, stream_entries.len() as u64);
    for &(id, s, start, crc) in &stream_entries {
        put_bytes(w, id.as_bytes());
        put_u64(w, s.first_version);
        put_u64(w, s.len());
        put_u64(w, start);
        put_u32(w, crc);
    }
    let mut consumers: Vec<(&Box<str>, &u64)> = index.consumers.iter().collect();
    consumers.sort_unstable();
    put_u64(w, consumers.len() as u64);
    for (name, &p) in consumers {
        put_bytes(w, name.as_bytes());
        put_u64(w, p);
    }
    put_u64(w, index.ids.order.len() as u64);
    for id in &index.ids.order {
        w.extend_from_slice(&event_id_bytes(*id));
        put_u64(w, index.ids.map.get(id).copied().unwrap_or(0));
    }
    for entries in [type_entries, tag_entries] {
        put_u64(w, entries.len() as u64);
        for (name, count, start, crc) in entries {
            put_bytes(w, name.as_bytes());
            put_u64(w, count);
            put_u64(w, start);
            put_u32(w, crc);
        }
    }
    let mut controls: Vec<_> = index.controls.iter().collect();
    controls.sort_unstable_by(|a, b| a.0.cmp(b.0));
    put_u64(w, controls.len() as u64);
    for (id, c) in controls {
        put_bytes(w, id.as_bytes());
        put_u64(w, c.truncate_before);
        put_u32(w, u32::from(c.deleted) * CONTROL_DELETED);
    }
    let last = index.segments.last();
    let mut out = [0u8; CHECKPOINT_HEADER_LEN];
    out[ckpt::MAGIC].copy_from_slice(&CHECKPOINT_MAGIC);
    LE::write_u32(&mut out[ckpt::VERSION], CHECKPOINT_VERSION);
    LE::write_u32(&mut out[ckpt::POSITION_WIDTH], width);
    out[ckpt::LOG_ID].copy_from_slice(&log_id);
    LE::write_u64(&mut out[ckpt::NEXT_POSITION], index.next_position);
    LE::write_u64(&mut out[ckpt::RESUME_SEGMENT], last.map_or(0, |s| s.base));
    LE::write_u64(&mut out[ckpt::RESUME_OFFSET], last.map_or(0, |s| s.end));
    LE::write_u64(&mut out[ckpt::DIR_LEN], dir.len() as u64);
    LE::write_u32(&mut out[ckpt::DIR_CRC], crc32fast::hash(&dir));
    let crc = crc32fast::hash(&out[..ckpt::HEADER_CRC.start]);
    LE::write_u32(&mut out[ckpt::HEADER_CRC], crc);
    Ok(Encoded { head: out, dir, data, placed })
}

/// Writes the segments' lists of frame offsets to `data`; returns each one's offset and CRC, and adds where
/// it put them to `placed`.
fn put_segment_lists<'i>(
    data: &mut Vec<u8>,
    index: &'i Index,
    written: Option<&Arc<Source>>,
    placed: &mut Vec<WrittenAt>,
) -> Result<Vec<(&'i SegIndex, u64, u32)>, Stale> {
    let mut entries = Vec::with_capacity(index.segments.len());
    for s in &index.segments {
        let written_list =
            // Offsets repeat where a gap frame stands for several positions.
            s.written
                .filter(|w| w.fits(s.len()))
                .zip(written)
                .map(|(w, source)| w.list(source, s.end).non_decreasing());
        let (start, crc) = match written_list.as_ref().or(s.saved.as_ref()) {
            Some(kept) => {
                let chunks = kept.chunks_kept(s.len());
                put_list_keeping(data, (kept, chunks), &s.offsets_from(chunks * SAVED_CHUNK_ITEMS)?)?
            }
            None => put_list(data, &s.offsets),
        };
        entries.push((s, start, crc));
        placed.push(WrittenAt { at: start, count: s.len(), crc });
    }
    Ok(entries)
}

/// Writes the streams' lists of positions to `data`, sorted by id so that the same index always gives the
/// same bytes; returns each one's id, index, offset and CRC, and adds where it put those of the index's own
/// map that fill a chunk to `placed` (the others are the opened checkpoint's, unchanged, or shorter lists,
/// which encode from memory faster than they copy: two reads, a CRC and a table per list).
fn put_stream_lists<'i>(
    data: &mut Vec<u8>,
    index: &'i Index,
    (width, written): (u32, Option<(&Arc<Source>, u32)>),
    placed: &mut Vec<(Box<str>, WrittenAt)>,
) -> Result<Vec<(&'i str, &'i StreamIndex, u64, u32)>, Stale> {
    let mut streams: Vec<(&str, &StreamIndex)> = index.streams().collect();
    streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut entries = Vec::with_capacity(streams.len());
    let mut narrow = Vec::new();
    let limit = index.next_position;
    for (id, s) in streams {
        let fits = s.written.as_deref().filter(|w| w.fits(s.len()));
        let written_list = fits.zip(written).map(|(w, source)| w.positions(source, limit));
        let kept = (written_list.as_ref().or(s.saved.as_ref()), s.len());
        let (start, crc) = put_positions(data, width, kept, &mut narrow, |first| s.positions_from(first))?;
        entries.push((id, s, start, crc));
        if s.len() >= SAVED_CHUNK_ITEMS && index.streams.contains_key(id) {
            placed.push((id.into(), WrittenAt { at: start, count: s.len(), crc }));
        }
    }
    Ok(entries)
}

/// Whether the checkpoint this index last wrote (`source`) is better read whole than list by list: when more
/// of the index's lists copy chunks from it than the file has pages. A list read alone costs two reads (chunk
/// table, chunks), the whole file a fresh page of memory per 4 KiB, which costs about as much here. Only
/// lists that fill a chunk are copied from it (segments, long streams, common types and tags), so it is
/// mostly read list by list.
fn worth_holding(index: &Index, source: &Source) -> bool {
    let copies =
        |w: Option<WrittenAt>, len: u64| w.is_some_and(|w| w.count == len || w.count >= SAVED_CHUNK_ITEMS);
    let lists = index.segments.iter().filter(|s| copies(s.written, s.len())).count()
        + index.streams.values().filter(|s| copies(s.written.as_deref().copied(), s.len())).count();
    lists as u64 > source.len() / 4096
}

/// Writes the lists of `labels` (event types or tags) to `data`, sorted by name so that the same index always
/// gives the same bytes; returns each one's directory entry: name, count, list offset and CRC. Adds where it
/// put those that fill a chunk to `placed` (shorter ones gain nothing from being copied).
fn put_label_lists<'l>(
    data: &mut Vec<u8>,
    labels: &'l Labels,
    (width, written): (u32, Option<(&Arc<Source>, u32)>),
    placed: &mut Vec<(Box<str>, WrittenAt)>,
) -> Result<Vec<(&'l str, u64, u64, u32)>, Stale> {
    let mut sorted: Vec<_> = labels.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut entries = Vec::with_capacity(sorted.len());
    let mut narrow = Vec::new();
    for (name, list) in sorted {
        let written_list = list
            .written
            .as_deref()
            .filter(|w| w.fits(list.len()))
            .zip(written)
            .map(|(w, source)| w.positions(source, u64::MAX));
        let whole = (written_list.as_ref().or(list.saved_list()), list.len());
        let (start, crc) =
            put_positions(data, width, whole, &mut narrow, |first| list.positions_from(first))?;
        entries.push((name, list.len(), start, crc));
        if list.len() >= SAVED_CHUNK_ITEMS {
            placed.push((name.into(), WrittenAt { at: start, count: list.len(), crc }));
        }
    }
    Ok(entries)
}

/// Writes a list of `len` positions (a stream's, a type's or a tag's) at `width` bytes each, keeping the
/// chunks of its saved part that did not change ([`SavedList::chunks_kept`]) when they were saved at the same
/// width; `from(i)` gives its positions from the `i`-th on. `narrow` is scratch space.
fn put_positions(
    data: &mut Vec<u8>,
    width: u32,
    (saved, len): (Option<&SavedPositions>, u64),
    narrow: &mut Vec<u32>,
    from: impl FnOnce(u64) -> Result<Vec<u64>, Stale>,
) -> Result<(u64, u32), Stale> {
    let mut narrowed = |positions: Vec<u64>| {
        narrow.clear();
        narrow.extend(positions.iter().filter_map(|&p| u32::try_from(p).ok()));
    };
    match saved {
        Some(SavedPositions::Narrow(kept)) if width == NARROW => {
            let chunks = kept.chunks_kept(len);
            narrowed(from(chunks * SAVED_CHUNK_ITEMS)?);
            put_list_keeping(data, (kept, chunks), narrow)
        }
        Some(SavedPositions::Wide(kept)) if width == WIDE => {
            let chunks = kept.chunks_kept(len);
            put_list_keeping(data, (kept, chunks), &from(chunks * SAVED_CHUNK_ITEMS)?)
        }
        _ if width == NARROW => {
            narrowed(from(0)?);
            Ok(put_list(data, narrow))
        }
        _ => Ok(put_list(data, &from(0)?)),
    }
}

/// A stream-control entry's flag: the stream is deleted.
const CONTROL_DELETED: u32 = 1;

/// Stream positions saved as u32 (every position of the log is below 2^32).
pub(super) const NARROW: u32 = 4;
/// Stream positions saved as u64.
const WIDE: u32 = 8;

/// The bytes per saved stream position for a log whose next position is `next`: 4 while every position
/// fits, which halves the checkpoint's largest part.
fn position_width(next: u64) -> u32 {
    if next <= 1 << 32 {
        NARROW
    } else {
        WIDE
    }
}

pub(super) fn put_u64(w: &mut Vec<u8>, v: u64) {
    let mut b = [0u8; 8];
    LE::write_u64(&mut b, v);
    w.extend_from_slice(&b);
}

pub(super) fn put_u32(w: &mut Vec<u8>, v: u32) {
    let mut b = [0u8; 4];
    LE::write_u32(&mut b, v);
    w.extend_from_slice(&b);
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(
        w,
        u32::try_from(b.len()).expect("names are checked against NAME_BYTES_MAX before they are stored"),
    );
    w.extend_from_slice(b);
}

/// A bounded reader over checkpoint bytes: every length is checked against what is left before use.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.b.split_at_checked(n)?;
        self.b = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(LE::read_u32)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(LE::read_u64)
    }
    /// A count of items of at least `item_len` bytes each, refused if the rest cannot hold that many.
    fn count(&mut self, item_len: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n <= self.b.len() / item_len.max(1)).then_some(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Opens a checkpoint file and decodes its header and directory (lists stay on disk until needed).
/// `Ok(None)` if there is no checkpoint; `Err(reason)` if it is damaged, foreign or from another version.
pub(crate) fn open_checkpoint(
    path: PathBuf,
    log_id: [u8; 16],
    ids_capacity: usize,
) -> Result<Option<std::result::Result<(Index, Resume), CheckpointRefusal>>> {
    let file = match sys::open(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open checkpoint", path, e)),
    };
    let len = file.metadata().map_err(|e| Error::io("stat checkpoint", &path, e))?.len();
    let mut head = [0u8; CHECKPOINT_HEADER_LEN];
    if len < CHECKPOINT_HEADER_LEN as u64 {
        return Ok(Some(Err(CheckpointRefusal::Short)));
    }
    sys::read_at(&file, &path, 0, &mut head).map_err(|e| Error::io("read checkpoint", &path, e))?;
    let dir_len = LE::read_u64(&head[ckpt::DIR_LEN]);
    if dir_len > len - CHECKPOINT_HEADER_LEN as u64 {
        return Ok(Some(Err(CheckpointRefusal::DirectoryPastEnd)));
    }
    let Ok(dir_len) = usize::try_from(dir_len) else {
        return Ok(Some(Err(CheckpointRefusal::DirectoryPastEnd)));
    };
    let mut dir = vec![0u8; dir_len];
    sys::read_at(&file, &path, CHECKPOINT_HEADER_LEN as u64, &mut dir)
        .map_err(|e| Error::io("read checkpoint", &path, e))?;
    let source = Arc::new(Source::new(file, path, len));
    Ok(Some(decode_checkpoint(&head, &dir, source, log_id, ids_capacity)))
}

/// Checks a checkpoint header (magic, CRC, version, log id, the directory's length and CRC); returns the
/// position it covers up to and where the scan resumes.
fn decode_checkpoint_header(
    h: &[u8; CHECKPOINT_HEADER_LEN],
    dir: &[u8],
    log_id: [u8; 16],
) -> std::result::Result<(u64, Resume, u32), CheckpointRefusal> {
    if h[ckpt::MAGIC] != CHECKPOINT_MAGIC {
        return Err(CheckpointRefusal::BadMagic);
    }
    if crc32fast::hash(&h[..ckpt::HEADER_CRC.start]) != LE::read_u32(&h[ckpt::HEADER_CRC]) {
        return Err(CheckpointRefusal::HeaderChecksum);
    }
    if LE::read_u32(&h[ckpt::VERSION]) != CHECKPOINT_VERSION {
        return Err(CheckpointRefusal::Version { found: LE::read_u32(&h[ckpt::VERSION]) });
    }
    if h[ckpt::LOG_ID] != log_id {
        return Err(CheckpointRefusal::ForeignLog);
    }
    let next_position = LE::read_u64(&h[ckpt::NEXT_POSITION]);
    let width = LE::read_u32(&h[ckpt::POSITION_WIDTH]);
    if width != position_width(next_position) {
        return Err(CheckpointRefusal::DirectoryMalformed);
    }
    let resume = Resume {
        segment_base: LE::read_u64(&h[ckpt::RESUME_SEGMENT]),
        offset: LE::read_u64(&h[ckpt::RESUME_OFFSET]),
    };
    if dir.len() as u64 != LE::read_u64(&h[ckpt::DIR_LEN])
        || crc32fast::hash(dir) != LE::read_u32(&h[ckpt::DIR_CRC])
    {
        return Err(CheckpointRefusal::DirectoryChecksum);
    }
    Ok((next_position, resume, width))
}

/// Decodes and checks a checkpoint's header and directory; lists are read later from `source`.
pub(crate) fn decode_checkpoint(
    h: &[u8; CHECKPOINT_HEADER_LEN],
    dir: &[u8],
    source: Arc<Source>,
    log_id: [u8; 16],
    ids_capacity: usize,
) -> std::result::Result<(Index, Resume), CheckpointRefusal> {
    let (next_position, resume, width) = decode_checkpoint_header(h, dir, log_id)?;
    let lists = Lists { source, data_start: (CHECKPOINT_HEADER_LEN + dir.len()) as u64 };
    let mut r = Reader { b: dir };
    let mut index = Index::new(ids_capacity);
    decode_segment_entries(&mut r, &lists, &mut index)?;
    let stream_events = decode_stream_entries(&mut r, &lists, (next_position, width), &mut index)?;
    decode_consumers_and_ids(&mut r, next_position, &mut index)?;
    let typed = decode_label_entries(&mut r, &lists, (next_position, width), &mut index.types)?;
    decode_label_entries(&mut r, &lists, (next_position, width), &mut index.tags)?;
    decode_controls(&mut r, &mut index)?;
    // Every event has one stream and one type, and every position below `next_position` holds an event
    // unless a scavenge removed it (a gap frame), so the lists add up to at most it, and to the same count.
    if typed > next_position || typed != stream_events {
        return Err(CheckpointRefusal::TypeLengths);
    }
    if !r.b.is_empty() {
        return Err(CheckpointRefusal::TrailingBytes);
    }
    if stream_events > next_position {
        return Err(CheckpointRefusal::StreamLengths);
    }
    check_shape(&index, next_position, resume)?;
    index.next_position = next_position;
    index.source = Some(Arc::clone(&lists.source));
    Ok((index, resume))
}

/// Where a checkpoint's lists are: the file, and the offset its data section starts at.
#[derive(Clone, Debug)]
pub(super) struct Lists {
    source: Arc<Source>,
    data_start: u64,
}

impl Lists {
    /// The saved list of `count` items below `limit` at offset `at` of the data section.
    pub(super) fn saved<E: Item>(&self, at: u64, count: u64, crc: u32, limit: u64) -> SavedList<E> {
        SavedList::new(&self.source, self.data_start.saturating_add(at), count, crc, limit)
    }
}

/// The directory's segment entries: base, number, end, event count, list offset and CRC.
fn decode_segment_entries(
    r: &mut Reader<'_>,
    lists: &Lists,
    index: &mut Index,
) -> std::result::Result<(), CheckpointRefusal> {
    let bad = || CheckpointRefusal::DirectoryMalformed;
    for _ in 0..r.count(40).ok_or_else(bad)? {
        let (base, seq, end, count, at) = (r.u64(), r.u32(), r.u64(), r.u64(), r.u64());
        let (Some(base), Some(seq), Some(end), Some(count), Some(at), Some(crc)) =
            (base, seq, end, count, at, r.u32())
        else {
            return Err(bad());
        };
        let list = (count > 0).then(|| lists.saved(at, count, crc, end).non_decreasing());
        index.segments.push(SegIndex {
            base,
            seq,
            end,
            saved: list,
            saved_count: count,
            offsets: Vec::new(),
            written: None,
        });
    }
    Ok(())
}

/// The directory's stream entries (id, first version, event count, list offset and CRC), checked and kept as
/// bytes: a stream's index is made the first time it is needed. Returns their events in total.
fn decode_stream_entries(
    r: &mut Reader<'_>,
    lists: &Lists,
    (next_position, width): (u64, u32),
    index: &mut Index,
) -> std::result::Result<u64, CheckpointRefusal> {
    let bad = || CheckpointRefusal::DirectoryMalformed;
    let count = r.count(entry_min::<StreamIndex>()).ok_or_else(bad)?;
    let (saved, len, events) = SavedTable::decode(r.b, count, lists.clone(), (next_position, width))?;
    r.take(len).ok_or_else(bad)?;
    index.saved_streams = Some(saved);
    Ok(events)
}

/// A directory section of label entries (event types or tags: name, event count, list offset and CRC),
/// checked and kept as bytes like the streams'. Returns their events in total.
fn decode_label_entries(
    r: &mut Reader<'_>,
    lists: &Lists,
    (next_position, width): (u64, u32),
    labels: &mut Labels,
) -> std::result::Result<u64, CheckpointRefusal> {
    let bad = || CheckpointRefusal::DirectoryMalformed;
    let count = r.count(entry_min::<Postings>()).ok_or_else(bad)?;
    let (saved, len, events) = SavedTable::decode(r.b, count, lists.clone(), (next_position, width))?;
    r.take(len).ok_or_else(bad)?;
    labels.set_saved(saved);
    Ok(events)
}

/// The directory's consumer positions and remembered event ids.
fn decode_consumers_and_ids(
    r: &mut Reader<'_>,
    next_position: u64,
    index: &mut Index,
) -> std::result::Result<(), CheckpointRefusal> {
    let bad = || CheckpointRefusal::DirectoryMalformed;
    for _ in 0..r.count(12).ok_or_else(bad)? {
        let name = r.str().ok_or_else(bad)?;
        let p = r.u64().ok_or_else(bad)?;
        index.consumers.insert(name.into(), p);
    }
    for _ in 0..r.count(24).ok_or_else(bad)? {
        let id = event_id_from_bytes(r.take(16).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        let p = r.u64().ok_or_else(bad)?;
        if p >= next_position {
            return Err(CheckpointRefusal::EventIdPastEnd);
        }
        index.ids.insert(id, p);
    }
    Ok(())
}

/// The directory's stream controls: per truncated or deleted stream, in strictly increasing order of the id's
/// bytes, its truncation point and flags.
fn decode_controls(r: &mut Reader<'_>, index: &mut Index) -> std::result::Result<(), CheckpointRefusal> {
    let bad = || CheckpointRefusal::DirectoryMalformed;
    let mut previous: Option<&str> = None;
    for _ in 0..r.count(16).ok_or_else(bad)? {
        let id = r.str().filter(|id| !id.is_empty()).ok_or_else(bad)?;
        let (before, flags) = (r.u64().ok_or_else(bad)?, r.u32().ok_or_else(bad)?);
        let ordered = previous.is_none_or(|p| p.as_bytes() < id.as_bytes());
        if !ordered || flags & !CONTROL_DELETED != 0 || before > STREAM_VERSION_MAX + 1 {
            return Err(bad());
        }
        previous = Some(id);
        index.set_control(id, before, flags & CONTROL_DELETED != 0);
    }
    Ok(())
}

/// Structural checks of a decoded directory before it is trusted at all.
fn check_shape(
    index: &Index,
    next_position: u64,
    resume: Resume,
) -> std::result::Result<(), CheckpointRefusal> {
    let mut expect = 0u64;
    for (s, seq) in index.segments.iter().zip(0u32..) {
        if s.base != expect {
            return Err(CheckpointRefusal::SegmentBase { base: s.base, expected: expect });
        }
        if s.seq != seq {
            return Err(CheckpointRefusal::SegmentNumber { found: s.seq, expected: seq });
        }
        expect = s.base.checked_add(s.len()).ok_or(CheckpointRefusal::SegmentLengthOverflow)?;
    }
    if expect != next_position {
        return Err(CheckpointRefusal::SegmentLengths);
    }
    match index.segments.last() {
        Some(last) if last.base == resume.segment_base && last.end == resume.offset => Ok(()),
        None if next_position == 0 => Ok(()),
        _ => Err(CheckpointRefusal::ResumePoint),
    }
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
    use crate::error::ExpectedVersion;
    use crate::index::FrameAt;

    fn sample() -> Index {
        let mut ix = Index::new(10);
        ix.segments.push(SegIndex::new(0, 0, 128));
        let mut off = 128;
        for p in 0..20u64 {
            let stream = format!("s-{}", p % 3);
            let v = ix.stream(stream.as_str()).map_or(5, |s| s.first_version + s.len());
            ix.add_event(FrameAt { seg: 0, offset: off, len: 64 }, &stream, v, p, Some(u128::from(p) << 64))
                .unwrap();
            let tags = [format!("t-{}", p % 4), format!("u-{}", p % 5)];
            ix.add_labels(
                p,
                if p.is_multiple_of(2) { "Even" } else { "Odd" },
                tags.iter().map(String::as_str),
            );
            off += 64;
        }
        ix.add_consumer(FrameAt { seg: 0, offset: off, len: 32 }, "proj", 7, false);
        ix
    }

    /// Writes `bytes` as a checkpoint file and opens it.
    fn open(bytes: &[u8]) -> std::result::Result<(Index, Resume), CheckpointRefusal> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.ckpt");
        std::fs::write(&path, bytes).unwrap();
        open_checkpoint(path, [1; 16], 10).unwrap().unwrap()
    }

    /// Every event's stream position and location, loading saved lists.
    fn contents(ix: &Index) -> std::result::Result<Vec<(String, u64, u64, u64)>, String> {
        let mut out = Vec::new();
        for (id, s) in ix.streams() {
            for i in 0..s.len() {
                let p = s.position(i).map_err(|e| e.reason.to_string())?.ok_or("short")?;
                let (_, off) = ix.locate(p).map_err(|e| e.reason.to_string())?.ok_or("unlocated")?;
                out.push((id.to_string(), s.first_version + i, p, off));
            }
        }
        for (kind, labels) in [("type", ix.types()), ("tag", ix.tags())] {
            for (name, list) in labels.iter() {
                let all = list.all().map_err(|e| e.reason.to_string())?;
                out.extend(all.into_iter().zip(0..).map(|(p, i)| (format!("{kind} {name}"), i, p, 0)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Stream positions are saved as u32 while every position fits (4 bytes an event less), as u64 past 2^32
    /// events; a width that does not match the log is refused.
    #[test]
    fn positions_are_saved_narrow_while_they_fit() {
        assert_eq!(position_width(0), NARROW);
        assert_eq!(position_width(1 << 32), NARROW, "positions up to 2^32 - 1");
        assert_eq!(position_width((1 << 32) + 1), WIDE);
        let ix = sample();
        let bytes = encode_checkpoint(&ix, [1; 16]).unwrap();
        assert_eq!(LE::read_u32(&bytes[ckpt::POSITION_WIDTH]), NARROW);
        let (back, _) = open(&bytes).unwrap();
        assert_eq!(contents(&back), contents(&ix));
        let mut forged = bytes.clone();
        LE::write_u32(&mut forged[ckpt::POSITION_WIDTH], WIDE);
        let crc = crc32fast::hash(&forged[..ckpt::HEADER_CRC.start]);
        LE::write_u32(&mut forged[ckpt::HEADER_CRC], crc);
        assert!(matches!(open(&forged), Err(CheckpointRefusal::DirectoryMalformed)));
    }

    /// Open keeps the saved streams as bytes; a stream is made when read and moves to the index's own map
    /// when appended to; new streams join beside them, and a checkpoint of the mix opens the same.
    #[test]
    fn saved_streams_are_made_on_use_and_move_out_when_appended_to() {
        let ix = sample();
        let bytes = encode_checkpoint(&ix, [1; 16]).unwrap();
        let (mut back, resume) = open(&bytes).unwrap();
        assert!(back.streams.is_empty(), "nothing made at open");
        assert_eq!(back.stream_count(), 3);
        let s1 = back.stream("s-1").unwrap();
        let (first, next) = (s1.first_version, s1.last_version().unwrap() + 1);
        assert_eq!(back.stream("nope").map(StreamIndex::len), None);
        let at = |offset| FrameAt { seg: 0, offset, len: 64 };
        back.add_event(at(resume.offset), "s-1", next, 20, None).unwrap();
        back.add_labels(20, "Even", ["t-0", "new-tag"]);
        back.add_event(at(resume.offset + 64), "new", 3, 21, None).unwrap();
        back.add_labels(21, "New", []);
        assert_eq!(back.tags().get("t-0").unwrap().all().unwrap(), [0, 4, 8, 12, 16, 20]);
        assert!(back.add_event(at(resume.offset + 128), "s-2", 99, 22, None).is_err(), "a version gap");
        assert_eq!(back.stream_count(), 4);
        let mut names: Vec<&str> = back.streams().map(|(k, _)| k).collect();
        names.sort_unstable();
        assert_eq!(names, ["new", "s-0", "s-1", "s-2"]);
        assert_eq!(back.stream("s-1").unwrap().position(next - first).unwrap(), Some(20));
        assert_eq!(back.check_expected("s-1", ExpectedVersion::Exact(next)).unwrap(), Some(next));
        let again = encode_checkpoint(&back, [1; 16]).unwrap();
        let (reopened, _) = open(&again).unwrap();
        assert_eq!(contents(&reopened), contents(&back));
    }

    /// Stream entries must be sorted by id (lookups search them); a checkpoint with two swapped is refused.
    #[test]
    #[cfg(feature = "testing")]
    fn stream_entries_out_of_order_are_refused() {
        let bytes = encode_checkpoint(&sample(), [1; 16]).unwrap();
        // Entries of "s-0" and "s-1" have the same length: 4 + 3 + 28 bytes.
        let at = |id: &[u8]| bytes.windows(id.len()).position(|w| w == id).unwrap() - 4;
        let (a, b) = (at(b"s-0"), at(b"s-1"));
        assert_eq!(b - a, 35);
        let mut forged = bytes.clone();
        forged[a..a + 35].copy_from_slice(&bytes[b..b + 35]);
        forged[b..b + 35].copy_from_slice(&bytes[a..a + 35]);
        crate::testing::fix_checkpoint_crcs(&mut forged);
        assert!(matches!(open(&forged), Err(CheckpointRefusal::StreamListedTwice { .. })));
    }

    #[test]
    fn checkpoint_round_trips() {
        let ix = sample();
        let bytes = encode_checkpoint(&ix, [1; 16]).unwrap();
        let (back, resume) = open(&bytes).unwrap();
        assert_eq!(contents(&back), contents(&ix));
        assert_eq!(back.next_position, 20);
        assert_eq!(back.consumers, ix.consumers);
        assert_eq!(back.ids, ix.ids);
        assert_eq!(resume, Resume { segment_base: 0, offset: 128 + 20 * 64 + 32 });
        assert_eq!(back.locate(3).unwrap(), Some((0, 128 + 3 * 64)));
        // A checkpoint of a checkpoint-backed index is the same file.
        assert_eq!(encode_checkpoint(&back, [1; 16]).unwrap(), bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.ckpt");
        std::fs::write(&path, &bytes).unwrap();
        assert!(open_checkpoint(path, [2; 16], 10).unwrap().unwrap().is_err());
    }

    /// The sample with stream `s-1` truncated before version 7, then `s-2` deleted, and a control for
    /// `s-0` that a later one lowers in vain.
    fn with_controls() -> Index {
        let mut ix = sample();
        let mut off = ix.segments[0].end;
        for (stream, before, deleted) in
            [("s-1", 7, false), ("s-2", 12, true), ("s-0", 9, false), ("s-0", 6, false)]
        {
            ix.add_control(FrameAt { seg: 0, offset: off, len: 32 }, stream, before, deleted);
            off += 32;
        }
        ix
    }

    fn controls(ix: &Index) -> Vec<(String, u64, bool)> {
        let mut v: Vec<_> =
            ix.controls.iter().map(|(s, c)| (s.to_owned(), c.truncate_before, c.deleted)).collect();
        v.sort();
        v
    }

    #[test]
    fn stream_controls_round_trip_and_only_move_forward() {
        let ix = with_controls();
        let want = [("s-0".to_owned(), 9, false), ("s-1".to_owned(), 7, false), ("s-2".to_owned(), 12, true)];
        assert_eq!(controls(&ix), want);
        let bytes = encode_checkpoint(&ix, [1; 16]).unwrap();
        assert_eq!(LE::read_u32(&bytes[ckpt::VERSION]), CHECKPOINT_VERSION);
        let (back, resume) = open(&bytes).unwrap();
        assert_eq!(controls(&back), want);
        assert_eq!(resume.offset, ix.segments[0].end);
        assert!(back.controls().is_some_and(|c| c.hides("s-1", 6) && !c.hides("s-1", 7)));
        assert_eq!(encode_checkpoint(&back, [1; 16]).unwrap(), bytes);
        // A checkpoint of another layout version (the one before stream controls, 3) is refused.
        let mut old = bytes.clone();
        LE::write_u32(&mut old[ckpt::VERSION], 3);
        let crc = crc32fast::hash(&old[..ckpt::HEADER_CRC.start]);
        LE::write_u32(&mut old[ckpt::HEADER_CRC], crc);
        assert!(matches!(open(&old), Err(CheckpointRefusal::Version { found: 3 })));
    }

    #[test]
    #[cfg(feature = "testing")]
    fn stream_control_entries_out_of_order_or_with_unknown_flags_are_refused() {
        let bytes = encode_checkpoint(&with_controls(), [1; 16]).unwrap();
        // The control entries are the directory's last: "s-0", "s-1", "s-2", 4 + 3 + 12 bytes each.
        let dir_end = CHECKPOINT_HEADER_LEN + LE::read_u64(&bytes[ckpt::DIR_LEN]) as usize;
        let (a, b) = (dir_end - 3 * 19, dir_end - 2 * 19);
        assert_eq!(&bytes[a + 4..a + 7], b"s-0");
        let mut swapped = bytes.clone();
        swapped[a..a + 19].copy_from_slice(&bytes[b..b + 19]);
        swapped[b..b + 19].copy_from_slice(&bytes[a..a + 19]);
        crate::testing::fix_checkpoint_crcs(&mut swapped);
        assert!(matches!(open(&swapped), Err(CheckpointRefusal::DirectoryMalformed)));
        let mut flagged = bytes.clone();
        flagged[a + 15] |= 2;
        crate::testing::fix_checkpoint_crcs(&mut flagged);
        assert!(matches!(open(&flagged), Err(CheckpointRefusal::DirectoryMalformed)));
        let mut past = bytes.clone();
        LE::write_u64(&mut past[a + 7..a + 15], crate::format::STREAM_VERSION_MAX + 2);
        crate::testing::fix_checkpoint_crcs(&mut past);
        assert!(matches!(open(&past), Err(CheckpointRefusal::DirectoryMalformed)));
        let mut intact = bytes.clone();
        crate::testing::fix_checkpoint_crcs(&mut intact);
        assert!(open(&intact).is_ok(), "the forger itself keeps a valid checkpoint valid");
    }

    /// A flipped byte anywhere is refused: at open (header, directory) or when the list is first read.
    #[test]
    fn every_single_byte_flip_is_refused() {
        let bytes = encode_checkpoint(&with_controls(), [1; 16]).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let refused = match open(&b) {
                Err(_) => true,
                Ok((ix, _)) => contents(&ix).is_err(),
            };
            assert!(refused, "flip at {i} accepted");
        }
        for n in 0..bytes.len() {
            let refused = match open(&bytes[..n]) {
                Err(_) => true,
                Ok((ix, _)) => contents(&ix).is_err(),
            };
            assert!(refused, "cut at {n} accepted");
        }
    }

    /// A saved list is each chunk's first item, then varint differences: it reads back exactly, at every
    /// length and gap (1 to past a u32), and costs about a byte an item where positions are close.
    #[test]
    fn saved_lists_round_trip_as_varint_differences() {
        use super::super::saved_list::tests_support::{decode_all, encode};
        for (len, gap) in
            [(1u64, 1u64), (2, 1), (4095, 3), (4096, 1), (4097, 200), (9000, 130_000), (10, 1 << 40)]
        {
            let items: Vec<u64> = (0..len).map(|i| 7 + i * gap).collect();
            let (bytes, back) = (encode(&items), decode_all::<u64>(&items));
            assert_eq!(back, items, "len {len} gap {gap}");
            if gap == 1 {
                assert!(bytes <= len as usize + 20 * len.div_ceil(4096) as usize, "{bytes} bytes for {len}");
            }
        }
    }

    /// An index opened from a checkpoint and encoded again, with nothing loaded yet, gives the same bytes:
    /// the encoder reads every saved list back, from the old file held in memory (`Source::hold`).
    #[test]
    fn a_saved_index_encodes_to_the_same_bytes() {
        let mut ix = Index::new(0);
        ix.segments.push(SegIndex::new(0, 0, 128));
        for p in 0..20_000u64 {
            let stream = format!("s-{}", p % 97);
            ix.add_event(FrameAt { seg: 0, offset: 128 + p * 64, len: 64 }, &stream, p / 97, p, None)
                .unwrap();
            ix.add_labels(p, if p % 3 == 0 { "A" } else { "B" }, [format!("t-{}", p % 11).as_str()]);
        }
        let bytes = encode_checkpoint(&ix, [1; 16]).unwrap();
        let (back, _) = open(&bytes).unwrap();
        let before = items_encoded();
        assert_eq!(encode_checkpoint(&back, [1; 16]).unwrap(), bytes);
        assert_eq!(items_encoded(), before, "nothing changed, so every list was copied");
        assert_eq!(contents(&back), contents(&ix), "and every list still reads from the file afterwards");
    }

    /// The index of `a_saved_index_encodes_to_the_same_bytes`, `events` long: 97 streams, two types, 11 tags.
    fn many(events: u64) -> Index {
        let mut ix = Index::new(0);
        ix.segments.push(SegIndex::new(0, 0, 128));
        for p in 0..events {
            add_many(&mut ix, p, &format!("s-{}", p % 97), if p % 3 == 0 { "A" } else { "B" }, p % 11);
        }
        ix
    }

    fn add_many(ix: &mut Index, p: u64, stream: &str, event_type: &str, tag: u64) {
        let v = ix.stream(stream).map_or(0, |s| s.first_version + s.len());
        ix.add_event(FrameAt { seg: 0, offset: 128 + p * 64, len: 64 }, stream, v, p, None).unwrap();
        ix.add_labels(p, event_type, [format!("t-{tag}").as_str()]);
    }

    fn items_encoded() -> u64 {
        super::super::saved_list::ITEMS_ENCODED.with(std::cell::Cell::get)
    }

    /// A checkpoint of an index opened from one, after a few appends, encodes only the lists appended to, and
    /// of those only from the chunk that took the new items: the other chunks and lists are copied as they are.
    /// The bytes are those of a checkpoint of the same events encoded from scratch.
    #[test]
    fn a_checkpoint_after_a_few_appends_encodes_only_what_changed() {
        let bytes = encode_checkpoint(&many(20_000), [1; 16]).unwrap();
        let (mut back, _) = open(&bytes).unwrap();
        let mut fresh = many(20_000);
        for p in 20_000..20_005 {
            add_many(&mut back, p, "s-3", "A", 0);
            add_many(&mut fresh, p, "s-3", "A", 0);
        }
        let before = items_encoded();
        let again = encode_checkpoint(&back, [1; 16]).unwrap();
        let encoded = items_encoded() - before;
        // Changed: the segment (20,000 offsets), type A (p % 3 == 0: 6,667), tag t-0 (p % 11 == 0: 1,819)
        // and stream s-3 (p % 97 == 3: 207), 5 items each; each keeps its full chunks of 4,096.
        let tail = |saved: u64| saved + 5 - saved / 4096 * 4096;
        assert_eq!(encoded, tail(20_000) + tail(6_667) + tail(1_819) + tail(207));
        assert_eq!(encoded, 8_233, "of 80,020 items in all");
        let before = items_encoded();
        assert_eq!(again, encode_checkpoint(&fresh, [1; 16]).unwrap(), "the bytes of a full encode");
        assert_eq!(items_encoded() - before, 80_020);
        let (reopened, _) = open(&again).unwrap();
        assert_eq!(contents(&reopened), contents(&fresh));
    }

    /// An index copies from the checkpoint it last wrote (`adopt_checkpoint`) as from the one it was opened
    /// from, for the lists that fill a chunk (shorter ones encode from memory faster than they copy): after a
    /// few appends, a checkpoint encodes those of them appended to from the chunk that took the new items, and
    /// every short list; the bytes are a full encode's.
    #[test]
    fn a_checkpoint_copies_from_the_last_one_the_index_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let write_and_adopt = |ix: &mut Index, name: &str| {
            let encoded = encode_checkpoint_parts(ix, [1; 16]).unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, encoded.parts().concat()).unwrap();
            adopt_checkpoint(ix, &encoded, open_written(&encoded, path).unwrap());
        };
        let (mut ix, mut fresh) = (many(20_000), many(20_000));
        // A long stream, of type B and tag t-1, so that one of each fills chunks.
        for p in 20_000..24_500 {
            add_many(&mut ix, p, "long", "B", 1);
            add_many(&mut fresh, p, "long", "B", 1);
        }
        write_and_adopt(&mut ix, "first");
        for p in 24_500..24_505 {
            add_many(&mut ix, p, "s-3", "A", 0);
            add_many(&mut fresh, p, "s-3", "A", 0);
        }
        let before = items_encoded();
        let again = encode_checkpoint(&ix, [1; 16]).unwrap();
        // Copied: type B, tag t-1 (1,819 + 4,500) and the long stream whole, the segment (24,500 + 5) and
        // type A (6,667 + 5) up to their last full chunk. Encoded: the rest of those two, every other tag and
        // every other stream (all shorter than a chunk).
        let tail = |saved: u64| saved + 5 - saved / 4096 * 4096;
        let (short_tags, short_streams) = (24_505 - (1_819 + 4_500), 24_505 - 4_500);
        assert_eq!(items_encoded() - before, tail(24_500) + tail(6_667) + short_tags + short_streams);
        assert_eq!(again, encode_checkpoint(&fresh, [1; 16]).unwrap(), "the bytes of a full encode");
        // Again, from the second file, with nothing new: only the short lists are encoded.
        write_and_adopt(&mut ix, "second");
        let before = items_encoded();
        assert_eq!(encode_checkpoint(&ix, [1; 16]).unwrap(), again);
        assert_eq!(items_encoded() - before, short_tags + short_streams);
        let (reopened, _) = open(&again).unwrap();
        assert_eq!(contents(&reopened), contents(&fresh));
    }

    /// A chunk copied into a new checkpoint is checked against its CRC first: a damaged one (here in a stream
    /// that was not appended to, so nothing read it) fails the encode, which makes the store rebuild the index
    /// instead of carrying the damage on.
    #[test]
    fn a_damaged_chunk_is_not_copied() {
        let mut bytes = encode_checkpoint(&many(20_000), [1; 16]).unwrap();
        // The file's last list is the last stream's ("s-96"), its last byte a varint difference.
        let n = bytes.len();
        bytes[n - 1] ^= 0x04;
        let (mut back, _) = open(&bytes).unwrap();
        add_many(&mut back, 20_000, "s-3", "A", 0);
        let err = encode_checkpoint(&back, [1; 16]).unwrap_err();
        assert!(matches!(err.reason, CheckpointRefusal::ChunkChecksum { .. }), "{}", err.reason);
    }

    /// Lists longer than a chunk load chunk by chunk: damage in one chunk spoils only reads that need it,
    /// and each is reported, never returned.
    #[test]
    fn long_lists_load_by_chunk() {
        let mut ix = Index::new(0);
        ix.segments.push(SegIndex::new(0, 0, 128));
        for p in 0..10_000u64 {
            ix.add_event(FrameAt { seg: 0, offset: 128 + p * 64, len: 64 }, "long", p, p, None).unwrap();
            ix.add_labels(p, "T", []);
        }
        let mut bytes = encode_checkpoint(&ix, [1; 16]).unwrap();
        let (back, _) = open(&bytes).unwrap();
        assert_eq!(contents(&back), contents(&ix));
        // Damage the stream list's third chunk (its last bytes are varint differences).
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        let (back, _) = open(&bytes).unwrap();
        let s = back.stream("long").unwrap();
        assert_eq!(s.position(0).unwrap(), Some(0));
        assert_eq!(s.position(8191).unwrap(), Some(8191));
        assert!(s.position(8192).is_err());
        assert!(s.position(9999).is_err());
        assert_eq!(back.locate(9999).unwrap(), Some((0, 128 + 9999 * 64)));
        assert!(back.memory_bytes() < ix.memory_bytes(), "only two chunks were loaded");
    }

    /// The fuzzers' forger (`testing::fix_checkpoint_crcs`) must keep up with this layout, or forged
    /// checkpoints would only ever test the CRC checks.
    #[cfg(feature = "testing")]
    #[test]
    fn the_fuzzers_forger_recomputes_every_crc() {
        let mut ix = Index::new(0);
        ix.segments.push(SegIndex::new(0, 0, 128));
        for p in 0..5000u64 {
            ix.add_event(FrameAt { seg: 0, offset: 128 + p * 64, len: 64 }, "s", p, p, None).unwrap();
            ix.add_labels(p, "T", []);
        }
        let mut bytes = encode_checkpoint(&ix, [1; 16]).unwrap();
        let n = bytes.len();
        // The stream's list is written last; its last byte is the varint difference (1) of its last position.
        assert_eq!(bytes[n - 1], 1);
        bytes[n - 1] = 0; // 4999 becomes 4998: no longer above the one before
        assert!(open(&bytes).is_ok_and(|(ix, _)| contents(&ix).is_err()), "damage is caught");
        crate::testing::fix_checkpoint_crcs(&mut bytes);
        let (forged, _) = open(&bytes).unwrap();
        let err = forged.stream("s").unwrap().position(4999).unwrap_err();
        assert!(
            matches!(err.reason, CheckpointRefusal::ChunkOrder { .. }),
            "CRCs pass, the order check fails: {}",
            err.reason
        );
        bytes[n - 1] = 3; // 5001: in order, but past next_position
        crate::testing::fix_checkpoint_crcs(&mut bytes);
        let (forged, _) = open(&bytes).unwrap();
        assert!(forged.stream("s").unwrap().position(4999).is_err());
        bytes[n - 1] = 1; // the true value again: all of it loads
        crate::testing::fix_checkpoint_crcs(&mut bytes);
        let (forged, _) = open(&bytes).unwrap();
        assert_eq!(contents(&forged), contents(&ix));
        assert_eq!(forged.stream("s").unwrap().position(4095).unwrap(), Some(4095), "other chunks load");
    }

    #[test]
    fn version_gap_is_refused_and_expected_versions_checked() {
        let mut ix = sample();
        let before = contents(&ix);
        assert!(ix.add_event(FrameAt { seg: 0, offset: 5000, len: 64 }, "s-0", 99, 20, None).is_err());
        assert_eq!(contents(&ix), before, "a refused event changes nothing");
        // s-1 holds positions 1, 4, ..., 19: seven events from version 5, so its last version is 11.
        assert_eq!(ix.check_expected("s-1", ExpectedVersion::Exact(11)).unwrap(), Some(11));
        assert!(ix.check_expected("s-1", ExpectedVersion::Exact(7)).is_err());
        assert!(ix.check_expected("s-1", ExpectedVersion::NoStream).is_err());
    }
}
