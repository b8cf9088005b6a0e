//! Zero-copy read iterators over the committed log: in global order, and per stream (forward and backward).
//!
//! Items borrow from the store's maps (`EventRef<'s>`), which live as long as the store. Every frame read is
//! checked (CRC and rkyv bounds) on the way out, so a byte that rotted on disk after open comes back as an
//! `Error::Corrupt`, never as an event.

use crate::corruption::{Corruption, FrameFault, Region};
use crate::error::{Error, Result};
use crate::format::SEGMENT_HEADER_LEN;
use crate::map::SegmentMap;
use crate::query::{sparse_types, Query, QueryEvents, QueryItem};
use crate::record::{
    decode_frame, decode_frame_cached, Body, EventRef, Frame, FrameProblem, NameCache, SegView,
    NAME_CACHE_SLOTS,
};
use crate::store::{Inner, Store};

use crate::retention::Hider;

/// Filters and bounds for [`Store::read_all_with`]: [`ReadAll::default`] reads everything; a setter per
/// bound narrows it.
///
/// ```
/// use foldlog::{ExpectedVersion, NewEvent, ReadAll, Store};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// for (i, ty) in ["Opened", "Deposited", "Deposited", "Deposited"].into_iter().enumerate() {
///     store.append("account-1", ExpectedVersion::Any, &[NewEvent::new(ty, &[i as u8])])?;
/// }
/// let deposits = ReadAll::default().from(1).event_type("Deposited").limit(2);
/// let positions: Vec<u64> =
///     store.read_all_with(deposits).map(|e| e.map(|e| e.position())).collect::<foldlog::Result<_>>()?;
/// assert_eq!(positions, [1, 2]);
/// # Ok(())
/// # }
/// ```
///
/// Non-exhaustive, so that another filter is not a breaking change.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ReadAll {
    /// First position to read.
    pub from: u64,
    /// Last position to read, inclusive (`None`: up to the head when the iterator was made).
    pub to_inclusive: Option<u64>,
    /// Only events of this type. Where the type is rare in the range read, the read goes through the type
    /// index and touches only its events; elsewhere it scans, and a skipped event costs a frame check.
    pub event_type: Option<String>,
    /// At most this many (matching) events.
    pub limit: Option<u64>,
    /// Also the events a truncation or deletion hides ([`Store::truncate_before`], [`Store::delete_stream`]):
    /// for tools that copy or check every stored frame (export, verify). Default `false`.
    pub include_hidden: bool,
}

impl ReadAll {
    /// Sets [`from`](field@ReadAll::from), the first position to read.
    #[must_use]
    pub fn from(mut self, position: u64) -> Self {
        self.from = position;
        self
    }

    /// Sets [`to_inclusive`](field@ReadAll::to_inclusive): a position, or an `Option` of one.
    #[must_use]
    pub fn to_inclusive(mut self, position: impl Into<Option<u64>>) -> Self {
        self.to_inclusive = position.into();
        self
    }

    /// Sets [`event_type`](field@ReadAll::event_type): only events of this type.
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets [`limit`](field@ReadAll::limit): a count, or an `Option` of one.
    #[must_use]
    pub fn limit(mut self, events: impl Into<Option<u64>>) -> Self {
        self.limit = events.into();
        self
    }

    /// Sets [`include_hidden`](field@ReadAll::include_hidden).
    #[must_use]
    pub fn include_hidden(mut self, include: bool) -> Self {
        self.include_hidden = include;
        self
    }
}

/// Iterator over the global log; see [`Store::read_all`].
pub struct AllEvents<'s> {
    /// A filtered read that goes through the type index instead of the walk below (a rare type).
    indexed: Option<Box<QueryEvents<'s>>>,
    inner: &'s Inner,
    seg: usize,
    offset: u64,
    /// The current segment's map, taken with its location (see [`Inner::map_of`]).
    map: Option<&'s SegmentMap>,
    /// Where the current segment's frames end if it is sealed (`u64::MAX` for the active one, whose map
    /// bounds itself): bytes past a sealed segment's end were never written and are never read.
    seg_end: u64,
    next: u64,
    end: u64,
    event_type: Option<String>,
    left: u64,
    failed: bool,
    /// An error found while setting up, yielded first.
    error: Option<Error>,
    /// The frame [`PREFETCH_AHEAD`] frames past the next one in the current segment, whose name definitions are
    /// prefetched when the walk reaches it (`0`: start again from the next frame).
    ahead: u64,
    /// The current segment's frames, taken when the walk entered it (they hold every position below `end`).
    view: Option<SegView<'s>>,
    /// The names this walk resolved in the current segment (`None` when every read re-checks everything).
    names: Option<NameCache<'s>>,
    /// What the walk skips: truncated, deleted and retained-away events, and system streams (`None`:
    /// nothing is hidden, or the caller asked for hidden events too).
    hider: Option<Hider>,
}

/// How many frames ahead of the decoder a sequential read prefetches name definitions: each is a random
/// access into the segment (a cache miss a decode would otherwise wait for), and a few in flight hide it.
const PREFETCH_AHEAD: usize = 8;

impl Store {
    /// Every committed event from position `from` on, in global order, borrowed from the map.
    pub fn read_all(&self, from: u64) -> AllEvents<'_> {
        self.read_all_with(ReadAll::default().from(from))
    }

    /// The global log with a stop position, an event-type filter and a limit. Events of truncated or deleted
    /// streams that are hidden ([`Store::truncate_before`], [`Store::delete_stream`]) are skipped (they count
    /// toward no limit) unless [`ReadAll::include_hidden`] asks for them; the positions of the others are as
    /// they were.
    pub fn read_all_with(&self, opts: ReadAll) -> AllEvents<'_> {
        let inner = self.inner();
        let head_end = self.next_position();
        let end = opts.to_inclusive.map_or(head_end, |t| t.saturating_add(1).min(head_end));
        // The location and its map under one lock: a scavenge replaces a segment's map and its offsets
        // together under the write lock.
        let (start, error) = if opts.from < end {
            match inner
                .with_index(|ix| Ok(walk_start(ix, opts.from)?.map(|(s, off)| (s, off, inner.map_of(ix, s)))))
            {
                Ok(s) => (s, None),
                Err(e) => (None, Some(e)),
            }
        } else {
            (None, None)
        };
        // A type filter over a range where the type is rare reads through the type index instead.
        let indexed = match &opts.event_type {
            // Tools that read hidden events too (`include_hidden`) scan.
            Some(t)
                if start.is_some()
                    && !opts.include_hidden
                    && sparse_types(&inner.read_index(), std::slice::from_ref(t), opts.from, end) =>
            {
                let query = Query::new([QueryItem::new().types([t.as_str()])]);
                Some(Box::new(self.read_between(&query, opts.from, end, opts.limit)))
            }
            _ => None,
        };
        let (seg, offset, (map, seg_end)) = start.unwrap_or((usize::MAX, 0, (None, u64::MAX)));
        let (hider, error) = match (opts.include_hidden, error) {
            (true, error) => (None, error),
            (false, Some(e)) => (None, Some(e)),
            (false, None) => match Hider::new(inner) {
                Ok(h) => (h, None),
                Err(e) => (None, Some(e)),
            },
        };
        AllEvents {
            indexed,
            inner,
            seg,
            offset,
            map,
            seg_end,
            next: opts.from,
            end: if start.is_some() { end } else { opts.from },
            event_type: opts.event_type,
            left: opts.limit.unwrap_or(u64::MAX),
            failed: false,
            error,
            ahead: 0,
            view: None,
            names: (!inner.crc_every_read()).then(|| NameCache::new(NAME_CACHE_SLOTS, false)),
            hider,
        }
    }

    /// Events of `stream` from version `from_version` on, oldest first. Versions below the stream's
    /// truncation point ([`Store::truncate_before`]) are not returned; a deleted stream returns nothing.
    pub fn read_stream(&self, stream: &str, from_version: u64) -> StreamEvents<'_> {
        StreamEvents::new(self.inner(), stream, Direction::Forward(from_version), false)
    }

    /// As [`Store::read_stream`], hidden (truncated or deleted) versions included: for checks that name a
    /// stored event, such as a snapshot's, which must still find it after a truncation hid it.
    pub(crate) fn read_stream_with_hidden(&self, stream: &str, from_version: u64) -> StreamEvents<'_> {
        StreamEvents::new(self.inner(), stream, Direction::Forward(from_version), true)
    }

    /// Events of `stream` from version `from_version` (`None`: the last) back to the first, newest first,
    /// stopping at the stream's truncation point ([`Store::truncate_before`]); a deleted stream returns nothing.
    pub fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> StreamEvents<'_> {
        StreamEvents::new(self.inner(), stream, Direction::Backward(from_version), false)
    }
}

/// Events of `stream` from `from_version` on, hidden ones included: for foldlog's own reads of its system
/// streams, which no retention rule or control applies to.
pub(crate) fn stream_events_with_hidden<'s>(
    inner: &'s Inner,
    stream: &str,
    from_version: u64,
) -> StreamEvents<'s> {
    StreamEvents::new(inner, stream, Direction::Forward(from_version), true)
}

impl<'s> AllEvents<'s> {
    /// Keeps the prefetcher [`PREFETCH_AHEAD`] frames ahead of `self.offset` in the segment `view`.
    fn prefetch(&mut self, view: &SegView<'_>) {
        let mut steps = 1;
        if self.ahead <= self.offset {
            self.ahead = self.offset;
            steps = PREFETCH_AHEAD;
        }
        for _ in 0..steps {
            match crate::record::prefetch_names(view, self.ahead) {
                Some(next) => self.ahead = next,
                None => break,
            }
        }
    }

    /// The position up to which the walk has examined the log (delivered, filtered out or hidden).
    pub(crate) fn examined(&self) -> u64 {
        self.next
    }

    fn fail(&mut self, path: &std::path::Path, offset: u64, fault: FrameFault) -> Result<EventRef<'s>> {
        self.failed = true;
        Err(Error::corrupt(path, offset, Corruption::Frame { fault, region: Region::Log }))
    }
}

impl<'s> Iterator for AllEvents<'s> {
    type Item = Result<EventRef<'s>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(indexed) = self.indexed.as_mut() {
            return indexed.next();
        }
        if let Some(e) = self.error.take() {
            self.failed = true;
            return Some(Err(e));
        }
        while !self.failed && self.next < self.end && self.left > 0 {
            let Some(map) = self.map else {
                self.failed = true;
                let kind = Corruption::PositionUnlocated { position: self.next };
                return Some(Err(Error::corrupt("", 0, kind)));
            };
            // One view per segment: it holds every frame below `end`, and taking it per frame costs as much
            // as a decode.
            let (seg_end, crc_every_read) = (self.seg_end, self.inner.crc_every_read());
            let view = *self.view.get_or_insert_with(|| map.walk_view(seg_end, crc_every_read, self.offset));
            self.prefetch(&view);
            let frame = decode_frame_cached(&view, self.offset, self.names.as_mut());
            if let Ok(f) = &frame {
                // A sequential reader records the frames it checked, so the next pass over them is cheaper.
                if self.offset == map.verified() {
                    map.mark_verified(self.offset, self.offset + f.len);
                }
            }
            let frame = match frame {
                Ok(f) => f,
                // The length field (frame bytes 4..8, after the CRC) is zero, or no frame fits.
                Err(FrameProblem::Empty | FrameProblem::Truncated)
                    if at_end(map, self.offset, self.seg_end) =>
                {
                    // End of this segment's frames: the next position starts the next segment.
                    self.seg += 1;
                    self.offset = SEGMENT_HEADER_LEN;
                    (self.map, self.seg_end) = self.inner.map_of(&self.inner.read_index(), self.seg);
                    self.ahead = 0;
                    self.view = None;
                    continue;
                }
                Err(p) => return Some(self.fail(map.path(), self.offset, p.into())),
            };
            let at = self.offset;
            self.offset += frame.len;
            let event = match frame.body {
                Body::Event(e) => e,
                // Positions a scavenge removed: the walk may start inside the run (the index locates each of
                // them at the gap), never behind it.
                Body::Gap(g) if g.first <= self.next && self.next - g.first < g.count => {
                    self.next = g.first + g.count;
                    continue;
                }
                Body::Gap(g) => {
                    let fault = FrameFault::Position { found: g.first, expected: Some(self.next) };
                    return Some(self.fail(map.path(), at, fault));
                }
                _ => continue,
            };
            if event.position() != self.next {
                let fault = FrameFault::Position { found: event.position(), expected: Some(self.next) };
                return Some(self.fail(map.path(), at, fault));
            }
            self.next += 1;
            if self.event_type.as_deref().is_some_and(|t| t != event.event_type()) {
                continue;
            }
            let inner = self.inner;
            if self.hider.as_mut().is_some_and(|h| h.hides(inner, event.stream_id(), event.stream_version()))
            {
                continue;
            }
            self.left -= 1;
            return Some(Ok(event));
        }
        None
    }
}

/// Where a walk from position `from` starts: the frame the index locates, or the segment's first frame when
/// `from` is the segment's first position. The frames before its first event (name definitions) are then walked
/// too, so the walk starts at the segment's verified watermark and extends it; a walk that starts above the
/// watermark only remembers frame by frame what it checked.
fn walk_start(ix: &crate::index::Index, from: u64) -> Result<Option<(usize, u64)>, crate::index::Stale> {
    let start = ix.locate(from)?;
    Ok(start.map(|(seg, off)| match ix.segments().get(seg) {
        Some(s) if s.base == from => (seg, SEGMENT_HEADER_LEN),
        _ => (seg, off),
    }))
}

/// Whether `offset` is where the committed frames of `map` (bounded by `seg_end`) end: no room for a frame's
/// length field, or a zero one.
fn at_end(map: &SegmentMap, offset: u64, seg_end: u64) -> bool {
    let bytes = map.committed_from(offset).unwrap_or(&[]);
    let bytes = &bytes[..bytes.len().min(seg_end.saturating_sub(offset) as usize)];
    crate::format::frame_len_field(bytes).is_none_or(|len| len == 0)
}

/// Decodes the frame at `offset` of `map`: the CRC is skipped for frames this process already checked, unless
/// the store checks on every read; every bound, length and name reference is checked on every read either way.
fn read_frame<'m>(inner: &Inner, map: &'m SegmentMap, offset: u64) -> Result<Frame<'m>, FrameProblem> {
    decode_frame(&map.view(u64::MAX, inner.crc_every_read()), offset)
}

/// Asks for the frames at `locations` (segment slot, offset) at once. A read through the index reaches frames
/// scattered over the log; overlapping their cache misses, instead of waiting for one after another, is most of
/// what such a read costs (issue 12, item 5).
pub(crate) fn prefetch_frames(inner: &Inner, locations: impl Iterator<Item = (usize, u64)>) {
    for (seg, off) in locations {
        let bytes = inner.segment(seg).and_then(|m| m.committed_from(SEGMENT_HEADER_LEN));
        let at = off.checked_sub(SEGMENT_HEADER_LEN).and_then(|a| usize::try_from(a).ok());
        if let (Some(bytes), Some(at)) = (bytes, at) {
            crate::map::prefetch(bytes, at);
            crate::map::prefetch(bytes, at + 64);
        }
    }
}

/// Asks for the name definitions the event frame at `off` of segment `seg` refers to (its header read
/// unchecked: a hint, never trusted).
pub(crate) fn prefetch_frame_names(inner: &Inner, seg: usize, off: u64) {
    if let Some(map) = inner.segment(seg) {
        crate::record::prefetch_names(&map.view(u64::MAX, false), off);
    }
}

/// The names a read through the index resolved: made on demand (a read of one event has no use for it), and
/// small, since such a read is short and made often.
#[derive(Default)]
pub(crate) struct SegmentNames<'s>(Option<NameCache<'s>>);

/// Slots of a read through the index's [`NameCache`].
const INDEXED_NAME_SLOTS: usize = 64;

impl<'s> SegmentNames<'s> {
    /// Decodes the frame at `off` of segment `map`: through the cache when `cached`, unless the store
    /// re-checks every read, else from scratch.
    pub(crate) fn decode(
        &mut self,
        inner: &Inner,
        map: &'s SegmentMap,
        off: u64,
        cached: bool,
    ) -> Result<Frame<'s>, FrameProblem> {
        if !cached || inner.crc_every_read() {
            return read_frame(inner, map, off);
        }
        let names = self.0.get_or_insert_with(|| NameCache::new(INDEXED_NAME_SLOTS, true));
        decode_frame_cached(&map.view(u64::MAX, false), off, Some(names))
    }
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    Forward(u64),
    Backward(Option<u64>),
}

/// How many frames ahead of the one decoded a stream read asks for again. A refill asks for its whole chunk at
/// once, more lines than the CPU keeps in flight, so some of those requests are dropped; asking again a few
/// frames ahead brings in what was dropped before the decoder gets there.
const STREAM_FRAMES_AHEAD: usize = 8;

/// How many locations are copied out of the index per lock acquisition.
const CHUNK: usize = 64;

/// Iterator over one stream; see [`Store::read_stream`]. Touches only that stream's frames.
pub struct StreamEvents<'s> {
    inner: &'s Inner,
    stream: String,
    /// Next stream version to fetch (forward: ascending; backward: the one below is next). Versions, not
    /// indexes into the stream's list: a scavenge between two refills drops a prefix of the list and moves
    /// every index, while versions stay.
    cursor: u64,
    /// Exclusive bound of the versions (forward), or their inclusive floor (backward: the first visible
    /// event) — fixed when the iterator is made, for a stable snapshot.
    bound: u64,
    forward: bool,
    /// (segment slot, frame offset, stream version) of the events to read next.
    buf: [(u32, u32, u64); CHUNK],
    /// Their maps, taken with the locations under one lock (see [`Inner::map_of`]).
    maps: [Option<&'s SegmentMap>; CHUNK],
    buf_len: usize,
    buf_at: usize,
    failed: bool,
    /// An error found while setting up (reading the retention rules), yielded first.
    error: Option<Error>,
    names: SegmentNames<'s>,
}

impl<'s> StreamEvents<'s> {
    fn new(inner: &'s Inner, stream: &str, dir: Direction, with_hidden: bool) -> StreamEvents<'s> {
        // Read before the index lock: reading them may take it.
        let (rules, error) = if with_hidden {
            (None, None)
        } else {
            match inner.retention_rules() {
                Ok(r) => (r, None),
                Err(e) => (None, Some(e)),
            }
        };
        let ix = inner.read_index();
        // The list index of the first visible event: the versions below the truncation point, and those its
        // retention rule hides, are not read.
        let before = if with_hidden { 0 } else { inner.first_visible(&ix, rules.as_deref(), stream) };
        let (cursor, bound, forward) = match (ix.stream(stream), dir) {
            (None, _) => (0, 0, true),
            (Some(s), Direction::Forward(v)) => {
                let (first, end) = (s.first_version, s.first_version + s.len());
                (v.max(before).max(first).min(end), end, true)
            }
            (Some(s), Direction::Backward(v)) => {
                let (first, end) = (s.first_version, s.first_version + s.len());
                let floor = before.max(first).min(end);
                let top = match v {
                    None => end,
                    Some(v) if v < first => first,
                    // Saturating: `Some(u64::MAX)` means "from the newest", not an overflow.
                    Some(v) => v.saturating_add(1).min(end),
                };
                (top.max(floor), floor, false)
            }
        };
        drop(ix);
        StreamEvents {
            inner,
            stream: stream.to_owned(),
            cursor,
            bound,
            forward,
            buf: [(0, 0, 0); CHUNK],
            maps: [None; CHUNK],
            buf_len: 0,
            buf_at: 0,
            failed: false,
            error,
            names: SegmentNames::default(),
        }
    }

    /// Copies the next chunk of (segment, offset) locations out of the index under a short read lock.
    fn refill(&mut self) -> Result<()> {
        let (lo, hi) = if self.forward {
            (self.cursor, (self.cursor + CHUNK as u64).min(self.bound))
        } else {
            (self.cursor.saturating_sub(CHUNK as u64).max(self.bound), self.cursor)
        };
        let mut buf = [(0u32, 0u32, 0u64); CHUNK];
        let mut maps = [None; CHUNK];
        let inner = self.inner;
        let n = inner.with_index(|ix| {
            let Some(s) = ix.stream(self.stream.as_str()) else { return Ok(0) };
            // Versions below the list's first were removed by a scavenge after this iterator was made (only
            // events hidden by then go): there is nothing left to read of them.
            let first = lo.max(s.first_version);
            // The positions first, asking for each one's location entry: those are scattered over the
            // segments' offset lists, and asked for together their cache misses overlap.
            let mut positions = [0u64; CHUNK];
            let mut found = 0;
            for (v, slot) in (first..hi).zip(positions.iter_mut()) {
                let Some(p) = s.position(v - s.first_version)? else { break };
                ix.prefetch_location(p);
                *slot = p;
                found += 1;
            }
            let mut n = 0;
            for (v, &p) in (first..).zip(&positions[..found]) {
                let Some((seg, off)) = ix.locate(p)? else { break };
                buf[n] = (seg as u32, off as u32, v);
                maps[n] = inner.map_of(ix, seg).0;
                n += 1;
            }
            Ok(n)
        })?;
        self.buf = buf;
        self.maps = maps;
        if !self.forward {
            self.buf[..n].reverse();
            self.maps[..n].reverse();
        }
        self.buf_len = n;
        self.buf_at = 0;
        prefetch_frames(
            self.inner,
            self.buf[..n].iter().map(|&(seg, off, _)| (seg as usize, u64::from(off))),
        );
        self.cursor = if self.forward { hi } else { lo };
        Ok(())
    }
}

impl<'s> Iterator for StreamEvents<'s> {
    type Item = Result<EventRef<'s>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some(e) = self.error.take() {
            self.failed = true;
            return Some(Err(e));
        }
        // A chunk can come back empty (its versions removed by a scavenge since): go on to the next one.
        while self.buf_at == self.buf_len {
            let more = if self.forward { self.cursor < self.bound } else { self.cursor > self.bound };
            if !more {
                return None;
            }
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        let (_, off, version) = self.buf[self.buf_at];
        let map = self.maps[self.buf_at]?;
        if let Some(&(seg, off, _)) = self.buf[..self.buf_len].get(self.buf_at + STREAM_FRAMES_AHEAD) {
            prefetch_frames(self.inner, std::iter::once((seg as usize, u64::from(off))));
        }
        self.buf_at += 1;
        let bad = |fault: FrameFault| {
            Some(Err(Error::corrupt(
                map.path(),
                u64::from(off),
                Corruption::Frame { fault, region: Region::Log },
            )))
        };
        // From the second event of a chunk on, names are resolved once per segment.
        let frame = self.names.decode(self.inner, map, u64::from(off), self.buf_at > 1);
        match frame {
            Ok(f) => match f.body {
                // The index is checked against the frame it points at: same stream, the expected version.
                Body::Event(e) if e.stream_id() == self.stream && e.stream_version() == version => {
                    Some(Ok(e))
                }
                _ => {
                    self.failed = true;
                    bad(FrameFault::NotIndexed { stream: self.stream.clone(), version })
                }
            },
            Err(p) => {
                self.failed = true;
                bad(p.into())
            }
        }
    }
}
