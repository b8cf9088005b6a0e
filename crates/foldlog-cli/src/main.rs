//! The `foldlog` command: demo, verify, stat, dump, salvage, export, import, backup, forget, bench.
//!
//! Every command writes through a locked stdout and treats a closed pipe (`foldlog dump DIR | head`) as a
//! normal end. Exit statuses (docs/operations.md): 0 success, 1 corruption found, 2 usage or I/O error.

use foldlog_bank as demo_bank;
use foldlog_bank::demo_dir;
mod export_cmd;
mod retention_cmd;
mod scavenge_cmd;
mod tail_cmd;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use foldlog::verify::{verify_dir, VerifyReport};
use foldlog::{Durability, Error, ExpectedVersion, GroupCommit, NewEvent, Options, ReadAll, Store};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Parser)]
#[command(name = "foldlog", version, about = "An embedded event-sourcing storage engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write and replay a real log in a directory of its own, and report how fast.
    Demo {
        /// Directory the demo owns: created if missing; otherwise it must be empty or made by an earlier demo
        /// run. Default foldlog-data/demo, where an earlier run's stores are replaced automatically.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replace the stores an earlier demo run left in --dir (only files recognised as foldlog's are
        /// removed; anything else makes the demo refuse).
        #[arg(long)]
        replace: bool,
        /// Events to append, one per append call.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Streams to spread them over.
        #[arg(long, default_value_t = 10_000)]
        streams: u64,
    },
    /// Check every frame of every segment and every read path (read-only). Exit 0 clean, 1 corruption
    /// found, 2 usage or I/O error.
    Verify {
        /// Data directory.
        dir: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete a stream: every event of it is hidden from every read, and appends to it are refused from
    /// now on (written to the log, so followers and backups see it). Refused while another process writes
    /// the store: stop it first, or delete through it (`Store::delete_stream`).
    DeleteStream {
        /// Data directory.
        dir: PathBuf,
        /// The stream.
        stream: String,
        /// The stream's last version as you last saw it (a number), or `any`, or `exists`: a stream that
        /// moved on since is refused, and nothing is written.
        #[arg(long)]
        expected: ExpectedArg,
    },
    /// Forget an encrypted stream: destroy its key, so that its events stay in the log (positions, versions,
    /// types) but their content can never be read again, here or in any backup taken afterwards. Refused
    /// while another process writes the store: forget through that process (`Vault::forget_stream`), or stop
    /// it first.
    Forget {
        /// Data directory.
        dir: PathBuf,
        /// The stream (one written through a `Vault`).
        stream: String,
    },
    /// Truncate a stream: its events below a version are hidden from every read (written to the log).
    /// Refused while another process writes the store, as `delete-stream` is.
    Truncate {
        /// Data directory.
        dir: PathBuf,
        /// The stream.
        stream: String,
        /// The first version that stays visible.
        #[arg(long)]
        before: u64,
        /// The stream's last version as you last saw it (a number), or `any`, or `exists`.
        #[arg(long)]
        expected: ExpectedArg,
    },
    /// List the retention rules, or set one for a stream or a stream-id prefix: reads show only the last
    /// `--max-count` events and those younger than `--max-age` (nothing is removed; `--clear` brings them
    /// back). Setting is written to the log and refused while another process writes the store, as
    /// `delete-stream` is (set it through that process: `Store::set_retention`); listing is read-only.
    Retention {
        /// Data directory.
        dir: PathBuf,
        /// The rule is for this stream.
        #[arg(long, conflicts_with = "prefix")]
        stream: Option<String>,
        /// The rule is for every stream whose id starts with this (a stream's own rule beats it).
        #[arg(long)]
        prefix: Option<String>,
        /// Keep at most this many of each stream's last events.
        #[arg(long)]
        max_count: Option<u64>,
        /// Keep the events appended at most this long ago: a whole number and s, m, h, d or w (`30d`).
        #[arg(long)]
        max_age: Option<retention_cmd::Age>,
        /// Remove the target's rule.
        #[arg(long, conflicts_with_all = ["max_count", "max_age"])]
        clear: bool,
    },
    /// Rewrite the sealed segments without the events truncations, deletions and retention rules hide
    /// (each stream's last event, and its newest snapshot's, stay), keeping every position; `--dry-run` reports exactly what it would
    /// remove, per segment and per stream, and writes nothing. A real run is refused while another process
    /// writes the store (run it through that process: `Store::scavenge`); a dry run is read-only.
    Scavenge {
        /// Data directory.
        dir: PathBuf,
        /// Report only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print segments, events, streams, bytes, first and last position (read-only).
    Stat {
        /// Data directory.
        dir: PathBuf,
        /// Also list every stream with its event count.
        #[arg(long)]
        streams: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print events, one per line: position, stream@version, type, schema, timestamp, metadata, payload
    /// (read-only).
    Dump {
        /// Data directory.
        dir: PathBuf,
        /// Only this stream (in version order).
        #[arg(long)]
        stream: Option<String>,
        /// First global position (or stream version with --stream).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// How to show payloads and metadata: hex, text (UTF-8, invalid bytes replaced), or auto (text when
        /// the bytes are printable UTF-8, else hex).
        #[arg(long, value_enum, default_value_t = Bytes::Auto)]
        payload: Bytes,
    },
    /// Copy every intact event of a damaged store into a new store and say exactly which positions and
    /// streams were lost. SRC is only read. Exit 0 nothing lost, 1 something lost, 2 usage or I/O error.
    Salvage {
        /// The damaged store (only read; a writer may have it open, and then what it committed is copied).
        src: PathBuf,
        /// The new store: a directory that does not exist yet, or an empty one.
        dst: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the last events, then follow the store like `tail -f`: new events appear as a writer (in any
    /// process) commits them. Read-only; runs beside the writer. Stop it with Ctrl-C.
    Tail {
        /// Data directory.
        dir: PathBuf,
        /// Only events of this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Only events of this type (repeat for several).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// How many of the existing (matching) events to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// Start at this global position instead (overrides -n).
        #[arg(long)]
        from: Option<u64>,
        /// Print what is there and exit instead of following.
        #[arg(long)]
        no_follow: bool,
        /// How to show payloads and metadata, as for `dump`.
        #[arg(long, value_enum, default_value_t = Bytes::Auto)]
        payload: Bytes,
    },
    /// Write the log as JSON Lines to stdout: a header, every event in global order, then the consumer
    /// positions (read-only).
    Export {
        /// Data directory.
        dir: PathBuf,
        /// Write payloads and metadata as UTF-8 text when they are valid UTF-8 (else base64).
        #[arg(long)]
        text: bool,
    },
    /// Read an export (JSON Lines) from stdin into a new store, keeping positions, versions, ids and
    /// timestamps.
    Import {
        /// The new store: a directory that does not exist yet, or an empty one.
        dir: PathBuf,
    },
    /// Copy a store into a new directory, up to its durable position (sealed segments are hard-linked where
    /// possible). Read-only: a writer may keep appending meanwhile.
    Backup {
        /// The store (read-only).
        src: PathBuf,
        /// The backup: a directory that does not exist yet, or an empty one.
        dst: PathBuf,
        /// Copy every byte instead of hard-linking sealed segments (for a backup on another device).
        #[arg(long)]
        copy: bool,
    },
    /// Measure foldlog against a raw write()+fdatasync file on this machine (about 10-20 s) and print a table.
    Bench {
        /// Events per scenario.
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        /// Parent of the scratch directory (default: the system temp dir); removed afterwards.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// An expected version on the command line: a stream's last version, `any` or `exists`.
#[derive(Clone, Copy, Debug)]
struct ExpectedArg(ExpectedVersion);

impl std::str::FromStr for ExpectedArg {
    type Err = String;

    fn from_str(s: &str) -> Result<ExpectedArg, String> {
        match s {
            "any" => Ok(ExpectedArg(ExpectedVersion::Any)),
            "exists" => Ok(ExpectedArg(ExpectedVersion::StreamExists)),
            n => n
                .parse()
                .map(|v| ExpectedArg(ExpectedVersion::Exact(v)))
                .map_err(|_| format!("{n:?} is not a version, `any` or `exists`")),
        }
    }
}

/// How `dump` shows payload and metadata bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Bytes {
    /// Lowercase hex.
    Hex,
    /// UTF-8 text, quoted and escaped; invalid bytes are replaced.
    Text,
    /// Text when the bytes are printable UTF-8, hex otherwise.
    Auto,
}

/// Corruption found (verify, or a read that hit damage).
const EXIT_CORRUPT: u8 = 1;
/// Usage or I/O error.
const EXIT_ERROR: u8 = 2;

const DEFAULT_DEMO_DIR: &str = "foldlog-data/demo";

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, dir) = match &cli.command {
        Command::Demo { dir, .. } => ("demo", Some(dir.clone().unwrap_or_else(|| DEFAULT_DEMO_DIR.into()))),
        Command::Verify { dir, .. } => ("verify", Some(dir.clone())),
        Command::Stat { dir, .. } => ("stat", Some(dir.clone())),
        Command::Dump { dir, .. } => ("dump", Some(dir.clone())),
        Command::Tail { dir, .. } => ("tail", Some(dir.clone())),
        Command::Salvage { src, .. } => ("salvage", Some(src.clone())),
        Command::Export { dir, .. } => ("export", Some(dir.clone())),
        Command::Import { dir } => ("import", Some(dir.clone())),
        Command::Backup { src, .. } => ("backup", Some(src.clone())),
        Command::Bench { dir, .. } => ("bench", dir.clone()),
        Command::DeleteStream { dir, .. } => ("delete-stream", Some(dir.clone())),
        Command::Truncate { dir, .. } => ("truncate", Some(dir.clone())),
        Command::Retention { dir, .. } => ("retention", Some(dir.clone())),
        Command::Forget { dir, .. } => ("forget", Some(dir.clone())),
        Command::Scavenge { dir, .. } => ("scavenge", Some(dir.clone())),
    };
    let r = match cli.command {
        Command::Demo { dir, replace, events, streams } => {
            // The default directory is the demo's own: a second `foldlog demo` just works. A directory the
            // user names is replaced only when asked.
            let replace = replace || dir.is_none();
            let dir = dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DEMO_DIR));
            demo(&dir, replace, events, streams.max(1))
        }
        Command::Verify { dir, json } => verify(&dir, json),
        Command::Stat { dir, streams, json } => stat(&dir, streams, json),
        Command::Dump { dir, stream, from, limit, payload } => {
            dump(&dir, stream.as_deref(), from, limit, payload)
        }
        Command::Tail { dir, stream, types, lines, from, no_follow, payload } => {
            let filter = tail_cmd::Filter { stream, types };
            tail_cmd::tail(&dir, &filter, from, lines, !no_follow, payload)
        }
        Command::Salvage { src, dst, json } => salvage(&src, &dst, json),
        Command::Export { dir, text } => export_cmd::export(&dir, text),
        Command::Import { dir } => export_cmd::import_stdin(&dir),
        Command::Backup { src, dst, copy } => backup(&src, &dst, copy),
        Command::DeleteStream { dir, stream, expected } => control(&dir, &stream, expected.0, None),
        Command::Truncate { dir, stream, before, expected } => {
            control(&dir, &stream, expected.0, Some(before))
        }
        Command::Scavenge { dir, dry_run, json } => scavenge_cmd::scavenge(&dir, dry_run, json),
        Command::Retention { dir, stream, prefix, max_count, max_age, clear } => {
            retention_change(stream, prefix, max_count, max_age, clear)
                .and_then(|change| retention_cmd::retention(&dir, change))
        }
        Command::Forget { dir, stream } => forget(&dir, &stream),
        #[cfg(unix)]
        Command::Bench { events, dir } => {
            foldlog_bench::run(events, dir.as_deref()).map(|()| ExitCode::SUCCESS).map_err(|e| e as _)
        }
        #[cfg(not(unix))]
        Command::Bench { .. } => Err("foldlog bench runs on Unix only".into()),
    };
    match r {
        Ok(code) => code,
        // The reader went away (`| head`): a normal end, nothing to say.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            if let Some(dir) = dir.filter(|d| !message.contains(&d.display().to_string())) {
                message = format!("{}: {message}", dir.display());
            }
            let _ = writeln!(io::stderr(), "foldlog {name}: {message}");
            let corrupt = matches!(e.downcast_ref::<Error>(), Some(Error::Corrupt { .. }));
            ExitCode::from(if corrupt { EXIT_CORRUPT } else { EXIT_ERROR })
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) {
            return true;
        }
        cur = e.source();
    }
    false
}

fn read_only() -> Options {
    Options::default().read_only(true).create_if_missing(false)
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>9} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, {{eta}})"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    pb
}

/// A number with three significant digits (no exponent): 1234 → "1230", 12.345 → "12.3", 0.0123 → "0.0123".
fn sig3(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return "0".into();
    }
    let digits = x.abs().log10().floor() as i32;
    let decimals = (2 - digits).clamp(0, 6) as usize;
    let scale = 10f64.powi(digits - 2);
    let rounded = if digits >= 2 { (x / scale).round() * scale } else { x };
    format!("{rounded:.decimals$}")
}

fn rate(n: u64, d: Duration) -> String {
    let per_s = n as f64 / d.as_secs_f64().max(1e-9);
    if per_s >= 1e6 {
        format!("{} M events/s", sig3(per_s / 1e6))
    } else if per_s >= 1e3 {
        format!("{} k events/s", sig3(per_s / 1e3))
    } else {
        format!("{} events/s", sig3(per_s))
    }
}

fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{} s", sig3(s))
    } else if s >= 1e-3 {
        format!("{} ms", sig3(s * 1e3))
    } else {
        format!("{} µs", sig3(s * 1e6))
    }
}

fn demo(dir: &Path, replace: bool, events: u64, streams: u64) -> CliResult {
    let mut out = io::stdout().lock();
    // Held until the end: a second demo on this directory is refused while this one runs.
    let owned = demo_dir::claim(dir, replace, &["bank"])?;
    let options = Options::default()
        .durability(Durability::Group(GroupCommit::default()))
        // The directory holds the demo's marker and bank/ next to the log: the claim above checked it.
        .create_in_non_empty(true);
    writeln!(out, "foldlog demo: {events} events over {streams} streams into {}", dir.display())?;
    writeln!(out, "durability: group commit (sync every 1,000 appends, 4 MiB or 10 ms)\n")?;
    out.flush()?;
    let store = Store::open_with(dir, options.clone())?;
    demo_append(&mut out, &store, events, streams)?;
    demo_read(&mut out, &store, events, streams)?;
    store.close()?;
    demo_reopen(&mut out, dir, options)?;
    writeln!(
        out,
        "\nTry: foldlog stat {0} | foldlog verify {0} | foldlog dump {0} --stream account-7",
        dir.display()
    )?;
    out.flush()?;
    drop(out);
    demo_bank::run(&owned.dir.join("bank"))?;
    drop(owned);
    Ok(ExitCode::SUCCESS)
}

/// The demo's appends: `events` events of 100 pseudo-random bytes, one per call, over `streams` streams.
fn demo_append(
    out: &mut impl Write,
    store: &Store,
    events: u64,
    streams: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    // The bench's generator: the crate has one, and the demo needs no more than seeded bytes.
    let mut rng = foldlog_bench::Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut payload = [0u8; 100];
    let kinds = ["Deposited", "Withdrawn", "Renamed"];
    let pb = bar(events, "append");
    let started = Instant::now();
    for i in 0..events {
        let stream = format!("account-{}", rng.next_u64() % streams);
        for chunk in payload.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
        let kind = kinds[(i % 3) as usize];
        store.append(&stream, ExpectedVersion::Any, &[NewEvent::new(kind, &payload)])?;
        if i.is_multiple_of(4096) {
            pb.set_position(i);
        }
    }
    store.sync()?;
    let append_time = started.elapsed();
    pb.finish_and_clear();
    let stats = store.stats();
    writeln!(
        out,
        "appended  {events} events in {}: {} ({} MB/s of frames), durable through position {}",
        duration(append_time),
        rate(events, append_time),
        sig3(stats.frame_bytes as f64 / 1e6 / append_time.as_secs_f64().max(1e-9)),
        store.durable_position().saturating_sub(1)
    )?;
    Ok(())
}

/// The demo's reads: the whole log in global order, then 1,000 streams.
fn demo_read(
    out: &mut impl Write,
    store: &Store,
    events: u64,
    streams: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let pb = bar(events, "replay");
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut n = 0u64;
    for e in store.read_all(0) {
        let e = e?;
        bytes += e.payload().len() as u64;
        n += 1;
        if n.is_multiple_of(65536) {
            pb.set_position(n);
        }
    }
    let replay_time = started.elapsed();
    pb.finish_and_clear();
    writeln!(
        out,
        "replayed  {n} events in {}: {} (CRC and archive checked, zero-copy; {} MB payload)",
        duration(replay_time),
        rate(n, replay_time),
        sig3(bytes as f64 / 1e6)
    )?;
    let started = Instant::now();
    let mut read = 0u64;
    for s in 0..1000u64 {
        read += store.read_stream(&format!("account-{}", s % streams), 0).count() as u64;
    }
    writeln!(out, "streams   read 1,000 streams ({read} events) in {}", duration(started.elapsed()))?;
    Ok(())
}

/// The demo's reopen: how long it took, what the checkpoint saved, and what the store holds on disk.
fn demo_reopen(out: &mut impl Write, dir: &Path, options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let store = Store::open_with(dir, options)?;
    let report = store.recovery_report().clone();
    let first = store.read_stream("account-0", 0).next().transpose()?.map(|e| e.position());
    let first = first.map_or_else(|| "(account-0 has no events)".to_owned(), |p| format!("position {p}"));
    writeln!(
        out,
        "reopened  in {} (checkpoint {}; {} of {} segments scanned); first event of account-0 at {first}",
        duration(started.elapsed()),
        report.checkpoint,
        report.segments_scanned,
        report.segments,
    )?;
    let stats = store.stats();
    writeln!(
        out,
        "on disk   {} segments, {:.1} MB of frames ({:.1} MB preallocated), index {:.1} MB in RAM ({:.1} B/event)",
        stats.segments,
        stats.frame_bytes as f64 / 1e6,
        stats.file_bytes as f64 / 1e6,
        stats.index_memory_bytes as f64 / 1e6,
        stats.index_memory_bytes as f64 / stats.events.max(1) as f64
    )?;
    Ok(())
}

#[derive(Serialize)]
struct VerifyJson {
    dir: String,
    clean: bool,
    segments: Vec<SegmentJson>,
    events: u64,
    consumer_frames: u64,
    next_position: u64,
    damage: Vec<DamageJson>,
    torn_tail: Option<TornJson>,
    store: StoreCheck,
}

#[derive(Serialize)]
struct SegmentJson {
    path: String,
    base_position: Option<u64>,
    frames: u64,
    events: u64,
    frames_end: u64,
    durable_end: u64,
}

#[derive(Serialize)]
struct DamageJson {
    path: String,
    offset: u64,
    len: u64,
    /// First affected position (absent when no event is affected).
    first_position: Option<u64>,
    /// One past the last affected position (absent when unknown: every later position).
    end_position: Option<u64>,
    positions: String,
    problem: String,
}

#[derive(Serialize)]
struct TornJson {
    path: String,
    offset: u64,
    len: u64,
}

/// The store-level half of verify: open read-only, read everything in global order and through each stream.
#[derive(Serialize, Default)]
struct StoreCheck {
    opened: bool,
    checkpoint: Option<String>,
    events_read: u64,
    stream_events_read: u64,
    problems: Vec<String>,
}

/// `removed` is the positions a scavenge removed (the walk's gap frames): they hold no event.
fn store_check(dir: &Path, removed: u64) -> Result<StoreCheck, Box<dyn std::error::Error>> {
    let mut check = StoreCheck::default();
    let store = match Store::open_with(dir, read_only().crc_every_read(true)) {
        Ok(store) => store,
        Err(e @ (Error::Corrupt { .. } | Error::InvalidDirectory { .. })) => {
            check.problems.push(format!("the store does not open: {e}"));
            return Ok(check);
        }
        Err(e) => return Err(e.into()),
    };
    check.opened = true;
    check.checkpoint = Some(store.recovery_report().checkpoint.to_string());
    let total = store.next_position().saturating_sub(removed);
    let pb = bar(total, "verify");
    // Every event, hidden ones (truncated or deleted streams) too: verify reads every frame.
    for e in store.read_all_with(ReadAll::default().include_hidden(true)) {
        match e {
            Ok(_) => check.events_read += 1,
            Err(err) => {
                check.problems.push(format!("reading in global order: {err}"));
                break;
            }
        }
        if check.events_read.is_multiple_of(65536) {
            pb.set_position(check.events_read);
        }
    }
    // Per-stream reads check the index against the frames it points at; a damaged stream does not stop the
    // others from being checked.
    for id in store.streams() {
        let mut expect = None;
        for e in store.read_stream(&id, 0) {
            match e {
                Ok(e) if expect.is_some_and(|v| v != e.stream_version()) => {
                    check
                        .problems
                        .push(format!("stream {id:?}: version {} out of order", e.stream_version()));
                    break;
                }
                Ok(e) => {
                    expect = e.stream_version().checked_add(1);
                    check.stream_events_read += 1;
                }
                Err(err) => {
                    check.problems.push(format!("stream {id:?}: {err}"));
                    break;
                }
            }
        }
    }
    pb.finish_and_clear();
    // Stream reads skip the events a truncation or deletion hides: each stream's first visible version
    // minus its first version of them.
    let hidden: u64 = store
        .streams()
        .iter()
        .filter_map(|s| store.stream_state(s))
        .map(|s| s.first_visible.min(s.last_version + 1).saturating_sub(s.first_version))
        .sum();
    let through_streams = check.stream_events_read + hidden;
    if check.problems.is_empty() && (check.events_read != total || through_streams != total) {
        check.problems.push(format!(
            "counts disagree: {total} events in the log ({removed} positions scavenged), {} read in global \
             order, {} through the streams ({hidden} hidden by truncations and deletions)",
            check.events_read, check.stream_events_read
        ));
    }
    Ok(check)
}

fn verify(dir: &Path, json: bool) -> CliResult {
    let walked: VerifyReport = verify_dir(dir)?;
    let store = store_check(dir, walked.removed_positions)?;
    let clean = walked.is_clean() && store.problems.is_empty();
    let code = ExitCode::from(if clean { 0 } else { EXIT_CORRUPT });
    let mut out = io::stdout().lock();
    if json {
        let report = verify_json(dir, clean, &walked, store);
        // Rendered first, so a closed stdout is an `io::Error` like every other write.
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(code);
    }
    print_verify_summary(&mut out, dir, &walked, &store)?;
    for d in &walked.damage {
        writeln!(
            out,
            "DAMAGED:    {} at offset {} ({} bytes): {}; {}",
            d.path.display(),
            d.offset,
            d.len,
            d,
            d.positions
        )?;
    }
    for p in &store.problems {
        writeln!(out, "PROBLEM:    {p}")?;
    }
    if clean {
        writeln!(out, "OK: every frame and every read path checked")?;
    } else {
        writeln!(
            out,
            "CORRUPT: {} damaged range(s), {} read problem(s)",
            walked.damage.len(),
            store.problems.len()
        )?;
        writeln!(
            out,
            "What to do next:\n\
             - Do not open the directory writable yet: copy it first (cp -a DIR DIR.damaged), then work on the copy.\n\
             - Restore from a backup if you have one.\n\
             - Damage only in the last segment: a writable open with Options::recovery = \
             Recovery::TruncateCorruption cuts the log at the first damaged frame, losing the positions listed.\n\
             - Damage in a sealed segment cannot be cut: the positions listed are lost unless a copy has them."
        )?;
    }
    Ok(code)
}

/// Verify's report as JSON: both halves, every damaged range.
fn verify_json(dir: &Path, clean: bool, walked: &VerifyReport, store: StoreCheck) -> VerifyJson {
    VerifyJson {
        dir: dir.display().to_string(),
        clean,
        segments: walked
            .segments
            .iter()
            .map(|s| SegmentJson {
                path: s.path.display().to_string(),
                base_position: s.base_position,
                frames: s.frames,
                events: s.events,
                frames_end: s.frames_end,
                durable_end: s.durable_end,
            })
            .collect(),
        events: walked.events,
        consumer_frames: walked.consumer_frames,
        next_position: walked.next_position,
        damage: walked
            .damage
            .iter()
            .map(|d| {
                let (first_position, end_position) = match &d.positions {
                    foldlog::verify::Affected::None => (None, None),
                    foldlog::verify::Affected::Range(r) => (Some(r.start), Some(r.end)),
                    foldlog::verify::Affected::From(p) => (Some(*p), None),
                };
                DamageJson {
                    path: d.path.display().to_string(),
                    offset: d.offset,
                    len: d.len,
                    first_position,
                    end_position,
                    positions: d.positions.to_string(),
                    problem: d.to_string(),
                }
            })
            .collect(),
        torn_tail: walked.torn_tail.as_ref().map(|t| TornJson {
            path: t.path.display().to_string(),
            offset: t.offset,
            len: t.len,
        }),
        store,
    }
}

/// The lines of verify's text report before the damage: what was walked, the checkpoint, the store's reads
/// and the torn tail.
fn print_verify_summary(
    out: &mut impl Write,
    dir: &Path,
    walked: &VerifyReport,
    store: &StoreCheck,
) -> io::Result<()> {
    let frames: u64 = walked.segments.iter().map(|s| s.frames).sum();
    writeln!(out, "directory:  {}", dir.display())?;
    writeln!(
        out,
        "segments:   {} ({frames} frames walked: {} events, {} consumer positions)",
        walked.segments.len(),
        walked.events,
        walked.consumer_frames
    )?;
    match &store.checkpoint {
        Some(c) => writeln!(out, "checkpoint: {c}")?,
        None => writeln!(out, "checkpoint: not judged (the store did not open)")?,
    }
    if store.opened {
        writeln!(
            out,
            "store:      opened read-only; {} events read in global order, {} through the stream index",
            store.events_read, store.stream_events_read
        )?;
    }
    if let Some(t) = &walked.torn_tail {
        writeln!(
            out,
            "torn tail:  {} bytes at {}:{} (an unfinished write a crash left; never promised durable; the next \
             writable open cuts it)",
            t.len,
            t.path.display(),
            t.offset
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct StatJson {
    dir: String,
    format_version: u32,
    segments: usize,
    events: u64,
    first_position: Option<u64>,
    last_position: Option<u64>,
    durable_position: u64,
    streams: usize,
    frame_bytes: u64,
    file_bytes: u64,
    index_memory_bytes: u64,
    checkpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_counts: Option<Vec<StreamCount>>,
}

#[derive(Serialize)]
struct StreamCount {
    stream: String,
    events: u64,
    /// Versions below this one are hidden (truncated); absent when nothing is.
    #[serde(skip_serializing_if = "Option::is_none")]
    visible_from: Option<u64>,
    /// Deleted: every event hidden, appends refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

impl StreamCount {
    fn of(store: &Store, stream: String, events: u64) -> StreamCount {
        let state = store.stream_state(&stream);
        let hidden = state.filter(|s| s.first_visible > s.first_version && !s.deleted);
        let deleted = state.is_some_and(|s| s.deleted);
        StreamCount { visible_from: hidden.map(|s| s.first_visible), deleted, stream, events }
    }

    /// The line `stat --streams` prints.
    fn line(&self) -> String {
        let (n, id) = (self.events, &self.stream);
        match (self.deleted, self.visible_from) {
            (true, _) => format!("{n:>10}  {id}  (deleted)"),
            (false, Some(v)) => format!("{n:>10}  {id}  (visible from version {v})"),
            (false, None) => format!("{n:>10}  {id}"),
        }
    }
}

fn stat(dir: &Path, list_streams: bool, json: bool) -> CliResult {
    let store = Store::open_with(dir, read_only())?;
    let s = store.stats();
    let checkpoint = store.recovery_report().checkpoint.to_string();
    let mut out = io::stdout().lock();
    if json {
        let first = (s.events > 0).then(|| store.head().map(|h| h + 1 - s.events)).flatten();
        let report = StatJson {
            dir: dir.display().to_string(),
            format_version: foldlog::FORMAT_VERSION,
            segments: s.segments,
            events: s.events,
            first_position: first,
            last_position: store.head(),
            durable_position: s.durable_position,
            streams: s.streams,
            frame_bytes: s.frame_bytes,
            file_bytes: s.file_bytes,
            index_memory_bytes: s.index_memory_bytes,
            checkpoint,
            stream_counts: list_streams.then(|| {
                store
                    .stream_counts()
                    .into_iter()
                    .map(|(stream, events)| StreamCount::of(&store, stream, events))
                    .collect()
            }),
        };
        // Rendered first, so a closed stdout is an `io::Error` like every other write.
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "directory:        {}", dir.display())?;
    writeln!(out, "format version:   {}", foldlog::FORMAT_VERSION)?;
    writeln!(out, "segments:         {}", s.segments)?;
    writeln!(out, "events:           {}", s.events)?;
    match store.head() {
        Some(h) => writeln!(out, "positions:        {} ..= {h}", h + 1 - s.events.max(1))?,
        None => writeln!(out, "positions:        (empty)")?,
    }
    writeln!(out, "durable below:    {}", s.durable_position)?;
    writeln!(out, "streams:          {}", s.streams)?;
    writeln!(out, "frame bytes:      {} ({} MB)", s.frame_bytes, sig3(s.frame_bytes as f64 / 1e6))?;
    writeln!(
        out,
        "file bytes:       {} ({} MB, preallocated)",
        s.file_bytes,
        sig3(s.file_bytes as f64 / 1e6)
    )?;
    writeln!(out, "index RAM:        {} bytes", s.index_memory_bytes)?;
    writeln!(out, "checkpoint:       {checkpoint}")?;
    for (target, rule) in store.retention_rules()? {
        writeln!(out, "retention:        {}", retention_cmd::line(&target, rule))?;
    }
    if list_streams {
        for (id, n) in store.stream_counts() {
            writeln!(out, "{}", StreamCount::of(&store, id, n).line())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dump(dir: &Path, stream: Option<&str>, from: u64, limit: Option<u64>, bytes: Bytes) -> CliResult {
    let store = Store::open_with(dir, read_only())?;
    let limit = limit.unwrap_or(u64::MAX);
    let events: Box<dyn Iterator<Item = foldlog::Result<foldlog::EventRef<'_>>>> = match stream {
        Some(s) => {
            if store.stream_version(s).is_none() {
                return Err(format!("stream {} does not exist in {}", quoted(s), dir.display()).into());
            }
            Box::new(store.read_stream(s, from).take(usize::try_from(limit).unwrap_or(usize::MAX)))
        }
        None => Box::new(store.read_all_with(ReadAll::default().from(from).limit(limit))),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    for e in events {
        write_event(&mut out, &e?, bytes)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One event as `dump` and `tail` print it: position, stream@version, type, schema, timestamp, id, metadata,
/// payload.
fn write_event(out: &mut impl Write, e: &foldlog::EventRef<'_>, bytes: Bytes) -> io::Result<()> {
    write!(
        out,
        "{:>10}  {}@{}  {}  schema {}  {}",
        e.position(),
        e.stream_id(),
        e.stream_version(),
        e.event_type(),
        e.schema_version(),
        rfc3339(e.timestamp_micros()),
    )?;
    if let Some(id) = e.event_id() {
        write!(out, "  id {id:032x}")?;
    }
    if !e.metadata().is_empty() {
        write!(out, "  metadata {}", show(e.metadata(), bytes))?;
    }
    writeln!(out, "  payload {}", show(e.payload(), bytes))
}

#[derive(Serialize)]
struct SalvageJson {
    src: String,
    dst: String,
    complete: bool,
    events_copied: u64,
    source_end: u64,
    end_uncertain: bool,
    /// Lost source positions as `[start, end)` pairs.
    lost: Vec<[u64; 2]>,
    lost_count: u64,
    /// The part of `lost` that went with the damage itself (the rest are stream cuts' intact events).
    lost_to_damage: Vec<[u64; 2]>,
    /// Old → new positions of the copied events: `{old_start, new_start, len}` runs.
    mapping: Vec<RunJson>,
    streams_cut: Vec<CutJson>,
    streams_starting_late: Vec<LateJson>,
    consumers: Vec<ConsumerJson>,
    damage: Vec<String>,
    torn_tail: Option<TornJson>,
    snapshots_skipped: bool,
}

#[derive(Serialize)]
struct RunJson {
    old_start: u64,
    new_start: u64,
    len: u64,
}

#[derive(Serialize)]
struct CutJson {
    stream: String,
    kept_through: u64,
    missing_version: u64,
    dropped_positions: Vec<u64>,
}

#[derive(Serialize)]
struct LateJson {
    stream: String,
    first_version: u64,
}

#[derive(Serialize)]
struct ConsumerJson {
    name: String,
    old_position: u64,
    /// Absent when dropped.
    new_position: Option<u64>,
}

fn positions(r: &std::ops::Range<u64>) -> String {
    match r.end - r.start {
        1 => format!("position {}", r.start),
        n => format!("positions {}..={} ({n} events)", r.start, r.end - 1),
    }
}

fn salvage(src: &Path, dst: &Path, json: bool) -> CliResult {
    use foldlog::salvage::SalvageOptions;
    let r = foldlog::salvage::salvage(src, dst, &SalvageOptions::default())?;
    let code = ExitCode::from(if r.is_complete() { 0 } else { EXIT_CORRUPT });
    let damage: Vec<String> = r
        .damage
        .iter()
        .map(|d| {
            format!("{} at offset {} ({} bytes): {}; {}", d.path.display(), d.offset, d.len, d, d.positions)
        })
        .collect();
    let mut out = io::stdout().lock();
    if json {
        let report = salvage_json(src, dst, &r, damage);
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(code);
    }
    writeln!(out, "salvaged:   {} -> {}", src.display(), dst.display())?;
    writeln!(
        out,
        "copied:     {} of {} events{}",
        r.events_copied,
        r.source_end,
        if r.end_uncertain { " (the damage reaches the end of the log: more may have followed)" } else { "" }
    )?;
    print_salvage_losses(&mut out, &r)?;
    print_salvage_moves(&mut out, &r)?;
    for d in &damage {
        writeln!(out, "damage:     {d}")?;
    }
    if let Some(t) = &r.torn_tail {
        writeln!(
            out,
            "torn tail:  {} bytes at {}:{} (never promised durable; not copied)",
            t.len,
            t.path.display(),
            t.offset
        )?;
    }
    if r.snapshots_skipped {
        writeln!(out, "snapshots:  not copied (derived data; aggregates rebuild them on load)")?;
    }
    if r.is_complete() {
        writeln!(out, "OK: every event and consumer position was copied")?;
    } else {
        writeln!(
            out,
            "INCOMPLETE: {} position(s) lost; the new store holds everything else",
            r.lost_count()
        )?;
    }
    Ok(code)
}

/// Long lists in salvage's text report are cut short after this many lines; --json always has all of it.
const SALVAGE_LINES_MAX: usize = 20;

/// Salvage's report as JSON, every list in full.
fn salvage_json(
    src: &Path,
    dst: &Path,
    r: &foldlog::salvage::SalvageReport,
    damage: Vec<String>,
) -> SalvageJson {
    SalvageJson {
        src: src.display().to_string(),
        dst: dst.display().to_string(),
        complete: r.is_complete(),
        events_copied: r.events_copied,
        source_end: r.source_end,
        end_uncertain: r.end_uncertain,
        lost: r.lost.iter().map(|l| [l.start, l.end]).collect(),
        lost_count: r.lost_count(),
        lost_to_damage: r.lost_to_damage().iter().map(|l| [l.start, l.end]).collect(),
        mapping: r
            .mapping
            .iter()
            .map(|m| RunJson { old_start: m.old_start, new_start: m.new_start, len: m.len })
            .collect(),
        streams_cut: r
            .streams_cut
            .iter()
            .map(|c| CutJson {
                stream: c.stream.clone(),
                kept_through: c.kept_through,
                missing_version: c.missing_version,
                dropped_positions: c.dropped_positions.clone(),
            })
            .collect(),
        streams_starting_late: r
            .streams_starting_late
            .iter()
            .map(|(s, v)| LateJson { stream: s.clone(), first_version: *v })
            .collect(),
        consumers: r
            .consumers
            .iter()
            .map(|c| ConsumerJson {
                name: c.name.clone(),
                old_position: c.old_position,
                new_position: c.new_position,
            })
            .collect(),
        damage,
        torn_tail: r.torn_tail.as_ref().map(|t| TornJson {
            path: t.path.display().to_string(),
            offset: t.offset,
            len: t.len,
        }),
        snapshots_skipped: r.snapshots_skipped,
    }
}

/// What salvage could not copy: positions lost with the damage, streams cut after a lost version, streams
/// that may have lost their first events.
fn print_salvage_losses(out: &mut impl Write, r: &foldlog::salvage::SalvageReport) -> io::Result<()> {
    let with_damage = r.lost_to_damage();
    for l in with_damage.iter().take(SALVAGE_LINES_MAX) {
        writeln!(out, "LOST:       {} (with the damage)", positions(l))?;
    }
    if with_damage.len() > SALVAGE_LINES_MAX {
        writeln!(
            out,
            "LOST:       ... and {} more ranges (--json lists all)",
            with_damage.len() - SALVAGE_LINES_MAX
        )?;
    }
    for c in &r.streams_cut {
        let (first, last) = (c.dropped_positions.first(), c.dropped_positions.last());
        let span = match (first, last) {
            (Some(f), Some(l)) if f != l => format!(", positions {f} to {l}"),
            (Some(f), _) => format!(", position {f}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "STREAM CUT: {} kept through version {}; version {} was lost, so its {} later intact event(s){span} \
             were left out (LOST too)",
            quoted(&c.stream),
            c.kept_through,
            c.missing_version,
            c.dropped_positions.len()
        )?;
    }
    for (s, v) in &r.streams_starting_late {
        writeln!(
            out,
            "MAYBE CUT:  {} starts at version {v}, after a loss: its first events may be lost",
            quoted(s)
        )?;
    }
    Ok(())
}

/// What moved in the copy: consumer positions, and the runs of positions that changed.
fn print_salvage_moves(out: &mut impl Write, r: &foldlog::salvage::SalvageReport) -> io::Result<()> {
    for c in &r.consumers {
        match c.new_position {
            Some(p) => {
                writeln!(out, "consumer:   {} at position {} (was {})", quoted(&c.name), p, c.old_position)?
            }
            None => writeln!(
                out,
                "CONSUMER DROPPED: {} was at {}, before every copied event",
                quoted(&c.name),
                c.old_position
            )?,
        }
    }
    if r.mapping.len() > 1 || r.mapping.first().is_some_and(|m| m.old_start != m.new_start) {
        writeln!(out, "positions moved (old -> new):")?;
        if r.mapping.len() > SALVAGE_LINES_MAX {
            writeln!(
                out,
                "            ({} runs; the first {SALVAGE_LINES_MAX} follow, --json lists all)",
                r.mapping.len()
            )?;
        }
        for m in r.mapping.iter().take(SALVAGE_LINES_MAX) {
            writeln!(
                out,
                "            {}..={} -> {}..={}",
                m.old_start,
                m.old_start + m.len - 1,
                m.new_start,
                m.new_start + m.len - 1
            )?;
        }
    }
    Ok(())
}

/// The change `retention`'s flags ask for: `None` to list. A target needs limits or `--clear`, and limits
/// need a target.
fn retention_change(
    stream: Option<String>,
    prefix: Option<String>,
    max_count: Option<u64>,
    max_age: Option<retention_cmd::Age>,
    clear: bool,
) -> Result<Option<retention_cmd::Change>, Box<dyn std::error::Error>> {
    let target = match (stream, prefix) {
        (Some(s), _) => Some(foldlog::RetentionTarget::Stream(s)),
        (None, Some(p)) => Some(foldlog::RetentionTarget::Prefix(p)),
        (None, None) => None,
    };
    let mut rule = foldlog::Retention::default();
    rule.max_count = max_count;
    rule.max_age = max_age.map(|a| a.0);
    match target {
        None if clear || !rule.is_unlimited() => {
            Err("name the rule's target: --stream ID or --prefix P".into())
        }
        None => Ok(None),
        Some(_) if !clear && rule.is_unlimited() => {
            Err("give --max-count, --max-age or both, or --clear to remove the rule".into())
        }
        Some(target) => Ok(Some(retention_cmd::Change { target, rule })),
    }
}

/// `delete-stream` (`before` is `None`) and `truncate`: opens the store for writing (refused, with
/// `Error::Locked`, while another process writes it), writes the control, and closes, which syncs it.
fn control(dir: &Path, stream: &str, expected: ExpectedVersion, before: Option<u64>) -> CliResult {
    let store =
        Store::open_with(dir, Options::default().create_if_missing(false).durability(Durability::Always))?;
    match before {
        None => store.delete_stream(stream, expected)?,
        Some(version) => store.truncate_before(stream, expected, version)?,
    }
    let state = store.stream_state(stream).ok_or("the stream vanished")?;
    store.close()?;
    let mut out = io::stdout().lock();
    match before {
        None => writeln!(out, "deleted stream {} (last version {})", quoted(stream), state.last_version)?,
        Some(_) if state.first_visible > state.last_version => writeln!(
            out,
            "truncated stream {}: no version stays visible; appends go on at version {}",
            quoted(stream),
            state.last_version + 1
        )?,
        Some(_) => writeln!(
            out,
            "truncated stream {}: versions {} ..= {} stay visible",
            quoted(stream),
            state.first_visible,
            state.last_version
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `forget`: opens the store for writing (refused while another process writes it: its vault keeps the key
/// table, so the forget must go through it), destroys the stream's key and closes.
fn forget(dir: &Path, stream: &str) -> CliResult {
    let options = Options::default().create_if_missing(false).durability(Durability::Always);
    let store = match Store::open_with(dir, options) {
        Err(Error::Locked { .. }) => {
            return Err(format!(
                "the store is locked: another process has it open (stop it, or forget {} through it with \
                 Vault::forget_stream)",
                quoted(stream)
            )
            .into())
        }
        r => r?,
    };
    let vault = foldlog::Vault::open(&store)?;
    let already = vault.is_forgotten(stream)?;
    vault.forget_stream(stream)?;
    drop(vault);
    let events = store.read_stream(stream, 0).count();
    store.close()?;
    let mut out = io::stdout().lock();
    if already {
        writeln!(out, "stream {} was already forgotten ({events} events keep their place)", quoted(stream))?;
    } else {
        writeln!(
            out,
            "forgot stream {}: its key is destroyed; its {events} events keep their place, their content is gone",
            quoted(stream)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn backup(src: &Path, dst: &Path, copy: bool) -> CliResult {
    let options = foldlog::backup::BackupOptions::default().hard_links(!copy);
    let r = foldlog::backup::backup(src, dst, &options)?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "backed up {} events ({} segments: {} hard-linked, {} copied, {} bytes) from {} to {}",
        r.durable_position,
        r.segments,
        r.linked,
        r.copied,
        r.bytes_copied,
        src.display(),
        dst.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A string in double quotes with JSON escapes, so control characters and quotes cannot garble a line.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

fn show(b: &[u8], how: Bytes) -> String {
    let printable = |s: &str| !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    match how {
        Bytes::Text => quoted(&String::from_utf8_lossy(b)),
        Bytes::Auto => match std::str::from_utf8(b) {
            Ok(s) if printable(s) => quoted(s),
            _ => format!("{} B hex {}", b.len(), hex(b)),
        },
        Bytes::Hex => hex(b),
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// Microseconds since the Unix epoch as an RFC 3339 UTC timestamp with microseconds.
fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = date_of(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The Gregorian calendar date `days` after 1970-01-01. Counts in 400-year cycles (146,097 days each) of
/// years that start on March 1, so the leap day is the last day of a year and months have a fixed pattern.
fn date_of(days: i64) -> (i64, i64, i64) {
    const CYCLE: i64 = 146_097;
    // 1970-01-01 is day 719,468 counted from 0000-03-01.
    let z = days + 719_468;
    let cycle = z.div_euclid(CYCLE);
    let day_of_cycle = z.rem_euclid(CYCLE);
    let year_of_cycle =
        (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524 - day_of_cycle / (CYCLE - 1)) / 365;
    let day_of_year = day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    // Months from March: 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 28/29 days follow a 153-days-per-5 rhythm.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(951_825_600_000_001), "2000-02-29T12:00:00.000001Z");
        assert_eq!(rfc3339(1_796_083_200_000_000), "2026-12-01T00:00:00.000000Z");
        assert_eq!(rfc3339(4_107_542_400_000_000), "2100-03-01T00:00:00.000000Z");
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(sig3(1234.5), "1230");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(0.012345), "0.0123");
        assert_eq!(sig3(999.6), "1000");
        assert_eq!(rate(2_500_000, Duration::from_secs(1)), "2.50 M events/s");
        assert_eq!(rate(500, Duration::from_secs(1)), "500 events/s");
        assert_eq!(duration(Duration::from_micros(1500)), "1.50 ms");
    }

    #[test]
    fn bytes_show_as_hex_or_text() {
        assert_eq!(show(b"\x00\xff", Bytes::Auto), "2 B hex 00ff");
        assert_eq!(show(b"hi \"x\"", Bytes::Auto), "\"hi \\\"x\\\"\"");
        assert_eq!(show(b"hi", Bytes::Hex), "6869");
        assert_eq!(show(b"a\xffb", Bytes::Text), "\"a\u{fffd}b\"");
    }
}
