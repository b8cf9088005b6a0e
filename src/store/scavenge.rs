//! Scavenge (issue 14, items 3 and 4): sealed segments rewritten without the events that truncations,
//! deletions and retention rules hide, their positions kept as gap frames; a dry run that reports exactly
//! what a run would do.
//!
//! **What is removed.** Of each stream, the events below the first one every read returns now (its
//! truncation, deletion or retention rule), but never its last event, which stays as the anchor of its version
//! (an expected version and the next append's version are read from the stream's events; a stream whose
//! every event a rule hides still has a last version), nor its newest snapshot's event or anything after it (a
//! load checks a snapshot against its event, and an aggregate whose early events are hidden loads only from a
//! snapshot). Always a prefix of the stream: the index, and every reader, insists that a stream's events are
//! consecutive versions. Name definitions are written again where a kept frame needs them;
//! consumer-position and stream-control frames are kept. A run of removed positions becomes one gap frame
//! (docs/format.md "Gap"), so positions, and the segment's base and successor, never move.
//!
//! **Order and crashes.** The rewritten segments are prepared as `<segment>.tmp` files and synced, the
//! checkpoint is removed, then each is renamed over its segment, oldest first, and the directory synced. A
//! crash leaves each segment old or new (a rename is atomic), a stray `.tmp` that open removes, and no
//! checkpoint (open rebuilds the index from the log). Oldest first keeps every stream's events a contiguous
//! run of versions at every step: a hidden event always lies before the kept ones of its stream.
//!
//! **Readers.** The new maps and the index rebuilt over them are put in place together under the index's
//! write lock ([`Inner::map_of`]); an iterator already walking an old map reads it to its end, and old maps
//! stay mapped until the handle closes (`SegmentTable::replace`), so no borrowed event ever points at
//! unmapped memory. The old files are unlinked at the rename: the file system frees their blocks when the
//! last map of them goes, at the latest when this handle and any reader in another process close.
//!
//! **The writer.** Planning and preparing the files run beside appends; the writer lock is held from the
//! check that the retention rules did not change since the plan (a relaxed rule must not lose what it shows
//! again; truncations and deletions only ever hide more) to the new index, about one index rebuild.

use super::*;
use crate::format::{
    DurableSlot, SegmentName, NAME_CONSUMER, NAME_STREAM, NAME_TAG, NAME_TYPE, SLOT_LEN, STREAM_VERSION_MAX,
};
use crate::record::{
    encode_consumer, encode_control, encode_event, encode_gap, encode_name, EventFields, GapRef,
};
use crate::retention::{Hider, RETENTION_STREAM, SYSTEM_PREFIX};
use std::collections::HashMap;

/// What [`Store::scavenge`] is asked to do.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct ScavengeOptions {
    /// Report what a scavenge would remove, and write nothing.
    pub dry_run: bool,
}

impl ScavengeOptions {
    /// Sets [`dry_run`](field@ScavengeOptions::dry_run).
    #[must_use]
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
}

/// What a scavenge removed (or, dry, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScavengeReport {
    /// It was a dry run: nothing was written.
    pub dry_run: bool,
    /// Each sealed segment examined, in log order.
    pub segments: Vec<SegmentScavenge>,
    /// Each stream that lost events, sorted by id.
    pub streams: Vec<StreamScavenge>,
    /// Events removed in all.
    pub events_removed: u64,
    /// Frame bytes of the sealed segments before and after (the header not counted).
    pub bytes_before: u64,
    /// See [`bytes_before`](field@ScavengeReport::bytes_before).
    pub bytes_after: u64,
}

/// One sealed segment in a [`ScavengeReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentScavenge {
    /// The segment file.
    pub path: PathBuf,
    /// Events it held before.
    pub events: u64,
    /// Of those, removed.
    pub events_removed: u64,
    /// Its frame bytes before and after.
    pub bytes_before: u64,
    /// See [`bytes_before`](field@SegmentScavenge::bytes_before).
    pub bytes_after: u64,
}

/// One stream in a [`ScavengeReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamScavenge {
    /// The stream.
    pub stream: String,
    /// Its events removed.
    pub events_removed: u64,
    /// The bytes of their frames (padding included).
    pub bytes_removed: u64,
}

/// A sealed segment's new frames, ready to be written.
struct Rewrite {
    slot: usize,
    name: SegmentName,
    path: PathBuf,
    /// The frames, from file offset `SEGMENT_HEADER_LEN`.
    frames: Vec<u8>,
}

impl Store {
    /// Rewrites the sealed segments without the events every read hides (truncated, deleted, or hidden by a
    /// retention rule; each stream's last event stays), keeping every other event at its position; with
    /// [`ScavengeOptions::dry_run`], only reports what it would do. Runs beside readers, and beside the
    /// writer until the new segments are put in place; see docs/operations.md for what it costs and what it
    /// frees when.
    ///
    /// A dry run works on a read-only handle too, beside a writer in another process.
    ///
    /// Errors: [`Error::ReadOnly`] (a real run on a read-only handle); I/O errors (a scavenge that fails before the renames leaves the store as
    /// it was; after some, the store is correct, and partly scavenged); [`Error::Corrupt`] if a sealed
    /// segment fails its checks.
    ///
    /// ```
    /// use foldlog::{ExpectedVersion, NewEvent, Options, ScavengeOptions, Store};
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open_with(dir.path(), Options::default().segment_size_bytes(4096))?;
    /// for _ in 0..60 {
    ///     store.append("session-1", ExpectedVersion::Any, &[NewEvent::new("Seen", &[0; 100])])?;
    /// }
    /// store.truncate_before("session-1", ExpectedVersion::Any, 55)?;
    /// let plan = store.scavenge(ScavengeOptions::default().dry_run(true))?;
    /// let done = store.scavenge(ScavengeOptions::default())?;
    /// assert_eq!(done.events_removed, plan.events_removed, "the dry run was exact");
    /// assert!(done.events_removed > 0 && done.bytes_after < done.bytes_before);
    /// assert_eq!(store.read_stream("session-1", 0).count(), 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn scavenge(&self, options: ScavengeOptions) -> Result<ScavengeReport> {
        if self.inner.is_read_only() && !options.dry_run {
            return Err(Error::ReadOnly);
        }
        let _one = self.inner.scavenging.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            let rules = self.inner.rules_version();
            let snapshots = crate::SnapshotFiles::new(self);
            let (report, rewrites) = self.inner.plan_scavenge(&|stream| snapshots.versions(stream))?;
            if options.dry_run || rewrites.is_empty() {
                return Ok(ScavengeReport { dry_run: options.dry_run, ..report });
            }
            let prepared = self.inner.prepare(&rewrites);
            let prepared = match prepared {
                Ok(p) => p,
                Err(e) => {
                    self.inner.discard(&rewrites);
                    return Err(e);
                }
            };
            let mut guard = self.inner.lock_writer()?;
            let w = guard.as_mut().ok_or(Error::ReadOnly)?;
            if self.inner.rules_version() != rules {
                // A rule changed while the files were prepared: plan again against it.
                drop(guard);
                self.inner.discard(&rewrites);
                continue;
            }
            self.inner.install(w, &rewrites, prepared)?;
            return Ok(report);
        }
    }
}

impl Inner {
    /// The retention rules' stream's last version: what a plan is valid for.
    fn rules_version(&self) -> Option<u64> {
        self.read_index().stream(RETENTION_STREAM).and_then(crate::index::StreamIndex::last_version)
    }

    /// Walks every sealed segment and builds the new frames of each that loses an event. `snapshots` lists a
    /// stream's snapshot versions: the events they were taken at stay (a load checks a snapshot against its
    /// event, and a truncated aggregate loads only from a snapshot).
    fn plan_scavenge(
        &self,
        snapshots: &dyn Fn(&str) -> Result<Vec<u64>>,
    ) -> Result<(ScavengeReport, Vec<Rewrite>)> {
        let sealed: Vec<_> = {
            let ix = self.read_index();
            let n = ix.segments().len().saturating_sub(1);
            (0..n).map(|i| (i, ix.segments()[i].base, ix.segments()[i].seq)).collect()
        };
        let nothing_hidden = Hider::new(self)?.is_none();
        let rules = self.retention_rules()?;
        // Per stream, the version below which its events go: a prefix, so that every stream's events stay a
        // run of consecutive versions (the index, and every reader, insists on it).
        let mut below: HashMap<String, u64> = HashMap::new();
        let mut failed: Option<Error> = None;
        let mut report = ScavengeReport::default();
        let mut streams: HashMap<String, StreamScavenge> = HashMap::new();
        let mut rewrites = Vec::new();
        for (slot, base, seq) in sealed {
            let (map, end) = self.map_of(&self.read_index(), slot);
            let map =
                map.ok_or_else(|| Error::corrupt(&self.dir, 0, Corruption::SegmentTableShort { slot }))?;
            // Every CRC checked: what is copied into the new segment must be what was written.
            let view = map.view(end, true);
            if (view.bytes.len() as u64, view.seq, view.base) != (end - SEGMENT_HEADER_LEN, seq, base) {
                return Err(Error::corrupt(
                    map.path(),
                    end,
                    Corruption::ResumeOutside { from: SEGMENT_HEADER_LEN },
                ));
            }
            let mut keep = |e: &EventRef<'_>| {
                let stream = e.stream_id();
                if nothing_hidden {
                    return true;
                }
                if let Some(&b) = below.get(stream) {
                    return e.stream_version() >= b;
                }
                let b = self.removable_below(stream, rules.as_deref(), snapshots).unwrap_or_else(|e| {
                    failed.get_or_insert(e);
                    0
                });
                below.insert(stream.to_owned(), b);
                e.stream_version() >= b
            };
            let out = rewrite_segment(&view, end, &mut keep).map_err(|(at, fault)| {
                Error::corrupt(map.path(), at, Corruption::Frame { fault, region: Region::Sealed })
            })?;
            // A snapshot directory that cannot be listed: keep everything rather than guess.
            if let Some(e) = failed.take() {
                return Err(e);
            }
            for (stream, (n, b)) in out.removed {
                let s = streams.entry(stream.to_owned()).or_insert_with(|| StreamScavenge {
                    stream: stream.to_owned(),
                    ..StreamScavenge::default()
                });
                s.events_removed += n;
                s.bytes_removed += b;
            }
            let before = end - SEGMENT_HEADER_LEN;
            let after = if out.events_removed > 0 { out.frames.len() as u64 } else { before };
            report.events_removed += out.events_removed;
            report.bytes_before += before;
            report.bytes_after += after;
            report.segments.push(SegmentScavenge {
                path: map.path().to_path_buf(),
                events: out.events,
                events_removed: out.events_removed,
                bytes_before: before,
                bytes_after: after,
            });
            if out.events_removed > 0 {
                let name = SegmentName { base, seq };
                rewrites.push(Rewrite { slot, name, path: map.path().to_path_buf(), frames: out.frames });
            }
        }
        let mut streams: Vec<_> = streams.into_values().collect();
        streams.sort_by(|a, b| a.stream.cmp(&b.stream));
        report.streams = streams;
        Ok((report, rewrites))
    }

    /// The version below which `stream`'s events may go: its first visible one (truncation, deletion,
    /// retention rule), but no further than its last event (the anchor of its version) and its newest
    /// snapshot's event (a load proves a snapshot by reading it, and a truncated aggregate loads only from a
    /// snapshot). 0 for foldlog's own streams, which are never removed.
    fn removable_below(
        &self,
        stream: &str,
        rules: Option<&crate::retention::Rules>,
        snapshots: &dyn Fn(&str) -> Result<Vec<u64>>,
    ) -> Result<u64> {
        if stream.starts_with(SYSTEM_PREFIX) {
            return Ok(0);
        }
        let b = {
            let ix = self.read_index();
            let Some((first, last)) =
                ix.stream(stream).and_then(|s| Some((s.first_version, s.last_version()?)))
            else {
                return Ok(0);
            };
            let visible = self.first_visible(&ix, rules, stream);
            if visible <= first {
                return Ok(0);
            }
            visible.min(last)
        };
        let newest = snapshots(stream)?.into_iter().filter(|&v| v < b).max();
        Ok(newest.map_or(b, |v| v.min(b)))
    }

    /// Writes each rewrite as `<segment>.tmp` (same header and capacity, one durable slot naming its new end,
    /// the space past it given back) and syncs it. Returns each file's durable end.
    fn prepare(&self, rewrites: &[Rewrite]) -> Result<Vec<u64>> {
        rewrites.iter().map(|r| self.prepare_one(r)).collect()
    }

    fn prepare_one(&self, r: &Rewrite) -> Result<u64> {
        let map = self
            .segments
            .get(r.slot)
            .ok_or_else(|| Error::corrupt(&self.dir, 0, Corruption::SegmentTableShort { slot: r.slot }))?;
        let mut head = map.header_copy();
        let old = DurableSlot::newest(&head)
            .ok_or_else(|| Error::corrupt(map.path(), 64, Corruption::NoDurableSlot))?;
        let end = SEGMENT_HEADER_LEN + r.frames.len() as u64;
        let slot = DurableSlot { seq: old.seq + 1, durable_end: end, ..old };
        let slots = SEGMENT_HEADER_LEN as usize - 2 * SLOT_LEN;
        head[slots..].fill(0);
        let at = slot.file_offset() as usize;
        head[at..at + SLOT_LEN].copy_from_slice(&slot.encode());
        let tmp = tmp_path(&r.path);
        let _ = sys::remove(&tmp);
        let write = || -> std::io::Result<()> {
            let file = sys::create_new(&tmp)?;
            sys::allocate(&file, &tmp, map.len())?;
            sys::write_at(&file, &tmp, 0, &head)?;
            sys::write_at(&file, &tmp, SEGMENT_HEADER_LEN, &r.frames)?;
            // The capacity stays (a gap is bounded by it); the blocks past the frames go back.
            sys::release_blocks(&file, &tmp, end.next_multiple_of(4096), map.len())?;
            sys::sync_file(&file, &tmp)
        };
        write().map_err(|e| Error::io("write scavenged segment", &tmp, e))?;
        Ok(end)
    }

    /// Removes the prepared files of a scavenge that stops before its renames. Only `<segment>.tmp` names.
    #[expect(clippy::unused_self, reason = "a step of the scavenge, called as its siblings are")]
    fn discard(&self, rewrites: &[Rewrite]) {
        for r in rewrites {
            let _ = sys::remove(&tmp_path(&r.path));
        }
    }

    /// Under the writer lock: renames the prepared files over their segments, maps them, rebuilds the index
    /// over the new maps, and puts both in place at once; then writes a checkpoint.
    fn install(&self, w: &mut Writer, rewrites: &[Rewrite], ends: Vec<u64>) -> Result<()> {
        // A checkpoint describes the old offsets: without one, a crash from here on makes open rebuild.
        remove_checkpoint(&self.dir)?;
        // From the first rename on, this handle's maps and index may no longer be the files': a failure
        // poisons it (it writes nothing more, no checkpoint of the old offsets), and a reopen rebuilds.
        match self.swap_files(rewrites, ends) {
            Ok(()) => self.checkpoint_locked(w),
            Err(e) => self.poison(e),
        }
    }

    fn swap_files(&self, rewrites: &[Rewrite], ends: Vec<u64>) -> Result<()> {
        for r in rewrites {
            sys::rename(&tmp_path(&r.path), &r.path)
                .map_err(|e| Error::io("rename scavenged segment", &r.path, e))?;
        }
        sys::sync_dir(&self.dir).map_err(|e| Error::io("sync directory", &self.dir, e))?;
        let mut fresh: Vec<(usize, Arc<SegmentMap>, u64)> = Vec::with_capacity(rewrites.len());
        for (r, end) in rewrites.iter().zip(ends) {
            let seg = Segment::open(&r.path, r.name, Some(self.log_id), false, false)?;
            if seg.slot.map(|s| s.durable_end) != Some(end) {
                return Err(Error::corrupt(&r.path, 64, Corruption::NoDurableSlot));
            }
            seg.map.reveal(end);
            fresh.push((r.slot, seg.map, end));
        }
        let index = self.index_from_log(&fresh)?;
        for (_, map, end) in &fresh {
            // Every frame of it was checked by the rebuild just now.
            map.mark_verified(SEGMENT_HEADER_LEN, *end);
        }
        {
            let mut ix = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (slot, map, _) in &fresh {
                self.segments.replace(*slot, Arc::clone(map))?;
            }
            *ix = index;
        }
        Ok(())
    }
}

fn tmp_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(SEGMENT_TMP_SUFFIX);
    PathBuf::from(name)
}

/// A segment's frames without the events `keep` refuses.
struct Rewritten<'a> {
    frames: Vec<u8>,
    events: u64,
    events_removed: u64,
    /// Per stream: events removed and their frame bytes.
    removed: HashMap<&'a str, (u64, u64)>,
}

/// The names the new frames refer to: where each is defined, by what it is, its value and its text; and
/// each stream's latest definition with its base version.
#[derive(Default)]
struct Defs<'a> {
    names: HashMap<(u8, u64, &'a str), u32>,
    streams: HashMap<&'a str, (u32, u64)>,
}

/// A frame of the batch being read, kept for the new segment.
enum Kept<'a> {
    Event(EventRef<'a>),
    Consumer(&'a str, u64, bool),
    Control(&'a str, u64, bool),
    Gap(GapRef),
}

/// Builds the frames of a sealed segment (`view`, frames up to `end`) without the events `keep` refuses:
/// batch by batch, each kept frame encoded again after the definitions of its names, each run of removed
/// positions one gap frame, the last frame of each batch `COMMIT`. An invalid frame is `(offset, fault)`.
fn rewrite_segment<'a>(
    view: &SegView<'a>,
    end: u64,
    keep: &mut dyn FnMut(&EventRef<'a>) -> bool,
) -> std::result::Result<Rewritten<'a>, (u64, FrameFault)> {
    let mut out = Rewritten { frames: Vec::new(), events: 0, events_removed: 0, removed: HashMap::new() };
    let mut defs = Defs::default();
    let mut batch: Vec<Kept<'a>> = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while off < end {
        let frame = decode_frame(view, off).map_err(|p| (off, FrameFault::from(p)))?;
        match frame.body {
            Body::Event(e) if keep(&e) => {
                out.events += 1;
                batch.push(Kept::Event(e));
            }
            Body::Event(e) => {
                out.events += 1;
                out.events_removed += 1;
                let r = out.removed.entry(e.stream_id()).or_default();
                *r = (r.0 + 1, r.1 + frame.len);
                match batch.last_mut() {
                    Some(Kept::Gap(g))
                        if g.first + g.count == e.position() && g.count < u64::from(u32::MAX) =>
                    {
                        g.count += 1;
                    }
                    _ => batch.push(Kept::Gap(GapRef { first: e.position(), count: 1 })),
                }
            }
            Body::Gap(g) => match batch.last_mut() {
                Some(Kept::Gap(h))
                    if h.first + h.count == g.first && u32::try_from(h.count + g.count).is_ok() =>
                {
                    h.count += g.count;
                }
                _ => batch.push(Kept::Gap(g)),
            },
            Body::Consumer(c) => batch.push(Kept::Consumer(c.name, c.position, c.delete)),
            Body::Control(c) => batch.push(Kept::Control(c.stream, c.truncate_before, c.deleted)),
            Body::Name => {}
        }
        off += frame.len;
        if frame.commit {
            write_batch(view, &mut out.frames, &mut defs, &batch).map_err(|()| (off, FrameFault::Body))?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        // A sealed segment ends on a batch boundary (recovery checked it).
        return Err((end, FrameFault::Truncated));
    }
    Ok(out)
}

/// Appends one batch's kept frames (and the definitions they need first) to `frames`.
fn write_batch<'a>(
    view: &SegView<'a>,
    frames: &mut Vec<u8>,
    defs: &mut Defs<'a>,
    batch: &[Kept<'a>],
) -> std::result::Result<(), ()> {
    let last = batch.len().saturating_sub(1);
    for (i, k) in batch.iter().enumerate() {
        let commit = i == last;
        match *k {
            Kept::Event(e) => {
                let base = e.stream_version();
                let stream = defs.stream(frames, view.seq, e.stream_id(), base)?;
                let type_def =
                    defs.get(frames, view.seq, (NAME_TYPE, u64::from(e.schema_version()), e.event_type()))?;
                let tag_defs = e
                    .tags()
                    .map(|t| defs.get(frames, view.seq, (NAME_TAG, 0, t)))
                    .collect::<std::result::Result<Vec<u32>, ()>>()?;
                let fields = EventFields {
                    stream_def: stream.0,
                    type_def,
                    version_delta: u32::try_from(e.stream_version() - stream.1).map_err(drop)?,
                    position_delta: u32::try_from(e.position() - view.base).map_err(drop)?,
                    timestamp_micros: e.timestamp_micros(),
                    event_id: e.event_id(),
                    tag_defs: &tag_defs,
                    metadata: e.metadata(),
                    payload: e.payload(),
                };
                let len = fields.len() as u64 + 8;
                emit(frames, view.seq, len, |place, dst| encode_event(&fields, commit, place, dst))?;
            }
            Kept::Consumer(name, position, delete) => {
                let def = defs.get(frames, view.seq, (NAME_CONSUMER, 0, name))?;
                emit(frames, view.seq, 32, |place, dst| {
                    encode_consumer(def, position, delete, commit, place, dst)
                })?;
            }
            Kept::Control(stream, before, deleted) => {
                let def = defs.stream(frames, view.seq, stream, before.min(STREAM_VERSION_MAX))?.0;
                emit(frames, view.seq, 32, |place, dst| {
                    encode_control(def, before, deleted, commit, place, dst)
                })?;
            }
            Kept::Gap(g) => {
                let first = u32::try_from(g.first - view.base).map_err(drop)?;
                let count = u32::try_from(g.count).map_err(drop)?;
                emit(frames, view.seq, 24, |place, dst| encode_gap(first, count, commit, place, dst))?;
            }
        }
    }
    Ok(())
}

impl<'a> Defs<'a> {
    /// The offset of a definition of `key`, writing one first if there is none yet.
    fn get(
        &mut self,
        frames: &mut Vec<u8>,
        seq: u32,
        key: (u8, u64, &'a str),
    ) -> std::result::Result<u32, ()> {
        if let Some(&d) = self.names.get(&key) {
            return Ok(d);
        }
        let (what, value, name) = key;
        let at = emit(frames, seq, crate::record::name_frame_len(name), |place, dst| {
            encode_name(what, value, name, place, dst)
        })?;
        let at = u32::try_from(at).map_err(drop)?;
        self.names.insert(key, at);
        Ok(at)
    }

    /// A stream definition usable for version `version`: the stream's latest one if its base is at or
    /// below it (and the difference fits), else a new one with base `version`. Returns (offset, base).
    fn stream(
        &mut self,
        frames: &mut Vec<u8>,
        seq: u32,
        stream: &'a str,
        version: u64,
    ) -> std::result::Result<(u32, u64), ()> {
        match self.streams.get(stream) {
            Some(&(at, base)) if base <= version && u32::try_from(version - base).is_ok() => Ok((at, base)),
            _ => {
                let at = self.get(frames, seq, (NAME_STREAM, version, stream))?;
                self.streams.insert(stream, (at, version));
                Ok((at, version))
            }
        }
    }
}

/// Encodes one frame at the end of `frames` (whose first byte is file offset `SEGMENT_HEADER_LEN`) with
/// `encode`, given room for `len` bytes; returns its file offset.
fn emit(
    frames: &mut Vec<u8>,
    seq: u32,
    len: u64,
    encode: impl FnOnce(crate::record::Place, &mut [u8]) -> Option<u64>,
) -> std::result::Result<u64, ()> {
    let start = frames.len();
    let at = SEGMENT_HEADER_LEN + start as u64;
    frames.resize(start + usize::try_from(len).map_err(drop)?.next_multiple_of(8), 0);
    let written = encode(crate::record::Place { seq, offset: at }, &mut frames[start..]).ok_or(())?;
    frames.truncate(start + usize::try_from(written).map_err(drop)?);
    Ok(at)
}
