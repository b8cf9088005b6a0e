//! Salvage: copy every intact event of a damaged store into a new one, and say exactly what was lost.
//!
//! A store with a damaged sealed segment does not open (not even read-only with
//! `Recovery::TruncateCorruption`, which only cuts the last segment), so the intact events around the damage
//! are out of reach. [`salvage()`] walks every frame of every segment the way [`crate::verify::verify_dir`] does
//! (it is the same walk, without opening the source, which it never writes to) and appends each whole batch
//! that passes its checks to a new store, built in a temporary directory next to the destination and renamed
//! into place when complete.
//!
//! The rules, in the order they are applied to each event of a whole batch (every frame valid: CRC, header,
//! rkyv validation; the batch's `COMMIT` frame seen):
//!
//! - **Positions only move forward.** An event whose position is not above the last one copied (a repeat) is
//!   left out. Positions are assigned densely by the engine, so a lost range shifts every later event down:
//!   [`SalvageReport::mapping`] gives old → new for every copied event, and [`SalvageReport::new_position`]
//!   looks one up.
//! - **Stream versions are kept**, so aggregates, snapshots taken elsewhere and expected-version checks in
//!   other systems still agree. A stream's first copied event starts it at its own version (as
//!   `StreamAppend::first_version`). **A stream with a gap keeps its prefix**: once a version is missing, the
//!   stream's later events are left out, even intact ones, and listed in [`SalvageReport::streams_cut`]. A
//!   stream with a hole would fold into a state that never existed; its prefix is a true earlier state.
//! - **Event ids, types, schema versions, metadata, payloads and timestamps are kept** (timestamps through
//!   `NewEvent::timestamp_micros`). Source batches stay atomic: the events copied from one batch are
//!   appended as one batch.
//! - **The key file** (`KEYS`, encrypted streams' keys) is copied as it is: an encrypted event's ciphertext
//!   binds its stream, type and schema version, not its position, so it opens in the new store.
//! - **Consumer positions**: the latest intact position of each name is carried over, mapped to the new
//!   position of the last copied event at or before it (the consumer had processed that far). A consumer
//!   whose position is before every copied event is dropped and listed.
//! - **Stream truncations and deletions** are carried over: each stream's latest intact control (its
//!   truncation point, and whether it was deleted) is applied to the new store once every batch is copied,
//!   so the same events are hidden there (a truncation point past a cut stream's last kept version + 1 is
//!   lowered to it). A control whose stream kept no event is dropped. [`SalvageReport::stream_controls`]
//!   counts the controls applied.
//! - **Derived data is not copied.** The index checkpoint is not read (the new store builds its own) and
//!   snapshots are skipped (they name positions that may have moved; aggregates rebuild them on load);
//!   [`SalvageReport::snapshots_skipped`] says when there were some.
//!
//! What cannot be known: the stream of an event whose frame is unreadable. A stream that lost events in the
//! middle shows it by its version gap; one that lost its last or first events does not, so
//! [`SalvageReport::lost`] lists every lost position, and [`SalvageReport::streams_starting_late`] names the
//! streams whose first copied event comes after a loss at a version above 1 (they may have lost their start).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, ExpectedVersion, Result};
use crate::format::{NAME_BYTES_MAX, STREAM_ID_BYTES_MAX, STREAM_VERSION_MAX};
use crate::options::{Durability, Options};
use crate::record::EventRef;
use crate::staging::Staging;
use crate::store::{Batch, NewEvent, Store, StreamAppend};
use crate::verify::{walk_dir, Affected, Damage, FoundBatch, TornTail};

/// How [`salvage()`] builds the new store: `SalvageOptions::default().segment_size_bytes(1 << 20)`.
/// Non-exhaustive, so that another option is not a breaking change.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SalvageOptions {
    /// Segment size of the new store (`Options::segment_size_bytes`; default as in [`Options::default`]).
    /// A source batch too large for it is copied one stream, then one event, at a time.
    pub segment_size_bytes: u64,
}

impl Default for SalvageOptions {
    fn default() -> SalvageOptions {
        SalvageOptions { segment_size_bytes: Options::default().segment_size_bytes }
    }
}

impl SalvageOptions {
    /// Sets [`segment_size_bytes`](field@SalvageOptions::segment_size_bytes).
    #[must_use]
    pub fn segment_size_bytes(mut self, bytes: u64) -> Self {
        self.segment_size_bytes = bytes;
        self
    }
}

/// A run of copied events whose old and new positions both increase by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PositionRun {
    /// Position of the run's first event in the source.
    pub old_start: u64,
    /// Its position in the new store.
    pub new_start: u64,
    /// Events in the run.
    pub len: u64,
}

/// A stream whose versions have a gap in the source: its prefix was copied, the rest left out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamCut {
    /// The stream.
    pub stream: String,
    /// The last version copied.
    pub kept_through: u64,
    /// The version that is missing (`kept_through + 1`).
    pub missing_version: u64,
    /// Source positions of the stream's later events that were intact but left out (also in
    /// [`SalvageReport::lost`]).
    pub dropped_positions: Vec<u64>,
}

/// A consumer position as carried over.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerCarried {
    /// The consumer's name.
    pub name: String,
    /// Its latest intact position in the source.
    pub old_position: u64,
    /// Its position in the new store (`None`: dropped, no copied event is at or before it).
    pub new_position: Option<u64>,
}

/// What [`salvage()`] copied and what it lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The damaged store.
    pub src: PathBuf,
    /// The new store.
    pub dst: PathBuf,
    /// Events copied.
    pub events_copied: u64,
    /// One past the highest source position known to have existed (from the frames found and the damage
    /// walked). Positions below it that were not copied are in [`SalvageReport::lost`].
    pub source_end: u64,
    /// True when damage reaches the end of the log, so events past [`SalvageReport::source_end`] may have
    /// existed too and their number is unknown.
    pub end_uncertain: bool,
    /// Source positions that were not copied, as sorted, disjoint ranges: unreadable, failing a check, or
    /// left out by a stream cut.
    pub lost: Vec<Range<u64>>,
    /// Old → new positions of every copied event.
    pub mapping: Vec<PositionRun>,
    /// Streams with a version gap (prefix kept), by name.
    pub streams_cut: Vec<StreamCut>,
    /// Streams whose first copied event has a version above 1 and comes after any position that was not
    /// copied: they may have lost their first events (a stream's first version is not recorded anywhere
    /// else). (stream, first copied version).
    pub streams_starting_late: Vec<(String, u64)>,
    /// Consumer positions, by name.
    pub consumers: Vec<ConsumerCarried>,
    /// Stream truncations and deletions applied to the new store (one per stream).
    pub stream_controls: u64,
    /// Every damaged range the walk found (as `foldlog verify` reports it).
    pub damage: Vec<Damage>,
    /// The torn tail of the last segment, if any: never promised durable, so not counted as lost.
    pub torn_tail: Option<TornTail>,
    /// The source has a `snapshots/` directory, which was not copied.
    pub snapshots_skipped: bool,
}

impl SalvageReport {
    /// True if every event and consumer position of the source arrived (damage, if any, hid none).
    pub fn is_complete(&self) -> bool {
        self.lost.is_empty() && !self.end_uncertain && self.consumers.iter().all(|c| c.new_position.is_some())
    }

    /// The new position of the event at source position `old`, or `None` if it was not copied.
    pub fn new_position(&self, old: u64) -> Option<u64> {
        let i = self.mapping.partition_point(|r| r.old_start <= old).checked_sub(1)?;
        let run = self.mapping.get(i)?;
        (old - run.old_start < run.len).then(|| run.new_start + (old - run.old_start))
    }

    /// Number of lost positions (not counting any past [`SalvageReport::source_end`]).
    pub fn lost_count(&self) -> u64 {
        self.lost.iter().map(|r| r.end - r.start).sum()
    }

    /// The lost positions that went with the damage itself (unreadable frames, the rest of their batches,
    /// frames failing a check), as sorted, disjoint ranges: [`SalvageReport::lost`] without the intact events
    /// that stream cuts left out.
    pub fn lost_to_damage(&self) -> Vec<Range<u64>> {
        let mut dropped: Vec<u64> =
            self.streams_cut.iter().flat_map(|c| c.dropped_positions.iter().copied()).collect();
        dropped.sort_unstable();
        let mut out: Vec<Range<u64>> = Vec::new();
        for r in &self.lost {
            let mut at = r.start;
            // Walk the dropped positions inside `r`; the stretches between them went with the damage.
            let from = dropped.partition_point(|&p| p < r.start);
            for &p in dropped[from..].iter().take_while(|&&p| p < r.end) {
                if p > at {
                    out.push(at..p);
                }
                at = p + 1;
            }
            if at < r.end {
                out.push(at..r.end);
            }
        }
        out
    }
}

/// Per-stream state while copying.
struct StreamState {
    /// The version the next copied event must carry.
    next: u64,
    /// Index into `streams_cut` once the stream has a gap.
    cut: Option<usize>,
}

/// The copy in progress: the new store and what has been decided so far.
struct Copier<'a> {
    store: &'a Store,
    report: SalvageReport,
    streams: HashMap<String, StreamState>,
    /// Latest consumer position per name, in log order.
    consumers: HashMap<String, u64>,
    /// Per stream, its controls merged: the highest truncation point, and whether it was deleted.
    controls: HashMap<String, (u64, bool)>,
    /// The last source position copied.
    last_old: Option<u64>,
    /// Events kept so far: fewer than the next position means some earlier position was not copied.
    kept: u64,
    /// The first error from the new store; the walk goes on, but nothing more is written.
    failed: Option<Error>,
}

/// Copies every intact event of the store in `src` into a new store at `dst` (see the module docs for the
/// rules) and reports what was copied and what was lost. `src` is only read (a shared lock on the directory,
/// as `verify` takes; a writer may be appending meanwhile, and then what it had committed is copied).
/// `dst` must not exist or be an empty directory; the new store appears there only when complete.
///
/// Damage is never an error: it is in the report. Errors are a source that is not a store
/// ([`Error::InvalidDirectory`]), a destination that exists and is not empty (the same), and I/O.
///
/// ```
/// # fn main() -> foldlog::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let (src, dst) = (tmp.path().join("damaged"), tmp.path().join("salvaged"));
/// # let store = foldlog::Store::open(&src)?;
/// # store.append("s", foldlog::ExpectedVersion::Any, &[foldlog::NewEvent::new("E", b"x")])?;
/// # store.close()?;
/// use foldlog::salvage::{salvage, SalvageOptions};
///
/// let report = salvage(&src, &dst, &SalvageOptions::default())?;
/// for lost in &report.lost {
///     println!("lost positions {}..{}", lost.start, lost.end);
/// }
/// assert!(report.is_complete());
/// assert!(foldlog::verify::verify_dir(&dst)?.is_clean());
/// # Ok(())
/// # }
/// ```
pub fn salvage(
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    options: &SalvageOptions,
) -> Result<SalvageReport> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    // The source is judged before anything is created for the destination.
    if !crate::directory::inspect_directory(src)?.has_segments {
        return Err(Error::InvalidDirectory { path: src.to_path_buf(), reason: "no segment files".into() });
    }
    let staging = Staging::new(dst)?;
    let store = Store::open_with(
        staging.path(),
        Options {
            segment_size_bytes: options.segment_size_bytes,
            // Synced once at the end: the new store is not visible before it is complete anyway.
            durability: Durability::Never,
            // The source already decided which appends were retries (see `Staging::remove_checkpoint`).
            event_ids_remembered: 0,
            ..Options::default()
        },
    )?;
    let mut copier = Copier {
        store: &store,
        report: SalvageReport { src: src.to_path_buf(), dst: dst.to_path_buf(), ..SalvageReport::default() },
        streams: HashMap::new(),
        consumers: HashMap::new(),
        controls: HashMap::new(),
        last_old: None,
        kept: 0,
        failed: None,
    };
    let walked = walk_dir(src, Some(&mut |batch: &FoundBatch<'_>| copier.batch(batch)))?;
    if let Some(e) = copier.failed.take() {
        return Err(e);
    }
    copier.consumers()?;
    copier.controls()?;
    let mut report = copier.finish(walked);
    report.snapshots_skipped = src.join(crate::aggregate::SNAPSHOT_DIR).is_dir();
    store.close()?;
    staging.remove_checkpoint()?;
    // Encrypted streams keep their ids and versions here, and their ciphertexts bind nothing else of the log,
    // so the source's keys still open them; without the key file they would be lost.
    crate::backup::copy_key_file(src, staging.path())?;
    staging.finish()?;
    Ok(report)
}

impl Copier<'_> {
    fn batch(&mut self, batch: &FoundBatch<'_>) {
        for &(name, position, delete) in batch.consumers {
            if delete {
                self.consumers.remove(name);
                continue;
            }
            self.consumers.insert(name.to_owned(), position);
        }
        for &(stream, before, deleted) in batch.controls {
            let c = self.controls.entry(stream.to_owned()).or_default();
            *c = (c.0.max(before), c.1 || deleted);
        }
        if self.failed.is_some() {
            return;
        }
        // foldlog never writes one id twice in a batch, and the engine refuses such a batch: it fails the
        // checks as a whole (its positions are reported lost).
        let mut ids = std::collections::HashSet::new();
        if !batch.events.iter().filter_map(super::record::EventRef::event_id).all(|id| ids.insert(id)) {
            return;
        }
        let kept: Vec<EventRef<'_>> = batch.events.iter().copied().filter(|&e| self.keep(e)).collect();
        if kept.is_empty() {
            return;
        }
        if let Err(e) = self.append(&kept) {
            self.failed = Some(e);
        }
    }

    /// The checks of the module docs; updates the stream state of an event that is kept.
    fn keep(&mut self, e: EventRef<'_>) -> bool {
        let position = e.position();
        if self.last_old.is_some_and(|last| position <= last) {
            return false;
        }
        let (stream, version) = (e.stream_id(), e.stream_version());
        let sane = (1..=STREAM_ID_BYTES_MAX).contains(&stream.len())
            && (1..=NAME_BYTES_MAX).contains(&e.event_type().len())
            && version <= STREAM_VERSION_MAX;
        if !sane {
            return false;
        }
        let cuts = &mut self.report.streams_cut;
        match self.streams.get_mut(stream) {
            None => {
                // Any earlier position not copied may have been this stream's start.
                if position > self.kept && version > 1 {
                    self.report.streams_starting_late.push((stream.to_owned(), version));
                }
                self.streams.insert(stream.to_owned(), StreamState { next: version + 1, cut: None });
            }
            Some(StreamState { cut: Some(i), .. }) => {
                cuts[*i].dropped_positions.push(position);
                return false;
            }
            Some(s) if s.next != version => {
                s.cut = Some(cuts.len());
                cuts.push(StreamCut {
                    stream: stream.to_owned(),
                    kept_through: s.next - 1,
                    missing_version: s.next,
                    dropped_positions: vec![position],
                });
                return false;
            }
            Some(s) => s.next = version + 1,
        }
        self.last_old = Some(position);
        self.kept += 1;
        true
    }

    /// Appends one source batch's kept events as one batch (runs of one stream each); falls back to smaller
    /// batches if the new store's segments are too small for it.
    fn append(&mut self, kept: &[EventRef<'_>]) -> Result<()> {
        let tags: Vec<Vec<&str>> = kept.iter().map(|e| e.tags().collect()).collect();
        let news: Vec<NewEvent<'_>> = kept
            .iter()
            .zip(&tags)
            .map(|(e, tags)| NewEvent {
                event_type: e.event_type(),
                payload: e.payload(),
                metadata: e.metadata(),
                event_id: e.event_id(),
                schema_version: e.schema_version(),
                timestamp_micros: Some(e.timestamp_micros()),
                tags,
            })
            .collect();
        // Runs of consecutive events of one stream; a stream appears once per batch, so a second run of the
        // same stream (not written by foldlog, but possible in principle) starts a new batch.
        let mut batches: Vec<Vec<Range<usize>>> = vec![Vec::new()];
        let mut start = 0;
        for i in 1..=kept.len() {
            if i < kept.len() && kept[i].stream_id() == kept[start].stream_id() {
                continue;
            }
            let current = batches.last_mut().expect("one batch at least");
            if current.iter().any(|r| kept[r.start].stream_id() == kept[start].stream_id()) {
                batches.push(Vec::new());
            }
            batches.last_mut().expect("one batch at least").push(start..i);
            start = i;
        }
        for runs in batches {
            match self.append_runs(kept, &news, &runs) {
                Err(Error::TooLarge { .. }) => {
                    for run in runs {
                        match self.append_runs(kept, &news, std::slice::from_ref(&run)) {
                            Err(Error::TooLarge { .. }) => {
                                for i in run {
                                    let one = i..i + 1;
                                    self.append_runs(kept, &news, std::slice::from_ref(&one))?;
                                }
                            }
                            r => r?,
                        }
                    }
                }
                r => r?,
            }
        }
        Ok(())
    }

    fn append_runs(
        &mut self,
        kept: &[EventRef<'_>],
        news: &[NewEvent<'_>],
        runs: &[Range<usize>],
    ) -> Result<()> {
        let appends: Vec<StreamAppend<'_>> = runs
            .iter()
            .map(|r| {
                let first = &kept[r.start];
                let v = first.stream_version();
                StreamAppend {
                    stream: first.stream_id(),
                    expected: if self.store.stream_version(first.stream_id()).is_some() {
                        ExpectedVersion::Exact(v.wrapping_sub(1))
                    } else {
                        ExpectedVersion::NoStream
                    },
                    first_version: v,
                    events: &news[r.clone()],
                }
            })
            .collect();
        let appended = self.store.append_batch(&Batch::new(&appends))?;
        for (r, a) in runs.iter().zip(appended) {
            if a.deduplicated {
                // A reused event id matched an earlier event: nothing was written. Should the source hold
                // such a pair, the events are reported as not copied rather than silently merged.
                return Err(Error::DuplicateEventId {
                    id: kept[r.start].event_id().unwrap_or_default(),
                    position: a.positions.start,
                });
            }
            for (i, new) in r.clone().zip(a.positions) {
                self.mapped(kept[i].position(), new);
            }
        }
        Ok(())
    }

    fn mapped(&mut self, old: u64, new: u64) {
        self.report.events_copied += 1;
        if let Some(run) = self.report.mapping.last_mut() {
            if run.old_start + run.len == old && run.new_start + run.len == new {
                run.len += 1;
                return;
            }
        }
        self.report.mapping.push(PositionRun { old_start: old, new_start: new, len: 1 });
    }

    /// The streams' merged controls, each written as its own batch, in stream order.
    fn controls(&mut self) -> Result<()> {
        let mut streams: Vec<(&String, &(u64, bool))> = self.controls.iter().collect();
        streams.sort_unstable();
        for (stream, &(before, deleted)) in streams {
            let Some(last) = self.store.stream_version(stream) else { continue };
            if deleted {
                self.store.delete_stream(stream, ExpectedVersion::Any)?;
            } else {
                self.store.truncate_before(stream, ExpectedVersion::Any, before.min(last + 1))?;
            }
            self.report.stream_controls += 1;
        }
        Ok(())
    }

    /// The latest consumer positions, mapped, each written as its own (consumer-only) batch.
    fn consumers(&mut self) -> Result<()> {
        let mut names: Vec<(&String, &u64)> = self.consumers.iter().collect();
        names.sort_unstable();
        for (name, &old) in names {
            let i = self.report.mapping.partition_point(|r| r.old_start <= old);
            let new = i.checked_sub(1).map(|i| {
                let run = self.report.mapping[i];
                run.new_start + (old - run.old_start).min(run.len - 1)
            });
            if let Some(p) = new {
                self.store.append_batch(&Batch::new(&[]).consumer(name, p))?;
            }
            self.report.consumers.push(ConsumerCarried {
                name: name.clone(),
                old_position: old,
                new_position: new,
            });
        }
        Ok(())
    }

    /// Lost ranges: every position below the known end that no run covers.
    fn finish(mut self, walked: crate::verify::VerifyReport) -> SalvageReport {
        // The last segment's durable slot says how many events were promised durable: damage below it
        // hides a known number of positions; past it, nothing was promised, and the count is unknown.
        let durable_next = walked.segments.last().and_then(|s| last_durable_position(&s.path));
        let mut end = walked.next_position.max(durable_next.unwrap_or(0));
        for d in &walked.damage {
            match &d.positions {
                Affected::None => {}
                Affected::Range(r) => end = end.max(r.end),
                Affected::From(p) => {
                    end = end.max(*p);
                    self.report.end_uncertain |= durable_next.is_none_or(|n| *p >= n);
                }
            }
        }
        if let Some(r) = self.report.mapping.last() {
            end = end.max(r.old_start + r.len);
        }
        let mut at = 0;
        for run in &self.report.mapping {
            if run.old_start > at {
                self.report.lost.push(at..run.old_start);
            }
            at = run.old_start + run.len;
        }
        if end > at {
            self.report.lost.push(at..end);
        }
        self.report.source_end = end;
        self.report.streams_cut.sort_by(|a, b| a.stream.cmp(&b.stream));
        self.report.damage = walked.damage;
        self.report.torn_tail = walked.torn_tail;
        self.report
    }
}

/// The position after the durable end of the segment at `path`, from its newest valid durable slot.
fn last_durable_position(path: &Path) -> Option<u64> {
    let file = crate::io::open(path, false).ok()?;
    let mut head = [0u8; crate::format::SEGMENT_HEADER_LEN as usize];
    crate::io::read_at(&file, path, 0, &mut head).ok()?;
    crate::format::DurableSlot::newest(&head).map(|s| s.next_position)
}
