//! Queries by event type and tag (dynamic consistency boundaries): [`Query`] and [`QueryItem`], reads by
//! query ([`Store::read`], [`QueryEvents`]), and the condition an append may carry ([`AppendCondition`]).
//!
//! A query is answered from the index's lists of positions per tag and per type (`index/tags.rs`) by a
//! leapfrog join: each item's lists are sought in turn to the first position at or after a candidate, and the
//! candidate moves up until every list agrees. So a read touches only the frames that match, and checking a
//! condition touches none.

use crate::corruption::{Corruption, FrameFault, Region};
use crate::error::{Error, Result};
use crate::index::{Index, Postings, Stale};
use crate::read::{prefetch_frame_names, prefetch_frames, SegmentNames};
use crate::record::{Body, EventRef};
use crate::store::{Inner, Store};

/// One item of a [`Query`]: the events whose type is one of [`types`](field@QueryItem::types) (any type if
/// empty) and that carry every tag of [`tags`](field@QueryItem::tags) (and maybe others).
///
/// ```
/// use foldlog::QueryItem;
///
/// let item = QueryItem::new().types(["StudentEnrolled", "StudentLeft"]).tags(["course:7"]);
/// assert_eq!(item.tags, ["course:7"]);
/// ```
///
/// Non-exhaustive: made with [`QueryItem::new`] and the setters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryItem {
    /// Event types, any of which matches; empty: every type.
    pub types: Vec<String>,
    /// Tags, all of which the event must carry; empty: no tag needed.
    pub tags: Vec<String>,
}

impl QueryItem {
    /// An item that matches every event (until narrowed by the setters).
    pub fn new() -> QueryItem {
        QueryItem::default()
    }

    /// Sets [`types`](field@QueryItem::types).
    #[must_use]
    pub fn types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`tags`](field@QueryItem::tags).
    #[must_use]
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `event` matches this item.
    pub fn matches(&self, event: &EventRef<'_>) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == event.event_type()))
            && self.tags.iter().all(|t| event.tags().any(|e| e == t))
    }
}

/// A query: the events that match any of its items; a query without items matches every event (as in the
/// DCB specification and the Python library's `DCBQuery`).
///
/// ```
/// use foldlog::{Query, QueryItem};
///
/// let course = Query::new([QueryItem::new().types(["CourseDefined", "CourseCapacityChanged"]).tags(["course:7"])])
///     .item(QueryItem::new().types(["StudentEnrolled"]).tags(["course:7"]));
/// assert_eq!(course.items.len(), 2);
/// assert!(Query::all().items.is_empty());
/// ```
///
/// Non-exhaustive: made with [`Query::new`] or [`Query::all`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// The items, any of which matches.
    pub items: Vec<QueryItem>,
}

impl Query {
    /// A query of these items.
    pub fn new(items: impl IntoIterator<Item = QueryItem>) -> Query {
        Query { items: items.into_iter().collect() }
    }

    /// The query that matches every event.
    pub fn all() -> Query {
        Query::default()
    }

    /// Adds an item.
    #[must_use]
    pub fn item(mut self, item: QueryItem) -> Self {
        self.items.push(item);
        self
    }

    /// Whether `event` matches this query.
    pub fn matches(&self, event: &EventRef<'_>) -> bool {
        self.items.is_empty() || self.items.iter().any(|i| i.matches(event))
    }

    /// Whether `event` carries every tag of some item (whatever its type): what a loose join's candidate
    /// must, else the tag index led somewhere wrong.
    fn matches_tags(&self, event: &EventRef<'_>) -> bool {
        self.items.iter().any(|i| !i.tags.is_empty() && i.tags.iter().all(|t| event.tags().any(|e| e == t)))
    }
}

/// The condition of a conditional append ([`crate::Batch::condition`], [`Store::append_if`]): fail if an
/// event matching [`fail_if_events_match`](field@AppendCondition::fail_if_events_match) was stored after
/// position [`after`](field@AppendCondition::after) (or at all, if `after` is `None`). Checked under the
/// writer lock against the index, so no other append can come between the check and the write.
///
/// The usual `after` is the [`QueryEvents::head`] of the read the decision was made on: "nothing that would
/// change my decision happened since I looked".
///
/// Non-exhaustive: made with [`AppendCondition::new`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendCondition {
    /// The events that must not exist.
    pub fail_if_events_match: Query,
    /// Only events after this position count; `None`: every event counts.
    pub after: Option<u64>,
}

impl AppendCondition {
    /// Fail if any event matches `query` (narrow it with [`AppendCondition::after`]).
    pub fn new(query: Query) -> AppendCondition {
        AppendCondition { fail_if_events_match: query, after: None }
    }

    /// Sets [`after`](field@AppendCondition::after): a position, or an `Option` of one.
    #[must_use]
    pub fn after(mut self, position: impl Into<Option<u64>>) -> Self {
        self.after = position.into();
        self
    }
}

/// A walk through one list: where the last seek ended, so the next one gallops from there.
struct Cursor<'ix> {
    list: &'ix Postings,
    /// The index the last seek found; every entry below it is below `bound`.
    at: u64,
    /// The bound of the last seek.
    bound: u64,
    /// What the last seek found (the entry at `at`); `None` before the first seek and past the end.
    found: Option<u64>,
    /// Whether a seek was made since the start (or since a bound below the last one).
    walking: bool,
}

impl<'ix> Cursor<'ix> {
    fn new(list: &'ix Postings) -> Cursor<'ix> {
        Cursor { list, at: 0, bound: 0, found: None, walking: false }
    }

    /// The first position at or after `p`.
    fn seek(&mut self, p: u64) -> Result<Option<u64>, Stale> {
        if p < self.bound {
            // A bound below the last one: the hint no longer holds.
            (self.at, self.found, self.walking) = (0, None, false);
        }
        // The join seeks each list again at the bound another list moved it to: where that is at most the
        // entry this list last found, the answer is still that entry.
        if let Some(f) = self.found.filter(|&f| f >= p) {
            self.bound = p;
            return Ok(Some(f));
        }
        self.bound = p;
        let (at, found) = self.list.seek_from(p, self.walking.then_some(self.at))?;
        (self.at, self.walking) = (at, true);
        self.found = found;
        Ok(found)
    }
}

/// One item's lists, looked up once per use of the index.
struct ItemLists<'ix> {
    /// The tags' lists, shortest first (the most selective leads the join).
    tags: Vec<Cursor<'ix>>,
    /// The types' lists (their union is what matches); empty with `any_type`.
    types: Vec<Cursor<'ix>>,
    any_type: bool,
}

/// A query's lists in an index; `None` for an item that cannot match (a tag or every type unknown).
pub(crate) struct Matcher<'ix> {
    items: Vec<Option<ItemLists<'ix>>>,
}

impl<'ix> Matcher<'ix> {
    /// The matcher of `query` in `ix`. With `loose`, an item whose tags are much rarer than its types is
    /// joined on its tags alone: its candidates may have another type, which the caller checks on the frame
    /// (a read decodes each candidate anyway, and a seek in a long type list per candidate costs more).
    pub(crate) fn new(ix: &'ix Index, query: &Query, loose: bool) -> Matcher<'ix> {
        let resolve = |item: &QueryItem| {
            let tags: Option<Vec<&Postings>> = item.tags.iter().map(|t| ix.tags().get(t)).collect();
            let mut tags = tags?;
            tags.sort_by_key(|l| l.len());
            let mut types: Vec<&Postings> = item.types.iter().filter_map(|t| ix.types().get(t)).collect();
            if !item.types.is_empty() && types.is_empty() {
                // Types asked for, none of them in the log: the item matches nothing.
                return None;
            }
            let of_types: u64 = types.iter().map(|l| l.len()).sum();
            let rare_tags = tags.first().is_some_and(|t| t.len().saturating_mul(LOOSE_RATIO) <= of_types);
            if loose && rare_tags {
                types.clear();
            }
            let any_type = types.is_empty();
            let cursors = |lists: Vec<&'ix Postings>| lists.into_iter().map(Cursor::new).collect();
            Some(ItemLists { tags: cursors(tags), types: cursors(types), any_type })
        };
        let items = if query.items.is_empty() {
            vec![Some(ItemLists { tags: Vec::new(), types: Vec::new(), any_type: true })]
        } else {
            query.items.iter().map(resolve).collect()
        };
        Matcher { items }
    }

    /// The first matching position in `from..end`. Fastest when called with ascending `from`.
    pub(crate) fn next(&mut self, from: u64, end: u64) -> Result<Option<u64>, Stale> {
        let mut best: Option<u64> = None;
        for item in self.items.iter_mut().flatten() {
            let bound = best.unwrap_or(end);
            if let Some(p) = item_next(item, from, bound)? {
                best = Some(p);
            }
        }
        Ok(best)
    }
}

/// The first position in `from..end` that every list of `item` holds (a leapfrog join).
fn item_next(item: &mut ItemLists<'_>, from: u64, end: u64) -> Result<Option<u64>, Stale> {
    let mut x = from;
    loop {
        if x >= end {
            return Ok(None);
        }
        let mut moved = false;
        for list in &mut item.tags {
            match list.seek(x)? {
                None => return Ok(None),
                Some(y) if y > x => {
                    x = y;
                    moved = true;
                }
                Some(_) => {}
            }
        }
        if !item.any_type {
            let mut first: Option<u64> = None;
            for list in &mut item.types {
                if let Some(y) = list.seek(x)? {
                    first = Some(first.map_or(y, |f| f.min(y)));
                }
            }
            match first {
                None => return Ok(None),
                Some(y) if y > x => {
                    x = y;
                    moved = true;
                }
                Some(_) => {}
            }
        }
        if !moved {
            return Ok((x < end).then_some(x));
        }
    }
}

/// The first position in `from..end` of `ix` that matches `query`.
pub(crate) fn first_match(ix: &Index, query: &Query, from: u64, end: u64) -> Result<Option<u64>, Stale> {
    Matcher::new(ix, query, false).next(from, end)
}

/// Positions copied out of the index per lock acquisition.
const CHUNK: usize = 64;

/// A loose matcher joins an item on its tags alone when its shortest tag list is at most this many times
/// shorter than its types' lists together.
const LOOSE_RATIO: u64 = 8;

/// How many events ahead of the decoder a read through the index prefetches frames, and their name
/// definitions (once the frame is there): a few misses in flight at once, not a chunk's worth that the
/// memory system would drop.
const FRAMES_AHEAD: usize = 8;
const NAMES_AHEAD: usize = 4;

/// The events matching a query, oldest first; see [`Store::read`]. Touches only the frames that match.
pub struct QueryEvents<'s> {
    inner: &'s Inner,
    query: Query,
    /// The next position to look from.
    from: u64,
    /// One past the last position the read covers (the head when it was made).
    end: u64,
    left: u64,
    /// (segment slot, frame offset, position) of the next matches.
    buf: Vec<(usize, u64, u64)>,
    /// Their maps, taken with the locations under one lock (see [`Inner::map_of`]).
    maps: Vec<Option<&'s crate::map::SegmentMap>>,
    buf_at: usize,
    failed: bool,
    names: SegmentNames<'s>,
    /// What the read skips (truncated, deleted and retained-away events, system streams), fixed when it was
    /// made; `None` when nothing is hidden.
    hider: Option<crate::retention::Hider>,
    /// An error found while setting up (reading the retention rules), yielded first.
    error: Option<Error>,
}

impl QueryEvents<'_> {
    /// The last position in the log when the read was made (`None`: the log was empty): the read covers
    /// every event up to it, so it is the `after` of an [`AppendCondition`] for a decision made on the whole
    /// read. A read cut short by its `limit` covered only up to its last event: use that event's position.
    pub fn head(&self) -> Option<u64> {
        self.end.checked_sub(1)
    }

    /// Copies the next matches' locations out of the index under one short read lock.
    fn refill(&mut self) -> Result<()> {
        let (from, end, want) = (self.from, self.end, self.left.min(CHUNK as u64) as usize);
        let query = &self.query;
        // The buffer is reused: a read through the index is often short, and an allocation per chunk shows.
        let out = &mut self.buf;
        out.clear();
        let maps = &mut self.maps;
        maps.clear();
        self.buf_at = 0;
        let inner = self.inner;
        inner.with_index(|ix| {
            let mut matcher = Matcher::new(ix, query, true);
            let mut at = from;
            while out.len() < want {
                let Some(p) = matcher.next(at, end)? else { break };
                let Some((seg, off)) = ix.locate(p)? else { break };
                out.push((seg, off, p));
                maps.push(inner.map_of(ix, seg).0);
                at = p + 1;
            }
            Ok(())
        })?;
        self.from = self.buf.last().map_or(self.end, |&(_, _, p)| p + 1);
        prefetch_frames(self.inner, self.buf.iter().take(FRAMES_AHEAD).map(|&(seg, off, _)| (seg, off)));
        Ok(())
    }
}

impl<'s> Iterator for QueryEvents<'s> {
    type Item = Result<EventRef<'s>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.failed = true;
            return Some(Err(e));
        }
        let inner = self.inner;
        loop {
            match self.next_match()? {
                // A candidate of a loose join whose type the query does not take, or a hidden event (truncated
                // or deleted stream): it matches nothing and counts toward no limit.
                Ok(None) => self.left += 1,
                Ok(Some(e))
                    if self
                        .hider
                        .as_mut()
                        .is_some_and(|h| h.hides(inner, e.stream_id(), e.stream_version())) =>
                {
                    self.left += 1;
                }
                Ok(Some(e)) => return Some(Ok(e)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<'s> QueryEvents<'s> {
    /// The next event the query's lists lead to, hidden or not; `Ok(None)` for a candidate of a loose join
    /// whose type does not match.
    #[inline]
    fn next_match(&mut self) -> Option<Result<Option<EventRef<'s>>>> {
        if self.failed || self.left == 0 {
            return None;
        }
        if self.buf_at == self.buf.len() {
            if self.from >= self.end {
                return None;
            }
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(e));
            }
            if self.buf.is_empty() {
                return None;
            }
        }
        let (_, off, position) = self.buf[self.buf_at];
        let map = self.maps.get(self.buf_at).copied().flatten()?;
        // The frames of the chunk were asked for when it was copied; by now the one a few places ahead has
        // arrived, so its name definitions (a second, dependent miss each) can be asked for too.
        if let Some(&(ahead_seg, ahead_off, _)) = self.buf.get(self.buf_at + FRAMES_AHEAD) {
            prefetch_frames(self.inner, std::iter::once((ahead_seg, ahead_off)));
        }
        if let Some(&(ahead_seg, ahead_off, _)) = self.buf.get(self.buf_at + NAMES_AHEAD) {
            prefetch_frame_names(self.inner, ahead_seg, ahead_off);
        }
        self.buf_at += 1;
        self.left -= 1;
        // From the second event of a chunk on, names are resolved once per segment.
        let frame = self.names.decode(self.inner, map, off, self.buf_at > 1);
        let fault = match frame {
            Ok(f) => match f.body {
                // The index is checked against the frame it points at: the position, and the query itself.
                Body::Event(e) if e.position() == position && self.query.matches(&e) => {
                    return Some(Ok(Some(e)))
                }
                // A loose join checks types here; its tags must still be the event's.
                Body::Event(e) if e.position() == position && self.query.matches_tags(&e) => {
                    return Some(Ok(None))
                }
                _ => FrameFault::NotInQuery { position },
            },
            Err(p) => p.into(),
        };
        self.failed = true;
        Some(Err(Error::corrupt(map.path(), off, Corruption::Frame { fault, region: Region::Log })))
    }
}

impl Store {
    /// The events matching `query` after position `after` (from the first if `None`), oldest first, at most
    /// `limit` of them, up to the head when the read is made ([`QueryEvents::head`]). Uses the tag and type
    /// indexes: the frames read are those that match.
    ///
    /// Reading what a decision needs, and appending only if that is still all there is:
    ///
    /// ```
    /// use foldlog::{AppendCondition, Error, NewEvent, Query, QueryItem, Store};
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let name = Query::new([QueryItem::new().types(["UserRegistered"]).tags(["username:alice"])]);
    /// let alice = [NewEvent::new("UserRegistered", b"alice").tags(&["username:alice"])];
    /// // The name is free if no event claims it at all.
    /// store.append_if("users", &alice, &AppendCondition::new(name.clone()))?;
    /// let read = store.read(&name, None, None);
    /// assert_eq!(read.head(), Some(0));
    /// assert_eq!(read.map(|e| e.map(|e| e.position())).collect::<foldlog::Result<Vec<_>>>()?, [0]);
    /// // A second registration of the name is refused, naming the event that holds it.
    /// let again = store.append_if("users", &alice, &AppendCondition::new(name));
    /// assert!(matches!(again, Err(Error::AppendConditionFailed { position: 0, .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn read(&self, query: &Query, after: Option<u64>, limit: Option<u64>) -> QueryEvents<'_> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        self.read_between(query, from, self.next_position(), limit)
    }

    /// The events matching `query` in positions `from..end` (`end` at most the head), at most `limit`.
    pub(crate) fn read_between(
        &self,
        query: &Query,
        from: u64,
        end: u64,
        limit: Option<u64>,
    ) -> QueryEvents<'_> {
        let (hider, error) = match crate::retention::Hider::new(self.inner()) {
            Ok(h) => (h, None),
            Err(e) => (None, Some(e)),
        };
        QueryEvents {
            inner: self.inner(),
            query: query.clone(),
            from,
            end: end.min(self.next_position()),
            left: limit.unwrap_or(u64::MAX),
            buf: Vec::new(),
            maps: Vec::new(),
            buf_at: 0,
            failed: false,
            names: SegmentNames::default(),
            hider,
            error,
        }
    }
}

/// Whether reading the events of `types` in `from..end` through the type index beats scanning the range:
/// a read through the index costs a scattered frame per match, a scan a sequential frame per position, so
/// the index wins while at most one position in [`SCAN_DENSITY`] matches.
pub(crate) fn sparse_types(ix: &Index, types: &[String], from: u64, end: u64) -> bool {
    let count = |t: &String| -> Option<u64> {
        let Some(list) = ix.types().get(t) else { return Some(0) };
        let (start, _) = list.seek_from(from, None).ok()?;
        let (stop, _) = list.seek_from(end, Some(start)).ok()?;
        Some(stop - start)
    };
    let matches: Option<u64> = types.iter().map(count).sum();
    matches.is_some_and(|m| m.saturating_mul(SCAN_DENSITY) <= end.saturating_sub(from))
}

/// Above one match in this many positions, a filtered read scans instead of using the type index.
const SCAN_DENSITY: u64 = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{FrameAt, SegIndex};

    /// An index of 100 events: type `A` at even positions, `B` at odd; tag `x` on multiples of 3, `y` on
    /// multiples of 5.
    fn index() -> Index {
        let mut ix = Index::new(0);
        ix.push_segment(SegIndex::new(0, 0, 128));
        for p in 0..100u64 {
            ix.add_event(FrameAt { seg: 0, offset: 128 + p * 64, len: 64 }, "s", p, p, None).unwrap();
            let tags = [(p.is_multiple_of(3)).then_some("x"), (p.is_multiple_of(5)).then_some("y")];
            ix.add_labels(p, if p.is_multiple_of(2) { "A" } else { "B" }, tags.into_iter().flatten());
        }
        ix
    }

    fn all(ix: &Index, q: &Query, from: u64) -> Vec<u64> {
        let mut m = Matcher::new(ix, q, false);
        let mut out = Vec::new();
        let mut at = from;
        while let Some(p) = m.next(at, ix.next_position()).unwrap() {
            out.push(p);
            at = p + 1;
        }
        out
    }

    /// Every kind of query against a brute-force filter of the same events.
    #[test]
    fn matches_agree_with_a_filter() {
        let ix = index();
        let has = |p: u64, t: &str| (t == "x" && p.is_multiple_of(3)) || (t == "y" && p.is_multiple_of(5));
        let ty = |p: u64| if p.is_multiple_of(2) { "A" } else { "B" };
        let queries = [
            Query::all(),
            Query::new([QueryItem::new()]),
            Query::new([QueryItem::new().tags(["x"])]),
            Query::new([QueryItem::new().tags(["x", "y"])]),
            Query::new([QueryItem::new().types(["A"]).tags(["y"])]),
            Query::new([QueryItem::new().types(["B", "A"]).tags(["x"])]),
            Query::new([QueryItem::new().types(["B"])]),
            Query::new([
                QueryItem::new().types(["A"]).tags(["x"]),
                QueryItem::new().types(["B"]).tags(["y"]),
            ]),
            Query::new([QueryItem::new().tags(["nope"])]),
            Query::new([QueryItem::new().types(["Nope"])]),
            Query::new([QueryItem::new().tags(["x", "nope"]), QueryItem::new().types(["B"]).tags(["x"])]),
        ];
        for q in &queries {
            let expected: Vec<u64> = (10..100)
                .filter(|&p| {
                    q.items.is_empty()
                        || q.items.iter().any(|i| {
                            (i.types.is_empty() || i.types.iter().any(|t| t == ty(p)))
                                && i.tags.iter().all(|t| has(p, t))
                        })
                })
                .collect();
            assert_eq!(all(&ix, q, 10), expected, "{q:?}");
        }
    }
}
