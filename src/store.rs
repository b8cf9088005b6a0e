//! The store: directory lock, the ordered set of segments, the single writer, durability, the committed
//! watermark, and the index kept in step with the log.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, ExpectedVersion, Result};
use crate::format::{
    frame_len, parse_segment_file_name, segment_file_name, DurableSlot, SegmentName, CHECKPOINT_FILE,
    FORMAT_VERSION, LOCK_FILE, NAME_BYTES_MAX, SEGMENT_HEADER_LEN, SLOT_FLAG_CLEAN, SLOT_FLAG_SEALED,
    STREAM_ID_BYTES_MAX, STREAM_VERSION_MAX,
};
use crate::index::{encode_checkpoint, open_checkpoint, FrameAt, Index, Resume, SegIndex, Stale};
use crate::io as sys;
use crate::map::{MapWriter, SegmentMap};
use crate::options::{Durability, Options, Recovery};
use crate::record::{decode_frame, encode_consumer, encode_event, Body, ConsumerBody, Envelope, EventRef};
use crate::segment::{now_micros, Segment, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_TMP_SUFFIX};

/// Snapshot directory name (written by the repository); its presence proves the log once held events.
const SNAPSHOT_DIR: &str = "snapshots";

/// One event to append.
#[derive(Clone, Copy, Debug, Default)]
pub struct NewEvent<'a> {
    /// The event's type name (1..=256 bytes).
    pub event_type: &'a str,
    /// The event's bytes, in any codec.
    pub payload: &'a [u8],
    /// Application metadata (correlation and causation ids, ...); may be empty.
    pub metadata: &'a [u8],
    /// Caller-chosen id: a retry of an append whose acknowledgement was lost returns the original result.
    pub event_id: Option<u128>,
    /// Schema version of the event type (for upcasting on read). Default 0.
    pub schema_version: u32,
    /// The event's timestamp (microseconds since the Unix epoch); `None` (the default) stamps it with the
    /// wall clock at append. For importers and salvage, which carry the original time over; the store does
    /// not require timestamps to increase.
    pub timestamp_micros: Option<i64>,
}

impl<'a> NewEvent<'a> {
    /// An event with a type and payload, no metadata or id.
    pub fn new(event_type: &'a str, payload: &'a [u8]) -> NewEvent<'a> {
        NewEvent { event_type, payload, ..NewEvent::default() }
    }
}

/// Events for one stream within a [`Batch`].
#[derive(Clone, Copy, Debug)]
pub struct StreamAppend<'a> {
    /// The stream id (1..=1024 bytes of UTF-8).
    pub stream: &'a str,
    /// The optimistic-concurrency check.
    pub expected: ExpectedVersion,
    /// Version of the first event if the stream is new (0 by default; 1 for Python-style aggregates).
    pub first_version: u64,
    /// The events, in order.
    pub events: &'a [NewEvent<'a>],
}

impl<'a> StreamAppend<'a> {
    /// Events for `stream` with the given check; a new stream starts at version 0.
    pub fn new(stream: &'a str, expected: ExpectedVersion, events: &'a [NewEvent<'a>]) -> StreamAppend<'a> {
        StreamAppend { stream, expected, first_version: 0, events }
    }
}

/// An atomic write: events for any number of streams (each with its own check) and optionally a consumer's
/// new position. All of it becomes visible and durable together, or none of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Batch<'a> {
    /// Per-stream events. A stream appears at most once.
    pub streams: &'a [StreamAppend<'a>],
    /// A named consumer's new position, committed with the events; must exceed its current one.
    pub consumer: Option<(&'a str, u64)>,
}

/// What one stream's append produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Global positions of the events (contiguous; empty if no events).
    pub positions: std::ops::Range<u64>,
    /// Stream versions of the events.
    pub versions: std::ops::Range<u64>,
    /// True if this was a retry of an earlier append (matched by event ids) and nothing was written.
    pub deduplicated: bool,
}

/// What `open` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files in the log.
    pub segments: usize,
    /// Segments whose frames were read and checked (the rest were covered by the checkpoint).
    pub segments_scanned: usize,
    /// Events in the log after recovery.
    pub events: u64,
    /// Events read and checked during open.
    pub events_scanned: u64,
    /// What happened to the index checkpoint.
    pub checkpoint: CheckpointUse,
    /// Bytes cut from the end of the last segment, and where the cut was made (file, offset).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// True if the last close was clean (nothing to repair).
    pub clean: bool,
    /// Time open took.
    pub elapsed: Duration,
}

/// How the index checkpoint was used on open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CheckpointUse {
    /// There was none: the index was built from the whole log.
    #[default]
    Missing,
    /// It was valid and covered events below this position; only the log after it was scanned.
    Used(u64),
    /// It was refused (damaged, foreign, or inconsistent with the log), so the index was rebuilt.
    Rebuilt(String),
}

impl std::fmt::Display for CheckpointUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointUse::Missing => f.write_str("none (index built from the whole log)"),
            CheckpointUse::Used(p) => write!(f, "used (covers positions below {p})"),
            CheckpointUse::Rebuilt(why) => write!(f, "refused, index rebuilt ({why})"),
        }
    }
}

/// Statistics of an open store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Segment files.
    pub segments: usize,
    /// Committed events.
    pub events: u64,
    /// Streams.
    pub streams: usize,
    /// Bytes of frames written (headers, bodies, padding), over all segments.
    pub frame_bytes: u64,
    /// Bytes of segment files on disk (preallocated).
    pub file_bytes: u64,
    /// RAM used by the index's per-event and per-stream structures.
    pub index_memory_bytes: u64,
    /// Position below which events are durable.
    pub durable_position: u64,
}

const TABLE_CHUNK: usize = 1024;
const TABLE_CHUNKS: usize = 1024;

/// One chunk of [`SegmentTable`] slots.
type Chunk = Box<[OnceLock<Arc<SegmentMap>>]>;

/// Append-only table of segment maps. Slots are never cleared while the store lives, so readers can borrow
/// events for the store's lifetime without holding a lock. Bounded: at most 1,048,576 segments.
struct SegmentTable {
    chunks: Box<[OnceLock<Chunk>]>,
    len: AtomicUsize,
}

impl SegmentTable {
    fn new() -> SegmentTable {
        SegmentTable {
            chunks: (0..TABLE_CHUNKS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// Adds a map; only the writer (or open) calls this.
    fn push(&self, map: Arc<SegmentMap>) -> Result<usize> {
        let i = self.len.load(Ordering::Acquire);
        let chunk = self.chunks.get(i / TABLE_CHUNK).ok_or_else(|| {
            Error::InvalidArgument(format!("too many segments (max {})", TABLE_CHUNK * TABLE_CHUNKS))
        })?;
        let chunk = chunk.get_or_init(|| (0..TABLE_CHUNK).map(|_| OnceLock::new()).collect());
        assert!(chunk[i % TABLE_CHUNK].set(map).is_ok(), "segment slot filled twice");
        self.len.store(i + 1, Ordering::Release);
        Ok(i)
    }

    fn get(&self, i: usize) -> Option<&SegmentMap> {
        if i >= self.len.load(Ordering::Acquire) {
            return None;
        }
        self.chunks.get(i / TABLE_CHUNK)?.get()?.get(i % TABLE_CHUNK)?.get().map(|a| &**a)
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

/// The active segment and everything only the writer touches.
struct Writer {
    seg: usize,
    /// The active segment's sequence number (its file name and header carry it).
    seg_seq: u32,
    map: MapWriter,
    /// Offset where the next frame goes; equals the map's committed end between appends.
    end: u64,
    next_position: u64,
    synced_end: u64,
    slot: DurableSlot,
    /// The newest slot on disk says CLEAN; it must be replaced (and synced) before the first frame is stored.
    clean_on_disk: bool,
    pending_appends: u32,
    pending_bytes: u64,
    pending_since: Option<Instant>,
    bytes_since_checkpoint: u64,
    scratch: Envelope,
    /// Size of the last checkpoint written; spaces out the next one.
    last_checkpoint_bytes: u64,
    /// Reused per append: first version of each stream of the batch.
    plan: Vec<u64>,
    /// Reused per append: (offset, length) of each frame of the batch.
    offsets: Vec<(u64, u64)>,
}

impl Writer {
    /// A writer for segment slot `seg` whose frames end at `end`, with nothing pending.
    #[allow(clippy::too_many_arguments)]
    fn new(
        seg: usize,
        seg_seq: u32,
        map: MapWriter,
        end: u64,
        next_position: u64,
        synced_end: u64,
        slot: DurableSlot,
        clean_on_disk: bool,
    ) -> Writer {
        Writer {
            seg,
            seg_seq,
            map,
            end,
            next_position,
            synced_end,
            slot,
            clean_on_disk,
            pending_appends: 0,
            pending_bytes: 0,
            pending_since: None,
            bytes_since_checkpoint: 0,
            scratch: Envelope::default(),
            last_checkpoint_bytes: 0,
            plan: Vec::new(),
            offsets: Vec::new(),
        }
    }
}

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
    /// Set by `Store::abandon`: drop does nothing a crash would not.
    abandoned: AtomicBool,
    /// The held flock (`None` only for a read-only open on media where no lock file can exist).
    _lock: Option<File>,
}

/// An open foldlog directory. `Send + Sync`: share it with `Arc`; appends are serialized internally and
/// readers never block the writer.
pub struct Store {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("next_position", &self.next_position())
            .finish()
    }
}

fn random_log_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for (i, half) in id.chunks_mut(8).enumerate() {
        // RandomState is seeded from the OS's randomness; mixing in time and pid keeps ids distinct even if two
        // states started equal.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        h.write_u32(std::process::id());
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

fn check_name(kind: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() || name.len() > max {
        return Err(Error::InvalidArgument(format!("{kind} must be 1..={max} bytes, got {}", name.len())));
    }
    Ok(())
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
        self.inner.report.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends `events` to `stream` if its version matches `expected`; a new stream starts at version 0.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent<'_>],
    ) -> Result<Appended> {
        let one = [StreamAppend::new(stream, expected, events)];
        let mut out = None;
        self.inner.append_batch(&Batch { streams: &one, consumer: None }, &mut |a| out = Some(a))?;
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
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.stop_flusher();
        self.inner.abandoned.store(true, Ordering::Release);
    }

    fn stop_flusher(&mut self) {
        if let Some(t) = self.flusher.take() {
            self.inner.stop_flusher.store(true, Ordering::Release);
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

    /// Events below this position survive power loss.
    pub fn durable_position(&self) -> u64 {
        self.inner.durable.load(Ordering::Acquire)
    }

    /// Blocks until a position beyond `after` (any position if `None`) is committed, or `timeout` passes.
    /// Returns the head then, or `None` on timeout. Wakes on the writer's publish, no polling.
    pub fn wait_for(&self, after: Option<u64>, timeout: Duration) -> Option<u64> {
        let target = after.map_or(1, |a| a.saturating_add(2));
        let deadline = Instant::now() + timeout;
        let mut guard = self.inner.wake.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.waiters.fetch_add(1, Ordering::SeqCst);
        let head = loop {
            let next = self.inner.committed.load(Ordering::SeqCst);
            if next >= target {
                break next.checked_sub(1);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break None };
            guard = self.inner.wake_cv.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        };
        self.inner.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        head
    }

    /// Last version of `stream`, `None` if it has no events.
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        self.inner.read_index().streams.get(stream).and_then(|s| s.last_version())
    }

    /// All stream ids, sorted.
    pub fn streams(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.read_index().streams.keys().map(|k| k.to_string()).collect();
        v.sort_unstable();
        v
    }

    /// Stream ids with their event counts, sorted by id.
    pub fn stream_counts(&self) -> Vec<(String, u64)> {
        let ix = self.inner.read_index();
        let mut v: Vec<(String, u64)> = ix.streams.iter().map(|(k, s)| (k.to_string(), s.len())).collect();
        v.sort_unstable();
        v
    }

    /// A consumer's recorded position.
    pub fn consumer_position(&self, name: &str) -> Option<u64> {
        self.inner.read_index().consumers.get(name).copied()
    }

    /// Statistics.
    pub fn stats(&self) -> Stats {
        let ix = self.inner.read_index();
        let segs = self.inner.segments.len();
        let file_bytes = (0..segs).filter_map(|i| self.inner.segments.get(i)).map(SegmentMap::len).sum();
        let frame_bytes = ix.segments.iter().map(|s| s.end - SEGMENT_HEADER_LEN).sum();
        Stats {
            segments: segs,
            events: ix.next_position,
            streams: ix.streams.len(),
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
            std::thread::park_timeout(tick);
            let Some(inner) = inner.upgrade() else { return };
            if inner.stop_flusher.load(Ordering::Acquire) {
                return;
            }
            let Ok(mut guard) = inner.lock_writer() else { return };
            if let Some(w) = guard.as_mut() {
                if w.pending_since.is_some_and(|t| t.elapsed() >= delay) {
                    // A failure poisons the store; the next append reports it.
                    let _ = inner.sync_locked(w);
                }
            }
        })
        .expect("spawn group-commit thread")
}

impl Inner {
    pub(crate) fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Option<Writer>>> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(self.writer.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn segment(&self, i: usize) -> Option<&SegmentMap> {
        self.segments.get(i)
    }

    /// For `Store::backup_to` (src/backup.rs), taken under the writer lock so the three agree: the segment
    /// slot the durable end lies in, the file offset below which that segment's frames are durable, and the
    /// durable position. Every segment before that slot is sealed. A read-only store has no writer (and no
    /// writer runs beside it), so its whole committed log is the end.
    pub(crate) fn durable_end(&self) -> Result<(usize, u64, u64)> {
        let guard = self.lock_writer()?;
        if let Some(w) = guard.as_ref() {
            return Ok((w.seg, w.synced_end, self.durable.load(Ordering::Acquire)));
        }
        let ix = self.read_index();
        let last = ix.segments.len().saturating_sub(1);
        Ok((last, ix.segments.last().map_or(SEGMENT_HEADER_LEN, |s| s.end), ix.next_position))
    }

    /// Where segment `i`'s frames end if it is sealed; `u64::MAX` for the active (or an unknown) one.
    pub(crate) fn sealed_end(&self, i: usize) -> u64 {
        let ix = self.read_index();
        match ix.segments.get(i) {
            Some(s) if i + 1 < ix.segments.len() => s.end,
            _ => u64::MAX,
        }
    }

    /// Whether reads check every frame's CRC, not only the first time this process reads it.
    pub(crate) fn crc_every_read(&self) -> bool {
        self.options.crc_every_read
    }

    fn poison<T>(&self, e: Error) -> Result<T> {
        self.poisoned.store(true, Ordering::Release);
        Err(e)
    }

    /// The append path: checks under the writer lock, frames encoded in place, then published. Results go to
    /// `out`, one per stream, so the single-stream `append` allocates nothing on this path.
    fn append_batch(&self, batch: &Batch<'_>, out: &mut dyn FnMut(Appended)) -> Result<()> {
        validate_batch(batch)?;
        let mut guard = self.lock_writer()?;
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        let w = guard.as_mut().ok_or(Error::ReadOnly)?;
        let mut plan = std::mem::take(&mut w.plan);
        plan.clear();
        let r = self.append_locked(w, batch, &mut plan, out);
        w.plan = plan;
        r
    }

    /// Runs `f` on the index; if it needs a saved checkpoint list that turns out damaged, rebuilds the index
    /// from the log and runs it again.
    pub(crate) fn with_index<T>(&self, mut f: impl FnMut(&Index) -> Result<T, Stale>) -> Result<T> {
        let first = f(&self.read_index());
        match first {
            Ok(t) => Ok(t),
            Err(stale) => {
                self.rebuild_index(stale.reason)?;
                f(&self.read_index()).map_err(|s| Error::corrupt(self.dir.join(CHECKPOINT_FILE), 0, s.reason))
            }
        }
    }

    /// Rebuilds the index from the log, for when a checkpoint list fails its check after open.
    fn rebuild_index(&self, reason: String) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.rebuild_index_locked(reason)
    }

    /// As [`Inner::rebuild_index`]; the caller holds the writer lock, so the log does not move meanwhile.
    fn rebuild_index_locked(&self, reason: String) -> Result<()> {
        let (bounds, next) = {
            let ix = self.read_index();
            (ix.segments.iter().map(|s| (s.base, s.seq, s.end)).collect::<Vec<_>>(), ix.next_position)
        };
        let mut fresh = Index::new(self.options.event_ids_remembered);
        let mut scratch = RecoveryReport::default();
        for (slot, &(base, seq, end)) in bounds.iter().enumerate() {
            let map =
                self.segments.get(slot).ok_or_else(|| Error::corrupt(&self.dir, 0, "segment table short"))?;
            let bytes = map.committed_from(SEGMENT_HEADER_LEN).unwrap_or(&[]);
            let bytes = bytes.get(..(end - SEGMENT_HEADER_LEN) as usize).unwrap_or(bytes);
            fresh.segments.push(SegIndex::new(base, seq, SEGMENT_HEADER_LEN));
            let at = Place { slot, seq, from: SEGMENT_HEADER_LEN };
            let scan = index_frames(bytes, at, &mut fresh, &mut scratch);
            if scan.reason.is_some() || scan.committed_end != end {
                let why = scan.reason.unwrap_or_else(|| "the log ends early".into());
                return Err(Error::corrupt(
                    map.path(),
                    scan.stop,
                    format!("while rebuilding the index: {why}"),
                ));
            }
            fresh.segments[slot].end = end;
            fresh.segments[slot].seal();
        }
        if fresh.next_position != next {
            return Err(Error::corrupt(&self.dir, 0, "rebuilt index disagrees with the log's end"));
        }
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        if !self.options.read_only {
            // As at open: the checkpoint that failed must not be trusted by a later open.
            remove_checkpoint(&self.dir)?;
        }
        let mut report = self.report.write().unwrap_or_else(|e| e.into_inner());
        report.checkpoint =
            CheckpointUse::Rebuilt(format!("{reason} (found after open; rebuilt from the log)"));
        Ok(())
    }

    fn append_locked(
        &self,
        w: &mut Writer,
        batch: &Batch<'_>,
        plan: &mut Vec<u64>,
        out: &mut dyn FnMut(Appended),
    ) -> Result<()> {
        // Retries look stored events up through the index; make sure the lists they need are sound first.
        let stale = {
            let ix = self.read_index();
            let ids = batch.streams.iter().flat_map(|s| s.events.iter().filter_map(|e| e.event_id));
            ids.filter_map(|id| ix.ids.map.get(&id).copied()).find_map(|p| ix.locate(p).err())
        };
        if let Some(stale) = stale {
            self.rebuild_index_locked(stale.reason)?;
        }
        {
            let ix = self.read_index();
            if let Some(done) = self.find_retry(&ix, batch)? {
                done.into_iter().for_each(out);
                return Ok(());
            }
            for s in batch.streams {
                let actual = ix.check_expected(s.stream, s.expected)?;
                let first = match actual {
                    Some(v) => v.checked_add(1),
                    None => Some(s.first_version),
                };
                plan.push(check_version_room(s, first)?);
            }
            if w.next_position
                .checked_add(batch.streams.iter().map(|s| s.events.len() as u64).sum())
                .is_none()
            {
                return Err(Error::InvalidArgument("the log has no global positions left".into()));
            }
            if let Some((name, p)) = batch.consumer {
                if let Some(&current) = ix.consumers.get(name).filter(|&&c| p <= c) {
                    return Err(Error::ConsumerPositionNotAdvanced {
                        name: name.into(),
                        current,
                        proposed: p,
                    });
                }
            }
        }
        if batch.consumer.is_none() && batch.streams.iter().all(|s| s.events.is_empty()) {
            // Only checks, nothing to write.
            for &v in plan.iter() {
                out(Appended {
                    positions: w.next_position..w.next_position,
                    versions: v..v,
                    deduplicated: false,
                });
            }
            return Ok(());
        }
        if w.clean_on_disk {
            self.mark_dirty(w)?;
        }
        let bound = batch_size_bound(batch);
        let too_large =
            || Error::TooLarge { len: bound, max: self.options.segment_size_bytes - SEGMENT_HEADER_LEN };
        // Roll first when the batch may not fit, so that the encoder is never stopped midway in the common
        // case (a stopped encoder leaves partial bytes that must be zeroed up to the segment's end). An empty
        // segment is rolled too when a new one would be larger (the store was reopened with bigger segments).
        let cap = w.map.map().len();
        let larger_room = cap < self.options.segment_size_bytes;
        if (w.end > SEGMENT_HEADER_LEN || larger_room) && w.end.saturating_add(bound) > cap {
            self.roll(w)?;
        }
        let end = match self.encode_batch(w, batch, plan)? {
            Some(end) => end,
            // An empty segment of the configured size that cannot hold the batch: a new one could not either.
            None if w.end == SEGMENT_HEADER_LEN && w.map.map().len() >= self.options.segment_size_bytes => {
                return Err(too_large())
            }
            None => {
                self.roll(w)?;
                self.encode_batch(w, batch, plan)?.ok_or_else(too_large)?
            }
        };
        let start = w.end;
        self.after_encode(w, start, end, batch, plan, out)
    }

    /// Idempotent retries. If no event id of the batch is known, `None`: append normally. If every event has
    /// an id, all are known, each stream's stored events match (stream, type, payload, metadata, in
    /// consecutive positions) and the batch's consumer (if any) is at or past the position the batch sets,
    /// the original result. Anything in between is a `DuplicateEventId` error.
    fn find_retry(&self, ix: &Index, batch: &Batch<'_>) -> Result<Option<Vec<Appended>>> {
        let mut events = batch.streams.iter().flat_map(|s| s.events.iter());
        let Some((id, position)) =
            events.find_map(|e| e.event_id.and_then(|id| ix.ids.map.get(&id).map(|&p| (id, p))))
        else {
            return Ok(None);
        };
        let conflict = Err(Error::DuplicateEventId { id, position });
        // The original batch moved its consumer to `p` together with its events, and consumer positions
        // only advance: a consumer behind `p` means the stored events came from another batch.
        if let Some((name, p)) = batch.consumer {
            if ix.consumers.get(name).is_none_or(|&current| current < p) {
                return conflict;
            }
        }
        let mut out = Vec::with_capacity(batch.streams.len());
        for s in batch.streams {
            let mut first: Option<(u64, u64)> = None;
            for (i, e) in s.events.iter().enumerate() {
                let stored =
                    e.event_id.and_then(|id| ix.ids.map.get(&id)).and_then(|&p| self.event_at(ix, p));
                let Some(stored) = stored else { return conflict };
                let (p0, v0) = *first.get_or_insert((stored.position(), stored.stream_version()));
                let same = p0.checked_add(i as u64) == Some(stored.position())
                    && v0.checked_add(i as u64) == Some(stored.stream_version())
                    && stored.stream_id() == s.stream
                    && stored.event_type() == e.event_type
                    && stored.payload() == e.payload
                    && stored.metadata() == e.metadata;
                if !same {
                    return conflict;
                }
            }
            let Some((p0, v0)) = first else { return conflict };
            let n = s.events.len() as u64;
            let (Some(p1), Some(v1)) = (p0.checked_add(n), v0.checked_add(n)) else { return conflict };
            out.push(Appended { positions: p0..p1, versions: v0..v1, deduplicated: true });
        }
        Ok(Some(out))
    }

    /// Reads the event at `pos` through the index.
    pub(crate) fn event_at<'s>(&'s self, ix: &Index, pos: u64) -> Option<EventRef<'s>> {
        let (seg, off) = ix.locate(pos).ok()??;
        let bytes = self.segments.get(seg)?.committed_from(off)?;
        match decode_frame(bytes).ok()?.body {
            Body::Event(e) => Some(e),
            Body::Consumer(..) => None,
        }
    }

    /// Encodes all frames of the batch past `w.end`. Returns the end offset, or `None` if the segment is full
    /// (nothing is published; the partial bytes are zeroed so no stale frame is left behind).
    fn encode_batch(&self, w: &mut Writer, batch: &Batch<'_>, plan: &[u64]) -> Result<Option<u64>> {
        sys::before_map_write(w.map.map().path()).map_err(|e| Error::io("write", w.map.map().path(), e))?;
        let cap = w.map.map().len();
        let mut at = w.end;
        let total_events: usize = batch.streams.iter().map(|s| s.events.len()).sum();
        let frames = total_events + usize::from(batch.consumer.is_some());
        let mut done = 0usize;
        let now = now_micros();
        let mut position = w.next_position;
        for (s, &first_version) in batch.streams.iter().zip(plan) {
            for (i, e) in s.events.iter().enumerate() {
                done += 1;
                let env = &mut w.scratch;
                env.position = position;
                env.stream_version = first_version + i as u64;
                env.timestamp_micros = e.timestamp_micros.unwrap_or(now);
                env.schema_version = e.schema_version;
                env.event_id = e.event_id.map(u128::to_be_bytes);
                env.stream_id.clear();
                env.stream_id.push_str(s.stream);
                env.event_type.clear();
                env.event_type.push_str(e.event_type);
                env.metadata.clear();
                env.metadata.extend_from_slice(e.metadata);
                env.payload.clear();
                env.payload.extend_from_slice(e.payload);
                let env = std::mem::take(&mut w.scratch);
                let r = encode_event(&env, done == frames, w.map.tail_mut(at, cap));
                w.scratch = env;
                match r {
                    Some(len) => at += len,
                    None => return Ok(self.abandon(w, at)),
                }
                position += 1;
            }
        }
        if let Some((name, p)) = batch.consumer {
            // Offsets below the 4 GiB segment limit fit u32 (the index keeps them so too).
            let offset =
                u32::try_from(at).map_err(|_| Error::corrupt(w.map.map().path(), at, "offset past 4 GiB"))?;
            let body = ConsumerBody { name: name.to_owned(), position: p, segment: w.seg_seq, offset };
            match encode_consumer(&body, true, w.map.tail_mut(at, cap)) {
                Some(len) => at += len,
                None => return Ok(self.abandon(w, at)),
            }
        }
        debug_assert!(frames > 0, "empty batches return before encoding");
        Ok(Some(at))
    }

    fn abandon(&self, w: &mut Writer, at: u64) -> Option<u64> {
        // Zero the frames encoded so far and whatever the failed encoder wrote past `at` before it ran out of
        // room (it may have reached the end of the segment): left there, those bytes would sit past the log's
        // end, where a later frame boundary can land on them and recovery would take them for a bad frame.
        let (end, cap) = (w.end, w.map.map().len());
        debug_assert!(at <= cap);
        for chunk in w.map.tail_mut(end, cap).chunks_mut(4096) {
            if chunk.iter().any(|&b| b != 0) {
                chunk.fill(0);
            }
        }
        None
    }

    /// Publishes the encoded frames: record, sync if the mode says so, update the index, move the watermark.
    fn after_encode(
        &self,
        w: &mut Writer,
        start: u64,
        end: u64,
        batch: &Batch<'_>,
        plan: &[u64],
        out: &mut dyn FnMut(Appended),
    ) -> Result<()> {
        sys::after_map_write(w.map.map().path(), start, w.map.uncommitted(start, end));
        let first_position = w.next_position;
        // Index entries: walk the frames just written for their offsets and lengths.
        let mut offsets = std::mem::take(&mut w.offsets);
        offsets.clear();
        let mut at = start;
        while at < end {
            let bytes = w.map.uncommitted(at, end);
            let len = frame_len(u64::from(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])));
            offsets.push((at, len));
            at += len;
        }
        w.end = end;
        w.pending_appends += 1;
        w.pending_bytes += end - start;
        w.bytes_since_checkpoint += end - start;
        w.pending_since.get_or_insert_with(Instant::now);
        // The group's age bound is kept by the flusher thread, so no clock is read per append.
        let must_sync = match self.options.durability {
            Durability::Always => true,
            Durability::Group(g) => w.pending_appends >= g.appends_max || w.pending_bytes >= g.bytes_max,
            Durability::Never => false,
        };
        let always = matches!(self.options.durability, Durability::Always);
        if always {
            // Durable before visible: a reader never sees an event that a failed sync could still lose.
            self.sync_frames(w)?;
        }
        w.map.publish_verified(end);
        {
            let mut ix = self.index.write().unwrap_or_else(|e| e.into_inner());
            let mut frame = offsets.iter();
            let mut position = first_position;
            for (s, &v0) in batch.streams.iter().zip(plan) {
                let p0 = position;
                for (i, e) in s.events.iter().enumerate() {
                    let &(off, len) = frame.next().expect("one frame per event");
                    let added = ix
                        .add_event(
                            FrameAt { seg: w.seg, offset: off, len },
                            s.stream,
                            v0 + i as u64,
                            position,
                            e.event_id,
                        )
                        .is_ok();
                    // Invariant: the versions were computed from the index under the writer lock.
                    assert!(added, "stream versions follow the index");
                    position += 1;
                }
                let n = s.events.len() as u64;
                out(Appended { positions: p0..p0 + n, versions: v0..v0 + n, deduplicated: false });
            }
            if let Some((name, p)) = batch.consumer {
                let &(off, len) = frame.next().expect("consumer frame");
                ix.add_consumer(FrameAt { seg: w.seg, offset: off, len }, name, p);
            }
            w.next_position = position;
            self.committed.store(position, Ordering::SeqCst);
        }
        w.offsets = offsets;
        self.notify();
        if always {
            self.durable.store(w.next_position, Ordering::Release);
        } else if must_sync {
            self.sync_locked(w)?;
        }
        // Each checkpoint rewrites the whole index, so the gap between two grows with it (at least four times
        // the last checkpoint's size): checkpoints cost at most a quarter of the log's own bytes, and open
        // still scans a bounded tail.
        let due = self.options.checkpoint_every_bytes.max(w.last_checkpoint_bytes.saturating_mul(4));
        if self.options.checkpoint_every_bytes > 0 && w.bytes_since_checkpoint >= due {
            // The append is already committed; a failed checkpoint is reported but loses nothing.
            self.checkpoint_locked(w)?;
        }
        Ok(())
    }

    /// Wakes `wait_for` callers. Skipped when nobody waits: a futex wake per append would cost more than
    /// the append. SeqCst pairs with `wait_for`: either the waiter sees the new watermark or we see the waiter.
    fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.wake.lock().unwrap_or_else(|e| e.into_inner());
            self.wake_cv.notify_all();
        }
    }

    /// Syncs the active segment's frames (not the slot); poisons on failure.
    fn sync_frames(&self, w: &mut Writer) -> Result<()> {
        if w.synced_end == w.end && w.pending_since.is_none() {
            return Ok(());
        }
        if let Err(e) = w.map.map().flush_range(0, w.end) {
            let path = w.map.map().path().to_path_buf();
            return self.poison(Error::io("sync segment", path, e));
        }
        w.synced_end = w.end;
        w.pending_appends = 0;
        w.pending_bytes = 0;
        w.pending_since = None;
        // Record the new durable point; the slot itself reaches disk with the next sync.
        let slot =
            DurableSlot { seq: w.slot.seq + 1, durable_end: w.end, next_position: w.next_position, flags: 0 };
        self.write_slot(w, slot)
    }

    fn write_slot(&self, w: &mut Writer, slot: DurableSlot) -> Result<()> {
        let path = w.map.map().path().to_path_buf();
        match w.map.write_header(slot.file_offset(), &slot.encode()) {
            Ok(()) => {
                w.slot = slot;
                Ok(())
            }
            Err(e) => self.poison(Error::io("write durable slot", path, e)),
        }
    }

    fn sync_locked(&self, w: &mut Writer) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        self.sync_frames(w)?;
        self.durable.store(w.next_position, Ordering::Release);
        Ok(())
    }

    /// Replaces a CLEAN (or, after an operator's `TruncateCorruption` open, SEALED) slot with a plain one and
    /// syncs it before any new frame is stored, so that such a slot on disk never hides frames written after
    /// it.
    fn mark_dirty(&self, w: &mut Writer) -> Result<()> {
        let slot = DurableSlot { seq: w.slot.seq + 1, flags: 0, ..w.slot };
        self.write_slot(w, slot)?;
        self.sync_header(w)?;
        w.clean_on_disk = false;
        Ok(())
    }

    /// Syncs the active segment's header (its durable slots); poisons on failure.
    fn sync_header(&self, w: &mut Writer) -> Result<()> {
        match w.map.map().flush_range(0, SEGMENT_HEADER_LEN) {
            Ok(()) => Ok(()),
            Err(e) => self.poison(Error::io("sync segment header", w.map.map().path().to_path_buf(), e)),
        }
    }

    /// Seals the active segment (synced in full) and starts the next one.
    ///
    /// Order: frames and a slot naming the segment's end are made durable; the next segment is created
    /// (durable, under a name no other segment has: its sequence number is one more); then a `SEALED` slot is
    /// written and synced, the evidence that a successor exists, so that losing it later is corruption and
    /// not a silently shorter log. A crash between the last two steps leaves a successor and no `SEALED`
    /// slot, which open accepts (the successor is there).
    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.sync_locked(w)?;
        // A slot naming exactly this end (the sync above may have had nothing to do, and a slot read at open
        // can name less than what recovery kept), durable before the successor exists: open walks a sealed
        // segment to exactly its slot's end.
        let s = w.slot;
        if (s.durable_end, s.next_position, s.flags) != (w.end, w.next_position, 0) {
            let end =
                DurableSlot { seq: s.seq + 1, durable_end: w.end, next_position: w.next_position, flags: 0 };
            self.write_slot(w, end)?;
        }
        self.sync_header(w)?;
        let cap = self.options.segment_size_bytes;
        let Some(seq) = w.seg_seq.checked_add(1) else {
            return Err(Error::InvalidArgument("the log has used every segment sequence number".into()));
        };
        let name = SegmentName { base: w.next_position, seq };
        let (seg, map) = match Segment::create(&self.dir, self.log_id, name, cap) {
            Ok(made) => made,
            // A half-made segment that could not be removed would claim the positions the next append writes
            // into the current segment, and the log would no longer open: write nothing until a reopen.
            Err(e) if self.dir.join(segment_file_name(name.base, name.seq)).exists() => {
                return self.poison(e)
            }
            Err(e) => return Err(e),
        };
        let sealed = DurableSlot { seq: w.slot.seq + 1, flags: SLOT_FLAG_SEALED, ..w.slot };
        self.write_slot(w, sealed)?;
        self.sync_header(w)?;
        let slot_index = self.segments.push(Arc::clone(&seg.map))?;
        {
            let mut ix = self.index.write().unwrap_or_else(|e| e.into_inner());
            // The sealed segment's offsets never grow again: drop the Vec's growth slack.
            if let Some(sealed) = ix.segments.last_mut() {
                sealed.seal();
            }
            ix.segments.push(SegIndex::new(w.next_position, seq, SEGMENT_HEADER_LEN));
            debug_assert_eq!(ix.segments.len(), slot_index + 1);
        }
        w.seg = slot_index;
        w.seg_seq = seq;
        w.map = map;
        w.end = SEGMENT_HEADER_LEN;
        w.synced_end = SEGMENT_HEADER_LEN;
        w.slot =
            DurableSlot { seq: 0, durable_end: SEGMENT_HEADER_LEN, next_position: w.next_position, flags: 0 };
        w.clean_on_disk = false;
        Ok(())
    }

    fn checkpoint_locked(&self, w: &mut Writer) -> Result<()> {
        // The log first: a checkpoint must never describe events that are not durable.
        self.sync_locked(w)?;
        let encoded = encode_checkpoint(&self.read_index(), self.log_id);
        let bytes = match encoded {
            Ok(b) => b,
            Err(stale) => {
                self.rebuild_index_locked(stale.reason)?;
                encode_checkpoint(&self.read_index(), self.log_id)
                    .map_err(|s| Error::corrupt(self.dir.join(CHECKPOINT_FILE), 0, s.reason))?
            }
        };
        sys::write_file_atomically(&self.dir, CHECKPOINT_FILE, &bytes)
            .map_err(|e| Error::io("write checkpoint", self.dir.join(CHECKPOINT_FILE), e))?;
        w.bytes_since_checkpoint = 0;
        w.last_checkpoint_bytes = bytes.len() as u64;
        Ok(())
    }

    fn close(&self) -> Result<()> {
        if self.abandoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut guard = match self.lock_writer() {
            Ok(g) => g,
            Err(Error::Poisoned) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(w) = guard.as_mut() else { return Ok(()) };
        if w.bytes_since_checkpoint > 0 || !self.dir.join(CHECKPOINT_FILE).exists() {
            self.checkpoint_locked(w)?;
        } else {
            self.sync_locked(w)?;
        }
        if !w.clean_on_disk {
            let slot = DurableSlot {
                seq: w.slot.seq + 1,
                durable_end: w.end,
                next_position: w.next_position,
                flags: SLOT_FLAG_CLEAN,
            };
            self.write_slot(w, slot)?;
            self.sync_header(w)?;
            w.clean_on_disk = true;
        }
        Ok(())
    }
}

/// An upper bound of the bytes a batch's frames take: per event the strings and bytes it carries plus the
/// 80-byte archived root, at most 7 bytes of alignment before the root and the 16-byte header and padding
/// (160 covers all of it with room to spare); per consumer frame its name plus 64.
fn batch_size_bound(batch: &Batch<'_>) -> u64 {
    let events: u64 = batch
        .streams
        .iter()
        .flat_map(|s| s.events.iter().map(move |e| (s, e)))
        .map(|(s, e)| {
            frame_len((s.stream.len() + e.event_type.len() + e.payload.len() + e.metadata.len() + 160) as u64)
        })
        .sum();
    events + batch.consumer.map_or(0, |(name, _)| frame_len(name.len() as u64 + 64))
}

/// The first version of `s`'s events, checked so that its last event stays at or below
/// [`STREAM_VERSION_MAX`]; `first` is `None` when the version after the stream's last one does not exist.
fn check_version_room(s: &StreamAppend<'_>, first: Option<u64>) -> Result<u64> {
    let n = s.events.len() as u64;
    let fits = first.filter(|&v| {
        v <= STREAM_VERSION_MAX + 1
            && (n == 0 || v.checked_add(n - 1).is_some_and(|last| last <= STREAM_VERSION_MAX))
    });
    fits.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "stream {:?}: {n} events from version {} would pass the largest stream version {STREAM_VERSION_MAX}",
            s.stream,
            first.map_or_else(|| "past u64::MAX".to_owned(), |v| v.to_string()),
        ))
    })
}

fn validate_batch(batch: &Batch<'_>) -> Result<()> {
    for s in batch.streams {
        check_name("stream id", s.stream, STREAM_ID_BYTES_MAX)?;
        if s.first_version > STREAM_VERSION_MAX {
            return Err(Error::InvalidArgument(format!(
                "stream {:?}: first version {} is past the largest stream version {STREAM_VERSION_MAX}",
                s.stream, s.first_version
            )));
        }
        for e in s.events {
            check_name("event type", e.event_type, NAME_BYTES_MAX)?;
        }
    }
    if let Some((name, _)) = batch.consumer {
        check_name("consumer name", name, NAME_BYTES_MAX)?;
    }
    if let Some(stream) = first_duplicate(batch.streams.iter().map(|s| s.stream)) {
        return Err(Error::InvalidArgument(format!("stream {stream:?} appears twice in one batch")));
    }
    let ids = batch.streams.iter().flat_map(|s| s.events.iter().filter_map(|e| e.event_id));
    if let Some(id) = first_duplicate(ids) {
        return Err(Error::InvalidArgument(format!("event id {id:032x} appears twice in one batch")));
    }
    Ok(())
}

/// The first item that appeared before. Small inputs (the common batch of one stream and a few events) are
/// compared pairwise without allocating; larger ones go through a hash set, so a batch of 100,000 ids costs
/// linear time, not quadratic.
fn first_duplicate<T: Eq + std::hash::Hash + Copy>(items: impl Iterator<Item = T> + Clone) -> Option<T> {
    const PAIRWISE_MAX: usize = 16;
    if items.clone().nth(PAIRWISE_MAX).is_none() {
        return items
            .clone()
            .enumerate()
            .find(|&(i, x)| items.clone().take(i).any(|o| o == x))
            .map(|(_, x)| x);
    }
    let mut set = std::collections::HashSet::new();
    items.into_iter().find(|&x| !set.insert(x))
}

struct Listing {
    segments: Vec<(SegmentName, PathBuf)>,
    temps: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing> {
    let mut segments = Vec::new();
    let mut temps = Vec::new();
    for (name, regular) in sys::list_dir(dir).map_err(|e| Error::io("list directory", dir, e))? {
        if let Some(seg) = parse_segment_file_name(&name) {
            if !regular {
                return Err(Error::InvalidDirectory {
                    path: dir.join(&name),
                    reason: "a segment name that is not a regular file (symlink or directory)".into(),
                });
            }
            segments.push((seg, dir.join(&name)));
        } else if is_version_1_segment_name(&name) {
            // Format 1 named segments by base alone; such a log is not readable here, and starting a new
            // log beside it would look like an empty store.
            return Err(Error::UnsupportedVersion {
                path: dir.join(&name),
                found: 1,
                supported: FORMAT_VERSION,
            });
        } else if regular
            && (name.starts_with(&format!("{CHECKPOINT_FILE}.tmp-"))
                || name
                    .strip_suffix(SEGMENT_TMP_SUFFIX)
                    .is_some_and(|n| parse_segment_file_name(n).is_some()))
        {
            temps.push(dir.join(&name));
        }
    }
    // By sequence number: that is the log's order (bases may repeat).
    segments.sort_unstable_by_key(|(name, _)| (name.seq, name.base));
    listing_checked(dir, Listing { segments, temps })
}

/// `<20 digits>.seg`: a segment of format version 1.
pub(crate) fn is_version_1_segment_name(name: &str) -> bool {
    name.strip_suffix(".seg").is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Segments are numbered 0, 1, 2, … with no gap: a missing number is a lost segment, never a log that
/// happens to be shorter.
fn listing_checked(dir: &Path, listing: Listing) -> Result<Listing> {
    for (expect, (name, path)) in (0u32..).zip(&listing.segments) {
        if name.seq != expect {
            let reason = if name.seq > expect {
                format!("segment number {expect} is missing before this one (a segment file was lost)")
            } else {
                format!("a second segment numbered {}", name.seq)
            };
            return Err(Error::corrupt(if name.seq > expect { path } else { dir }, 0, reason));
        }
    }
    Ok(listing)
}

/// With no segment file at all, the directory must show no sign of a log that was there: an index
/// checkpoint or snapshots are written only after events were durable, so either one means the segments
/// were lost, and starting an empty log over them would be a silent loss of everything.
pub(crate) fn check_no_lost_log(dir: &Path) -> Result<()> {
    for evidence in [CHECKPOINT_FILE, SNAPSHOT_DIR] {
        let path = dir.join(evidence);
        if path.symlink_metadata().is_ok() {
            return Err(Error::corrupt(
                &path,
                0,
                format!("no segment files, but {evidence} exists: the log's segments were lost"),
            ));
        }
    }
    Ok(())
}

fn open_inner(dir: &Path, mut options: Options) -> Result<Inner> {
    let started = Instant::now();
    crate::directory::check_before_open(dir, &options)?;
    options.segment_size_bytes =
        (options.segment_size_bytes / 16 * 16).clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
    let writable = !options.read_only;
    if !dir.exists() {
        if !(options.create_if_missing && writable) {
            return Err(Error::InvalidDirectory { path: dir.to_path_buf(), reason: "does not exist".into() });
        }
        sys::create_dir(dir).map_err(|e| Error::io("create directory", dir, e))?;
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock =
        sys::open_lock_file(&lock_path, writable).map_err(|e| Error::io("open lock file", &lock_path, e))?;
    if let Some(lock) = &lock {
        if !sys::try_lock(lock, &lock_path, writable).map_err(|e| Error::io("lock", &lock_path, e))? {
            return Err(Error::Locked { path: dir.to_path_buf() });
        }
    }
    let listing = list(dir)?;
    if writable {
        for t in &listing.temps {
            let _ = sys::remove(t);
        }
    }
    if listing.segments.is_empty() {
        check_no_lost_log(dir)?;
        if !(writable && options.create_if_missing) {
            return Err(Error::InvalidDirectory {
                path: dir.to_path_buf(),
                reason: "no segment files".into(),
            });
        }
        return create_log(dir, options, lock, started);
    }
    let mut report = RecoveryReport::default();
    let opened = open_segments(&listing, writable)?;
    report.segments = opened.len();
    let log_id = opened[0].header.log_id;
    let (index, resume) = load_checkpoint(dir, log_id, &opened, &options, &mut report)?;
    let segments = SegmentTable::new();
    let (index, writer) = recover_segments(&options, opened, index, resume, &segments, &mut report)?;
    report.events = index.next_position;
    report.elapsed = started.elapsed();
    Ok(build_inner(dir, options, log_id, segments, index, writer, report, lock))
}

/// A new, empty log: its first segment (number 0, base 0) and a writer.
fn create_log(dir: &Path, options: Options, lock: Option<File>, started: Instant) -> Result<Inner> {
    let log_id = random_log_id();
    let first = SegmentName { base: 0, seq: 0 };
    let (seg, map) = Segment::create(dir, log_id, first, options.segment_size_bytes)?;
    drop(seg.file);
    let segments = SegmentTable::new();
    segments.push(Arc::clone(&seg.map))?;
    let mut index = Index::new(options.event_ids_remembered);
    index.segments.push(SegIndex::new(0, 0, SEGMENT_HEADER_LEN));
    let report =
        RecoveryReport { segments: 1, clean: true, elapsed: started.elapsed(), ..RecoveryReport::default() };
    let slot = DurableSlot { seq: 0, durable_end: SEGMENT_HEADER_LEN, next_position: 0, flags: 0 };
    let writer = Writer::new(0, 0, map, SEGMENT_HEADER_LEN, 0, SEGMENT_HEADER_LEN, slot, false);
    Ok(build_inner(dir, options, log_id, segments, index, Some(writer), report, lock))
}

/// Opens every listed segment; the first one's log id is the reference.
fn open_segments(listing: &Listing, writable: bool) -> Result<Vec<Segment>> {
    let n = listing.segments.len();
    let mut opened: Vec<Segment> = Vec::with_capacity(n);
    for (i, (name, path)) in listing.segments.iter().enumerate() {
        let last = i + 1 == n;
        let log_id = opened.first().map(|s| s.header.log_id);
        opened.push(Segment::open(path, *name, log_id, last, writable && last)?);
    }
    Ok(opened)
}

/// The index checkpoint, if it fits the log: the index it holds and where the scan resumes. A checkpoint
/// that is damaged or does not fit is refused (removed when writable, so it is never judged again) and the
/// index rebuilt; one that proves events durable that the log no longer holds is corruption in strict mode.
fn load_checkpoint(
    dir: &Path,
    log_id: [u8; 16],
    opened: &[Segment],
    options: &Options,
    report: &mut RecoveryReport,
) -> Result<(Index, Option<Resume>)> {
    let ids_cap = options.event_ids_remembered;
    let path = dir.join(CHECKPOINT_FILE);
    let refused = match open_checkpoint(path.clone(), log_id, ids_cap)? {
        None => return Ok((Index::new(ids_cap), None)),
        Some(Err(why)) => why,
        Some(Ok((ix, resume))) => match checkpoint_fits(&ix, opened) {
            Ok(()) => {
                report.checkpoint = CheckpointUse::Used(ix.next_position);
                return Ok((ix, Some(resume)));
            }
            Err(Misfit::Lost(why)) if options.recovery == Recovery::Strict => {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("{why}: the checkpoint proves events durable that the log no longer holds"),
                ));
            }
            Err(Misfit::Lost(why)) => format!("{why} (accepted: recovery mode TruncateCorruption)"),
            Err(Misfit::Refused(why)) => why,
        },
    };
    report.checkpoint = CheckpointUse::Rebuilt(refused);
    if !options.read_only {
        // A refused checkpoint must not survive to be judged again: a later open, after the log changed
        // under it (a cut tail, say), could find it fitting and trust what was refused once.
        remove_checkpoint(dir)?;
    }
    Ok((Index::new(ids_cap), None))
}

/// Indexes the segments the checkpoint does not cover (sealed ones must be whole, up to their durable end),
/// recovers the last one and builds the writer.
fn recover_segments(
    options: &Options,
    opened: Vec<Segment>,
    mut index: Index,
    resume: Option<Resume>,
    segments: &SegmentTable,
    report: &mut RecoveryReport,
) -> Result<(Index, Option<Writer>)> {
    debug_assert!(resume.is_none_or(|r| index.segments.last().is_some_and(|s| s.base == r.segment_base)));
    let n = opened.len();
    let mut writer = None;
    for (i, seg) in opened.into_iter().enumerate() {
        let last = i + 1 == n;
        let covered = index.segments.get(i).is_some();
        if !covered {
            if seg.header.base_position != index.next_position {
                return Err(Error::corrupt(
                    seg.path(),
                    32,
                    format!(
                        "segment starts at position {} but the log before it ends at {} (a segment is missing)",
                        seg.header.base_position, index.next_position
                    ),
                ));
            }
            index.segments.push(SegIndex::new(seg.header.base_position, seg.header.seq, SEGMENT_HEADER_LEN));
        }
        let slot_index = segments.push(Arc::clone(&seg.map))?;
        debug_assert_eq!(slot_index, i);
        let at = Place { slot: slot_index, seq: seg.header.seq, from: index.segments[i].end };
        // Sealed segments fully covered by the checkpoint are trusted; the last covered one and the rest are read.
        if !last && covered && index.segments.get(i + 1).is_some() {
            continue;
        }
        report.segments_scanned += 1;
        if last {
            writer = recover_last(options, &seg, at, &mut index, report)?;
        } else {
            scan_sealed(&seg, at, &mut index, report)?;
        }
    }
    Ok((index, writer))
}

#[allow(clippy::too_many_arguments)]
fn build_inner(
    dir: &Path,
    options: Options,
    log_id: [u8; 16],
    segments: SegmentTable,
    index: Index,
    writer: Option<Writer>,
    report: RecoveryReport,
    lock: Option<File>,
) -> Inner {
    let next = index.next_position;
    let durable = writer.as_ref().map_or(next, |w| {
        if w.synced_end == w.end {
            next
        } else {
            w.slot.next_position.min(next)
        }
    });
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
        abandoned: AtomicBool::new(false),
        _lock: lock,
    }
}

/// Removes the checkpoint (already gone is fine) and makes the removal durable.
fn remove_checkpoint(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    match sys::remove(&path) {
        Ok(()) => sys::sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove refused checkpoint", &path, e)),
    }
}

/// Why a checkpoint that decoded cleanly does not fit the segment files.
enum Misfit {
    /// Its shape does not fit (a forged or buggy file): derived data, rebuilt from the log.
    Refused(String),
    /// It names segments or events the log no longer has. It was written only after the log it describes
    /// was synced, so this is evidence that durable data was lost.
    Lost(String),
}

/// Cheap consistency checks of a decoded checkpoint against the segment files present.
fn checkpoint_fits(ix: &Index, segs: &[Segment]) -> Result<(), Misfit> {
    if let Some(missing) = ix.segments.get(segs.len()) {
        return Err(Misfit::Lost(format!(
            "the checkpoint names segment number {} (from position {}), which does not exist",
            missing.seq, missing.base
        )));
    }
    for (i, (s, seg)) in ix.segments.iter().zip(segs).enumerate() {
        if s.base != seg.header.base_position || s.seq != seg.header.seq {
            return Err(Misfit::Lost(format!(
                "checkpoint segment {}/{} does not match file {}",
                s.base,
                s.seq,
                seg.path().display()
            )));
        }
        // Every real end is a frame boundary inside the segment, and inside a sealed segment's durable
        // part; anything else would send the scan (or a later rebuild) to bytes that are not frames.
        let sealed = i + 1 < segs.len();
        let durable = seg.slot.map_or(SEGMENT_HEADER_LEN, |d| d.durable_end);
        if s.end > seg.header.capacity
            || s.end < SEGMENT_HEADER_LEN
            || !s.end.is_multiple_of(16)
            || (sealed && s.end > durable)
        {
            return Err(Misfit::Refused(format!(
                "checkpoint offset {} is not a frame boundary in {}",
                s.end,
                seg.path().display()
            )));
        }
    }
    let Some(last) = ix.next_position.checked_sub(1) else { return Ok(()) };
    // The last covered event must still be there, with the position the checkpoint claims.
    let (si, off) = ix
        .locate(last)
        .map_err(|s| Misfit::Refused(s.reason))?
        .ok_or_else(|| Misfit::Refused("checkpoint cannot locate its last event".into()))?;
    match read_event_frame(&segs[si], off) {
        Ok(Ok(position)) if position == last => Ok(()),
        Ok(_) => Err(Misfit::Lost(format!("the event at position {last} is not where the checkpoint says"))),
        // Not evidence of anything: the index is rebuilt from the log, which reports its own I/O errors.
        Err(e) => Err(Misfit::Refused(format!("reading the checkpoint's last event: {e}"))),
    }
}

/// The position of the event frame at `off` of `seg`, read through the file (the last segment's map has
/// published nothing yet); the inner error says why the bytes there are not an event frame.
fn read_event_frame(seg: &Segment, off: u64) -> std::io::Result<std::result::Result<u64, String>> {
    let mut head = [0u8; 16];
    let path = seg.path();
    sys::read_at(&seg.file, &path, off, &mut head)?;
    let len = frame_len(u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]])));
    if off + len > seg.header.capacity {
        return Ok(Err("frame runs past the segment".into()));
    }
    let mut frame = rkyv::util::AlignedVec::<16>::with_capacity(len as usize);
    frame.resize(len as usize, 0);
    sys::read_at(&seg.file, &path, off, &mut frame)?;
    Ok(match decode_frame(&frame).map(|f| f.body) {
        Ok(Body::Event(e)) => Ok(e.position()),
        Ok(Body::Consumer(_)) => Err("a consumer frame".into()),
        Err(p) => Err(p.to_string()),
    })
}

/// How a walk over a segment's frames ended.
struct Scan {
    /// Offset just past the last frame of the last complete (committed) batch.
    committed_end: u64,
    /// Offset of the first frame not accepted.
    stop: u64,
    /// Why the walk stopped there; `None` for a zero length (the clean end of the written region).
    reason: Option<String>,
}

/// A frame of a batch whose COMMIT frame has not been seen yet.
enum Pending<'a> {
    Event { off: u64, len: u64, event: EventRef<'a> },
    Consumer { off: u64, len: u64, name: &'a str, position: u64 },
}

/// Where a walk over a segment's frames starts: the segment's slot in the table, its sequence number and
/// the file offset of the first frame to read.
#[derive(Clone, Copy)]
struct Place {
    slot: usize,
    seq: u32,
    from: u64,
}

/// Walks the frames in `bytes` (file offsets from `at.from`), adding each committed batch to the index as a
/// whole. Stops at the first frame that is empty, invalid, out of position, out of stream order, or (a
/// consumer frame) not where it says it was written. Bounded: every step advances by at least one 16-byte
/// frame header.
fn index_frames(bytes: &[u8], at: Place, index: &mut Index, report: &mut RecoveryReport) -> Scan {
    let Place { slot, seq, from } = at;
    let mut pending: Vec<Pending<'_>> = Vec::new();
    let mut committed_end = from;
    let mut at = 0usize;
    loop {
        let off = from + at as u64;
        let stop = |reason: Option<String>| Scan { committed_end, stop: off, reason };
        let rest = bytes.get(at..).unwrap_or(&[]);
        if rest.is_empty() {
            return stop(None);
        }
        let frame = match decode_frame(rest) {
            Ok(f) => f,
            Err(crate::record::FrameProblem::Empty) => return stop(None),
            Err(p) => return stop(Some(p.to_string())),
        };
        match frame.body {
            Body::Event(event) => {
                let events = pending.iter().filter(|p| matches!(p, Pending::Event { .. })).count() as u64;
                // The last position is never used, so `next_position` always fits.
                let expect = index.next_position.checked_add(events).filter(|&p| p < u64::MAX);
                if Some(event.position()) != expect {
                    return stop(Some(format!(
                        "event has position {} where {} belongs",
                        event.position(),
                        expect.map_or_else(|| "no position".to_owned(), |p| p.to_string())
                    )));
                }
                pending.push(Pending::Event { off, len: frame.len, event });
            }
            Body::Consumer(c) => {
                if c.segment != seq || u64::from(c.offset) != off {
                    return stop(Some(format!(
                        "consumer frame says it was written to segment {} at offset {} (a misdirected write)",
                        c.segment, c.offset
                    )));
                }
                pending.push(Pending::Consumer { off, len: frame.len, name: c.name, position: c.position })
            }
        }
        at += frame.len as usize;
        if !frame.commit {
            continue;
        }
        if let Err(why) = versions_follow(index, &pending) {
            return stop(Some(why));
        }
        for p in pending.drain(..) {
            match p {
                Pending::Event { off, len, event } => {
                    let added = index.add_event(
                        FrameAt { seg: slot, offset: off, len },
                        event.stream_id(),
                        event.stream_version(),
                        event.position(),
                        event.event_id(),
                    );
                    assert!(added.is_ok(), "versions were checked by versions_follow");
                    report.events_scanned += 1;
                }
                Pending::Consumer { off, len, name, position } => {
                    index.add_consumer(FrameAt { seg: slot, offset: off, len }, name, position)
                }
            }
        }
        committed_end = from + at as u64;
    }
}

/// Checks that every event of a batch continues its stream's versions (a new stream may start anywhere).
fn versions_follow(index: &Index, pending: &[Pending<'_>]) -> Result<(), String> {
    let mut next: Vec<(&str, u64)> = Vec::new();
    for p in pending {
        let Pending::Event { event, .. } = p else { continue };
        let stream = event.stream_id();
        let local = next.iter_mut().find(|(s, _)| *s == stream);
        let expected = match &local {
            Some((_, v)) => Some(*v),
            None => index.streams.get(stream).map(|s| s.first_version + s.len()),
        };
        let v = event.stream_version();
        if expected.is_some_and(|e| e != v) {
            return Err(format!("stream {stream:?} has version {v} where {} belongs", expected.unwrap_or(0)));
        }
        if v > STREAM_VERSION_MAX {
            return Err(format!("stream {stream:?} has version {v}, past the largest {STREAM_VERSION_MAX}"));
        }
        match local {
            Some(entry) => entry.1 = v + 1,
            None => next.push((stream, v + 1)),
        }
    }
    Ok(())
}

fn scan_sealed(seg: &Segment, at: Place, index: &mut Index, report: &mut RecoveryReport) -> Result<()> {
    let path = seg.path();
    // A roll makes a slot naming the segment's exact end durable before the next segment exists, so the
    // walk must end exactly there: earlier is lost frames, and bytes past it were never written (a flipped
    // bit there is not the log's business).
    let durable = seg
        .slot
        .ok_or_else(|| Error::corrupt(&path, 64, "a sealed segment has no valid durable slot"))?
        .durable_end;
    let bytes =
        seg.map.committed_from(at.from).filter(|_| at.from <= durable).ok_or_else(|| {
            Error::corrupt(&path, at.from, "resume offset outside the segment's durable part")
        })?;
    let bytes = &bytes[..(durable - at.from) as usize];
    let scan = index_frames(bytes, at, index, report);
    if let Some(reason) = scan.reason {
        // A sealed segment was synced in full before its successor was created: nothing in it may be torn.
        return Err(Error::corrupt(&path, scan.stop, format!("in a sealed segment: {reason}")));
    }
    if scan.committed_end != durable {
        let why = if scan.stop == durable {
            "a sealed segment ends inside a batch"
        } else {
            "a sealed segment's frames end before its durable end"
        };
        return Err(Error::corrupt(&path, scan.committed_end, format!("{why} ({durable})")));
    }
    index.segments[at.slot].end = durable;
    index.segments[at.slot].seal();
    if at.from == SEGMENT_HEADER_LEN {
        seg.map.mark_verified(SEGMENT_HEADER_LEN, durable);
    }
    Ok(())
}

/// Recovers the last segment: index its committed batches, judge the tail (torn, or corruption below the
/// durable point), zero it when writable, and build the writer.
fn recover_last(
    options: &Options,
    seg: &Segment,
    at: Place,
    index: &mut Index,
    report: &mut RecoveryReport,
) -> Result<Option<Writer>> {
    let path = seg.path();
    let cap = seg.map.len();
    let durable = seg.slot.map_or(SEGMENT_HEADER_LEN, |s| s.durable_end);
    let clean_slot = seg.slot.is_some_and(|s| s.flags & SLOT_FLAG_CLEAN != 0);
    let sealed_slot = seg.slot.is_some_and(|s| s.flags & SLOT_FLAG_SEALED != 0);
    if sealed_slot && options.recovery == Recovery::Strict {
        return Err(Error::corrupt(
            &path,
            64,
            format!(
                "this segment was sealed, so segment number {} must follow it, and it is missing",
                u64::from(at.seq) + 1
            ),
        ));
    }
    let mut map_writer = if options.read_only { None } else { seg.map.take_writer() };
    let bytes: &[u8] = match &map_writer {
        Some(w) if at.from <= cap => w.uncommitted(at.from, cap),
        Some(_) => return Err(Error::corrupt(&path, at.from, "resume offset outside the segment")),
        None => seg
            .map
            .committed_from(at.from)
            .ok_or_else(|| Error::corrupt(&path, at.from, "resume offset outside the segment"))?,
    };
    let scan = index_frames(bytes, at, index, report);
    let committed_end = scan.committed_end;
    if committed_end < durable && options.recovery == Recovery::Strict {
        let reason = scan.reason.unwrap_or_else(|| "the log ends".into());
        return Err(Error::corrupt(
            &path,
            scan.stop,
            format!("{reason} below the durable point {durable} (not a torn tail)"),
        ));
    }
    report.clean = clean_slot && scan.reason.is_none() && scan.stop == durable && committed_end == durable;
    index.segments[at.slot].end = committed_end;
    let Some(mut w) = map_writer.take() else { return Ok(None) };
    let mut synced_end = if report.clean { committed_end } else { durable.min(committed_end) };
    if !report.clean && synced_end < committed_end {
        redirty(&mut w, synced_end, committed_end);
    }
    if !report.clean && cut_torn_tail(seg, &mut w, committed_end, report)? {
        synced_end = committed_end;
    }
    w.publish(committed_end);
    if at.from == SEGMENT_HEADER_LEN {
        w.map().mark_verified(SEGMENT_HEADER_LEN, committed_end);
    }
    let slot_rec = seg.slot.unwrap_or(DurableSlot {
        seq: 0,
        durable_end: SEGMENT_HEADER_LEN,
        next_position: seg.header.base_position,
        flags: 0,
    });
    // A CLEAN or SEALED slot must be replaced before the first new frame is stored (see `mark_dirty`).
    let replace_slot = clean_slot || sealed_slot;
    let next = index.next_position;
    Ok(Some(Writer::new(at.slot, at.seq, w, committed_end, next, synced_end, slot_rec, replace_slot)))
}

/// The frames past the durable point were read from the page cache, but after a failed fsync the kernel may
/// have marked pages clean that never reached the disk, and it would never write them again: a later sync
/// would then vouch for bytes the disk lacks. Touching every such page makes it dirty, so the next sync
/// writes what this open accepted.
fn redirty(w: &mut MapWriter, synced_end: u64, committed_end: u64) {
    let first = (synced_end / 4096 * 4096).max(SEGMENT_HEADER_LEN);
    for page in w.tail_mut(first, committed_end).chunks_mut(4096) {
        let b = std::hint::black_box(page[0]);
        page[0] = b;
    }
}

/// Zeroes everything non-zero past the end of the log and syncs; true if there was anything. A crash can
/// leave later pages of an unsynced write on disk while earlier ones were lost, and such stale frames must
/// never reappear behind new ones. Only ranges the file system reports as data can hold anything:
/// preallocated blocks never written are holes that read as zeros, so a 64 MiB segment with a short tail
/// costs a few pages, not a scan.
fn cut_torn_tail(
    seg: &Segment,
    w: &mut MapWriter,
    committed_end: u64,
    report: &mut RecoveryReport,
) -> Result<bool> {
    let path = seg.path();
    let cap = seg.map.len();
    let ranges = sys::data_ranges(&seg.file, &path, committed_end, cap)
        .map_err(|e| Error::io("find written ranges", &path, e))?;
    let mut discarded_to = committed_end;
    for (from, to) in ranges {
        let mut at = from.max(committed_end);
        while at < to {
            let chunk_end = ((at / 4096 + 1) * 4096).min(to);
            if w.uncommitted(at, chunk_end).iter().any(|&b| b != 0) {
                w.tail_mut(at, chunk_end).fill(0);
                sys::after_map_write(&path, at, &vec![0u8; (chunk_end - at) as usize]);
                discarded_to = chunk_end;
            }
            at = chunk_end;
        }
    }
    if discarded_to == committed_end {
        return Ok(false);
    }
    report.torn_tail = Some((path.clone(), committed_end, discarded_to - committed_end));
    w.map().flush_range(0, cap).map_err(|e| Error::io("sync after cutting the torn tail", &path, e))?;
    Ok(true)
}
