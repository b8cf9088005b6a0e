//! Harnesses shared by the crash tests and the fuzz targets. Not part of the API (hidden from the docs).
//!
//! Three parts:
//!
//! 1. **Self-validating test events.** [`TestEvent::new`] derives an event from (run, stream, version,
//!    position): its payload embeds those four values and ends with a hash over the whole event (type,
//!    metadata, schema version, id, payload), so any event read back can be checked on its own
//!    ([`self_check`]), with no model at hand.
//! 2. **The oracle.** With `A` the events appended in order ([`Model`]) and `K` the number acknowledged as
//!    durable, [`check_store`] demands that the store returns exactly `A[..n]` for some `K ≤ n ≤ |A|`, `n` on
//!    a batch boundary, that stream reads and versions agree with it; [`check_dir`] adds a read-only open
//!    that must agree, a second open that must return the same, and a new append that must get position `n`
//!    and survive a further reopen.
//! 3. **The fuzz targets' bodies** ([`frame_decode`], [`segment_open`], [`dir_damage`], [`index_checkpoint`]),
//!    so `fuzz/` stays a thin shell and `tests/fuzz_replay.rs` replays every seed and crash on stable.
//!
//! Every check panics (fuzz targets) or returns `Err(description)` (oracle) on a violation; nothing here
//! is ever used by the store itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use byteorder::{ByteOrder, LittleEndian as LE};

use foldlog::testing::{
    self, CHECKPOINT_FILE, CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC, FORMAT_VERSION, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC, SLOT_LEN,
};
/// Segment file names, for tests that damage, rename or plant files by name; a checkpoint made by the store's
/// encoder and the checkpoint forger (they need the crate's index, so they live in `foldlog::testing`).
pub use foldlog::testing::{
    checkpoint_for, fix_checkpoint_crcs, fix_checkpoint_header_crc, parse_segment_file_name,
    segment_file_name, SegmentName,
};
use foldlog::{
    AppendCondition, Batch, Durability, Error, EventRef, ExpectedVersion, NewEvent, Options, Query,
    QueryItem, RecoveryReport, Store, StreamAppend, StreamControl, StreamState,
};

// ---------------------------------------------------------------------------------------------------------
// Deterministic tools
// ---------------------------------------------------------------------------------------------------------

/// The splitmix64 finalizer: a cheap, well-mixed 64-bit hash of one word.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A 64-bit hash of several byte strings (length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ).
pub fn hash64(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = mix64(seed);
    for p in parts {
        h = mix64(h ^ p.len() as u64);
        for chunk in p.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = mix64(h ^ u64::from_le_bytes(w));
        }
    }
    h
}

/// A small seeded random generator (splitmix64), so every test run can be replayed from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

/// A byte-driven reader for fuzz inputs: each call takes what it needs and yields zeros once the input runs
/// out, so every input, however short, is a valid script.
#[derive(Debug)]
pub struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes(data)
    }
    /// One byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    /// True if nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// A scratch directory removed on drop (kept when `$FOLDLOG_KEEP_SCRATCH` is set, for debugging). Placed under
/// `$FOLDLOG_SCRATCH`, else `/dev/shm` when it exists (tmpfs: the many syncs of a crash-image run cost
/// nothing), else the system temp dir.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates a fresh, empty directory whose name starts with `tag`.
    pub fn new(tag: &str) -> ScratchDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var_os("FOLDLOG_SCRATCH").map_or_else(
            || {
                let shm = Path::new("/dev/shm");
                if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                }
            },
            PathBuf::from,
        );
        let nonce = mix64(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
                as u64,
        );
        let path = base.join(format!(
            "foldlog-{tag}-{}-{}-{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nonce as u32
        ));
        // A new directory, never one that was there: dropping it removes it whole.
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the scratch parent");
        std::fs::create_dir(&path).expect("create scratch directory");
        ScratchDir(path)
    }
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("FOLDLOG_KEEP_SCRATCH").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Self-validating events
// ---------------------------------------------------------------------------------------------------------

const EVENT_MAGIC: &[u8; 4] = b"FLT1";
const EVENT_TYPES: [&str; 4] = ["Opened", "Deposited", "Withdrawn", "AddressChanged"];
/// The tags test events draw from (each event carries a subset, chosen by its hash), so the crash and fuzz
/// tests cover the tag index, and the oracle checks reads by query ([`check_queries`]).
pub const TEST_TAGS: [&str; 5] = ["red", "green", "blue", "course:1", "student:2"];

/// One event as a test appends it; everything in it is a function of (run, stream, version, position).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestEvent {
    /// The stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// The event type.
    pub event_type: String,
    /// Metadata (sometimes empty).
    pub metadata: Vec<u8>,
    /// Schema version.
    pub schema_version: u32,
    /// Event id (sometimes none).
    pub event_id: Option<u128>,
    /// Tags, a subset of [`TEST_TAGS`] (often none).
    pub tags: Vec<&'static str>,
    /// Payload: magic, run, position, version, stream, filler, then the hash of the whole event.
    pub payload: Vec<u8>,
}

fn event_hash<'t>(
    event_type: &str,
    metadata: &[u8],
    (schema, id): (u32, Option<u128>),
    tags: impl Iterator<Item = &'t str>,
    payload_head: &[u8],
) -> u64 {
    let id = id.map_or([0u8; 17], |i| {
        let mut b = [1u8; 17];
        // The bytes the format stores the id as (big-endian), so a hash names the id as the log does.
        b[1..].copy_from_slice(&testing::event_id_bytes(i));
        b
    });
    let tags: Vec<u8> = tags.flat_map(|t| t.bytes().chain([0])).collect();
    hash64(0x0F01_D106, &[event_type.as_bytes(), metadata, &schema.to_le_bytes(), &id, &tags, payload_head])
}

impl TestEvent {
    /// The event of run `run` at `position`, version `version` of `stream`.
    pub fn new(run: u64, stream: &str, version: u64, position: u64) -> TestEvent {
        let h = mix64(run ^ mix64(position ^ mix64(version)));
        // Mostly small bodies, now and then a larger one (frames of a few hundred bytes fill 4 KiB segments).
        let filler = if h.is_multiple_of(16) { 200 + (h >> 8) % 300 } else { (h >> 8) % 120 } as usize;
        let event_type = EVENT_TYPES[(h >> 20) as usize % EVENT_TYPES.len()].to_owned();
        let metadata = if (h >> 24).is_multiple_of(3) {
            Vec::new()
        } else {
            format!("corr={run:x}/{position}").into_bytes()
        };
        let schema_version = ((h >> 28) % 3) as u32;
        let event_id = (!(h >> 32).is_multiple_of(4)).then(|| (u128::from(run) << 64) | u128::from(position));
        let mut payload = Vec::with_capacity(40 + stream.len() + filler);
        payload.extend_from_slice(EVENT_MAGIC);
        payload.extend_from_slice(&run.to_le_bytes());
        payload.extend_from_slice(&position.to_le_bytes());
        payload.extend_from_slice(&version.to_le_bytes());
        payload.extend_from_slice(&(stream.len() as u16).to_le_bytes());
        payload.extend_from_slice(stream.as_bytes());
        let mut rng = Rng::new(h);
        let at = payload.len();
        payload.resize(at + filler, 0);
        rng.fill(&mut payload[at..]);
        // Half the events carry no tag; the others a subset of the test tags.
        let tag_bits = if (h >> 40).is_multiple_of(2) { 0 } else { (h >> 41) % 32 };
        let tags: Vec<&'static str> =
            TEST_TAGS.iter().enumerate().filter(|(i, _)| tag_bits & (1 << i) != 0).map(|(_, t)| *t).collect();
        let hash =
            event_hash(&event_type, &metadata, (schema_version, event_id), tags.iter().copied(), &payload);
        payload.extend_from_slice(&hash.to_le_bytes());
        TestEvent {
            stream: stream.to_owned(),
            version,
            position,
            event_type,
            metadata,
            schema_version,
            event_id,
            tags,
            payload,
        }
    }

    /// The event as the store's append API takes it.
    pub fn new_event(&self) -> NewEvent<'_> {
        NewEvent::new(&self.event_type, &self.payload)
            .metadata(&self.metadata)
            .event_id(self.event_id)
            .schema_version(self.schema_version)
            .tags(&self.tags)
    }

    /// Checks that `e` is exactly this event.
    pub fn check(&self, e: &EventRef<'_>) -> Result<(), String> {
        let same = e.stream_id() == self.stream
            && e.stream_version() == self.version
            && e.position() == self.position
            && e.event_type() == self.event_type
            && e.metadata() == self.metadata.as_slice()
            && e.schema_version() == self.schema_version
            && e.event_id() == self.event_id
            && e.tags().eq(self.tags.iter().copied())
            && e.payload() == self.payload.as_slice();
        if same {
            Ok(())
        } else {
            Err(format!(
                "event at position {} differs from the one appended: got {e:?}, appended {} v{} at {}",
                e.position(),
                self.stream,
                self.version,
                self.position
            ))
        }
    }
}

/// Checks an event on its own: its payload must name its own stream, version and position, and the hash
/// must cover everything. With `run`, the event must also come from that run.
pub fn self_check(e: &EventRef<'_>, run: Option<u64>) -> Result<(), String> {
    let p = e.payload();
    let bad = |why: &str| Err(format!("event at position {} is not authentic: {why}", e.position()));
    if p.len() < 38 || &p[..4] != EVENT_MAGIC {
        return bad("no test header");
    }
    let (head, hash) = p.split_at(p.len() - 8);
    let hash_of =
        event_hash(e.event_type(), e.metadata(), (e.schema_version(), e.event_id()), e.tags(), head);
    if hash_of != LE::read_u64(hash) {
        return bad("hash mismatch");
    }
    let stream_len = LE::read_u16(&p[28..30]) as usize;
    let fields_ok = LE::read_u64(&p[12..20]) == e.position()
        && LE::read_u64(&p[20..28]) == e.stream_version()
        && head.get(30..30 + stream_len) == Some(e.stream_id().as_bytes());
    if !fields_ok {
        return bad("embedded stream, version or position differ from the frame's");
    }
    if run.is_some_and(|r| r != LE::read_u64(&p[4..12])) {
        return bad("from another run");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The model of what was appended
// ---------------------------------------------------------------------------------------------------------

/// One stream's part of a planned batch.
#[derive(Clone, Debug)]
pub struct PlannedStream {
    /// The stream.
    pub stream: String,
    /// The check passed to the store (`Exact(last)` or `NoStream`).
    pub expected: ExpectedVersion,
    /// Its events, with the positions and versions they must get.
    pub events: Vec<TestEvent>,
}

/// A stream truncation or deletion in a planned batch.
#[derive(Clone, Debug)]
pub struct PlannedControl {
    /// The stream (it has events and is not deleted).
    pub stream: String,
    /// The check passed to the store (`Exact(last)`).
    pub expected: ExpectedVersion,
    /// `Some(v)`: truncate before `v`; `None`: delete the stream.
    pub truncate_before: Option<u64>,
}

/// A batch planned against the model: what the store must do with it if the append succeeds.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Per-stream parts, in order.
    pub streams: Vec<PlannedStream>,
    /// A consumer position committed with the events.
    pub consumer: Option<(String, u64)>,
    /// Stream truncations and deletions committed with the events.
    pub controls: Vec<PlannedControl>,
}

impl Plan {
    /// Number of events in the batch.
    pub fn len(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }
    /// True if the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// All events in position order.
    pub fn events(&self) -> impl Iterator<Item = &TestEvent> {
        self.streams.iter().flat_map(|s| s.events.iter())
    }
}

/// The sequence `A` of events appended, in order, with batch boundaries and consumer positions.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// The run id embedded in every event.
    pub run: u64,
    /// `A`.
    pub events: Vec<TestEvent>,
    /// `events.len()` after each batch (batches are atomic: a recovered log ends on one of these). A batch
    /// without events (a consumer position alone) repeats the previous count.
    pub boundaries: Vec<usize>,
    /// (index of the batch in `boundaries`, consumer, position) for batches carrying a consumer.
    pub consumers: Vec<(usize, String, u64)>,
    /// (index of the batch in `boundaries`, stream, truncation point, deleted) for each stream control: a
    /// deletion's truncation point is the stream's last version + 1 at the time.
    pub controls: Vec<(usize, String, u64, bool)>,
}

/// Per stream, its controls merged: (truncation point, deleted).
pub type ControlState = BTreeMap<String, (u64, bool)>;

impl Model {
    /// An empty model for run `run`.
    pub fn new(run: u64) -> Model {
        Model { run, ..Model::default() }
    }

    /// Next version of `stream` in `A`, `None` if it has no events.
    pub fn next_version(&self, stream: &str) -> Option<u64> {
        self.events.iter().rev().find(|e| e.stream == stream).map(|e| e.version + 1)
    }

    /// The streams' controls after the first `batches` batches.
    pub fn control_state(&self, batches: usize) -> ControlState {
        let mut out = ControlState::new();
        for (_, stream, before, deleted) in self.controls.iter().filter(|c| c.0 < batches) {
            let c = out.entry(stream.clone()).or_default();
            *c = (c.0.max(*before), c.1 || *deleted);
        }
        out
    }

    /// Whether `stream` is deleted in `A`.
    pub fn is_deleted(&self, stream: &str) -> bool {
        self.controls.iter().any(|c| c.1 == stream && c.3)
    }

    /// Adds a truncation of `stream` before `version` (clamped to its last version + 1), or with `None` its
    /// deletion, to `plan`, if the stream has events, is not deleted and is not appended to by the plan.
    /// Returns whether it did.
    pub fn add_control(&self, plan: &mut Plan, stream: &str, version: Option<u64>) -> bool {
        let taken = plan.streams.iter().any(|s| s.stream == stream)
            || plan.controls.iter().any(|c| c.stream == stream);
        let Some(next) = self.next_version(stream).filter(|_| !taken && !self.is_deleted(stream)) else {
            return false;
        };
        plan.controls.push(PlannedControl {
            stream: stream.to_owned(),
            expected: ExpectedVersion::Exact(next - 1),
            truncate_before: version.map(|v| v.min(next)),
        });
        true
    }

    /// Plans a batch of `counts` events per stream, continuing the model. Deleted streams are left out (the
    /// store refuses appends to them).
    pub fn plan(&self, counts: &[(String, usize)], consumer: Option<(String, u64)>) -> Plan {
        let mut position = self.events.len() as u64;
        let mut streams = Vec::new();
        for (stream, n) in counts.iter().filter(|(s, _)| !self.is_deleted(s)) {
            let next = self.next_version(stream);
            let expected = next.map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(v - 1));
            let v0 = next.unwrap_or(0);
            let events = (0..*n as u64)
                .map(|i| {
                    let e = TestEvent::new(self.run, stream, v0 + i, position);
                    position += 1;
                    e
                })
                .collect();
            streams.push(PlannedStream { stream: stream.clone(), expected, events });
        }
        Plan { streams, consumer, controls: Vec::new() }
    }

    /// Adds a batch to `A` (appended, or attempted: the caller decides which it needs).
    pub fn push(&mut self, plan: &Plan) {
        self.events.extend(plan.events().cloned());
        self.boundaries.push(self.events.len());
        let batch = self.boundaries.len() - 1;
        if let Some((name, p)) = &plan.consumer {
            self.consumers.push((batch, name.clone(), *p));
        }
        for c in &plan.controls {
            let next = self.next_version(&c.stream).unwrap_or(0);
            let before = c.truncate_before.unwrap_or(next);
            self.controls.push((batch, c.stream.clone(), before, c.truncate_before.is_none()));
        }
    }

    /// Cuts `A` to its first `n` events (a recovered prefix).
    ///
    /// Batches without events after the `n`-th event are kept: the recovered log may or may not hold them,
    /// and [`Model::consumer_candidates`] allows for both.
    pub fn truncate(&mut self, n: usize) {
        self.events.truncate(n);
        let kept = self.boundaries.iter().take_while(|&&b| b <= n).count();
        self.boundaries.truncate(kept);
        if self.boundaries.last() != Some(&n) && n > 0 {
            self.boundaries.push(n);
        }
        self.consumers.retain(|c| c.0 < kept);
        self.controls.retain(|c| c.0 < kept);
    }

    /// Appends `plan` to `store` and checks the result against the plan; on success the batch joins `A`.
    pub fn append(&mut self, store: &Store, plan: &Plan) -> foldlog::Result<()> {
        let news: Vec<Vec<NewEvent<'_>>> =
            plan.streams.iter().map(|s| s.events.iter().map(TestEvent::new_event).collect()).collect();
        let parts: Vec<StreamAppend<'_>> = plan
            .streams
            .iter()
            .zip(&news)
            .map(|(s, ev)| StreamAppend::new(&s.stream, s.expected, ev))
            .collect();
        let controls: Vec<StreamControl<'_>> = plan
            .controls
            .iter()
            .map(|c| match c.truncate_before {
                Some(v) => StreamControl::truncate_before(&c.stream, c.expected, v),
                None => StreamControl::delete(&c.stream, c.expected),
            })
            .collect();
        let mut batch = Batch::new(&parts).controls(&controls);
        batch.consumer = plan.consumer.as_ref().map(|(n, p)| (n.as_str(), *p));
        let out = store.append_batch(&batch)?;
        for (s, a) in plan.streams.iter().zip(&out) {
            let (Some(first), Some(last)) = (s.events.first(), s.events.last()) else { continue };
            assert_eq!(
                a.positions,
                first.position..last.position + 1,
                "positions given to stream {}",
                s.stream
            );
            assert_eq!(a.versions, first.version..last.version + 1, "versions given to stream {}", s.stream);
            assert!(!a.deduplicated, "a fresh append was taken for a retry");
        }
        self.push(plan);
        Ok(())
    }

    /// The consumers' positions a log holding exactly the first `n` events may show: one map per prefix of
    /// batches with `n` events (several when batches without events follow the `n`-th event; the log may
    /// end after any of them).
    pub fn consumer_candidates(&self, n: usize) -> Vec<BTreeMap<String, u64>> {
        self.consumer_prefixes(n).into_iter().map(|(_, m)| m).collect()
    }

    /// As [`Model::consumer_candidates`], each with its number of batches.
    fn consumer_prefixes(&self, n: usize) -> Vec<(usize, BTreeMap<String, u64>)> {
        self.prefixes(n).into_iter().map(|(j, m, _)| (j, m)).collect()
    }

    /// The prefixes of batches a log holding exactly the first `n` events may be: each with its number of
    /// batches, its consumers' positions and its streams' controls.
    fn prefixes(&self, n: usize) -> Vec<(usize, BTreeMap<String, u64>, ControlState)> {
        let upto = |batches: usize| {
            let mut out = BTreeMap::new();
            for (i, name, p) in &self.consumers {
                if *i < batches {
                    out.insert(name.clone(), *p);
                }
            }
            out
        };
        // A prefix of `j` batches holds `boundaries[j - 1]` events (none for `j = 0`).
        let first = self.boundaries.iter().take_while(|&&b| b < n).count() + usize::from(n > 0);
        let last = self.boundaries.iter().take_while(|&&b| b <= n).count();
        (first..=last).map(|j| (j, upto(j), self.control_state(j))).collect()
    }

    /// Cuts `A` to what `store` holds: its first `n` events and, of the batches without events that follow
    /// them, those the store's consumer positions show it has.
    pub fn settle(&mut self, n: usize, store: &Store) {
        self.truncate(n);
        let found = held_consumers(store, self);
        let prefixes = self.prefixes(n);
        let fits = |(_, m, c): &&(usize, BTreeMap<String, u64>, ControlState)| {
            *m == found && held_controls(store, self, n, c)
        };
        if let Some(&(j, _, _)) = prefixes.iter().rev().find(fits) {
            self.boundaries.truncate(j);
            self.consumers.retain(|c| c.0 < j);
            self.controls.retain(|c| c.0 < j);
        }
    }

    /// Removes the last batch pushed (one the store refused).
    pub fn pop_batch(&mut self) {
        if self.boundaries.pop().is_some() {
            let kept = self.boundaries.len();
            self.events.truncate(self.boundaries.last().copied().unwrap_or(0));
            self.consumers.retain(|c| c.0 < kept);
            self.controls.retain(|c| c.0 < kept);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------------------

/// Checks an open store against `A` (`model`) and `K` (`k`): the store holds exactly `A[..n]` with
/// `K ≤ n ≤ |A|`, `n` on a batch boundary, every event authentic, stream reads (forward and backward),
/// versions, consumer positions and stream controls (truncations, deletions) consistent with one prefix of
/// the batches, and the events those controls hide absent from every read. Returns `n`.
pub fn check_store(store: &Store, model: &Model, k: usize) -> Result<usize, String> {
    let a = &model.events;
    let n = usize::try_from(store.next_position()).unwrap_or(usize::MAX);
    if n > a.len() {
        return Err(format!("next_position {n}, but only {} events were ever appended", a.len()));
    }
    if n < k {
        return Err(format!("lost acknowledged events: recovered {n}, acknowledged {k} (|A| = {})", a.len()));
    }
    if n > 0 && !model.boundaries.contains(&n) {
        return Err(format!("recovered {n} events: not a batch boundary, a batch was cut in half"));
    }
    // The batches without events after the `n`-th event may or may not be there: their consumer positions
    // and stream controls must both come from one prefix of them.
    let found = held_consumers(store, model);
    let prefixes = model.prefixes(n);
    let Some((_, _, controls)) =
        prefixes.iter().find(|(_, m, c)| *m == found && held_controls(store, model, n, c))
    else {
        let states: Vec<_> =
            model.control_state(usize::MAX).keys().map(|s| (s.clone(), store.stream_state(s))).collect();
        return Err(format!(
            "consumers at {found:?} and stream states {states:?} match no prefix of the batches: {prefixes:?}"
        ));
    };
    check_global_order(store, model, n, controls)?;
    let mut by_stream: BTreeMap<&str, Vec<&TestEvent>> = BTreeMap::new();
    for e in &a[..n] {
        by_stream.entry(e.stream.as_str()).or_default().push(e);
    }
    let listed = store.streams();
    let expected_streams: Vec<&str> = by_stream.keys().copied().collect();
    if listed != expected_streams {
        return Err(format!("streams() = {listed:?}, expected {expected_streams:?}"));
    }
    for (stream, evs) in &by_stream {
        check_stream(store, stream, evs, controls)?;
    }
    check_queries_hiding(store, &a[..n], |e| hidden(controls, e))?;
    for e in &a[n..] {
        if !by_stream.contains_key(e.stream.as_str()) && store.stream_version(&e.stream).is_some() {
            return Err(format!("stream {} has a version but none of its events was recovered", e.stream));
        }
    }
    Ok(n)
}

/// Whether `controls` hide event `e` (its version is below its stream's truncation point).
fn hidden(controls: &ControlState, e: &TestEvent) -> bool {
    controls.get(&e.stream).is_some_and(|&(before, _)| e.version < before)
}

/// Whether `store` shows, for every stream of `A[..n]`, the first visible version and deletion `controls`
/// give it.
fn held_controls(store: &Store, model: &Model, n: usize, controls: &ControlState) -> bool {
    let mut first: BTreeMap<&str, u64> = BTreeMap::new();
    for e in model.events.iter().take(n) {
        first.entry(e.stream.as_str()).or_insert(e.version);
    }
    first.iter().all(|(&stream, &f)| {
        let want = controls.get(stream).map_or((f, false), |&(before, deleted)| (before.max(f), deleted));
        store.stream_state(stream).is_some_and(|s| (s.first_visible, s.deleted) == want)
    })
}

/// Reads the store in global order: it must return exactly the events of `A[..n]` that `controls` do not
/// hide, each the model's at its position and authentic.
fn check_global_order(store: &Store, model: &Model, n: usize, controls: &ControlState) -> Result<(), String> {
    let mut expected = model.events.iter().take(n).filter(|e| !hidden(controls, e));
    for item in store.read_all(0) {
        let e = item.map_err(|e| format!("read_all failed: {e}"))?;
        let Some(expect) = expected.next() else {
            return Err(format!(
                "read_all returned position {} past every visible event: {e:?}",
                e.position()
            ));
        };
        self_check(&e, Some(model.run))?;
        expect.check(&e)?;
    }
    if let Some(missing) = expected.next() {
        return Err(format!("read_all ended before position {}, which is not hidden", missing.position));
    }
    Ok(())
}

/// Checks one stream against the model's events of it (`evs`, hidden ones included): forward read of the
/// visible ones, contiguous versions, its last version, backward read.
fn check_stream(
    store: &Store,
    stream: &str,
    evs: &[&TestEvent],
    controls: &ControlState,
) -> Result<(), String> {
    let visible: Vec<&TestEvent> = evs.iter().copied().filter(|e| !hidden(controls, e)).collect();
    let got: Vec<EventRef<'_>> = store
        .read_stream(stream, 0)
        .collect::<foldlog::Result<_>>()
        .map_err(|e| format!("read_stream({stream}) failed: {e}"))?;
    if got.len() != visible.len() {
        return Err(format!(
            "read_stream({stream}) returned {} events, expected {} ({} hidden)",
            got.len(),
            visible.len(),
            evs.len() - visible.len()
        ));
    }
    for (g, e) in got.iter().zip(&visible) {
        e.check(g).map_err(|why| format!("read_stream({stream}): {why}"))?;
    }
    if evs.windows(2).any(|w| w[1].version != w[0].version + 1) {
        return Err(format!("stream {stream} versions are not contiguous"));
    }
    let last = evs.last().map(|e| e.version);
    if store.stream_version(stream) != last {
        return Err(format!(
            "stream_version({stream}) = {:?}, expected {last:?}",
            store.stream_version(stream)
        ));
    }
    let back: Vec<u64> = store
        .read_stream_backward(stream, None)
        .map(|e| e.map(|e| e.position()))
        .collect::<foldlog::Result<_>>()
        .map_err(|e| format!("read_stream_backward({stream}) failed: {e}"))?;
    if !back.iter().rev().eq(visible.iter().map(|e| &e.position)) {
        return Err(format!("read_stream_backward({stream}) disagrees with the forward read"));
    }
    Ok(())
}

/// The queries the oracle asks: each tag, each type, a type with a tag, two tags together, and a query of two
/// items.
fn oracle_queries() -> Vec<Query> {
    let mut queries: Vec<Query> =
        TEST_TAGS.iter().map(|t| Query::new([QueryItem::new().tags([*t])])).collect();
    queries.extend(EVENT_TYPES.iter().map(|t| Query::new([QueryItem::new().types([*t])])));
    queries.push(Query::new([QueryItem::new().types(["Deposited"]).tags(["red"])]));
    queries.push(Query::new([QueryItem::new().tags(["green", "course:1"])]));
    queries.push(Query::new([
        QueryItem::new().types(["Opened", "Withdrawn"]).tags(["blue"]),
        QueryItem::new().tags(["student:2", "red"]),
    ]));
    queries
}

/// Checks reads by query against a fold of the events the store holds (`held`, in order): for each of
/// [`oracle_queries`], from the start and from the middle, the positions read must be exactly those of the
/// events matching it, and an append condition on the query must agree with them.
pub fn check_queries(store: &Store, held: &[TestEvent]) -> Result<(), String> {
    check_queries_hiding(store, held, |_| false)
}

/// As [`check_queries`], where `held` holds every event the store holds and `hidden` says which of them a
/// truncation or deletion hides: reads skip those, append conditions still see them (a condition looks at
/// every event stored after its position).
pub fn check_queries_hiding(
    store: &Store,
    held: &[TestEvent],
    hidden: impl Fn(&TestEvent) -> bool,
) -> Result<(), String> {
    let matches = |q: &Query, e: &TestEvent| {
        q.items.is_empty()
            || q.items.iter().any(|i| {
                (i.types.is_empty() || i.types.contains(&e.event_type))
                    && i.tags.iter().all(|t| e.tags.contains(&t.as_str()))
            })
    };
    let middle = (held.len() / 2) as u64;
    for q in oracle_queries() {
        for after in [None, Some(middle)] {
            let from = after.map_or(0, |a| a + 1);
            let all: Vec<u64> =
                held.iter().filter(|e| e.position >= from && matches(&q, e)).map(|e| e.position).collect();
            let expected: Vec<u64> = held
                .iter()
                .filter(|e| e.position >= from && matches(&q, e) && !hidden(e))
                .map(|e| e.position)
                .collect();
            let read = store.read(&q, after, None);
            if read.head() != (held.len() as u64).checked_sub(1) {
                return Err(format!(
                    "read({q:?}).head() = {:?} with {} events held",
                    read.head(),
                    held.len()
                ));
            }
            let got: Vec<u64> = read
                .map(|e| e.map(|e| e.position()))
                .collect::<foldlog::Result<_>>()
                .map_err(|e| format!("read({q:?}, {after:?}) failed: {e}"))?;
            if got != expected {
                return Err(format!("read({q:?}, {after:?}) = {got:?}, a fold of the log says {expected:?}"));
            }
            // A batch of no events checks its condition and writes nothing (a read-only handle refuses).
            let condition = AppendCondition::new(q.clone()).after(after);
            match (store.append_batch(&Batch::default().condition(&condition)), all.first()) {
                (Err(Error::ReadOnly), _) | (Ok(_), None) => {}
                (Err(Error::AppendConditionFailed { position, .. }), Some(&first)) if position == first => {}
                (other, first) => {
                    return Err(format!("condition {condition:?}: {other:?}, the first match is {first:?}"));
                }
            }
        }
    }
    Ok(())
}

/// The positions `store` holds for the consumers `model` knows.
fn held_consumers(store: &Store, model: &Model) -> BTreeMap<String, u64> {
    let names: std::collections::BTreeSet<&String> = model.consumers.iter().map(|c| &c.1).collect();
    names.iter().filter_map(|&name| Some((name.clone(), store.consumer_position(name)?))).collect()
}

/// `Store::open_with`, retried for up to two seconds while the directory is `Locked`.
///
/// Tests spawn child processes from parallel threads; a child forked while this thread held a store open
/// keeps a duplicate of the lock file's descriptor (and so the `flock`) until it `exec`s. That is how
/// `flock` works (and why handles must not cross `fork()`), not a foldlog fault, so the oracle waits it out.
#[expect(clippy::needless_pass_by_value, reason = "takes its options as `Store::open_with` does")]
pub fn open_retrying(dir: &Path, options: Options) -> foldlog::Result<Store> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Store::open_with(dir, options.clone()) {
            Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            r => return r,
        }
    }
}

/// The first error any read returns (the global read, then every stream forward), if one does. A store may
/// open and still meet a damaged frame later (frames covered by a checkpoint are checked when read); an error
/// then is a refusal, like an error from open.
pub fn read_error(store: &Store) -> Option<Error> {
    if let Some(Err(e)) = store.read_all(0).find(std::result::Result::is_err) {
        return Some(e);
    }
    store.streams().iter().find_map(|s| store.read_stream(s, 0).find_map(std::result::Result::err))
}

/// What [`check_dir`] found.
#[derive(Debug)]
pub enum Verdict {
    /// The store opened and passed every check with `n` events (before the oracle's own append).
    Recovered {
        /// Events recovered.
        n: usize,
        /// The first writable open's recovery report.
        report: RecoveryReport,
    },
    /// An open refused the directory with this error, or opened it and then a read failed (the caller
    /// judges whether that is allowed; with nothing damaged, it never is).
    Refused(Error),
}

/// The full oracle on a directory: a read-only open (if it succeeds it must agree), a writable open
/// ([`check_store`]), a second open that must return the same, then a new append that must get position `n`
/// and survive a further reopen. On success `model` becomes `A[..n]` plus that append, all durable.
pub fn check_dir(dir: &Path, options: &Options, model: &mut Model, k: usize) -> Result<Verdict, String> {
    let ro = options.clone().read_only(true);
    let n_ro = match open_retrying(dir, ro) {
        Ok(store) if read_error(&store).is_none() => {
            Some(check_store(&store, model, k).map_err(|e| format!("read-only open: {e}"))?)
        }
        _ => None,
    };
    let (n, report) = match open_retrying(dir, options.clone()) {
        Ok(store) => {
            if let Some(e) = read_error(&store) {
                return Ok(Verdict::Refused(e));
            }
            let n = check_store(&store, model, k).map_err(|e| format!("first open: {e}"))?;
            model.settle(n, &store);
            let report = store.recovery_report().clone();
            store.close().map_err(|e| format!("close after the first open failed: {e}"))?;
            (n, report)
        }
        Err(e) => return Ok(Verdict::Refused(e)),
    };
    if n_ro.is_some_and(|r| r != n) {
        return Err(format!("read-only open recovered {n_ro:?} events, writable open {n}"));
    }
    // Damage the first open could not see (frames a checkpoint covers are checked when read) may surface in
    // the later opens too: an error there is a refusal as well, for the caller to judge.
    let store = match open_retrying(dir, options.clone()) {
        Ok(s) => s,
        Err(e) => return Ok(Verdict::Refused(e)),
    };
    if let Some(e) = read_error(&store) {
        return Ok(Verdict::Refused(e));
    }
    let again = check_store(&store, model, n).map_err(|e| format!("second open: {e}"))?;
    if again != n {
        return Err(format!("second open recovered {again} events, the first {n}"));
    }
    let stream = model
        .events
        .last()
        .map(|e| e.stream.clone())
        .filter(|s| !model.is_deleted(s))
        .unwrap_or_else(|| "after-recovery".to_owned());
    let plan = model.plan(&[(stream, 1)], None);
    model.append(&store, &plan).map_err(|e| format!("append after recovery failed: {e}"))?;
    store.close().map_err(|e| format!("close after the append failed: {e}"))?;
    let store = match open_retrying(dir, options.clone()) {
        Ok(s) => s,
        Err(e) => return Ok(Verdict::Refused(e)),
    };
    if let Some(e) = read_error(&store) {
        return Ok(Verdict::Refused(e));
    }
    check_store(&store, model, n + 1).map_err(|e| format!("reopen after the append: {e}"))?;
    drop(store);
    Ok(Verdict::Recovered { n, report })
}

/// Structural checks needing no model: positions contiguous from the first, stream reads (forward and
/// backward) agree with the global read, and with `versions`, stream versions contiguous and
/// `stream_version` right; with `authentic`, every event that claims to be a test event must pass
/// [`self_check`]. Leave both off for forged files (recomputed CRCs) under a checkpoint: frames a checkpoint
/// covers are not re-read by open, and readers check a frame's stream but not its version, so a forged
/// version there comes back as written.
pub fn check_structure(
    store: &Store,
    authentic: bool,
    versions: bool,
) -> Result<Vec<(u64, String, u64)>, String> {
    let mut all: Vec<(u64, String, u64)> = Vec::new();
    for item in store.read_all(0) {
        let e = item.map_err(|e| format!("read_all failed after {} events: {e}", all.len()))?;
        if all.last().is_some_and(|l| e.position() <= l.0) {
            return Err(format!("position {} after {}", e.position(), all.len()));
        }
        let state = store.stream_state(e.stream_id()).ok_or("an event of a stream without a state")?;
        if e.stream_version() < state.first_visible {
            return Err(format!("read_all returned a hidden event at position {}", e.position()));
        }
        if authentic && e.payload().starts_with(EVENT_MAGIC) {
            self_check(&e, None)?;
        }
        all.push((e.position(), e.stream_id().to_owned(), e.stream_version()));
    }
    // Positions increase and every one not returned is hidden by its stream's truncation or deletion: the
    // returned ones plus the hidden ones are every position.
    let streams = store.streams();
    let states: Vec<StreamState> = streams.iter().filter_map(|s| store.stream_state(s)).collect();
    let hidden: u64 =
        states.iter().map(|s| s.first_visible.min(s.last_version + 1).saturating_sub(s.first_version)).sum();
    if store.next_position() != all.len() as u64 + hidden {
        return Err(format!("next_position disagrees with read_all ({} events, {hidden} hidden)", all.len()));
    }
    let mut by_stream: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for (p, s, v) in &all {
        by_stream.entry(s).or_default().push((*p, *v));
    }
    let all_hidden = streams.iter().zip(&states).filter(|(_, st)| st.first_visible > st.last_version);
    let mut expected_streams: Vec<&str> = by_stream.keys().copied().collect();
    expected_streams.extend(all_hidden.map(|(s, _)| s.as_str()));
    expected_streams.sort_unstable();
    if streams != expected_streams {
        return Err("streams() disagrees with read_all".into());
    }
    for (s, evs) in &by_stream {
        let got: Vec<(u64, u64)> = store
            .read_stream(s, 0)
            .map(|e| e.map(|e| (e.position(), e.stream_version())))
            .collect::<foldlog::Result<_>>()
            .map_err(|e| format!("read_stream({s}): {e}"))?;
        if &got != evs {
            return Err(format!("read_stream({s}) disagrees with read_all"));
        }
        if versions && evs.windows(2).any(|w| w[1].1 != w[0].1 + 1) {
            return Err(format!("stream {s} versions are not contiguous"));
        }
        let last_visible = store.stream_state(s).is_some_and(|st| st.first_visible <= st.last_version);
        if versions && last_visible && store.stream_version(s) != evs.last().map(|e| e.1) {
            return Err(format!("stream_version({s}) is wrong"));
        }
        let back: Vec<u64> = store
            .read_stream_backward(s, None)
            .map(|e| e.map(|e| e.position()))
            .collect::<foldlog::Result<_>>()
            .map_err(|e| format!("read_stream_backward({s}): {e}"))?;
        if !back.iter().rev().eq(evs.iter().map(|e| &e.0)) {
            return Err(format!("read_stream_backward({s}) disagrees"));
        }
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------------------
// Byte-level helpers: find frames, recompute CRCs (for damage that must get past the checksums)
// ---------------------------------------------------------------------------------------------------------

/// The valid frames of a segment file's bytes (name definitions included), walking from the header:
/// (offset, length with padding).
pub fn segment_frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    testing::segment_frames(bytes)
}

/// Offset of the frame length field (docs/format.md, "Frames"), right after the CRC.
const FRAME_LEN_AT: usize = 4;

/// The length field of the frame at `off` (0 if it does not fit).
pub fn frame_len_at(bytes: &[u8], off: usize) -> u32 {
    bytes.get(off..).and_then(testing::frame_len_field).unwrap_or(0)
}

/// Overwrites the length field of the frame at `off` (the CRC is not updated).
pub fn set_frame_len(bytes: &mut [u8], off: usize, len: u32) {
    if let Some(f) = bytes.get_mut(off + FRAME_LEN_AT..off + FRAME_LEN_AT + 4) {
        LE::write_u32(f, len);
    }
}

/// Recomputes the CRC of the frame at `off` of a segment file (its header names the segment number the CRC
/// covers), if its length fits; true if it did.
pub fn fix_frame_crc(bytes: &mut [u8], off: usize) -> bool {
    testing::fix_frame_crc(bytes, off)
}

/// Recomputes the segment header CRC and both durable slots' CRCs (slots with `seq` 0 are left alone).
pub fn fix_segment_crcs(bytes: &mut [u8]) {
    if bytes.len() < SEGMENT_HEADER_LEN as usize {
        return;
    }
    let crc = crc32fast::hash(&bytes[0..60]);
    LE::write_u32(&mut bytes[60..64], crc);
    for slot in [64usize, 64 + SLOT_LEN] {
        if LE::read_u64(&bytes[slot..slot + 8]) != 0 {
            let crc = crc32fast::hash(&bytes[slot..slot + 28]);
            LE::write_u32(&mut bytes[slot + 28..slot + 32], crc);
        }
    }
}

fn header_fixup(bytes: &mut [u8], log_id: [u8; 16], base: u64, capacity: u64) {
    bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
    LE::write_u32(&mut bytes[8..12], FORMAT_VERSION);
    LE::write_u32(&mut bytes[12..16], SEGMENT_HEADER_LEN as u32);
    bytes[16..32].copy_from_slice(&log_id);
    LE::write_u64(&mut bytes[32..40], base);
    LE::write_u64(&mut bytes[40..48], capacity);
    LE::write_u32(&mut bytes[56..60], 0);
}

/// The segment files of `dir`, in log order (their names sort that way).
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).and_then(parse_segment_file_name).is_some())
        .collect();
    v.sort();
    v
}

/// Every path under `dir` (relative to it) with its length and a hash of its bytes (`None` for a directory),
/// to prove that something left a directory exactly as it was: two equal fingerprints are byte-identical trees.
pub fn dir_fingerprint(dir: &Path) -> BTreeMap<PathBuf, Option<(usize, u64)>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("list the directory") {
            let path = entry.expect("a directory entry").path();
            let rel = path.strip_prefix(dir).expect("under the directory").to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read a file");
                out.insert(rel, Some((bytes.len(), hash64(0, &[&bytes]))));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Fuzz target: frame_decode
// ---------------------------------------------------------------------------------------------------------

/// Fuzz target `frame_decode`. Input: a flags byte (bit 0: recompute every frame's CRC along the walk, so the
/// fuzzer gets past them), then the bytes of segment number 0 after its header: name definitions, events and
/// consumer frames. Every frame that decodes must lie inside the input, be a whole number of 8-byte units,
/// carry a matching CRC, and each event must survive a round trip through the encoder.
pub fn frame_decode(data: &[u8]) {
    let mut b = Bytes::new(data);
    let flags = b.u8();
    let mut file = vec![0u8; SEGMENT_HEADER_LEN as usize];
    file.extend_from_slice(b.rest());
    if flags & 1 != 0 {
        let mut at = SEGMENT_HEADER_LEN as usize;
        while fix_frame_crc(&mut file, at) {
            at += testing::padded(u64::from(frame_len_at(&file, at))).max(8) as usize;
        }
    }
    testing::check_frames(&file[SEGMENT_HEADER_LEN as usize..], |e| {
        let _ = self_check(e, None);
    });
}

// ---------------------------------------------------------------------------------------------------------
// Fuzz target: segment_open
// ---------------------------------------------------------------------------------------------------------

const FUZZ_LOG_ID: [u8; 16] = *b"foldlog-fuzz-log";

fn small_options(read_only: bool) -> Options {
    Options::default()
        .segment_size_bytes(4096)
        .durability(Durability::Never)
        .checkpoint_every_bytes(0)
        .read_only(read_only)
        .create_if_missing(!read_only)
}

/// Opens `dir` read-only then writable, then writable again; checks every successful open's structure and
/// that they agree. Returns the writable result.
fn open_three_ways(dir: &Path, options: &Options, versions: bool) -> Option<Vec<(u64, String, u64)>> {
    let ro = options.clone().read_only(true).create_if_missing(false);
    let ro_events = Store::open_with(dir, ro)
        .ok()
        .filter(|s| read_error(s).is_none())
        .map(|s| check_structure(&s, false, versions).expect("read-only open"));
    let rw = options.clone().read_only(false);
    let first = match Store::open_with(dir, rw.clone()) {
        Ok(s) if read_error(&s).is_none() => {
            let ev = check_structure(&s, false, versions).expect("writable open");
            s.close().expect("close after a successful open");
            ev
        }
        _ => return None,
    };
    if let Some(r) = ro_events {
        assert_eq!(r, first, "read-only and writable opens disagree");
    }
    let s = Store::open_with(dir, rw).expect("a directory that opened once must open again");
    let second = check_structure(&s, false, versions).expect("second open");
    assert_eq!(second, first, "second open differs from the first");
    Some(first)
}

/// Fuzz target `segment_open`. Input: a flags byte, two bytes of capacity, then the bytes of segment file
/// `00000000000000000000.seg`, alone in a directory. Flags: bit 0 writes a valid header (base 0, the fuzz
/// log id, the capacity from the input, clamped to 4–64 KiB), bit 1 recomputes every frame CRC along the
/// walk, bit 2 recomputes the header and slot CRCs. Opens read-only, writable, writable again: `Ok` with
/// consistent, contiguous events, or `Err`; never a panic, never a disagreement.
pub fn segment_open(data: &[u8]) {
    let mut b = Bytes::new(data);
    let flags = b.u8();
    let capacity = 4096 + u64::from(b.u16() % 3841) * 16;
    let mut file = b.rest().to_vec();
    if flags & 1 != 0 && file.len() >= SEGMENT_HEADER_LEN as usize {
        header_fixup(&mut file, FUZZ_LOG_ID, 0, capacity);
    }
    if flags & 2 != 0 {
        let mut at = SEGMENT_HEADER_LEN as usize;
        while at + 8 <= file.len() {
            let len = u64::from(frame_len_at(&file, at));
            if len == 0 || !fix_frame_crc(&mut file, at) {
                break;
            }
            at += testing::padded(len) as usize;
        }
    }
    if flags & 4 != 0 || flags & 1 != 0 {
        fix_segment_crcs(&mut file);
    }
    let dir = ScratchDir::new("segment-open");
    std::fs::write(dir.path().join(segment_file_name(0, 0)), &file).expect("write segment");
    // No checkpoint here: every frame is scanned by open, so versions must be contiguous even when forged.
    let _ = open_three_ways(dir.path(), &small_options(false), true);
}

// ---------------------------------------------------------------------------------------------------------
// Fuzz target: dir_damage
// ---------------------------------------------------------------------------------------------------------

/// Builds a log from a workload script read from `b`; returns the model (every batch acknowledged and, after
/// the final clean close, durable).
fn run_workload(dir: &Path, b: &mut Bytes<'_>, run: u64) -> Model {
    let options = small_options(false);
    let mut model = Model::new(run);
    let mut store = Some(Store::open_with(dir, options.clone()).expect("create a log"));
    let ops = 4 + usize::from(b.u8() % 40);
    let mut consumer_at = 0u64;
    for _ in 0..ops {
        let op = b.u8();
        let s = store.as_ref().expect("store open");
        match op % 8 {
            // op 195, 203, ..., 251: a stream truncated (or, for odd op >> 3, deleted) instead (issue 14).
            3 if op >> 6 == 3 => {
                let stream = format!("s{}", usize::from(op >> 3) % 5);
                let version = (op >> 3 & 1 == 0).then(|| u64::from(b.u8() % 8));
                let mut plan = Plan::default();
                if model.add_control(&mut plan, &stream, version) {
                    model.append(s, &plan).expect("workload truncate or delete");
                }
            }
            0..=4 => {
                // op 228, 236, 244, 252: a consumer position alone, no events (issue 9, item 1).
                let consumer_only = op % 8 == 4 && op >> 5 == 7;
                let streams = if consumer_only { 0 } else { 1 + usize::from(op >> 3) % 3 };
                let mut counts = Vec::new();
                for i in 0..streams {
                    let n = 1 + usize::from(b.u8() % 4);
                    counts.push((format!("s{}", (usize::from(op >> 5) + i) % 5), n));
                }
                let consumer = (op % 8 == 4).then(|| {
                    consumer_at += 1 + u64::from(b.u8());
                    ("projector".to_owned(), consumer_at)
                });
                let plan = model.plan(&counts, consumer);
                match model.append(s, &plan) {
                    // Twelve large events may not fit a 4 KiB segment: refused whole, nothing written.
                    Ok(()) | Err(Error::TooLarge { .. }) => {}
                    Err(e) => panic!("workload append: {e}"),
                }
            }
            5 => s.sync().expect("sync"),
            6 => s.checkpoint().expect("checkpoint"),
            _ => {
                store.take().expect("store open").close().expect("close");
                store = Some(Store::open_with(dir, options.clone()).expect("reopen"));
            }
        }
    }
    store.take().expect("store open").close().expect("final close");
    model
}

/// A second, unrelated log whose frames get spliced into the first (misdirected writes, F9).
fn foreign_frames() -> &'static Vec<Vec<u8>> {
    static FOREIGN: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FOREIGN.get_or_init(|| {
        let dir = ScratchDir::new("foreign");
        let mut b = Bytes::new(&[12, 0, 1, 2, 8, 3, 1, 9, 2, 0, 3, 1, 2, 0, 0, 4, 1, 2]);
        run_workload(dir.path(), &mut b, 0xF0E1);
        let mut frames = Vec::new();
        if let Ok(bytes) = std::fs::read(dir.path().join(segment_file_name(0, 0))) {
            for (off, len) in segment_frames(&bytes) {
                frames.push(bytes[off..off + len].to_vec());
            }
        }
        frames
    })
}

/// The directory's files, sorted by name (segments first, by base position).
fn dir_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(std::result::Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.retain(|p| p.file_name().is_some_and(|n| n != "LOCK"));
    files.sort();
    files
}

/// What the damage did, for the oracle's judgement.
#[derive(Debug, Default)]
struct Damage {
    /// A CRC was recomputed or a foreign frame spliced in: the files are hostile, so only structure is checked.
    hostile: bool,
    /// Some byte below the end of the written log (or a whole file) was damaged: events may be lost, but only
    /// with an error or as a clean prefix; never a wrong event.
    synced: bool,
}

/// Fuzz target `dir_damage`. Input: a run seed, a workload script (appends of 1–3 streams × 1–4 events,
/// consumer positions, syncs, checkpoints, clean reopens; 4 KiB segments), then up to 8 damage operations:
/// bit flips, truncation, zeroed ranges, frames spliced from elsewhere in the log or from another log,
/// rewritten length fields, recomputed CRCs, deleted files, garbage or zeros appended. Then the oracle:
/// damage only past the end of the log must lose nothing; damage to written bytes may give an error or a
/// clean prefix, never a wrong event; hostile files (recomputed CRCs) must still give consistent structure;
/// nothing may panic.
pub fn dir_damage(data: &[u8]) {
    let mut b = Bytes::new(data);
    let run = b.u64() | 1;
    let dir = ScratchDir::new("dir-damage");
    let mut model = run_workload(dir.path(), &mut b, run);
    let files = dir_files(dir.path());
    let ends = frame_ends(&files);
    let last_seg = ends.keys().next_back().cloned();
    let mut damage = Damage::default();
    let n_ops = b.u8() % 9;
    for _ in 0..n_ops {
        let kind = b.u8();
        let Some(path) = files.get(usize::from(b.u8()) % files.len().max(1)).cloned() else { break };
        let Ok(mut bytes) = std::fs::read(&path) else { continue };
        let target = DamagedFile {
            is_ckpt: path.file_name().is_some_and(|n| n == CHECKPOINT_FILE),
            // Past the end of the log in the last segment nothing was ever acknowledged; everything else was.
            end: if Some(&path) == last_seg.as_ref() { ends.get(&path).copied() } else { None },
        };
        let write = match kind % 10 {
            6 => {
                let _ = std::fs::remove_file(&path);
                damage.synced |= !target.is_ckpt;
                false
            }
            3 | 4 | 5 | 7 => damage_frames(&mut b, kind % 10, target, &mut bytes, &mut damage),
            op => {
                damage_bytes(&mut b, op, target, &mut bytes, &mut damage);
                true
            }
        };
        if !write {
            continue;
        }
        std::fs::write(&path, &bytes).expect("write damaged file");
        if std::env::var_os("FOLDLOG_FUZZ_DEBUG").is_some() {
            eprintln!("damage kind {} on {} -> {damage:?}", kind % 10, path.display());
        }
    }
    // Last (from the input's tail, so older inputs read it as 0: nothing): lose the newest segment file.
    let lost = lose_last_segment(b.u8(), last_seg.as_deref());
    damage.synced |= lost;
    // Evidence that it existed: the previous segment's SEALED slot, or an index checkpoint. With either, and no
    // other damage, a shorter log is never an answer: the open must refuse.
    let evidence = ends.len() >= 2 || dir.path().join(CHECKPOINT_FILE).exists();
    judge_damage(dir.path(), &mut model, &damage, lost && n_ops == 0 && evidence);
}

/// The end of the frames of each segment file among `files`.
fn frame_ends(files: &[PathBuf]) -> BTreeMap<PathBuf, usize> {
    let mut ends = BTreeMap::new();
    for f in files {
        if f.extension().is_some_and(|x| x == "seg") {
            let bytes = std::fs::read(f).unwrap_or_default();
            let end = segment_frames(&bytes).last().map_or(SEGMENT_HEADER_LEN as usize, |(o, l)| o + l);
            ends.insert(f.clone(), end);
        }
    }
    ends
}

/// The file one damage operation hits.
#[derive(Clone, Copy)]
struct DamagedFile {
    /// It is the index checkpoint (a hint: damage to it must never lose anything).
    is_ckpt: bool,
    /// It is the last segment, whose log ends here.
    end: Option<usize>,
}

impl DamagedFile {
    /// Whether `len` bytes at `off` held something acknowledged.
    fn written(self, off: usize, len: usize) -> bool {
        self.is_ckpt || self.end.is_none_or(|e| off < e || off + len <= 128)
    }
}

/// Damage operations on bytes, wherever they fall: a bit flip (0), a truncation (1), zeros (2), garbage (8),
/// or zeros or garbage appended (9).
fn damage_bytes(b: &mut Bytes<'_>, op: u8, t: DamagedFile, bytes: &mut Vec<u8>, damage: &mut Damage) {
    let len = bytes.len().max(1);
    match op {
        0 => {
            let off = b.u32() as usize % len;
            if off < bytes.len() {
                bytes[off] ^= 1 << (b.u8() % 8);
                damage.synced |= t.written(off, 1) && !t.is_ckpt;
            }
        }
        1 => {
            let to = b.u32() as usize % len;
            damage.synced |= t.written(to, bytes.len() - to) && !t.is_ckpt;
            bytes.truncate(to);
        }
        2 => {
            let off = b.u32() as usize % len;
            let n = (usize::from(b.u16()) + 1).min(bytes.len().saturating_sub(off));
            if n > 0 {
                bytes[off..off + n].fill(0);
                damage.synced |= t.written(off, n) && !t.is_ckpt;
            }
        }
        8 => {
            // Garbage at an offset.
            let off = b.u32() as usize % len;
            let n = usize::from(b.u8()) + 1;
            let mut rng = Rng::new(b.u64());
            for byte in bytes.iter_mut().skip(off).take(n) {
                *byte = rng.next_u64() as u8;
            }
            damage.synced |= t.written(off, n) && !t.is_ckpt;
        }
        _ => {
            // The file grows: zeros or garbage appended (Kafka's "nonsense blocks").
            let n = 512 * (1 + usize::from(b.u8() % 8));
            let mut extra = vec![0u8; n];
            if b.u8() % 2 == 1 {
                Rng::new(b.u64()).fill(&mut extra);
            }
            bytes.extend_from_slice(&extra);
        }
    }
}

/// Damage operations on frames: a frame of this log spliced elsewhere (3), a rewritten length field (4),
/// tampering with CRCs recomputed (5), a frame of another log spliced in (7). False if nothing was done and
/// the file is to be left as it is.
fn damage_frames(b: &mut Bytes<'_>, op: u8, t: DamagedFile, bytes: &mut [u8], damage: &mut Damage) -> bool {
    let frames = if t.is_ckpt { Vec::new() } else { segment_frames(bytes) };
    let pick_frame = |sel: u8| frames.get(usize::from(sel) % frames.len().max(1)).copied();
    match op {
        3 => {
            // Splice a frame of this log over another frame (or just past the end).
            let (Some((from, flen)), Some((to, _))) = (pick_frame(b.u8()), pick_frame(b.u8())) else {
                return false;
            };
            let to = if b.u8().is_multiple_of(2) { to } else { t.end.unwrap_or(to) };
            // Every frame's CRC covers its segment and offset, so a frame copied elsewhere fails its check.
            if to + flen <= bytes.len() {
                let src = bytes[from..from + flen].to_vec();
                bytes[to..to + flen].copy_from_slice(&src);
                damage.synced |= t.written(to, flen);
            }
        }
        4 => {
            let Some((off, _)) = pick_frame(b.u8()) else { return false };
            set_frame_len(bytes, off, b.u32());
            damage.synced = true;
        }
        5 => {
            // Recompute CRCs after tampering: a hostile file.
            damage.hostile = true;
            if t.is_ckpt {
                fix_checkpoint_crcs(bytes);
            } else {
                if let Some((off, _)) = pick_frame(b.u8()) {
                    let at = off + 16 + usize::from(b.u8());
                    if at < bytes.len() {
                        bytes[at] ^= b.u8() | 1;
                    }
                    fix_frame_crc(bytes, off);
                }
                fix_segment_crcs(bytes);
            }
        }
        _ => {
            // A valid frame of another log, spliced over a frame or at the end (misdirected write).
            damage.hostile = true;
            let foreign = foreign_frames();
            let Some(frame) = foreign.get(usize::from(b.u8()) % foreign.len().max(1)) else { return false };
            let to = pick_frame(b.u8()).map_or(t.end.unwrap_or(128), |f| f.0);
            if to + frame.len() <= bytes.len() {
                bytes[to..to + frame.len()].copy_from_slice(frame);
            }
        }
    }
    true
}

/// The oracle's judgement of a damaged directory (see [`dir_damage`]).
fn judge_damage(dir: &Path, model: &mut Model, damage: &Damage, must_refuse: bool) {
    let options = small_options(false);
    if damage.hostile {
        let checkpointed = dir.join(CHECKPOINT_FILE).exists();
        let _ = open_three_ways(dir, &options, !checkpointed);
        return;
    }
    let k = if damage.synced { 0 } else { model.events.len() };
    match check_dir(dir, &options, model, k) {
        Ok(Verdict::Recovered { n, .. }) => {
            assert!(!must_refuse, "the newest segment was lost, yet open recovered {n} events silently");
        }
        Ok(Verdict::Refused(e)) => {
            assert!(damage.synced, "damage past the end of the log only, yet open refused: {e}");
        }
        Err(violation) => panic!("oracle violation: {violation}"),
    }
}

/// Loses the newest segment file as `how` says (0: not at all; then delete, truncate to less than a header,
/// or rename to a name that is not a segment's). True if a file was lost.
fn lose_last_segment(how: u8, last: Option<&Path>) -> bool {
    let Some(last) = last else { return false };
    let done = match how % 4 {
        0 => return false,
        1 => std::fs::remove_file(last),
        2 => std::fs::OpenOptions::new()
            .write(true)
            .open(last)
            .and_then(|f| f.set_len(u64::from(how / 4) % 128)),
        _ => std::fs::rename(last, last.with_extension("seg.lost")),
    };
    done.is_ok()
}

// ---------------------------------------------------------------------------------------------------------
// Fuzz target: index_checkpoint
// ---------------------------------------------------------------------------------------------------------

struct Template {
    files: Vec<(String, Vec<u8>)>,
    checkpoint: Vec<u8>,
    events: Vec<(u64, String, u64)>,
    versions: BTreeMap<String, Option<u64>>,
    consumers: BTreeMap<String, Option<u64>>,
    model: Model,
}

/// A valid log (several segments, streams, consumers, ids) and its checkpoint, built once per process.
fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = ScratchDir::new("ckpt-template");
        let script = [
            30u8, 0, 1, 2, 9, 3, 2, 17, 1, 1, 4, 7, 0, 33, 2, 1, 3, 5, 8, 0, 2, 4, 9, 6, 1, 0, 3, 2, 1, 4,
            // Stream `s1` truncated before version 2, so the checkpoint has a stream-control entry.
            211, 2, 2,
        ];
        let mut b = Bytes::new(&script);
        let model = run_workload(dir.path(), &mut b, 0xC4EC);
        // A fixed log id, so checkpoints saved as seeds by another process still belong to this log.
        for p in dir_files(dir.path()) {
            let mut bytes = std::fs::read(&p).expect("read template file");
            if bytes.len() >= 32 {
                bytes[16..32].copy_from_slice(&FUZZ_LOG_ID);
                if p.file_name().is_some_and(|n| n == CHECKPOINT_FILE) {
                    fix_checkpoint_header_crc(&mut bytes);
                } else {
                    fix_segment_crcs(&mut bytes);
                }
                std::fs::write(&p, &bytes).expect("write template file");
            }
        }
        let mut files = Vec::new();
        let mut checkpoint = Vec::new();
        for p in dir_files(dir.path()) {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let bytes = std::fs::read(&p).expect("read template file");
            if name == CHECKPOINT_FILE {
                checkpoint = bytes;
            } else {
                files.push((name, bytes));
            }
        }
        assert!(!checkpoint.is_empty(), "template has a checkpoint");
        assert!(!model.controls.is_empty(), "template truncates a stream");
        let store = Store::open_with(dir.path(), small_options(true)).expect("open template");
        let events = check_structure(&store, true, true).expect("template structure");
        let streams: BTreeSet<String> = events.iter().map(|e| e.1.clone()).collect();
        let versions = streams.iter().map(|s| (s.clone(), store.stream_version(s))).collect();
        let consumers =
            ["projector", "other"].iter().map(|c| ((*c).to_owned(), store.consumer_position(c))).collect();
        Template { files, checkpoint, events, versions, consumers, model }
    })
}

/// Fuzz target `index_checkpoint`. A fixed valid log; the input decides the checkpoint file: mode 0 takes
/// the input as the file, mode 1 patches the real checkpoint (offset, byte pairs), mode 2 takes the input as
/// header bytes 32..64 (next position, resume point, directory length) and everything after the header;
/// bit 7 then recomputes every CRC (directory, lists, header) as a forger would. The store must open with exactly the
/// events, versions and consumer positions of a rebuild (or refuse to open, or fail a read with an error),
/// accept an append at the right version, and reopen to the same log with or without the checkpoint.
pub fn index_checkpoint(data: &[u8]) {
    let t = template();
    let mut b = Bytes::new(data);
    let flags = b.u8();
    let hostile = flags & 0x80 != 0;
    let ckpt = input_checkpoint(t, flags, &mut b);
    let dir = ScratchDir::new("index-checkpoint");
    for (name, bytes) in &t.files {
        std::fs::write(dir.path().join(name), bytes).expect("write template file");
    }
    std::fs::write(dir.path().join(CHECKPOINT_FILE), &ckpt).expect("write checkpoint");
    let options = small_options(false);
    let Ok(store) = Store::open_with(dir.path(), options.clone()) else { return };
    // Whatever the checkpoint says, a read returns the right event or an error, never a wrong event.
    let read_failed = !reads_match(t, &store);
    if hostile {
        // CRC32 is no defence against a forger: a checkpoint with recomputed CRCs may mislead derived state
        // (versions, consumer positions, the id window). It must still never panic nor return a wrong event.
        let _ = check_structure(&store, false, false);
        let mut model = t.model.clone();
        let plan = model.plan(&[("s1".to_owned(), 1)], None);
        let _ = model.append(&store, &plan);
        drop(store);
        if let Ok(s) = Store::open_with(dir.path(), options) {
            let _ = check_structure(&s, false, false);
        }
        return;
    }
    // A checkpoint damaged by accident (no CRCs recomputed) is refused or exact.
    assert!(!read_failed, "a read failed after opening with an accidentally damaged checkpoint");
    assert_eq!(
        check_structure(&store, true, true).expect("structure"),
        t.events,
        "events differ from a rebuild"
    );
    for (s, v) in &t.versions {
        assert_eq!(&store.stream_version(s), v, "stream_version({s}) differs from a rebuild");
    }
    for (c, p) in &t.consumers {
        assert_eq!(&store.consumer_position(c), p, "consumer {c} differs from a rebuild");
    }
    appends_continue_the_real_log(t, store, dir.path(), &options);
}

/// The checkpoint an `index_checkpoint` input describes: its bytes as they are (`flags % 3 == 0`), the
/// template's with bytes overwritten (1), or the template's header before the input's directory (2); with
/// the 0x80 flag, with every CRC recomputed (a forger).
fn input_checkpoint(t: &Template, flags: u8, b: &mut Bytes<'_>) -> Vec<u8> {
    let mut ckpt = match flags % 3 {
        0 => b.rest().to_vec(),
        1 => {
            let mut c = t.checkpoint.clone();
            while !b.is_empty() {
                let at = usize::from(b.u16()) % c.len().max(1);
                let v = b.u8();
                if let Some(x) = c.get_mut(at) {
                    *x = v;
                }
            }
            c
        }
        _ => {
            let mut c = t.checkpoint[..CHECKPOINT_HEADER_LEN].to_vec();
            let body = b.rest();
            if body.len() >= 32 {
                // Let the input choose next_position, the resume point and the directory length too.
                c[32..64].copy_from_slice(&body[..32]);
                c.extend_from_slice(&body[32..]);
            } else {
                c.extend_from_slice(body);
            }
            c
        }
    };
    if flags & 0x80 != 0 {
        if ckpt.len() >= 16 {
            ckpt[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        }
        fix_checkpoint_crcs(&mut ckpt);
    }
    ckpt
}

/// Reads the whole log in global order and every stream of the template; panics on a wrong event (each one
/// returned must be the model's at its position, in increasing positions; events a truncation hides are left
/// out, and a forged checkpoint may hide others: derived state). False if a read failed.
fn reads_match(t: &Template, store: &Store) -> bool {
    let mut ok = true;
    let mut last = None;
    for item in store.read_all(0) {
        if let Ok(e) = item {
            assert!(last < Some(e.position()), "read_all went back to position {}", e.position());
            last = Some(e.position());
            let expect = t.model.events.get(e.position() as usize).expect("read_all returned an extra event");
            expect.check(&e).expect("read_all returned a wrong event");
        } else {
            ok = false;
            break;
        }
    }
    for s in t.versions.keys() {
        let mut expect = t.model.events.iter().filter(|x| &x.stream == s);
        for item in store.read_stream(s, 0) {
            if let Ok(e) = item {
                let mut expect = expect.by_ref().skip_while(|x| x.version < e.stream_version());
                expect.next().expect("read_stream returned an extra event").check(&e).expect("read_stream");
            } else {
                ok = false;
                break;
            }
        }
    }
    ok
}

/// An append must continue the real versions, and the log must reopen the same with or without a checkpoint.
fn appends_continue_the_real_log(t: &Template, store: Store, dir: &Path, options: &Options) {
    let mut model = t.model.clone();
    let plan = model.plan(&[("s1".to_owned(), 2), ("fresh".to_owned(), 1)], None);
    model.append(&store, &plan).expect("append after opening with the checkpoint");
    store.close().expect("close");
    let store = Store::open_with(dir, options.clone()).expect("reopen with the new checkpoint");
    let n = model.events.len();
    check_store(&store, &model, n).expect("reopen with the new checkpoint");
    drop(store);
    std::fs::remove_file(dir.join(CHECKPOINT_FILE)).expect("remove checkpoint");
    let store = Store::open_with(dir, options.clone()).expect("reopen without a checkpoint");
    check_store(&store, &model, n).expect("rebuild after the append");
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The fuzz targets by name.
pub const TARGETS: [(&str, Target); 4] = [
    ("frame_decode", frame_decode),
    ("segment_open", segment_open),
    ("dir_damage", dir_damage),
    ("index_checkpoint", index_checkpoint),
];

/// The bytes of a real segment and checkpoint written by a small workload (for seed corpora): (segment
/// files, checkpoint).
pub fn sample_log(script: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let dir = ScratchDir::new("sample");
    let mut b = Bytes::new(script);
    run_workload(dir.path(), &mut b, 0x5EED);
    let mut segs = Vec::new();
    let mut ckpt = Vec::new();
    for p in dir_files(dir.path()) {
        let bytes = std::fs::read(&p).unwrap_or_default();
        if p.file_name().is_some_and(|n| n == CHECKPOINT_FILE) {
            ckpt = bytes;
        } else {
            segs.push(bytes);
        }
    }
    (segs, ckpt)
}

/// The checkpoint of the fixed log `index_checkpoint` uses (for its seeds).
pub fn template_checkpoint() -> Vec<u8> {
    template().checkpoint.clone()
}
