//! The in-memory index: where each global position lives (segment, offset), each stream's versions → positions,
//! consumer positions and the window of remembered event ids; and its checkpoint file codec.
//!
//! Memory per event: 4 bytes (frame offset) + 8 bytes (the position in its stream's list) = 12 bytes, plus
//! `Vec` growth slack; per stream about 100 bytes (map entry, boxed id, list header). See docs/index.md.

use std::collections::{HashMap, VecDeque};

use byteorder::{ByteOrder, LittleEndian as LE, WriteBytesExt};

use crate::error::{Error, ExpectedVersion, Result};
use crate::format::{CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC, FORMAT_VERSION};

/// One segment's events: position `base + i` is the frame at `offsets[i]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SegIndex {
    pub base: u64,
    pub offsets: Vec<u32>,
    /// Offset just past the last frame indexed (events and consumer frames).
    pub end: u64,
}

/// Entries per block of a [`Positions`] list.
const POSITIONS_BLOCK: usize = 64;

/// A stream's global positions, in fixed blocks of 64: unlike a doubling `Vec`, the slack is at most one block
/// per stream, so a large index costs 8 bytes per event plus 1/8 byte of block pointer (docs/index.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    blocks: Vec<Box<[u64; POSITIONS_BLOCK]>>,
    len: usize,
}

impl Positions {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn get(&self, i: usize) -> Option<u64> {
        (i < self.len).then(|| self.blocks[i / POSITIONS_BLOCK][i % POSITIONS_BLOCK])
    }
    pub fn last(&self) -> Option<u64> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }
    pub fn push(&mut self, p: u64) {
        if self.len == self.blocks.len() * POSITIONS_BLOCK {
            self.blocks.push(Box::new([0; POSITIONS_BLOCK]));
        }
        self.blocks[self.len / POSITIONS_BLOCK][self.len % POSITIONS_BLOCK] = p;
        self.len += 1;
    }
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.blocks.iter().flat_map(|b| b.iter().copied()).take(self.len)
    }
    fn memory_bytes(&self) -> usize {
        self.blocks.len() * (POSITIONS_BLOCK * 8 + 8)
    }
}

/// One stream: version `first_version + i` is at global position `positions.get(i)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamIndex {
    pub first_version: u64,
    pub positions: Positions,
}

impl StreamIndex {
    /// Version of the last event, `None` if empty.
    pub fn last_version(&self) -> Option<u64> {
        (!self.positions.is_empty()).then(|| self.first_version + self.positions.len() as u64 - 1)
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

    /// Where position `p` lives: (segment slot, frame offset).
    pub fn locate(&self, p: u64) -> Option<(usize, u64)> {
        if p >= self.next_position {
            return None;
        }
        let seg = self.segments.partition_point(|s| s.base <= p).checked_sub(1)?;
        let s = &self.segments[seg];
        let off = *s.offsets.get(usize::try_from(p - s.base).ok()?)?;
        Some((seg, u64::from(off)))
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
            None => self
                .streams
                .entry(stream.into())
                .or_insert_with(|| StreamIndex { first_version: version, positions: Positions::default() }),
        };
        let expected = entry.first_version + entry.positions.len() as u64;
        if version != expected {
            if entry.positions.is_empty() {
                self.streams.remove(stream);
            }
            return Err(VersionGap);
        }
        entry.positions.push(position);
        let s = &mut self.segments[seg];
        debug_assert_eq!(s.base + s.offsets.len() as u64, position);
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

    /// Bytes of RAM the index's per-event and per-stream structures use (capacity, not length).
    pub fn memory_bytes(&self) -> u64 {
        let segs: usize = self.segments.iter().map(|s| s.offsets.capacity() * 4 + 48).sum();
        let streams: usize = self
            .streams
            .iter()
            .map(|(k, s)| k.len() + s.positions.memory_bytes() + 16 + 32 + 8)
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

/// Encodes a checkpoint of `index` (covering everything indexed) for log `log_id`.
pub(crate) fn encode_checkpoint(index: &Index, log_id: [u8; 16]) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + index.next_position as usize * 12);
    let w = &mut body;
    put_u64(w, index.segments.len() as u64);
    for s in &index.segments {
        put_u64(w, s.base);
        put_u64(w, s.end);
        put_u64(w, s.offsets.len() as u64);
        for &o in &s.offsets {
            w.write_u32::<LE>(o).expect("vec write");
        }
    }
    put_u64(w, index.streams.len() as u64);
    for (id, s) in &index.streams {
        put_bytes(w, id.as_bytes());
        put_u64(w, s.first_version);
        put_u64(w, s.positions.len() as u64);
        for p in s.positions.iter() {
            put_u64(w, p);
        }
    }
    put_u64(w, index.consumers.len() as u64);
    for (name, &p) in &index.consumers {
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
    LE::write_u64(&mut out[56..64], body.len() as u64);
    LE::write_u32(&mut out[64..68], crc32fast::hash(&body));
    let crc = crc32fast::hash(&out[0..76]);
    LE::write_u32(&mut out[76..80], crc);
    out.extend_from_slice(&body);
    out
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

/// Decodes a checkpoint; `Err(reason)` if it is damaged, foreign or from another version.
pub(crate) fn decode_checkpoint(
    bytes: &[u8],
    log_id: [u8; 16],
    ids_capacity: usize,
) -> Result<(Index, Resume), String> {
    let h = bytes.get(..CHECKPOINT_HEADER_LEN).ok_or("shorter than its header")?;
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
    let body_len = usize::try_from(LE::read_u64(&h[56..64])).map_err(|_| "body length overflows")?;
    let body =
        bytes.get(CHECKPOINT_HEADER_LEN..).filter(|b| b.len() == body_len).ok_or("body length mismatch")?;
    if crc32fast::hash(body) != LE::read_u32(&h[64..68]) {
        return Err("body CRC mismatch".into());
    }
    let bad = || "body malformed".to_string();
    let mut r = Reader { b: body };
    let mut index = Index::new(ids_capacity);
    for _ in 0..r.count(24).ok_or_else(bad)? {
        let base = r.u64().ok_or_else(bad)?;
        let end = r.u64().ok_or_else(bad)?;
        let n = r.count(4).ok_or_else(bad)?;
        let offsets: Vec<u32> = r.take(n * 4).ok_or_else(bad)?.chunks_exact(4).map(LE::read_u32).collect();
        index.segments.push(SegIndex { base, offsets, end });
    }
    for _ in 0..r.count(20).ok_or_else(bad)? {
        let id = r.str().ok_or_else(bad)?;
        let first_version = r.u64().ok_or_else(bad)?;
        let n = r.count(8).ok_or_else(bad)?;
        let mut positions = Positions::default();
        let mut prev = None;
        for p in r.take(n * 8).ok_or_else(bad)?.chunks_exact(8).map(LE::read_u64) {
            if prev.is_some_and(|q| q >= p) {
                return Err(format!("stream {id:?} has positions out of order"));
            }
            prev = Some(p);
            positions.push(p);
        }
        if positions.last().is_some_and(|p| p >= next_position) {
            return Err(format!("stream {id:?} has positions out of order or past the end"));
        }
        if index.streams.insert(id.into(), StreamIndex { first_version, positions }).is_some() {
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
        index.ids.insert(id, p);
    }
    if !r.b.is_empty() {
        return Err("trailing bytes".into());
    }
    check_shape(&index, next_position, resume)?;
    index.next_position = next_position;
    Ok((index, resume))
}

/// Structural checks a decoded checkpoint must pass before it is trusted at all.
fn check_shape(index: &Index, next_position: u64, resume: Resume) -> Result<(), String> {
    let mut expect = 0u64;
    for s in &index.segments {
        if s.base != expect {
            return Err(format!("segment {} does not follow position {expect}", s.base));
        }
        if s.offsets.windows(2).any(|w| w[0] >= w[1])
            || s.offsets.last().is_some_and(|&o| u64::from(o) >= s.end)
        {
            return Err(format!("segment {} has offsets out of order", s.base));
        }
        expect = s.base + s.offsets.len() as u64;
    }
    if expect != next_position {
        return Err("segment offsets do not add up to next_position".into());
    }
    let events: u64 = index.streams.values().map(|s| s.positions.len() as u64).sum();
    if events != next_position {
        return Err("stream positions do not add up to next_position".into());
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
        ix.segments.push(SegIndex { base: 0, offsets: vec![], end: 128 });
        let mut off = 128;
        for p in 0..20u64 {
            let stream = format!("s-{}", p % 3);
            let v = ix.streams.get(stream.as_str()).map_or(5, |s| s.first_version + s.positions.len() as u64);
            ix.add_event(FrameAt { seg: 0, offset: off, len: 64 }, &stream, v, p, Some(u128::from(p) << 64))
                .unwrap();
            off += 64;
        }
        ix.add_consumer(FrameAt { seg: 0, offset: off, len: 48 }, "proj", 7);
        ix
    }

    #[test]
    fn checkpoint_round_trips() {
        let ix = sample();
        let bytes = encode_checkpoint(&ix, [1; 16]);
        let (back, resume) = decode_checkpoint(&bytes, [1; 16], 10).unwrap();
        assert_eq!(back, ix);
        assert_eq!(resume, Resume { segment_base: 0, offset: 128 + 20 * 64 + 48 });
        assert_eq!(back.locate(3), Some((0, 128 + 3 * 64)));
        assert!(decode_checkpoint(&bytes, [2; 16], 10).is_err());
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let bytes = encode_checkpoint(&sample(), [1; 16]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode_checkpoint(&b, [1; 16], 10).is_err(), "flip at {i} accepted");
        }
        for n in 0..bytes.len() {
            assert!(decode_checkpoint(&bytes[..n], [1; 16], 10).is_err());
        }
    }

    #[test]
    fn version_gap_is_refused_and_expected_versions_checked() {
        let mut ix = sample();
        let before = ix.clone();
        assert!(ix.add_event(FrameAt { seg: 0, offset: 5000, len: 64 }, "s-0", 99, 20, None).is_err());
        assert_eq!(ix, before, "a refused event changes nothing");
        // s-1 holds positions 1, 4, ..., 19: seven events from version 5, so its last version is 11.
        assert_eq!(ix.check_expected("s-1", ExpectedVersion::Exact(11)).unwrap(), Some(11));
        assert!(ix.check_expected("s-1", ExpectedVersion::Exact(7)).is_err());
        assert!(ix.check_expected("s-1", ExpectedVersion::NoStream).is_err());
    }
}
