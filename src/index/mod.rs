//! The in-memory index: where each global position lives (segment, offset), each stream's versions → positions,
//! consumer positions and the window of remembered event ids. Its checkpoint file codec is in `checkpoint.rs`,
//! the lazily read lists of a checkpoint in `saved_list.rs`: the two parts that decode bytes from disk, so
//! their module headers deny `unwrap`, indexing and truncating casts.
//!
//! A checkpoint is used lazily: open reads and checks only its header and directory (one entry per segment
//! and per stream); each list of offsets or positions is read from the file, checked against its own CRC and
//! kept the first time something needs it. So open costs the directory, not the index. A list that fails its
//! check is reported as [`Stale`] and the store rebuilds the whole index from the log.
//!
//! Memory per event: 4 bytes (frame offset) + 8 bytes (stream position) + block slack, and 4 bytes in its
//! type's list and per tag (`tags.rs`); see docs/index.md.

mod checkpoint;
mod saved_list;
mod saved_table;
mod tags;

#[cfg(any(test, feature = "testing"))]
pub(crate) use checkpoint::encode_checkpoint;
use checkpoint::WrittenAt;
pub(crate) use checkpoint::{
    adopt_checkpoint, encode_checkpoint_parts, open_checkpoint, open_written, Resume,
};
pub(crate) use saved_list::Stale;
use saved_list::{SavedList, Source};
use saved_table::SavedTable;
/// The streams a checkpoint saved.
type SavedStreams = SavedTable<StreamIndex>;
pub(crate) use tags::{Labels, Postings};

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use smol_str::SmolStr;

use crate::error::{Error, ExpectedVersion, Result};

/// The maps looked up on every append (stream ids, event types, tags, event ids, names). foldhash, seeded at
/// random per map: `SipHash`, std's default, cost 6 % of a batched append (perf), and the random seed keeps
/// the minimal resistance to crafted keys that std's gives.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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
    /// Asks the CPU for the slot the next [`Positions::push`] writes (a hint).
    fn prefetch_tail(&self) {
        if let Some(block) = self.blocks.get(self.len / POSITIONS_BLOCK) {
            crate::map::prefetch(&block[..], self.len % POSITIONS_BLOCK);
        }
    }
}

/// One segment's events: position `base + i` is the frame at offset number `i` (saved part first).
#[derive(Debug)]
pub(crate) struct SegIndex {
    pub base: u64,
    /// The segment's sequence number (file name and header); with the base, what names the file.
    pub seq: u32,
    /// Offset just past the last frame indexed (events and consumer frames).
    pub end: u64,
    saved: Option<SavedList<u32>>,
    saved_count: u64,
    /// Offsets of events after the saved part.
    offsets: Vec<u32>,
    /// Where the checkpoint this index last wrote put the list (see [`Index::written`]).
    written: Option<WrittenAt>,
}

impl SegIndex {
    /// An empty segment whose frames start at `end`.
    pub fn new(base: u64, seq: u32, end: u64) -> SegIndex {
        SegIndex { base, seq, end, saved: None, saved_count: 0, offsets: Vec::new(), written: None }
    }

    /// Events indexed in this segment.
    pub fn len(&self) -> u64 {
        self.saved_count + self.offsets.len() as u64
    }

    fn offset(&self, i: u64) -> Result<Option<u32>, Stale> {
        match &self.saved {
            Some(saved) if i < self.saved_count => saved.get(i),
            _ => Ok(self.offsets.get((i - self.saved_count) as usize).copied()),
        }
    }

    /// Asks the CPU for the `i`-th offset ahead of [`SegIndex::offset`] (a hint).
    fn prefetch(&self, i: u64) {
        match &self.saved {
            Some(saved) if i < self.saved_count => saved.prefetch(i),
            _ => crate::map::prefetch(
                &self.offsets,
                usize::try_from(i - self.saved_count).unwrap_or(usize::MAX),
            ),
        }
    }

    /// The offsets from the `first`-th on, saved part first.
    fn offsets_from(&self, first: u64) -> Result<Vec<u32>, Stale> {
        if first >= self.len() {
            return Ok(Vec::new());
        }
        let mut v = Vec::with_capacity((self.len() - first) as usize);
        if let Some(saved) = &self.saved {
            saved.for_each_from(first, |o| v.push(o))?;
        }
        let skip = usize::try_from(first.saturating_sub(self.saved_count)).unwrap_or(usize::MAX);
        v.extend_from_slice(self.offsets.get(skip..).unwrap_or_default());
        Ok(v)
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
    saved: Option<SavedPositions>,
    saved_count: u64,
    positions: Positions,
    /// Where the checkpoint this index last wrote put the list, if it fills a chunk (see [`Index::written`];
    /// boxed: most streams are shorter).
    written: Option<Box<WrittenAt>>,
}

impl StreamIndex {
    /// A stream with no events yet, whose first event will have `first_version`.
    fn empty(first_version: u64) -> StreamIndex {
        let positions = Positions::default();
        StreamIndex { first_version, saved: None, saved_count: 0, positions, written: None }
    }

    /// Bytes of RAM it holds (saved lists count once read).
    fn memory_bytes(&self) -> usize {
        let written = self.written.as_ref().map_or(0, |_| size_of::<WrittenAt>());
        self.positions.memory_bytes()
            + self.saved.as_ref().map_or(0, SavedPositions::loaded_bytes)
            + 80
            + written
    }

    /// Events in the stream.
    pub fn len(&self) -> u64 {
        self.saved_count + self.positions.len() as u64
    }

    /// Version of the last event, `None` if empty.
    pub fn last_version(&self) -> Option<u64> {
        (self.len() > 0).then(|| self.first_version + self.len() - 1)
    }

    /// Global position of the stream's `i`-th event.
    pub fn position(&self, i: u64) -> Result<Option<u64>, Stale> {
        match &self.saved {
            Some(saved) if i < self.saved_count => saved.get(i),
            _ => Ok(self.positions.get((i - self.saved_count) as usize)),
        }
    }

    /// The positions from the `first`-th on, saved part first.
    fn positions_from(&self, first: u64) -> Result<Vec<u64>, Stale> {
        if first >= self.len() {
            return Ok(Vec::new());
        }
        let mut v = Vec::with_capacity((self.len() - first) as usize);
        if let Some(saved) = &self.saved {
            saved.for_each_from(first, |p| v.push(p))?;
        }
        let skip = usize::try_from(first.saturating_sub(self.saved_count)).unwrap_or(usize::MAX);
        v.extend(self.positions.iter().skip(skip));
        Ok(v)
    }
}

/// A stream's positions as a checkpoint saved them: 4 bytes each while every position of the log fits (below
/// 2^32), else 8 (the checkpoint header says which, for the whole file).
#[derive(Debug)]
pub(crate) enum SavedPositions {
    Narrow(SavedList<u32>),
    Wide(SavedList<u64>),
}

impl SavedPositions {
    fn get(&self, i: u64) -> Result<Option<u64>, Stale> {
        match self {
            SavedPositions::Narrow(l) => Ok(l.get(i)?.map(u64::from)),
            SavedPositions::Wide(l) => l.get(i),
        }
    }

    fn for_each_from(&self, first: u64, mut f: impl FnMut(u64)) -> Result<(), Stale> {
        match self {
            SavedPositions::Narrow(l) => l.for_each_from(first, |p| f(u64::from(p))),
            SavedPositions::Wide(l) => l.for_each_from(first, f),
        }
    }

    fn loaded_bytes(&self) -> usize {
        match self {
            SavedPositions::Narrow(l) => l.loaded_bytes(),
            SavedPositions::Wide(l) => l.loaded_bytes(),
        }
    }
}

/// The most recent event ids, oldest evicted first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdWindow {
    map: FastMap<u128, u64>,
    order: VecDeque<u128>,
    capacity: usize,
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

/// What a stream's control frames said, merged: the truncation point only moves up, and a deletion is final.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamControl {
    /// The stream's events below this version are hidden from every read (0: none).
    pub truncate_before: u64,
    /// The stream is deleted: appends to it are refused.
    pub deleted: bool,
}

/// The streams with a control frame, by id. Shared with readers as an `Arc` taken once per read (copied on
/// write, which only a control frame does), so a walk over the log asks "is this event hidden?" without a
/// lock; a log without controls hands out none, and its readers skip the question.
#[derive(Clone, Debug, Default)]
pub(crate) struct Controls(FastMap<Box<str>, StreamControl>);

impl Controls {
    /// Whether version `version` of `stream` is hidden (truncated or deleted).
    pub fn hides(&self, stream: &str, version: u64) -> bool {
        self.0.get(stream).is_some_and(|c| version < c.truncate_before)
    }

    /// Stream `stream`'s control, if it has one.
    pub fn get(&self, stream: &str) -> Option<StreamControl> {
        self.0.get(stream).copied()
    }

    /// Every controlled stream, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, StreamControl)> {
        self.0.iter().map(|(k, &c)| (&**k, c))
    }
}

/// The whole index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    segments: Vec<SegIndex>,
    /// Streams the checkpoint did not save (new since, or every stream without a checkpoint).
    streams: FastMap<SmolStr, StreamIndex>,
    /// The streams the checkpoint saved, made on first use; a stream lives here or in `streams`, never both.
    saved_streams: Option<SavedStreams>,
    consumers: FastMap<Box<str>, u64>,
    ids: IdWindow,
    next_position: u64,
    /// Positions per event type and per tag (`tags.rs`).
    types: Labels,
    tags: Labels,
    /// The checkpoint the saved parts are read from, if the index was opened from one.
    source: Option<Arc<Source>>,
    /// Truncated and deleted streams.
    controls: Arc<Controls>,
    /// The checkpoint this index last wrote, and its position width: the index's own lists (built or appended
    /// to since open; streams and labels only if they fill a chunk) say where it put them, so that the next
    /// checkpoint copies what did not change from there (`adopt_checkpoint`).
    written: Option<(Arc<Source>, u32)>,
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

    /// The position the next event takes: one past the last indexed.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The segments, in log order (slot `i` is the `i`-th segment file).
    pub fn segments(&self) -> &[SegIndex] {
        &self.segments
    }

    /// Adds the next segment.
    pub fn push_segment(&mut self, segment: SegIndex) {
        self.segments.push(segment);
    }

    /// Records where segment `slot`'s indexed frames end. Panics if there is no such segment (a bug).
    pub fn set_segment_end(&mut self, slot: usize, end: u64) {
        self.segments[slot].end = end;
    }

    /// Marks segment `slot` as one that will not grow again. Panics if there is no such segment (a bug).
    pub fn seal_segment(&mut self, slot: usize) {
        self.segments[slot].seal();
    }

    /// Marks the last segment as one that will not grow again (a roll started its successor).
    pub fn seal_last_segment(&mut self) {
        if let Some(last) = self.segments.last_mut() {
            last.seal();
        }
    }

    /// Stream `id`, if it has events.
    pub fn stream(&self, id: &str) -> Option<&StreamIndex> {
        match self.streams.get(id) {
            Some(s) => Some(s),
            None => self.saved_streams.as_ref().and_then(|saved| saved.get(saved.find(id)?)),
        }
    }

    /// Stream `id` to append to, if it has events: a stream the checkpoint saved moves to `streams` first.
    fn stream_mut(&mut self, id: &str) -> Option<&mut StreamIndex> {
        // Without saved streams (no checkpoint, or all moved out) the map is the only place: one lookup.
        let saved = self.saved_streams.as_mut().filter(|s| s.len() > 0);
        if let Some(saved) = saved {
            if !self.streams.contains_key(id) {
                let i = saved.find(id)?;
                let (key, s) = saved.take(i)?;
                self.streams.insert(SmolStr::new(key), s);
            }
        }
        self.streams.get_mut(id)
    }

    /// Every stream, in no particular order (makes every saved stream's index).
    pub fn streams(&self) -> impl Iterator<Item = (&str, &StreamIndex)> {
        let saved = self.saved_streams.iter().flat_map(SavedStreams::iter);
        self.streams.iter().map(|(id, s)| (&**id, s)).chain(saved)
    }

    /// How many streams have events.
    pub fn stream_count(&self) -> usize {
        self.streams.len() + self.saved_streams.as_ref().map_or(0, SavedStreams::len)
    }

    /// Consumer `name`'s position, if it has one.
    pub fn consumer(&self, name: &str) -> Option<u64> {
        self.consumers.get(name).copied()
    }

    /// Every consumer and its position, in no particular order.
    pub fn consumers(&self) -> impl Iterator<Item = (&str, u64)> {
        self.consumers.iter().map(|(name, &p)| (&**name, p))
    }

    /// The position of the event with id `id`, if it is among the ids remembered.
    pub fn event_id_position(&self, id: u128) -> Option<u64> {
        self.ids.map.get(&id).copied()
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

    /// Asks the CPU for the index entry that [`Index::locate`] of `p` reads (a hint): a read of many events
    /// asks for all of theirs first, so that their cache misses overlap.
    pub fn prefetch_location(&self, p: u64) {
        if let Some(s) =
            self.segments.partition_point(|s| s.base <= p).checked_sub(1).and_then(|i| self.segments.get(i))
        {
            s.prefetch(p - s.base);
        }
    }

    /// Checks `expected` against the stream's state; returns the stream's last version.
    pub fn check_expected(&self, stream: &str, expected: ExpectedVersion) -> Result<Option<u64>> {
        let entry = self.stream(stream);
        // The append that checks is about to add to the stream's list: its slot comes in while the batch is
        // encoded, instead of as a cache miss when it is indexed.
        if let Some(e) = entry {
            e.positions.prefetch_tail();
        }
        let actual = entry.and_then(StreamIndex::last_version);
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
        if self.stream_mut(stream).is_none() {
            self.streams.insert(stream.into(), StreamIndex::empty(version));
        }
        let entry = self.stream_mut(stream).expect("the stream was just found or added");
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

    /// Adds a gap frame: positions `first..first + count` hold no event (a scavenge removed them); each is
    /// located at the gap frame, so a walk that starts inside the run starts there. The caller guarantees
    /// `first == next_position` and frames come in file order.
    pub fn add_gap(&mut self, at: FrameAt, first: u64, count: u64) {
        let FrameAt { seg, offset, len } = at;
        assert_eq!(first, self.next_position, "positions are dense");
        let s = &mut self.segments[seg];
        let offset = u32::try_from(offset).expect("segment offsets fit in u32");
        s.offsets.extend(std::iter::repeat_n(offset, usize::try_from(count).expect("a gap fits a segment")));
        s.end = at.offset + len;
        self.next_position += count;
    }

    /// Adds the event at `position` (just added with [`Index::add_event`] or [`Index::add_run`]) to its type's
    /// and tags' lists.
    pub fn add_labels<'t>(
        &mut self,
        position: u64,
        event_type: &str,
        tags: impl IntoIterator<Item = &'t str>,
    ) {
        self.types.add(event_type, position);
        for tag in tags {
            self.tags.add(tag, position);
        }
    }

    /// Positions per event type.
    pub fn types(&self) -> &Labels {
        &self.types
    }

    /// Positions per tag.
    pub fn tags(&self) -> &Labels {
        &self.tags
    }

    /// Adds `frames.len()` consecutive events of `stream` (one stream's part of a batch, as its writer just
    /// stored them: frame offset and length each) from version `first_version`, at positions from
    /// [`Index::next_position`] on, with their ids. One stream lookup for the run, where [`Index::add_event`]
    /// pays one per event.
    pub fn add_run(
        &mut self,
        seg: usize,
        stream: &str,
        first_version: u64,
        frames: &[(u64, u64)],
        ids: impl Iterator<Item = Option<u128>>,
    ) -> Result<(), VersionGap> {
        let Some(&(last_offset, last_len)) = frames.last() else { return Ok(()) };
        let p0 = self.next_position;
        if self.stream_mut(stream).is_none() {
            self.streams.insert(stream.into(), StreamIndex::empty(first_version));
        }
        // `stream_mut` moved a saved stream into the map: one lookup finds it now.
        let entry = self.streams.get_mut(stream).expect("the stream was just found or added");
        if first_version != entry.first_version + entry.len() {
            if entry.len() == 0 {
                self.streams.remove(stream);
            }
            return Err(VersionGap);
        }
        let n = frames.len() as u64;
        (p0..p0 + n).for_each(|p| entry.positions.push(p));
        let s = &mut self.segments[seg];
        debug_assert_eq!(s.base + s.len(), p0);
        s.offsets
            .extend(frames.iter().map(|&(off, _)| u32::try_from(off).expect("segment offsets fit in u32")));
        s.end = last_offset + last_len;
        for (p, id) in (p0..).zip(ids) {
            if let Some(id) = id {
                self.ids.insert(id, p);
            }
        }
        self.next_position += n;
        Ok(())
    }

    /// Adds a consumer-position frame.
    pub fn add_consumer(&mut self, at: FrameAt, name: &str, position: u64, delete: bool) {
        let FrameAt { seg, offset, len: frame_len } = at;
        match self.consumers.get_mut(name) {
            _ if delete => {
                self.consumers.remove(name);
            }
            Some(p) => *p = position,
            None => {
                self.consumers.insert(name.into(), position);
            }
        }
        self.segments[seg].end = offset + frame_len;
    }

    /// Applies a stream-control frame: the truncation point moves up to `truncate_before` (never down) and
    /// `deleted` marks the stream deleted for good.
    pub fn add_control(&mut self, at: FrameAt, stream: &str, truncate_before: u64, deleted: bool) {
        self.set_control(stream, truncate_before, deleted);
        self.segments[at.seg].end = at.offset + at.len;
    }

    /// Merges a control into the stream's (from a frame or a checkpoint).
    fn set_control(&mut self, stream: &str, truncate_before: u64, deleted: bool) {
        let controls = Arc::make_mut(&mut self.controls);
        let c = match controls.0.get_mut(stream) {
            Some(c) => c,
            None => controls.0.entry(stream.into()).or_default(),
        };
        c.truncate_before = c.truncate_before.max(truncate_before);
        c.deleted |= deleted;
    }

    /// Stream `stream`'s control, if it was ever truncated or deleted.
    pub fn control(&self, stream: &str) -> Option<StreamControl> {
        self.controls.get(stream)
    }

    /// The controls for a reader to check events against; `None` while no stream has one.
    pub fn controls(&self) -> Option<Arc<Controls>> {
        (!self.controls.0.is_empty()).then(|| Arc::clone(&self.controls))
    }

    /// Bytes of RAM the index's per-event and per-stream structures use (capacity, not length; saved lists
    /// count once read).
    pub fn memory_bytes(&self) -> u64 {
        let loaded = |s: Option<usize>| s.unwrap_or(0);
        let segs: usize = self
            .segments
            .iter()
            .map(|s| s.offsets.capacity() * 4 + loaded(s.saved.as_ref().map(SavedList::loaded_bytes)) + 64)
            .sum();
        let streams: usize = self.streams.iter().map(|(k, s)| k.len() + s.memory_bytes()).sum::<usize>()
            + self.streams.capacity() * 8
            + self.saved_streams.as_ref().map_or(0, SavedStreams::memory_bytes);
        let ids = self.ids.map.capacity() * 32 + self.ids.order.capacity() * 16;
        let labels = self.types.memory_bytes() + self.tags.memory_bytes();
        // Per controlled stream: its id, the control, and the map's slot.
        let controls: usize = self.controls.0.keys().map(|k| k.len() + 48).sum();
        (segs + streams + ids + labels + controls) as u64
    }
}
