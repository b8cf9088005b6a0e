//! `--jetstream`: the cost of going distributed. The same calls through `foldlog_jetstream::Backend` on the
//! embedded store and on NATS JetStream, in one run:
//!
//! - `foldlog-always`, `foldlog-never`: the embedded store (`Durability::Always`, `Durability::Never`) in a
//!   scratch directory, called through the trait exactly as the JetStream engines are.
//! - `jetstream-r1`: one nats-server with JetStream (file storage, loopback), the log at replicas 1.
//! - `jetstream-r3`: three nats-server processes routed on loopback, the log at replicas 3.
//!
//! The servers are started by `foldlog_jetstream::testing` (the same helpers the crate's tests use) in
//! temporary directories and killed after each run. Without `nats-server` on `PATH` the JetStream engines are
//! skipped with the reason printed (and written into the CSV's metadata); the embedded ones still run.
//!
//! Per run and engine, each timed separately: single-event appends with an exact expected version over
//! [`STREAMS`] streams (an aggregate's save); appends of [`BATCH`] events per call (one message each on
//! JetStream); reads of whole streams written one event per append; one replay of the whole log.

use std::time::{Duration, Instant};

use foldlog::{Durability, ExpectedVersion, NewEvent, Options, ReadAll, Store};
use foldlog_bench::{BenchResult, Measure};
use foldlog_jetstream::testing::{nats_server_missing, NatsServer};
use foldlog_jetstream::{Backend, JetStreamOptions, JetStreamStore};

/// Streams the single-event appends spread over (so each read-back stream holds `appends / STREAMS` events).
pub const STREAMS: usize = 100;
/// Events per call in the batched appends.
pub const BATCH: usize = 100;
/// Payload size, as in the comparison's workload.
const PAYLOAD: [u8; 100] = [7; 100];

/// The engines, in the order the run and the report list them.
pub const ENGINES: [&str; 4] = ["foldlog-always", "foldlog-never", "jetstream-r1", "jetstream-r3"];

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Single-event appends (with an exact expected version), spread over [`STREAMS`] streams.
    pub appends: usize,
    /// Calls of [`BATCH`] events, each to a stream of its own.
    pub batches: usize,
}

impl Plan {
    /// The plan in words, for the CSV's metadata and the report.
    pub fn describe(&self, reps: usize) -> String {
        format!(
            "{} single-event appends with an exact expected version over {STREAMS} streams; {} appends of \
             {BATCH} events (one stream each); {STREAMS} reads of a whole {}-event stream written one event per \
             append; one replay of all {} events; {}-byte payloads; {} run(s)",
            self.appends,
            self.batches,
            self.appends / STREAMS,
            self.appends + self.batches * BATCH,
            PAYLOAD.len(),
            reps
        )
    }
}

/// Why the JetStream engines cannot run here, if they cannot.
pub fn skipped() -> Option<String> {
    nats_server_missing()
}

/// `nats-server --version`, for the metadata.
pub fn server_version() -> String {
    std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "nats-server not installed".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The durability each engine promises when an append returns, for the CSV's `setting` column.
fn setting(engine: &str) -> &'static str {
    match engine {
        "foldlog-always" => "fdatasync before `append` returns",
        "foldlog-never" => "no sync; the OS writes back",
        "jetstream-r1" => "file storage, acknowledged once one server stored it (in its page cache; the server syncs every 2 minutes by default)",
        _ => "acknowledged once a quorum of 2 of the 3 nodes stored it (in their page caches)",
    }
}

/// Runs `engine` once, appending its figures to `out`.
pub fn run_engine(
    engine: &'static str,
    plan: &Plan,
    scratch: &std::path::Path,
    out: &mut Vec<Measure>,
) -> BenchResult<()> {
    match engine {
        "foldlog-always" | "foldlog-never" => {
            let durability = if engine == "foldlog-always" { Durability::Always } else { Durability::Never };
            let dir = scratch.join(engine);
            let store = Store::open_with(&dir, Options::default().durability(durability))?;
            measure(engine, &store, plan, out)
        }
        "jetstream-r1" => {
            let server = NatsServer::single();
            measure(engine, &connect(&server.url(), 1)?, plan, out)
        }
        "jetstream-r3" => {
            let cluster = NatsServer::cluster(3);
            measure(engine, &connect(&cluster.url(), 3)?, plan, out)
        }
        other => Err(format!("no JetStream comparison engine {other}").into()),
    }
}

/// Connects once the servers answer; a fresh cluster needs a few seconds to elect its meta leader, and
/// creating a stream fails until it has.
fn connect(url: &str, replicas: usize) -> BenchResult<JetStreamStore> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match JetStreamStore::connect(JetStreamOptions::new(url).log("compare").replicas(replicas)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                eprintln!("  waiting for the servers: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn micros_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / n.max(1) as f64
}

fn measure(engine: &'static str, b: &dyn Backend, plan: &Plan, out: &mut Vec<Measure>) -> BenchResult<()> {
    let mut push = |scenario: &'static str, metric: &'static str, value: f64| {
        out.push(Measure {
            engine,
            scenario,
            metric,
            unit: "µs",
            higher_is_better: false,
            value,
            setting: setting(engine).to_owned(),
        });
    };
    // One event per call with an exact expected version, round robin over the streams: an aggregate's save.
    let names: Vec<String> = (0..STREAMS).map(|s| format!("account-{s}")).collect();
    let mut versions = vec![None; STREAMS];
    let t = Instant::now();
    for i in 0..plan.appends {
        let s = i % STREAMS;
        let expected = versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let a = b.append(&names[s], expected, &[NewEvent::new("Deposited", &PAYLOAD)])?;
        versions[s] = a.versions.end.checked_sub(1);
    }
    push("js_append_one", "per_event", micros_per(t.elapsed(), plan.appends));
    // Many events per call, one stream each: an import, a bulk command.
    let events = vec![NewEvent::new("Imported", &PAYLOAD); BATCH];
    let bulk: Vec<String> = (0..plan.batches).map(|i| format!("bulk-{i}")).collect();
    let t = Instant::now();
    for name in &bulk {
        b.append(name, ExpectedVersion::NoStream, &events)?;
    }
    push("js_append_batched", "per_event", micros_per(t.elapsed(), plan.batches * BATCH));
    // Load an aggregate without a snapshot: a whole stream written one event per call.
    let per_stream = plan.appends / STREAMS;
    let t = Instant::now();
    for name in &names {
        let got = b.read_stream(name, 0, None)?.len();
        if got != per_stream {
            return Err(format!("{engine}: {name} read {got} events, expected {per_stream}").into());
        }
    }
    push("js_read_stream", "per_read", micros_per(t.elapsed(), STREAMS));
    // Replay the whole log: a read model rebuilt from scratch.
    let t = Instant::now();
    let replayed = b.read_all(&ReadAll::default())?.len();
    let elapsed = t.elapsed();
    let expected = plan.appends + plan.batches * BATCH;
    if replayed != expected {
        return Err(format!("{engine}: replay read {replayed} events, expected {expected}").into());
    }
    push("js_replay", "per_event", micros_per(elapsed, replayed));
    Ok(())
}
