//! The store: directory lock, the ordered set of segments, the single writer, durability, the committed
//! watermark, and the index kept in step with the log.

mod append;
mod checkpoint;
mod condition;
mod control;
mod follow;
mod group_sync;
mod names;
mod recovery;
mod report;
mod scan;
mod scavenge;
mod segment_table;
mod writer;

use append::*;
pub use append::{Appended, Batch, Control, NewEvent, StreamAppend, StreamControl};
use checkpoint::*;
pub use control::StreamState;
use names::*;
use recovery::*;
pub(crate) use recovery::{check_no_lost_log, is_version_1_segment_name};
pub use report::{CheckpointUse, RecoveryReport, Stats};
use scan::*;
pub use scavenge::{ScavengeOptions, ScavengeReport, SegmentScavenge, StreamScavenge};
use segment_table::*;
use writer::*;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::corruption::{CheckpointLoss, CheckpointRefusal, Corruption, FrameFault, Region};
use crate::error::{Error, ExpectedVersion, Result};
use crate::format::{
    frame, padded, parse_segment_file_name, segment_file_name, DurableSlot, SegmentName, CHECKPOINT_FILE,
    FORMAT_VERSION, LOCK_FILE, NAME_BYTES_MAX, SEGMENT_HEADER_LEN, SLOT_FLAG_CLEAN, SLOT_FLAG_SEALED,
    STREAM_ID_BYTES_MAX, STREAM_VERSION_MAX, TAGS_MAX, TIMESTAMP_MAX, TIMESTAMP_MIN,
};
use crate::head::{Head, HeadPublisher, HeadWatcher, Published};
use crate::index::{
    adopt_checkpoint, encode_checkpoint_parts, open_checkpoint, open_written, FrameAt, Index, Resume,
    SegIndex, Stale,
};
use crate::io as sys;
use crate::map::{MapWriter, SegmentMap};
use crate::options::{Durability, Options, Recovery};
use crate::record::{
    decode_frame, encode_consumer, encode_control, encode_event, encode_name, Body, EventFields, EventRef,
    Place as FramePlace, SegView,
};
use crate::segment::{now_micros, Segment, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_TMP_SUFFIX};

pub(crate) struct Inner {
    dir: PathBuf,
    options: Options,
    log_id: [u8; 16],
    segments: SegmentTable,
    pub(crate) index: RwLock<Index>,
    /// Events below this position are complete in the maps and may be read.
    committed: AtomicU64,
    /// Events below this position are on stable storage.
    durable: AtomicU64,
    wake: Mutex<()>,
    wake_cv: Condvar,
    /// Threads inside `wait_for`.
    waiters: AtomicUsize,
    writer: Mutex<Option<Writer>>,
    poisoned: AtomicBool,
    report: RwLock<RecoveryReport>,
    stop_flusher: AtomicBool,
    /// Group commit's hand-off of syncs to the group-commit thread (`src/store/group_sync.rs`).
    group_sync: group_sync::GroupSync,
    /// Set by `Store::abandon`: drop does nothing a crash would not.
    abandoned: AtomicBool,
    /// The writer's exclusive flock on `LOCK`, or a reader's shared flock on the directory (`None` where
    /// directories cannot be locked).
    _lock: Option<File>,
    /// The head record in `LOCK`: published to by the writer, watched by a reader (src/head.rs).
    head: HeadRole,
    /// When the handle was opened: the origin of `arrived_nanos`.
    opened: Instant,
    /// Nanoseconds after `opened` at which a refresh last found new events; spaces a read-only handle's
    /// looks at the writer's head ([`Inner::follow_poll`]).
    arrived_nanos: AtomicU64,
    /// The retention rules as last read from their stream (src/retention.rs).
    pub(crate) retention: RwLock<crate::retention::RuleCache>,
    /// Held by a scavenge from its plan to its end: one at a time.
    scavenging: Mutex<()>,
}

/// Which watermark a wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// The next position: every event below it is committed and may be read.
    Committed,
    /// The durable position: every event below it is on stable storage.
    Durable,
}

/// This handle's part in the head record.
enum HeadRole {
    Publisher(HeadPublisher),
    Watcher(HeadWatcher),
}

impl Inner {
    pub(crate) fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Option<Writer>>> {
        if self.poisoned.load(Ordering::Acquire) {
            // A group sync that failed on the group-commit thread is reported once, by the next call.
            return Err(self.poisoned_error());
        }
        Ok(self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether this is a read-only handle (which follows a writer's head rather than being woken by it).
    pub(crate) fn is_read_only(&self) -> bool {
        self.options.read_only
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn segment(&self, i: usize) -> Option<&SegmentMap> {
        self.segments.get(i)
    }

    /// For `Store::backup_to` (src/backup.rs), taken under the writer lock so the three agree: the segment
    /// slot the durable end lies in, the file offset below which that segment's frames are durable, and the
    /// durable position. Every segment before that slot is sealed. A read-only handle reads the last
    /// segment's durable slot, which a writer elsewhere may be moving: what it indexed past the slot is
    /// committed but not yet synced.
    pub(crate) fn durable_end(&self) -> Result<(usize, u64, u64)> {
        let mut guard = self.lock_writer()?;
        if let Some(w) = guard.as_mut() {
            // A group sync in flight moves the durable position before the writer learns its end: let it
            // finish, and take its end, so the three agree.
            self.group_sync.wait_idle();
            self.write_finished_slot(w)?;
            return Ok((w.seg, w.synced_end, self.durable.load(Ordering::Acquire)));
        }
        let ix = self.read_index();
        let last = ix.segments().len().saturating_sub(1);
        let end = ix.segments().last().map_or(SEGMENT_HEADER_LEN, |s| s.end);
        let slot = self.segments.get(last).and_then(|m| DurableSlot::newest(&m.header_copy()));
        Ok(match slot {
            Some(s)
                if (SEGMENT_HEADER_LEN..end).contains(&s.durable_end)
                    && s.next_position <= ix.next_position() =>
            {
                (last, s.durable_end, s.next_position)
            }
            _ => (last, end, ix.next_position()),
        })
    }

    /// Segment `i`'s map and where its frames end if it is sealed (`u64::MAX` for the active or an unknown
    /// one), as the index `ix` the caller holds knows it: a scavenge replaces a map and its index entries
    /// together under the index's write lock, so a reader that takes a location from the index takes the map
    /// through here under the same lock.
    pub(crate) fn map_of(&self, ix: &Index, i: usize) -> (Option<&SegmentMap>, u64) {
        let end = match ix.segments().get(i) {
            Some(s) if i + 1 < ix.segments().len() => s.end,
            _ => u64::MAX,
        };
        (self.segments.get(i), end)
    }

    /// Whether reads check every frame's CRC, not only the first time this process reads it.
    pub(crate) fn crc_every_read(&self) -> bool {
        self.options.crc_every_read
    }

    fn poison<T>(&self, e: Error) -> Result<T> {
        let _gate = self.group_sync.gate();
        self.poisoned.store(true, Ordering::Release);
        // This call reports a failure now; a failed group sync before it needs no report of its own.
        let _ = self.group_sync.take_failure();
        Err(e)
    }

    /// What a call on a poisoned store returns: a group sync's failure the first time (it happened on the
    /// group-commit thread, where nobody saw it), then `Poisoned`.
    fn poisoned_error(&self) -> Error {
        // Under the gate: the group-commit thread poisons and leaves its failure in one step.
        let _gate = self.group_sync.gate();
        self.group_sync.take_failure().unwrap_or(Error::Poisoned)
    }

    /// Reads the event at `pos` through the index.
    pub(crate) fn event_at<'s>(&'s self, ix: &Index, pos: u64) -> Option<EventRef<'s>> {
        let (seg, off) = ix.locate(pos).ok()??;
        let map = self.segments.get(seg)?;
        match decode_frame(&map.view(u64::MAX, true), off).ok()?.body {
            Body::Event(e) if e.position() == pos => Some(e),
            _ => None,
        }
    }

    /// Blocks until watermark `mark` reaches `target`, `deadline` passes or `stop` is set; returns the mark
    /// then. A writer's handle waits on its own publish and syncs; a read-only handle follows the writer's
    /// head ([`Inner::follow_until`]) and returns a refresh's error.
    pub(crate) fn wait_until(
        &self,
        mark: Mark,
        target: u64,
        deadline: Instant,
        stop: Option<&AtomicBool>,
    ) -> Result<u64> {
        let stopped = || stop.is_some_and(|s| s.load(Ordering::Acquire));
        if self.options.read_only {
            return self.follow_until(mark, target, deadline, &stopped);
        }
        let mut guard = self.wake.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let reached = loop {
            let reached = self.mark(mark).load(Ordering::SeqCst);
            if reached >= target || stopped() {
                break reached;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break reached };
            guard =
                self.wake_cv.wait_timeout(guard, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        Ok(reached)
    }

    /// A read-only handle's wait: refresh, then pause [`Inner::follow_poll`] (cut short by a stop or by another
    /// thread's refresh that found events) and refresh again, until `target` or `deadline`. A deadline already
    /// passed still gets one refresh, so a zero timeout means "look once".
    fn follow_until(
        &self,
        mark: Mark,
        target: u64,
        deadline: Instant,
        stopped: &dyn Fn() -> bool,
    ) -> Result<u64> {
        loop {
            self.refresh()?;
            let reached = self.mark(mark).load(Ordering::SeqCst);
            let now = Instant::now();
            let left = deadline.checked_duration_since(now).filter(|_| reached < target && !stopped());
            let Some(left) = left else { return Ok(reached) };
            self.sleep_until_woken(left.min(self.follow_poll(now)), || {
                self.mark(mark).load(Ordering::SeqCst) >= target || stopped()
            });
        }
    }

    /// The watermark `mark` names.
    fn mark(&self, mark: Mark) -> &AtomicU64 {
        match mark {
            Mark::Committed => &self.committed,
            Mark::Durable => &self.durable,
        }
    }

    /// Waits on the condvar for at most `poll` unless `done` already holds: a read-only handle's pause between
    /// two looks at the writer's head, cut short by a stop or by another thread's refresh that found events.
    fn sleep_until_woken(&self, poll: Duration, done: impl Fn() -> bool) {
        let guard = self.wake.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // Checked under the lock, after registering: a wake that comes after this check finds us waiting.
        if !done() {
            drop(self.wake_cv.wait_timeout(guard, poll).unwrap_or_else(std::sync::PoisonError::into_inner));
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// How long a read-only handle waits before it looks at the writer's head again: [`FOLLOW_POLL`] while
    /// events keep coming, then an eighth of the time since this handle last saw one, up to
    /// [`FOLLOW_POLL_MAX`]. So the pause grows geometrically (by 1/8 per look) through a silence, an event
    /// waits at most about an eighth of the silence before it, and the first event seen resets it.
    fn follow_poll(&self, now: Instant) -> Duration {
        let last = Duration::from_nanos(self.arrived_nanos.load(Ordering::Relaxed));
        let quiet = now.saturating_duration_since(self.opened + last);
        (quiet / FOLLOW_QUIET_SHARE).clamp(FOLLOW_POLL, FOLLOW_POLL_MAX)
    }

    /// Notes that this handle just saw new events (a refresh that moved a watermark).
    fn arrived(&self) {
        let since = self.opened.elapsed().as_nanos();
        self.arrived_nanos.store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Wakes every waiter at once, whether or not anything was published (a subscription being stopped).
    pub(crate) fn wake_all(&self) {
        let _guard = self.wake.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.wake_cv.notify_all();
    }

    /// Wakes `wait_for` callers. Skipped when nobody waits: a futex wake per append would cost more than
    /// the append. `SeqCst` pairs with `wait_for`: either the waiter sees the new watermark or we see the waiter.
    fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.wake.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.wake_cv.notify_all();
        }
    }
}

/// How often a read-only handle's [`Store::wait_for`] (and a subscription's wait) looks at the writer's head
/// while events keep coming: a load of one word in a mapped page and a wake-up, so a follower sees a commit
/// well within a millisecond. After a silence it looks less often, up to every [`FOLLOW_POLL_MAX`].
pub const FOLLOW_POLL: Duration = Duration::from_micros(100);

/// The longest a read-only handle waits between two looks at the writer's head, reached after a silence of
/// eight times as long (16 ms): the first event after a longer silence may wait up to this long.
//
// NOTE: each look costs a timed wake-up and a refresh, some 20 µs of CPU on the development VM (nearly all of
// it the wake-up): looking every 100 µs kept an idle follower at about a tenth of a core, every 2 ms costs
// about 1 % (benches/follow.rs, the idle run); 2 ms is also the pause the SQLite projector had chosen for
// itself when caught up. The latency target (p99 ≤ 1 ms across processes) is for a log that is being written:
// events less than 0.8 ms apart keep the pause at `FOLLOW_POLL`.
pub const FOLLOW_POLL_MAX: Duration = Duration::from_millis(2);

/// While the log is quiet, a read-only handle waits this fraction (one over it) of the time since it last saw
/// an event: an event waits at most about an eighth of the silence before it, and the pause grows by an
/// eighth per look, from [`FOLLOW_POLL`] to [`FOLLOW_POLL_MAX`] within about 25 looks.
const FOLLOW_QUIET_SHARE: u32 = 8;

/// An open foldlog directory. `Send + Sync`: share it with `Arc`; appends are serialized internally and
/// readers never block the writer.
///
/// ```
/// use foldlog::{Durability, ExpectedVersion, NewEvent, Options, Store};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// // Synced before `append` returns: an acknowledged event survives power loss.
/// let options = Options::default().durability(Durability::Always);
/// let store = Store::open_with(dir.path(), options.clone())?;
/// let placed = [NewEvent::new("Placed", b"{\"total\":42}")];
/// let done = store.append("order-7", ExpectedVersion::NoStream, &placed)?;
/// assert_eq!((done.positions, done.versions), (0..1, 0..1));
/// // Optimistic concurrency: a writer that read version 0 may append; one that expects a new stream may not.
/// store.append("order-7", ExpectedVersion::Exact(0), &[NewEvent::new("Paid", b"42")])?;
/// assert!(store.append("order-7", ExpectedVersion::NoStream, &placed).is_err());
/// store.close()?;
///
/// let store = Store::open_with(dir.path(), options)?;
/// let types: Vec<String> =
///     store.read_stream("order-7", 0).map(|e| e.map(|e| e.event_type().to_owned())).collect::<foldlog::Result<_>>()?;
/// assert_eq!(types, ["Placed", "Paid"]);
/// # Ok(())
/// # }
/// ```
pub struct Store {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("next_position", &self.next_position())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let inner = Arc::new(open_inner(dir.as_ref(), options)?);
        let flusher = match inner.options.durability {
            Durability::Group(g) if !inner.options.read_only => {
                Some(spawn_flusher(Arc::downgrade(&inner), g.delay_max))
            }
            _ => None,
        };
        Ok(Store { inner, flusher })
    }

    /// What open found and did.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.report.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends `events` to `stream` if its version matches `expected`; a new stream starts at version 0.
    #[expect(clippy::missing_panics_doc, reason = "a batch of one stream always reports one result")]
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent<'_>],
    ) -> Result<Appended> {
        let one = [StreamAppend::new(stream, expected, events)];
        let mut out = None;
        self.inner.append_batch(&Batch::new(&one), &mut |a| out = Some(a))?;
        Ok(out.expect("one stream in, one result out"))
    }

    /// Appends a batch atomically: all streams' events (and the consumer position) or nothing, also across a
    /// crash. Returns one [`Appended`] per stream, in order.
    pub fn append_batch(&self, batch: &Batch<'_>) -> Result<Vec<Appended>> {
        let mut out = Vec::with_capacity(batch.streams.len());
        self.inner.append_batch(batch, &mut |a| out.push(a))?;
        Ok(out)
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let mut guard = self.inner.lock_writer()?;
        let w = guard.as_mut().ok_or(Error::ReadOnly)?;
        self.inner.sync_locked(w)
    }

    /// Writes an index checkpoint now (after syncing the log), so the next open scans nothing before it.
    pub fn checkpoint(&self) -> Result<()> {
        let mut guard = self.inner.lock_writer()?;
        let w = guard.as_mut().ok_or(Error::ReadOnly)?;
        self.inner.checkpoint_locked(w)
    }

    /// Syncs, marks the log cleanly closed and writes a checkpoint. Dropping the store does the same but
    /// cannot report errors.
    pub fn close(mut self) -> Result<()> {
        self.stop_flusher();
        self.inner.close()
    }

    /// Drops the store as a crash would: no sync, no checkpoint, no clean mark. The OS page cache keeps what
    /// was written, as after `kill -9`. For tests of recovery.
    // Hidden, not part of the API: public only because the integration tests and the CLI's tests (other
    // crates) simulate crashes with it, and gating it on the `testing` feature would take tests/store.rs out
    // of the packaged crate's plain `cargo test`.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.stop_flusher();
        self.inner.abandoned.store(true, Ordering::Release);
    }

    fn stop_flusher(&mut self) {
        if let Some(t) = self.flusher.take() {
            self.inner.stop_flusher.store(true, Ordering::Release);
            self.inner.group_sync.stop();
            t.thread().unpark();
            let _ = t.join();
        }
    }

    /// Number of committed events = the position the next event will get.
    pub fn next_position(&self) -> u64 {
        self.inner.committed.load(Ordering::Acquire)
    }

    /// Highest committed position, `None` for an empty log.
    pub fn head(&self) -> Option<u64> {
        self.next_position().checked_sub(1)
    }

    /// Events below this position survive power loss. A writer's handle moves it after every sync (with
    /// [`Durability::Always`], before `append` returns).
    ///
    /// A read-only handle beside a live writer (or where it cannot tell whether one is live) takes the
    /// position the writer publishes after every sync (docs/format.md, "The head record"), as far as this
    /// handle has indexed: the smaller of the two, moved by [`Store::refresh`] and never backwards. So with
    /// `Group` or `Never` it stays behind [`Store::next_position`] until the writer syncs, and a consumer that
    /// must not act on events a machine crash could take back waits for it
    /// ([`crate::Subscription::durable_only`]). A read-only handle opened with no writer live counts every
    /// valid frame as durable, as it always has (with nobody writing, the files are what there is; frames a
    /// crashed writer never synced count too). A writer built before the position was published leaves it at
    /// 0: readers beside it call nothing durable.
    pub fn durable_position(&self) -> u64 {
        self.inner.durable.load(Ordering::Acquire)
    }

    /// Catches up with the writer. A read-only handle indexes the events the writer (in this process or
    /// another) committed since the handle last looked, following it into new segments, and returns the
    /// next position; what it sees is always a prefix of the log ending at a batch boundary. A writer's handle
    /// is always current and returns at once. A read-only handle takes a shared lock on the directory only,
    /// so any number of them run beside the one writer; see docs/operations.md, "Reading a live store".
    ///
    /// A refresh also loads the durable position the writer published ([`Store::durable_position`]).
    ///
    /// `refresh` never waits. [`Store::wait_for`] and [`crate::Subscription::next_event`] call it for you: with
    /// a zero timeout they refresh once and return, with a longer one they keep refreshing as they wait.
    ///
    /// Errors: [`Error::Corrupt`] if bytes the writer published fail their checks.
    pub fn refresh(&self) -> Result<u64> {
        self.inner.refresh()
    }

    /// Blocks until a position beyond `after` (any position if `None`) is committed, or `timeout` passes.
    /// Returns the head then, or `None` on timeout. A writer's handle wakes on its own publish, with no
    /// polling. A read-only handle refreshes (so a zero timeout looks once), then polls the writer's head,
    /// refreshing as it goes: every [`FOLLOW_POLL`] while events keep coming, less often through a silence
    /// (an eighth of it, at most every [`FOLLOW_POLL_MAX`]). An error ends the wait early with `None`, and
    /// [`Store::refresh`] reports it.
    ///
    /// A follower in another thread of the same process:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use foldlog::{ExpectedVersion, NewEvent, Store};
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Arc::new(Store::open(dir.path())?);
    /// let follower = {
    ///     let store = Arc::clone(&store);
    ///     std::thread::spawn(move || {
    ///         let head = store.wait_for(None, Duration::from_secs(10))?;
    ///         store.read_all(0).next().map(|e| e.map(|e| (head, e.event_type().to_owned())))
    ///     })
    /// };
    /// store.append("order-7", ExpectedVersion::NoStream, &[NewEvent::new("Placed", b"42")])?;
    /// let (head, event_type) = follower.join().unwrap().expect("woken before the timeout")?;
    /// assert_eq!((head, event_type.as_str()), (0, "Placed"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_for(&self, after: Option<u64>, timeout: Duration) -> Option<u64> {
        let target = after.map_or(1, |a| a.saturating_add(2));
        let next = self.inner.wait_until(Mark::Committed, target, Instant::now() + timeout, None).ok()?;
        (next >= target).then(|| next - 1)
    }

    pub(crate) fn inner_arc(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Last version of `stream`, `None` if it has no events. Hidden events count: a truncated or deleted
    /// stream keeps its last version ([`Store::stream_state`] says what is hidden).
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        self.inner.read_index().stream(stream).and_then(super::index::StreamIndex::last_version)
    }

    /// All stream ids, sorted: every stream with events, truncated and deleted ones included
    /// ([`Store::stream_state`]).
    pub fn streams(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.read_index().streams().map(|(k, _)| k.to_owned()).collect();
        v.sort_unstable();
        v
    }

    /// Stream ids with their event counts (hidden events included), sorted by id.
    pub fn stream_counts(&self) -> Vec<(String, u64)> {
        let ix = self.inner.read_index();
        let mut v: Vec<(String, u64)> = ix.streams().map(|(k, s)| (k.to_owned(), s.len())).collect();
        v.sort_unstable();
        v
    }

    /// A consumer's recorded position.
    pub fn consumer_position(&self, name: &str) -> Option<u64> {
        self.inner.read_index().consumer(name)
    }

    /// Statistics.
    pub fn stats(&self) -> Stats {
        let ix = self.inner.read_index();
        let segs = self.inner.segments.len();
        let file_bytes = (0..segs).filter_map(|i| self.inner.segments.get(i)).map(SegmentMap::len).sum();
        let frame_bytes = ix.segments().iter().map(|s| s.end - SEGMENT_HEADER_LEN).sum();
        Stats {
            segments: segs,
            events: ix.next_position(),
            streams: ix.stream_count(),
            event_types: ix.types().len(),
            tags: ix.tags().len(),
            frame_bytes,
            file_bytes,
            index_memory_bytes: ix.memory_bytes(),
            durable_position: self.durable_position(),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_flusher();
        // Errors cannot be reported from drop; `close` reports them. A poisoned store writes nothing.
        let _ = self.inner.close();
    }
}

fn spawn_flusher(inner: Weak<Inner>, delay: Duration) -> JoinHandle<()> {
    let tick = (delay / 4).max(Duration::from_millis(1));
    std::thread::Builder::new()
        .name("foldlog-group-commit".into())
        .spawn(move || loop {
            let Some(inner) = inner.upgrade() else { return };
            if inner.stop_flusher.load(Ordering::Acquire) || inner.poisoned.load(Ordering::Acquire) {
                // Nobody may wait for a group this thread will no longer take.
                inner.group_sync.stop();
                return;
            }
            // A full group's sync, handed off by the append that filled it.
            if let Some(job) = inner.group_sync.next_job(tick) {
                inner.run_group_sync(job);
                continue;
            }
            // The age bound. `try_lock`: an append that holds the writer lock may be waiting for this thread
            // to take its group (`GroupSync::hand_off`); it is appending anyway, so try again next tick.
            let mut guard = match inner.writer.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => continue,
            };
            // A group handed off since `next_job` looked: only this thread runs it, and the sync below would
            // wait for it. Run it first (no new one can be queued while this thread holds the writer lock).
            if inner.group_sync.has_queued() {
                continue;
            }
            if let Some(w) = guard.as_mut() {
                if w.pending_since.is_some_and(|t| t.elapsed() >= delay) {
                    // A failure poisons the store; the next append reports it.
                    let _ = inner.sync_locked(w);
                }
            }
        })
        .expect("spawn group-commit thread")
}

/// The shared state of a handle over what recovery built; a writer's handle publishes its durable position
/// in the head record now (what open recovered: every event once cleanly closed, the newest durable slot's
/// after a crash).
fn build_inner(dir: &Path, options: Options, parts: Recovered, head: HeadRole, lock: Option<File>) -> Inner {
    let Recovered { log_id, segments, index, writer, report } = parts;
    let next = index.next_position();
    let durable = writer.as_ref().map_or(next, |w| {
        if w.synced_end == w.end {
            next
        } else {
            w.slot.next_position.min(next)
        }
    });
    if let HeadRole::Publisher(p) = &head {
        p.publish_durable(durable);
    }
    Inner {
        dir: dir.to_path_buf(),
        options,
        log_id,
        segments,
        index: RwLock::new(index),
        committed: AtomicU64::new(next),
        durable: AtomicU64::new(durable),
        wake: Mutex::new(()),
        wake_cv: Condvar::new(),
        waiters: AtomicUsize::new(0),
        writer: Mutex::new(writer),
        poisoned: AtomicBool::new(false),
        report: RwLock::new(report),
        stop_flusher: AtomicBool::new(false),
        group_sync: group_sync::GroupSync::default(),
        abandoned: AtomicBool::new(false),
        _lock: lock,
        head,
        opened: Instant::now(),
        arrived_nanos: AtomicU64::new(0),
        retention: RwLock::default(),
        scavenging: Mutex::new(()),
    }
}
