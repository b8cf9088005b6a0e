//! The in-memory index: where each global position lives (segment, offset), each stream's versions → positions,
//! consumer positions and the window of remembered event ids; and its checkpoint file codec.
//!
//! A checkpoint is used lazily: open reads and checks only its header and directory (one entry per segment
//! and per stream); each list of offsets or positions is read from the file, checked against its own CRC and
//! kept the first time something needs it. So open costs the directory, not the index. A list that fails its
//! check is reported as [`Stale`] and the store rebuilds the whole index from the log.
//!
//! Memory per event: 4 bytes (frame offset) + 8 bytes (stream position) + block slack; see docs/index.md.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use byteorder::{ByteOrder, LittleEndian as LE, WriteBytesExt};

use crate::error::{Error, ExpectedVersion, Result};
use crate::format::{CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC, FORMAT_VERSION};
use crate::io as sys;

/// Entries per block of a [`Positions`] list.
const POSITIONS_BLOCK: usize = 64;

/// A stream's global positions, in fixed blocks of 64: unlike a doubling `Vec`, the slack is at most one block
/// per stream, so a large index costs 8 bytes per event plus 1/8 byte of block pointer (docs/index.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    // Boxed on purpose: a `Vec` of inline blocks would bring back the doubling slack, in whole blocks.
    #[expect(clippy::vec_box, reason = "growth slack must stay in pointers, not in 512-byte blocks")]
    blocks: Vec<Box<[u64; POSITIONS_BLOCK]>>,
    len: usize,
}

impl Positions {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn get(&self, i: usize) -> Option<u64> {
        (i < self.len).then(|| self.blocks[i / POSITIONS_BLOCK][i % POSITIONS_BLOCK])
    }
    pub fn last(&self) -> Option<u64> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.blocks.iter().flat_map(|b| b.iter().copied()).take(self.len)
    }
    pub fn push(&mut self, p: u64) {
        if self.len == self.blocks.len() * POSITIONS_BLOCK {
            self.blocks.push(Box::new([0; POSITIONS_BLOCK]));
        }
        self.blocks[self.len / POSITIONS_BLOCK][self.len % POSITIONS_BLOCK] = p;
        self.len += 1;
    }
    fn memory_bytes(&self) -> usize {
        self.blocks.len() * (POSITIONS_BLOCK * 8 + 8)
    }
}

/// A part of the index that a checkpoint holds but that has not been needed yet.
#[derive(Debug)]
pub(crate) struct Stale {
    /// Why a saved list could not be used.
    pub reason: String,
}

/// The checkpoint file lists are read from. The store keeps it open; a newer checkpoint replaces the name by
/// rename, never this file's bytes, so lists read later still come from the checkpoint the directory named.
#[derive(Debug)]
pub(crate) struct Source {
    file: File,
    path: PathBuf,
    len: u64,
}

/// A list of `count` fixed-width items saved at file offset `at` with CRC `crc`, read on first use.
#[derive(Debug)]
pub(crate) struct Saved<T> {
    source: Arc<Source>,
    at: u64,
    count: u64,
    crc: u32,
    cell: OnceLock<std::result::Result<T, String>>,
}

impl<T> Saved<T> {
    fn get(
        &self,
        item_len: u64,
        parse: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
    ) -> Result<&T, Stale> {
        let r = self.cell.get_or_init(|| {
            let len = self
                .count
                .checked_mul(item_len)
                .filter(|&l| self.at.checked_add(l).is_some_and(|e| e <= self.source.len));
            let len = len.ok_or_else(|| "list runs past the end of the checkpoint".to_string())?;
            let mut buf = vec![0u8; usize::try_from(len).map_err(|_| "list too long".to_string())?];
            sys::read_at(&self.source.file, &self.source.path, self.at, &mut buf)
                .map_err(|e| e.to_string())?;
            if crc32fast::hash(&buf) != self.crc {
                return Err(format!("list at offset {} fails its CRC", self.at));
            }
            parse(&buf)
        });
        r.as_ref().map_err(|reason| Stale { reason: reason.clone() })
    }
}

/// One segment's events: position `base + i` is the frame at offset number `i` (saved part first).
#[derive(Debug)]
pub(crate) struct SegIndex {
    pub base: u64,
    /// Offset just past the last frame indexed (events and consumer frames).
    pub end: u64,
    saved: Option<Saved<Vec<u32>>>,
    saved_count: u64,
    /// Offsets of events after the saved part.
    offsets: Vec<u32>,
}

impl SegIndex {
    /// An empty segment whose frames start at `end`.
    pub fn new(base: u64, end: u64) -> SegIndex {
        SegIndex { base, end, saved: None, saved_count: 0, offsets: Vec::new() }
    }

    /// Events indexed in this segment.
    pub fn len(&self) -> u64 {
        self.saved_count + self.offsets.len() as u64
    }

    fn offset(&self, i: u64) -> Result<Option<u32>, Stale> {
        if i < self.saved_count {
            let saved = self.saved.as_ref().expect("saved_count > 0 comes with a saved list");
            let end = self.end;
            let list = saved.get(4, |b| {
                let v: Vec<u32> = b.chunks_exact(4).map(LE::read_u32).collect();
                let ordered =
                    v.windows(2).all(|w| w[0] < w[1]) && v.last().is_none_or(|&o| u64::from(o) < end);
                if ordered {
                    Ok(v)
                } else {
                    Err("segment offsets out of order".into())
                }
            })?;
            return Ok(list.get(i as usize).copied());
        }
        Ok(self.offsets.get((i - self.saved_count) as usize).copied())
    }

    /// Drops the growth slack of a segment that will not grow again.
    pub fn seal(&mut self) {
        self.offsets.shrink_to_fit();
    }
}

/// One stream: version `first_version + i` is at the `i`-th global position (saved part first).
#[derive(Debug)]
pub(crate) struct StreamIndex {
    pub first_version: u64,
    saved: Option<Saved<Positions>>,
    saved_count: u64,
    positions: Positions,
}

impl StreamIndex {
    /// Events in the stream.
    pub fn len(&self) -> u64 {
        self.saved_count + self.positions.len() as u64
    }

    /// Version of the last event, `None` if empty.
    pub fn last_version(&self) -> Option<u64> {
        (self.len() > 0).then(|| self.first_version + self.len() - 1)
    }

    /// Global position of the stream's `i`-th event.
    pub fn position(&self, i: u64, next_position: u64) -> Result<Option<u64>, Stale> {
        if i < self.saved_count {
            let saved = self.saved.as_ref().expect("saved_count > 0 comes with a saved list");
            let list = saved.get(8, |b| {
                let mut p = Positions::default();
                for v in b.chunks_exact(8).map(LE::read_u64) {
                    if p.last().is_some_and(|q| q >= v) || v >= next_position {
                        return Err("stream positions out of order or past the end".into());
                    }
                    p.push(v);
                }
                Ok(p)
            })?;
            return Ok(list.get(i as usize));
        }
        Ok(self.positions.get((i - self.saved_count) as usize))
    }
}

/// The most recent event ids, oldest evicted first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdWindow {
    pub map: HashMap<u128, u64>,
    pub order: VecDeque<u128>,
    pub capacity: usize,
}

impl IdWindow {
    fn insert(&mut self, id: u128, position: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.map.insert(id, position);
        self.order.push_back(id);
    }
}

/// The whole index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub segments: Vec<SegIndex>,
    pub streams: HashMap<Box<str>, StreamIndex>,
    pub consumers: HashMap<Box<str>, u64>,
    pub ids: IdWindow,
    pub next_position: u64,
}

/// Where a frame sits: segment slot, file offset, length with padding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameAt {
    pub seg: usize,
    pub offset: u64,
    pub len: u64,
}

/// Why an event cannot join its stream (used by recovery to name corruption).
#[derive(Debug)]
pub(crate) struct VersionGap;

impl Index {
    /// An empty index remembering up to `ids_capacity` event ids.
    pub fn new(ids_capacity: usize) -> Index {
        Index { ids: IdWindow { capacity: ids_capacity, ..IdWindow::default() }, ..Index::default() }
    }

    /// Where position `p` lives: (segment slot, frame offset); `Ok(None)` past the end.
    pub fn locate(&self, p: u64) -> Result<Option<(usize, u64)>, Stale> {
        if p >= self.next_position {
            return Ok(None);
        }
        let Some(seg) = self.segments.partition_point(|s| s.base <= p).checked_sub(1) else {
            return Ok(None);
        };
        let s = &self.segments[seg];
        Ok(s.offset(p - s.base)?.map(|off| (seg, u64::from(off))))
    }

    /// Checks `expected` against the stream's state; returns the stream's last version.
    pub fn check_expected(&self, stream: &str, expected: ExpectedVersion) -> Result<Option<u64>> {
        let actual = self.streams.get(stream).and_then(StreamIndex::last_version);
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        };
        if ok {
            Ok(actual)
        } else {
            Err(Error::WrongExpectedVersion { stream: stream.to_owned(), expected, actual })
        }
    }

    /// Adds an event frame. The caller guarantees `position == next_position` and frames come in file order.
    pub fn add_event(
        &mut self,
        at: FrameAt,
        stream: &str,
        version: u64,
        position: u64,
        id: Option<u128>,
    ) -> Result<(), VersionGap> {
        let FrameAt { seg, offset, len: frame_len } = at;
        assert_eq!(position, self.next_position, "positions are dense");
        let entry = match self.streams.get_mut(stream) {
            Some(e) => e,
            None => self.streams.entry(stream.into()).or_insert_with(|| StreamIndex {
                first_version: version,
                saved: None,
                saved_count: 0,
                positions: Positions::default(),
            }),
        };
        if version != entry.first_version + entry.len() {
            if entry.len() == 0 {
                self.streams.remove(stream);
            }
            return Err(VersionGap);
        }
        entry.positions.push(position);
        let s = &mut self.segments[seg];
        debug_assert_eq!(s.base + s.len(), position);
        s.offsets.push(u32::try_from(offset).expect("segment offsets fit in u32"));
        s.end = offset + frame_len;
        if let Some(id) = id {
            self.ids.insert(id, position);
        }
        self.next_position += 1;
        Ok(())
    }

    /// Adds a consumer-position frame.
    pub fn add_consumer(&mut self, at: FrameAt, name: &str, position: u64) {
        let FrameAt { seg, offset, len: frame_len } = at;
        match self.consumers.get_mut(name) {
            Some(p) => *p = position,
            None => {
                self.consumers.insert(name.into(), position);
            }
        }
        self.segments[seg].end = offset + frame_len;
    }

    /// Bytes of RAM the index's per-event and per-stream structures use (capacity, not length; saved lists
    /// count once read).
    pub fn memory_bytes(&self) -> u64 {
        let loaded_offsets = |s: &SegIndex| {
            s.saved.as_ref().and_then(|v| v.cell.get()).map_or(0, |r| r.as_ref().map_or(0, Vec::capacity))
        };
        let segs: usize =
            self.segments.iter().map(|s| (s.offsets.capacity() + loaded_offsets(s)) * 4 + 64).sum();
        let loaded_positions = |s: &StreamIndex| {
            s.saved
                .as_ref()
                .and_then(|v| v.cell.get())
                .map_or(0, |r| r.as_ref().map_or(0, Positions::memory_bytes))
        };
        let streams: usize = self
            .streams
            .iter()
            .map(|(k, s)| k.len() + s.positions.memory_bytes() + loaded_positions(s) + 16 + 64)
            .sum::<usize>()
            + self.streams.capacity() * 8;
        let ids = self.ids.map.capacity() * 32 + self.ids.order.capacity() * 16;
        (segs + streams + ids) as u64
    }
}

/// Where a checkpoint resumes the scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    pub segment_base: u64,
    pub offset: u64,
}

/// Encodes a checkpoint of `index` (covering everything indexed) for log `log_id`. Reads any saved list it
/// has not loaded yet, so it fails with [`Stale`] if one of those is damaged.
pub(crate) fn encode_checkpoint(index: &Index, log_id: [u8; 16]) -> Result<Vec<u8>, Stale> {
    // Lists first (their offsets are needed by the directory), then the directory, then the header.
    let mut data = Vec::with_capacity(index.next_position as usize * 12);
    let mut seg_entries = Vec::with_capacity(index.segments.len());
    for s in &index.segments {
        let start = data.len();
        if s.saved_count > 0 {
            // Loads the saved list (and checks it) through `offset`, then copies it whole.
            s.offset(0)?;
            let saved = s.saved.as_ref().and_then(|v| v.cell.get()).and_then(|r| r.as_ref().ok());
            for &off in saved.into_iter().flatten() {
                data.write_u32::<LE>(off).expect("vec write");
            }
        }
        for &off in &s.offsets {
            data.write_u32::<LE>(off).expect("vec write");
        }
        seg_entries.push((s, start, crc32fast::hash(&data[start..])));
    }
    // Sorted, so that the same index always gives the same bytes.
    let mut streams: Vec<(&Box<str>, &StreamIndex)> = index.streams.iter().collect();
    streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut stream_entries = Vec::with_capacity(streams.len());
    for (id, s) in streams {
        let start = data.len();
        if s.saved_count > 0 {
            s.position(0, index.next_position)?;
            let saved = s.saved.as_ref().and_then(|v| v.cell.get()).and_then(|r| r.as_ref().ok());
            for p in saved.into_iter().flat_map(Positions::iter) {
                put_u64(&mut data, p);
            }
        }
        for p in s.positions.iter() {
            put_u64(&mut data, p);
        }
        stream_entries.push((id, s, start, crc32fast::hash(&data[start..])));
    }
    let mut dir = Vec::with_capacity(64 + index.streams.len() * 64);
    let w = &mut dir;
    put_u64(w, seg_entries.len() as u64);
    for &(s, start, crc) in &seg_entries {
        put_u64(w, s.base);
        put_u64(w, s.end);
        put_u64(w, s.len());
        put_u64(w, start as u64);
        w.write_u32::<LE>(crc).expect("vec write");
    }
    put_u64(w, stream_entries.len() as u64);
    for &(id, s, start, crc) in &stream_entries {
        put_bytes(w, id.as_bytes());
        put_u64(w, s.first_version);
        put_u64(w, s.len());
        put_u64(w, start as u64);
        w.write_u32::<LE>(crc).expect("vec write");
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
        w.extend_from_slice(&id.to_be_bytes());
        put_u64(w, index.ids.map.get(id).copied().unwrap_or(0));
    }
    let last = index.segments.last();
    let mut out = vec![0u8; CHECKPOINT_HEADER_LEN];
    out[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
    LE::write_u32(&mut out[8..12], FORMAT_VERSION);
    out[16..32].copy_from_slice(&log_id);
    LE::write_u64(&mut out[32..40], index.next_position);
    LE::write_u64(&mut out[40..48], last.map_or(0, |s| s.base));
    LE::write_u64(&mut out[48..56], last.map_or(0, |s| s.end));
    LE::write_u64(&mut out[56..64], dir.len() as u64);
    LE::write_u32(&mut out[64..68], crc32fast::hash(&dir));
    let crc = crc32fast::hash(&out[0..76]);
    LE::write_u32(&mut out[76..80], crc);
    out.extend_from_slice(&dir);
    out.extend_from_slice(&data);
    Ok(out)
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.write_u64::<LE>(v).expect("vec write");
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    w.write_u32::<LE>(b.len() as u32).expect("vec write");
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
) -> Result<Option<std::result::Result<(Index, Resume), String>>> {
    let file = match sys::open(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open checkpoint", path, e)),
    };
    let len = file.metadata().map_err(|e| Error::io("stat checkpoint", &path, e))?.len();
    let mut head = [0u8; CHECKPOINT_HEADER_LEN];
    if len < CHECKPOINT_HEADER_LEN as u64 {
        return Ok(Some(Err("shorter than its header".into())));
    }
    sys::read_at(&file, &path, 0, &mut head).map_err(|e| Error::io("read checkpoint", &path, e))?;
    let dir_len = LE::read_u64(&head[56..64]);
    if dir_len > len - CHECKPOINT_HEADER_LEN as u64 {
        return Ok(Some(Err("directory runs past the end of the file".into())));
    }
    let mut dir = vec![0u8; dir_len as usize];
    sys::read_at(&file, &path, CHECKPOINT_HEADER_LEN as u64, &mut dir)
        .map_err(|e| Error::io("read checkpoint", &path, e))?;
    let source = Arc::new(Source { file, path, len });
    Ok(Some(decode_checkpoint(&head, &dir, source, log_id, ids_capacity)))
}

/// Decodes and checks a checkpoint's header and directory; lists are read later from `source`.
pub(crate) fn decode_checkpoint(
    h: &[u8; CHECKPOINT_HEADER_LEN],
    dir: &[u8],
    source: Arc<Source>,
    log_id: [u8; 16],
    ids_capacity: usize,
) -> std::result::Result<(Index, Resume), String> {
    if h[0..8] != CHECKPOINT_MAGIC {
        return Err("bad magic".into());
    }
    if crc32fast::hash(&h[0..76]) != LE::read_u32(&h[76..80]) {
        return Err("header CRC mismatch".into());
    }
    if LE::read_u32(&h[8..12]) != FORMAT_VERSION {
        return Err(format!("format version {}", LE::read_u32(&h[8..12])));
    }
    if h[16..32] != log_id {
        return Err("belongs to another log".into());
    }
    let next_position = LE::read_u64(&h[32..40]);
    let resume = Resume { segment_base: LE::read_u64(&h[40..48]), offset: LE::read_u64(&h[48..56]) };
    if dir.len() as u64 != LE::read_u64(&h[56..64]) || crc32fast::hash(dir) != LE::read_u32(&h[64..68]) {
        return Err("directory CRC mismatch".into());
    }
    let data_start = (CHECKPOINT_HEADER_LEN + dir.len()) as u64;
    let bad = || "directory malformed".to_string();
    fn saved<T>(source: &Arc<Source>, at: u64, count: u64, crc: u32) -> Saved<T> {
        Saved { source: Arc::clone(source), at, count, crc, cell: OnceLock::new() }
    }
    let mut r = Reader { b: dir };
    let mut index = Index::new(ids_capacity);
    for _ in 0..r.count(36).ok_or_else(bad)? {
        let (base, end, count, at) = (r.u64(), r.u64(), r.u64(), r.u64());
        let (Some(base), Some(end), Some(count), Some(at), Some(crc)) = (base, end, count, at, r.u32())
        else {
            return Err(bad());
        };
        let list = (count > 0).then(|| saved(&source, data_start.saturating_add(at), count, crc));
        index.segments.push(SegIndex { base, end, saved: list, saved_count: count, offsets: Vec::new() });
    }
    for _ in 0..r.count(32).ok_or_else(bad)? {
        let id = r.str().ok_or_else(bad)?;
        let (first, count, at, crc) = (r.u64(), r.u64(), r.u64(), r.u32());
        let (Some(first_version), Some(count), Some(at), Some(crc)) = (first, count, at, crc) else {
            return Err(bad());
        };
        if count == 0 || first_version.checked_add(count).is_none() {
            return Err(format!("stream {id:?} has an impossible length"));
        }
        let entry = StreamIndex {
            first_version,
            saved: Some(saved(&source, data_start.saturating_add(at), count, crc)),
            saved_count: count,
            positions: Positions::default(),
        };
        if index.streams.insert(id.into(), entry).is_some() {
            return Err(format!("stream {id:?} listed twice"));
        }
    }
    for _ in 0..r.count(12).ok_or_else(bad)? {
        let name = r.str().ok_or_else(bad)?;
        let p = r.u64().ok_or_else(bad)?;
        index.consumers.insert(name.into(), p);
    }
    for _ in 0..r.count(24).ok_or_else(bad)? {
        let id = u128::from_be_bytes(r.take(16).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        let p = r.u64().ok_or_else(bad)?;
        if p >= next_position {
            return Err("an event id points past the end".into());
        }
        index.ids.insert(id, p);
    }
    if !r.b.is_empty() {
        return Err("trailing bytes in the directory".into());
    }
    check_shape(&index, next_position, resume)?;
    index.next_position = next_position;
    Ok((index, resume))
}

/// Structural checks of a decoded directory before it is trusted at all.
fn check_shape(index: &Index, next_position: u64, resume: Resume) -> std::result::Result<(), String> {
    let mut expect = 0u64;
    for s in &index.segments {
        if s.base != expect {
            return Err(format!("segment {} does not follow position {expect}", s.base));
        }
        expect = s.base.checked_add(s.len()).ok_or("segment length overflows")?;
    }
    if expect != next_position {
        return Err("segment lengths do not add up to next_position".into());
    }
    let events = index.streams.values().try_fold(0u64, |a, s| a.checked_add(s.len()));
    if events != Some(next_position) {
        return Err("stream lengths do not add up to next_position".into());
    }
    match index.segments.last() {
        Some(last) if last.base == resume.segment_base && last.end == resume.offset => Ok(()),
        None if next_position == 0 => Ok(()),
        _ => Err("resume point does not match the last segment".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut ix = Index::new(10);
        ix.segments.push(SegIndex::new(0, 128));
        let mut off = 128;
        for p in 0..20u64 {
            let stream = format!("s-{}", p % 3);
            let v = ix.streams.get(stream.as_str()).map_or(5, |s| s.first_version + s.len());
            ix.add_event(FrameAt { seg: 0, offset: off, len: 64 }, &stream, v, p, Some(u128::from(p) << 64))
                .unwrap();
            off += 64;
        }
        ix.add_consumer(FrameAt { seg: 0, offset: off, len: 48 }, "proj", 7);
        ix
    }

    /// Writes `bytes` as a checkpoint file and opens it.
    fn open(bytes: &[u8]) -> std::result::Result<(Index, Resume), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.ckpt");
        std::fs::write(&path, bytes).unwrap();
        open_checkpoint(path, [1; 16], 10).unwrap().unwrap()
    }

    /// Every event's stream position and location, loading saved lists.
    fn contents(ix: &Index) -> std::result::Result<Vec<(String, u64, u64, u64)>, String> {
        let mut out = Vec::new();
        for (id, s) in &ix.streams {
            for i in 0..s.len() {
                let p = s.position(i, ix.next_position).map_err(|e| e.reason)?.ok_or("short")?;
                let (_, off) = ix.locate(p).map_err(|e| e.reason)?.ok_or("unlocated")?;
                out.push((id.to_string(), s.first_version + i, p, off));
            }
        }
        out.sort();
        Ok(out)
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
        assert_eq!(resume, Resume { segment_base: 0, offset: 128 + 20 * 64 + 48 });
        assert_eq!(back.locate(3).unwrap(), Some((0, 128 + 3 * 64)));
        // A checkpoint of a checkpoint-backed index is the same file.
        assert_eq!(encode_checkpoint(&back, [1; 16]).unwrap(), bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.ckpt");
        std::fs::write(&path, &bytes).unwrap();
        assert!(open_checkpoint(path, [2; 16], 10).unwrap().unwrap().is_err());
    }

    /// A flipped byte anywhere is refused: at open (header, directory) or when the list is first read.
    #[test]
    fn every_single_byte_flip_is_refused() {
        let bytes = encode_checkpoint(&sample(), [1; 16]).unwrap();
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
