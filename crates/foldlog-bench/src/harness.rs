//! The scenarios, engines and tables (Unix only: the raw baseline uses positioned Unix calls).

use crate::Rng;
use std::error::Error as StdError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foldlog::{Durability, ExpectedVersion, GroupCommit, NewEvent, Options, Store};

/// Errors of any engine, boxed: the harness only reports them.
pub type BenchResult<T> = Result<T, Box<dyn StdError + Send + Sync>>;

/// The event types of the workload, drawn 6 : 3 : 1.
pub const KINDS: [&str; 3] = ["Deposited", "Withdrawn", "Renamed"];
/// Bytes of every payload in the one-event-per-call scenarios: 56 bytes of JSON-like text, 64 random bytes.
pub const PAYLOAD_BYTES: usize = 120;
/// Payload bytes in the batch scenarios (the first 100 bytes of the same payloads), as issue 2 asks.
pub const BATCH_PAYLOAD_BYTES: usize = 100;
/// Events per append call in the batch scenarios.
pub const BATCH_EVENTS: usize = 100;
/// Group commit cadence: a sync after this many events, in every engine.
pub const GROUP_EVENTS: u32 = 1000;

/// The events of one run, generated up front so that generation costs no engine anything: stream ids with
/// Zipf (s = 1) popularity over shuffled ranks, three event kinds, 120-byte payloads that are half random.
pub struct Workload {
    /// Stream ids, `account-00000` ...
    pub streams: Vec<String>,
    /// Events per stream.
    pub stream_len: Vec<u64>,
    events: Vec<(u32, u8)>,
    payloads: Vec<u8>,
}

impl Workload {
    /// `events` events over `streams` streams.
    pub fn new(events: usize, streams: usize, seed: u64) -> Workload {
        let mut rng = Rng::new(seed);
        let streams = streams.max(1);
        // Zipf CDF over ranks; rank r is given to a random stream so ids carry no popularity order.
        let mut cdf = Vec::with_capacity(streams);
        let mut total = 0.0;
        for r in 1..=streams {
            total += 1.0 / r as f64;
            cdf.push(total);
        }
        let mut of_rank: Vec<u32> = (0..streams as u32).collect();
        for i in (1..streams).rev() {
            of_rank.swap(i, rng.below(i + 1));
        }
        let mut list = Vec::with_capacity(events);
        let mut payloads = Vec::with_capacity(events * PAYLOAD_BYTES);
        let mut stream_len = vec![0u64; streams];
        for i in 0..events {
            let u = rng.unit() * total;
            let rank = cdf.partition_point(|&c| c < u).min(streams - 1);
            let stream = of_rank[rank];
            let k = rng.below(10);
            let kind = if k < 6 {
                0
            } else if k < 9 {
                1
            } else {
                2
            };
            list.push((stream, kind));
            stream_len[stream as usize] += 1;
            let text = format!(
                "{{\"seq\":{i:>9},\"amount\":{:>8},\"ccy\":\"EUR\",\"r\":\"",
                rng.next_u64() % 100_000_000
            );
            let mut p = [0u8; PAYLOAD_BYTES];
            p[..56].copy_from_slice(&format!("{text:<56}").as_bytes()[..56]);
            for chunk in p[56..].chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
            }
            payloads.extend_from_slice(&p);
        }
        Workload {
            streams: (0..streams).map(|s| format!("account-{s:05}")).collect(),
            stream_len,
            events: list,
            payloads,
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the workload has no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Event `i`: stream index, kind, payload.
    pub fn event(&self, i: usize) -> (usize, &'static str, &[u8]) {
        let (s, k) = self.events[i];
        (s as usize, KINDS[k as usize], &self.payloads[i * PAYLOAD_BYTES..(i + 1) * PAYLOAD_BYTES])
    }

    /// Bytes the application handed over for events `0..n` (stream id, type, payload of `payload_len`).
    pub fn logical_bytes(&self, n: usize, payload_len: usize) -> u64 {
        self.events[..n]
            .iter()
            .map(|&(s, k)| (self.streams[s as usize].len() + KINDS[k as usize].len() + payload_len) as u64)
            .sum()
    }

    /// The most popular stream.
    pub fn hottest(&self) -> usize {
        (0..self.streams.len()).max_by_key(|&s| self.stream_len[s]).unwrap_or(0)
    }
}

/// When an engine makes appends durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never synced during the run (one sync at the end of it).
    NoSync,
    /// A sync after every this many append calls.
    Group(u32),
    /// A sync before every append call returns.
    Always,
}

/// One storage engine under test. Every append carries an optimistic-concurrency check: `next_version` is
/// the version the stream's next event must get (0 for a new stream), and the engine must refuse otherwise.
pub trait Engine {
    /// Appends `events` (type, payload) to `stream` atomically.
    fn append(&mut self, stream: &str, next_version: u64, events: &[(&str, &[u8])]) -> BenchResult<()>;
    /// Makes every append so far durable (the end of an append scenario; timed with it).
    fn finish(&mut self) -> BenchResult<()>;
    /// Untimed preparation before the read scenarios (the raw baseline builds its in-memory offsets here).
    fn prepare_reads(&mut self) -> BenchResult<()> {
        Ok(())
    }
    /// Reads up to `limit` events of `stream` from its first; returns (events, payload bytes).
    fn read_stream(&mut self, stream: &str, limit: usize) -> BenchResult<(u64, u64)>;
    /// Reads every event in global order; returns (events, logical bytes: stream id + type + payload).
    fn replay(&mut self) -> BenchResult<(u64, u64)>;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> BenchResult<()>;
}

/// How to open an engine, and what setting gives each mode its durability promise.
pub struct EngineSpec {
    /// Short name, used in tables and CSV.
    pub name: &'static str,
    /// The engine's setting for a mode, in its own words.
    pub setting: fn(Mode) -> String,
    /// Opens (or creates) the engine's data in `dir`.
    pub open: fn(&Path, Mode) -> BenchResult<Box<dyn Engine>>,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Events per append scenario (and in the data set read back).
    pub events: usize,
    /// Streams.
    pub streams: usize,
    /// Time bound of the sync-every-append scenario.
    pub always_for: Duration,
    /// Random stream reads.
    pub reads: usize,
}

/// One measured figure of one engine in one run.
#[derive(Clone, Debug)]
pub struct Measure {
    /// Engine name.
    pub engine: &'static str,
    /// Scenario id (`append_group`, `replay`, ...).
    pub scenario: &'static str,
    /// Metric id within the scenario.
    pub metric: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// True if a larger value is better.
    pub higher_is_better: bool,
    /// The value.
    pub value: f64,
    /// The engine's durability setting in this scenario.
    pub setting: String,
}

/// A temporary directory removed on drop (the binary has no tempfile crate).
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory under `parent` (the system temp dir if `None`).
    pub fn new(parent: Option<&Path>) -> BenchResult<Scratch> {
        let base = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let dir = base.join(format!("foldlog-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&base)?;
        // A new directory, never one that was there: dropping the scratch removes it whole.
        std::fs::create_dir(&dir)?;
        Ok(Scratch(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Allocated bytes (st_blocks) of every file under `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted.get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

struct Recorder<'a> {
    engine: &'static str,
    setting: String,
    out: &'a mut Vec<Measure>,
}

impl Recorder<'_> {
    fn put(
        &mut self,
        scenario: &'static str,
        metric: &'static str,
        unit: &'static str,
        hi: bool,
        value: f64,
    ) {
        self.out.push(Measure {
            engine: self.engine,
            scenario,
            metric,
            unit,
            higher_is_better: hi,
            value,
            setting: self.setting.clone(),
        });
    }
}

/// Appends the workload one event per call (or `BATCH_EVENTS` per call) until done or `bound` passes.
/// Returns (events appended, elapsed, per-call latencies if `time_calls`).
fn append_all(
    engine: &mut dyn Engine,
    w: &Workload,
    batch: bool,
    bound: Option<Duration>,
    time_calls: bool,
) -> BenchResult<(usize, Duration, Vec<Duration>)> {
    let mut next = vec![0u64; w.streams.len()];
    let mut lat = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    let mut events: Vec<(&str, &[u8])> = Vec::with_capacity(BATCH_EVENTS);
    while i < w.len() {
        if bound.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let (s, _, _) = w.event(i);
        events.clear();
        if batch {
            // A batch is BATCH_EVENTS consecutive workload events, all sent to the first one's stream.
            for j in i..(i + BATCH_EVENTS).min(w.len()) {
                let (_, kind, payload) = w.event(j);
                events.push((kind, &payload[..BATCH_PAYLOAD_BYTES]));
            }
        } else {
            let (_, kind, payload) = w.event(i);
            events.push((kind, payload));
        }
        let t = time_calls.then(Instant::now);
        engine.append(&w.streams[s], next[s], &events)?;
        if let Some(t) = t {
            lat.push(t.elapsed());
        }
        next[s] += events.len() as u64;
        i += events.len();
    }
    engine.finish()?;
    Ok((i, started.elapsed(), lat))
}

/// Runs every scenario for one engine, each on a fresh directory under `scratch`, and records the figures.
pub fn run_engine(
    spec: &EngineSpec,
    w: &Workload,
    plan: &Plan,
    scratch: &Path,
    out: &mut Vec<Measure>,
    progress: &mut dyn FnMut(&str),
) -> BenchResult<()> {
    let group = Mode::Group(GROUP_EVENTS);

    // 1. One event per call, group commit; this data set is then read back, reopened and measured.
    progress(&format!("{}: append, group commit", spec.name));
    let dir = scratch.join(format!("{}-group", spec.name));
    let mut rec = Recorder { engine: spec.name, setting: (spec.setting)(group), out };
    let mut e = (spec.open)(&dir, group)?;
    let (done, took, _) = append_all(e.as_mut(), w, false, None, false)?;
    rec.put("append_group", "throughput", "events/s", true, eps(done, took));

    progress(&format!("{}: reads and replay", spec.name));
    e.prepare_reads()?;
    measure_stream_reads(e.as_mut(), spec, w, plan, &mut rec, ("read_stream", "read_100"))?;
    measure_replay(e.as_mut(), spec, w, &mut rec)?;
    e.close()?;
    let on_disk = disk_bytes(&dir);
    rec.put("disk", "bytes", "MB", false, on_disk as f64 / 1e6);
    rec.put(
        "disk",
        "per_logical",
        "×",
        false,
        on_disk as f64 / w.logical_bytes(w.len(), PAYLOAD_BYTES) as f64,
    );
    measure_reopen(spec, w, &dir, group, plan, &mut rec)?;
    std::fs::remove_dir_all(&dir)?;

    // 2. The same appends, never synced during the run.
    for (scenario, mode, batch) in [
        ("append_nosync", Mode::NoSync, false),
        ("batch100_nosync", Mode::NoSync, true),
        ("batch100_group", Mode::Group(GROUP_EVENTS / BATCH_EVENTS as u32), true),
    ] {
        progress(&format!("{}: {scenario}", spec.name));
        let dir = scratch.join(format!("{}-{scenario}", spec.name));
        rec.setting = (spec.setting)(mode);
        let mut e = (spec.open)(&dir, mode)?;
        let (done, took, _) = append_all(e.as_mut(), w, batch, None, false)?;
        e.close()?;
        std::fs::remove_dir_all(&dir)?;
        rec.put(scenario, "throughput", "events/s", true, eps(done, took));
        if batch {
            rec.put(
                scenario,
                "bandwidth",
                "MB/s",
                true,
                mb(w.logical_bytes(done, BATCH_PAYLOAD_BYTES), took),
            );
        }
    }

    // 3. A sync before every append returns, bounded by time.
    progress(&format!("{}: append, sync every call", spec.name));
    measure_always(spec, w, plan, &scratch.join(format!("{}-always", spec.name)), &mut rec)
}

/// One event per call with a sync before each append returns, for `plan.always_for`: throughput and latency.
fn measure_always(
    spec: &EngineSpec,
    w: &Workload,
    plan: &Plan,
    dir: &Path,
    rec: &mut Recorder<'_>,
) -> BenchResult<()> {
    rec.setting = (spec.setting)(Mode::Always);
    let mut e = (spec.open)(dir, Mode::Always)?;
    let (done, took, mut lat) = append_all(e.as_mut(), w, false, Some(plan.always_for), true)?;
    e.close()?;
    std::fs::remove_dir_all(dir)?;
    lat.sort_unstable();
    rec.put("append_always", "throughput", "events/s", true, eps(done, took));
    rec.put("append_always", "p50", "µs", false, us(percentile(&lat, 50)));
    rec.put("append_always", "p99", "µs", false, us(percentile(&lat, 99)));
    Ok(())
}

/// Megabytes per second.
fn mb(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Events per second.
fn eps(events: usize, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64().max(1e-9)
}

/// Microseconds.
fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `plan.reads` reads of a random whole stream, each followed by one of the first 100 events of a random
/// stream at least that long; every count is checked. `names`: the scenarios of the two kinds of read.
fn measure_stream_reads(
    e: &mut dyn Engine,
    spec: &EngineSpec,
    w: &Workload,
    plan: &Plan,
    rec: &mut Recorder<'_>,
    (whole_name, first_name): (&'static str, &'static str),
) -> BenchResult<()> {
    let mut rng = Rng::new(0x5EED);
    let mut whole = Vec::with_capacity(plan.reads);
    let mut first100 = Vec::with_capacity(plan.reads);
    let long: Vec<usize> = (0..w.streams.len()).filter(|&s| w.stream_len[s] >= 100).collect();
    for _ in 0..plan.reads {
        let s = rng.below(w.streams.len());
        let t = Instant::now();
        let (got, _) = e.read_stream(&w.streams[s], usize::MAX)?;
        whole.push(t.elapsed());
        if got != w.stream_len[s] {
            return Err(
                format!("{}: stream {s} has {got} events, expected {}", spec.name, w.stream_len[s]).into()
            );
        }
        if !long.is_empty() {
            let s = long[rng.below(long.len())];
            let t = Instant::now();
            let (got, _) = e.read_stream(&w.streams[s], 100)?;
            first100.push(t.elapsed());
            if got != 100 {
                return Err(format!("{}: read {got} of 100 events", spec.name).into());
            }
        }
    }
    whole.sort_unstable();
    first100.sort_unstable();
    rec.put(whole_name, "p50", "µs", false, us(percentile(&whole, 50)));
    rec.put(whole_name, "p99", "µs", false, us(percentile(&whole, 99)));
    if !first100.is_empty() {
        rec.put(first_name, "p50", "µs", false, us(percentile(&first100, 50)));
        rec.put(first_name, "p99", "µs", false, us(percentile(&first100, 99)));
    }
    Ok(())
}

/// One replay of the whole log, checked to return every event.
fn measure_replay(
    e: &mut dyn Engine,
    spec: &EngineSpec,
    w: &Workload,
    rec: &mut Recorder<'_>,
) -> BenchResult<()> {
    let n = w.len();
    let t = Instant::now();
    let (count, bytes) = e.replay()?;
    let took = t.elapsed();
    if count != n as u64 {
        return Err(format!("{}: replay gave {count} of {n} events", spec.name).into());
    }
    rec.put("replay", "throughput", "events/s", true, eps(n, took));
    rec.put("replay", "bandwidth", "MB/s", true, mb(bytes, took));
    Ok(())
}

/// Open and the first read of the hottest stream, timed together; then the stream reads again on this fresh
/// handle (`read_stream_reopened`, `read_100_reopened`): what a process that opens the store to serve reads
/// meets, with the files in the OS page cache but nothing in the engine's own caches.
fn measure_reopen(
    spec: &EngineSpec,
    w: &Workload,
    dir: &Path,
    mode: Mode,
    plan: &Plan,
    rec: &mut Recorder<'_>,
) -> BenchResult<()> {
    let hot = &w.streams[w.hottest()];
    let t = Instant::now();
    let mut e = (spec.open)(dir, mode)?;
    let (got, _) = e.read_stream(hot, 1)?;
    let took = t.elapsed();
    if got != 1 {
        return Err(format!("{}: no first event after reopen", spec.name).into());
    }
    rec.put("reopen", "open_first_read", "ms", false, took.as_secs_f64() * 1e3);
    e.prepare_reads()?;
    measure_stream_reads(e.as_mut(), spec, w, plan, rec, ("read_stream_reopened", "read_100_reopened"))?;
    e.close()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The raw baseline: the physical limit on this machine.

/// The same events as simple frames (`len u32 | crc32 u32 | 8 reserved` header, then position, version,
/// lengths, stream id, type, payload, zero padding to 16 bytes) written with `write()` to one file and
/// `fdatasync`ed at the same cadence as the others. No index, no check of the expected version beyond a
/// caller-side counter; what it reads back it finds through offsets it builds in memory, untimed.
pub struct Raw {
    file: File,
    path: PathBuf,
    mode: Mode,
    calls: u32,
    position: u64,
    buf: Vec<u8>,
    offsets: std::collections::HashMap<String, Vec<(u64, u32)>>,
}

/// Header bytes of a raw frame.
const RAW_HEADER: usize = 16;

impl Raw {
    /// Opens (or creates) `dir/raw.log`.
    pub fn open(dir: &Path, mode: Mode) -> BenchResult<Box<dyn Engine>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raw.log");
        let file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        Ok(Box::new(Raw {
            file,
            path,
            mode,
            calls: 0,
            position: 0,
            buf: Vec::with_capacity(64 << 10),
            offsets: Default::default(),
        }))
    }

    /// The setting that gives each mode its promise.
    pub fn setting(mode: Mode) -> String {
        match mode {
            Mode::NoSync => "write() only".into(),
            Mode::Group(n) => format!("fdatasync every {n} write() calls"),
            Mode::Always => "fdatasync after every write()".into(),
        }
    }

    fn push_frame(&mut self, stream: &str, version: u64, kind: &str, payload: &[u8]) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0u8; RAW_HEADER]);
        self.buf.extend_from_slice(&self.position.to_le_bytes());
        self.buf.extend_from_slice(&version.to_le_bytes());
        self.buf.extend_from_slice(&(stream.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&(kind.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(stream.as_bytes());
        self.buf.extend_from_slice(kind.as_bytes());
        self.buf.extend_from_slice(payload);
        let body_len = self.buf.len() - at - RAW_HEADER;
        self.buf.resize(at + RAW_HEADER + body_len.next_multiple_of(16), 0);
        let crc = crc32fast::hash(&self.buf[at + RAW_HEADER..at + RAW_HEADER + body_len]);
        self.buf[at..at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        self.position += 1;
    }
}

/// A checked raw frame: its length, stream id, type and payload.
type RawFrame<'a> = (usize, &'a str, &'a str, &'a [u8]);

/// The raw frame at the start of `bytes`, CRC-checked; `None` if the bytes end first.
fn raw_frame(bytes: &[u8]) -> BenchResult<Option<RawFrame<'_>>> {
    let Some(head) = bytes.get(..RAW_HEADER) else { return Ok(None) };
    let body_len = u32::from_le_bytes(head[..4].try_into()?) as usize;
    if body_len < 24 {
        return Err("raw frame too short".into());
    }
    let len = RAW_HEADER + body_len.next_multiple_of(16);
    let Some(body) = bytes.get(RAW_HEADER..RAW_HEADER + body_len).filter(|_| bytes.len() >= len) else {
        return Ok(None);
    };
    if crc32fast::hash(body) != u32::from_le_bytes(head[4..8].try_into()?) {
        return Err("raw frame CRC mismatch".into());
    }
    let s = u16::from_le_bytes(body[16..18].try_into()?) as usize;
    let k = u16::from_le_bytes(body[18..20].try_into()?) as usize;
    let p = u32::from_le_bytes(body[20..24].try_into()?) as usize;
    let stream = std::str::from_utf8(&body[24..24 + s])?;
    let kind = std::str::from_utf8(&body[24 + s..24 + s + k])?;
    Ok(Some((len, stream, kind, &body[24 + s + k..24 + s + k + p])))
}

impl Engine for Raw {
    fn append(&mut self, stream: &str, next_version: u64, events: &[(&str, &[u8])]) -> BenchResult<()> {
        self.buf.clear();
        for (i, (kind, payload)) in events.iter().enumerate() {
            self.push_frame(stream, next_version + i as u64, kind, payload);
        }
        self.file.write_all(&self.buf)?;
        self.calls += 1;
        let sync = match self.mode {
            Mode::NoSync => false,
            Mode::Group(n) => self.calls.is_multiple_of(n),
            Mode::Always => true,
        };
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> BenchResult<()> {
        Ok(self.file.sync_data()?)
    }

    fn prepare_reads(&mut self) -> BenchResult<()> {
        let bytes = std::fs::read(&self.path)?;
        let mut at = 0;
        self.offsets.clear();
        while let Some((len, stream, _, _)) = raw_frame(&bytes[at..])? {
            self.offsets.entry(stream.to_owned()).or_default().push((at as u64, len as u32));
            at += len;
        }
        Ok(())
    }

    fn read_stream(&mut self, stream: &str, limit: usize) -> BenchResult<(u64, u64)> {
        let (mut n, mut bytes) = (0u64, 0u64);
        if self.offsets.is_empty() {
            // After a reopen there are no offsets: read the first frame of the file (no index to ask).
            let mut head = vec![0u8; 4096];
            let got = self.file.read_at(&mut head, 0)?;
            return Ok(raw_frame(&head[..got])?.map_or((0, 0), |(_, _, _, p)| (1, p.len() as u64)));
        }
        let Some(list) = self.offsets.get(stream) else { return Ok((0, 0)) };
        for &(off, len) in list.iter().take(limit) {
            self.buf.resize(len as usize, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            let (_, _, _, payload) = raw_frame(&self.buf)?.ok_or("raw frame cut short")?;
            n += 1;
            bytes += payload.len() as u64;
        }
        Ok((n, bytes))
    }

    fn replay(&mut self) -> BenchResult<(u64, u64)> {
        let mut f = File::open(&self.path)?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut have, mut n, mut bytes) = (0usize, 0u64, 0u64);
        loop {
            let got = f.read(&mut buf[have..])?;
            have += got;
            let mut at = 0;
            while let Some((len, stream, kind, payload)) = raw_frame(&buf[at..have])? {
                n += 1;
                bytes += (stream.len() + kind.len() + payload.len()) as u64;
                at += len;
            }
            buf.copy_within(at..have, 0);
            have -= at;
            if got == 0 {
                return Ok((n, bytes));
            }
        }
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        Ok(self.file.sync_all()?)
    }
}

/// The raw baseline as an engine of the comparison.
pub const RAW: EngineSpec = EngineSpec { name: "raw", setting: Raw::setting, open: Raw::open };

// ---------------------------------------------------------------------------------------------------------
// foldlog.

/// foldlog with default options except durability, which each mode sets.
pub struct Foldlog {
    store: Store,
}

impl Foldlog {
    /// The options a mode maps to: only `durability` differs from `Options::default()`.
    pub fn options(mode: Mode) -> Options {
        let durability = match mode {
            Mode::NoSync => Durability::Never,
            // Count-based cadence, like every other engine here: no byte bound, a 1 s time bound that a
            // running benchmark never reaches.
            Mode::Group(n) => Durability::Group(
                GroupCommit::default().appends_max(n).bytes_max(u64::MAX).delay_max(Duration::from_secs(1)),
            ),
            Mode::Always => Durability::Always,
        };
        Options::default().durability(durability)
    }

    /// Opens (or creates) a store in `dir`.
    pub fn open(dir: &Path, mode: Mode) -> BenchResult<Box<dyn Engine>> {
        Ok(Box::new(Foldlog { store: Store::open_with(dir, Foldlog::options(mode))? }))
    }

    /// The setting that gives each mode its promise.
    pub fn setting(mode: Mode) -> String {
        match mode {
            Mode::NoSync => "Durability::Never".into(),
            Mode::Group(n) => format!("Durability::Group(appends_max {n})"),
            Mode::Always => "Durability::Always".into(),
        }
    }
}

impl Engine for Foldlog {
    fn append(&mut self, stream: &str, next_version: u64, events: &[(&str, &[u8])]) -> BenchResult<()> {
        let expected = match next_version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v - 1),
        };
        if let [(kind, payload)] = events {
            self.store.append(stream, expected, &[NewEvent::new(kind, payload)])?;
        } else {
            let list: Vec<NewEvent<'_>> = events.iter().map(|(k, p)| NewEvent::new(k, p)).collect();
            self.store.append(stream, expected, &list)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> BenchResult<()> {
        Ok(self.store.sync()?)
    }

    fn read_stream(&mut self, stream: &str, limit: usize) -> BenchResult<(u64, u64)> {
        let (mut n, mut bytes) = (0u64, 0u64);
        for e in self.store.read_stream(stream, 0).take(limit) {
            bytes += e?.payload().len() as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn replay(&mut self) -> BenchResult<(u64, u64)> {
        let (mut n, mut bytes) = (0u64, 0u64);
        for e in self.store.read_all(0) {
            let e = e?;
            bytes += (e.stream_id().len() + e.event_type().len() + e.payload().len()) as u64;
            n += 1;
        }
        Ok((n, bytes))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        Ok(self.store.close()?)
    }
}

/// foldlog as an engine of the comparison.
pub const FOLDLOG: EngineSpec =
    EngineSpec { name: "foldlog", setting: Foldlog::setting, open: Foldlog::open };

// ---------------------------------------------------------------------------------------------------------
// Summaries and the table.

/// One figure over repeated runs.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The first run's measure (names, unit, setting).
    pub measure: Measure,
    /// Median over runs.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Number of runs.
    pub runs: usize,
}

/// Median, min and max of each (engine, scenario, metric) over runs, in first-seen order.
pub fn summarize(all: &[Measure]) -> Vec<Summary> {
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    for m in all {
        let k = (m.engine, m.scenario, m.metric);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter()
        .map(|&(e, s, m)| {
            let same: Vec<&Measure> =
                all.iter().filter(|x| x.engine == e && x.scenario == s && x.metric == m).collect();
            let mut v: Vec<f64> = same.iter().map(|x| x.value).collect();
            v.sort_by(f64::total_cmp);
            let median =
                if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
            Summary { measure: same[0].clone(), median, min: v[0], max: v[v.len() - 1], runs: v.len() }
        })
        .collect()
}

/// A value with a sensible number of digits.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// How many times better foldlog is than `other` (> 1: foldlog better), whichever direction is better.
pub fn advantage(foldlog: &Summary, other: &Summary) -> f64 {
    if foldlog.measure.higher_is_better {
        foldlog.median / other.median
    } else {
        other.median / foldlog.median
    }
}

/// Prints one row per (scenario, metric): each engine's median (with min–max when runs > 1) and foldlog's
/// advantage over each other engine.
#[allow(dead_code, reason = "the comparison in compare/ prints through it")]
pub fn print_table(summaries: &[Summary], engines: &[&str]) {
    // A closed stdout ends the output early; nothing else is lost.
    let _ = write_table(&mut std::io::stdout().lock(), summaries, engines);
}

/// As [`print_table`], into `out`.
pub fn write_table(out: &mut dyn Write, summaries: &[Summary], engines: &[&str]) -> std::io::Result<()> {
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for s in summaries {
        let k = (s.measure.scenario, s.measure.metric);
        if !rows.contains(&k) {
            rows.push(k);
        }
    }
    let others: Vec<&&str> = engines.iter().filter(|e| **e != "foldlog").collect();
    let mut head = format!("{:<32}", "scenario / metric");
    for e in engines {
        head += &format!(" {e:>20}");
    }
    for o in &others {
        head += &format!(" {:>11}", format!("fl÷{o}"));
    }
    writeln!(out, "{head}")?;
    for (scenario, metric) in rows {
        let get = |e: &str| {
            summaries.iter().find(|s| {
                s.measure.engine == e && s.measure.scenario == scenario && s.measure.metric == metric
            })
        };
        let unit = get(engines[0]).or_else(|| get("foldlog")).map_or("", |s| s.measure.unit);
        let mut line = format!("{:<32}", format!("{scenario} {metric} ({unit})"));
        for e in engines {
            let cell = match get(e) {
                Some(s) if s.runs > 1 => {
                    format!("{} [{}–{}]", fmt_value(s.median), fmt_value(s.min), fmt_value(s.max))
                }
                Some(s) => fmt_value(s.median),
                None => "-".into(),
            };
            line += &format!(" {cell:>20}");
        }
        for o in &others {
            let cell = match (get("foldlog"), get(o)) {
                (Some(f), Some(x)) => format!("{:.2}×", advantage(f, x)),
                _ => "-".into(),
            };
            line += &format!(" {cell:>11}");
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out, "(fl÷X: how many times better foldlog is than X; > 1 means foldlog wins)")
}

/// Prints the setting that gives each engine its durability promise in each append scenario.
#[allow(dead_code, reason = "the comparison in compare/ prints through it")]
pub fn print_settings(summaries: &[Summary], engines: &[&str]) {
    let _ = write_settings(&mut std::io::stdout().lock(), summaries, engines);
}

/// As [`print_settings`], into `out`.
pub fn write_settings(out: &mut dyn Write, summaries: &[Summary], engines: &[&str]) -> std::io::Result<()> {
    writeln!(out, "\nsettings (same durability promise in every row):")?;
    for scenario in ["append_group", "append_nosync", "batch100_nosync", "batch100_group", "append_always"] {
        let cells: Vec<String> = engines
            .iter()
            .filter_map(|e| {
                summaries
                    .iter()
                    .find(|s| s.measure.engine == *e && s.measure.scenario == scenario)
                    .map(|s| format!("{e}: {}", s.measure.setting))
            })
            .collect();
        writeln!(out, "  {scenario:<16} {}", cells.join("; "))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The command.

/// `foldlog bench`: foldlog and the raw baseline on a short workload; prints the table.
pub fn run(events: usize, parent: Option<&Path>) -> BenchResult<()> {
    let plan = Plan { events, streams: 10_000, always_for: Duration::from_secs(1), reads: 1000 };
    let scratch = Scratch::new(parent)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "foldlog bench: {} events over {} streams (Zipf), {PAYLOAD_BYTES}-byte payloads, in {}",
        plan.events,
        plan.streams,
        scratch.path().display()
    )?;
    out.flush()?;
    let w = Workload::new(plan.events, plan.streams, 42);
    let mut all = Vec::new();
    let started = Instant::now();
    for spec in [&FOLDLOG, &RAW] {
        run_engine(spec, &w, &plan, scratch.path(), &mut all, &mut |what| {
            let _ = writeln!(std::io::stderr(), "  {what}");
        })?;
    }
    writeln!(out, "ran in {:.1} s\n", started.elapsed().as_secs_f64())?;
    let summaries = summarize(&all);
    write_table(&mut out, &summaries, &["foldlog", "raw"])?;
    write_settings(&mut out, &summaries, &["foldlog", "raw"])?;
    writeln!(
        out,
        "\nraw: the same events as simple frames written with write() to one file, fdatasync at the same \
         cadence, no index\n(its reads use offsets built in memory, untimed; its reopen reads the first frame of \
         the file). foldlog's disk\nfigure includes the preallocated tail of its last 64 MiB segment.\n\n\
         With SQLite, redb and fjall too: scripts/bench.sh --quick (under a minute) or scripts/bench.sh \
         (about 10 minutes);\nsee docs/benchmarks.md."
    )?;
    Ok(())
}
