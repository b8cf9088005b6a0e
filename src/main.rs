//! The `foldlog` command: demo, verify, stat, dump.

mod demo_bank;
mod demo_dir;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use foldlog::{Durability, ExpectedVersion, GroupCommit, NewEvent, Options, ReadAll, Store};
use indicatif::{ProgressBar, ProgressStyle};

mod bench_cmd;

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
    /// Check every record of a log (read-only); exits non-zero on corruption.
    Verify {
        /// Data directory.
        dir: PathBuf,
    },
    /// Print segments, events, streams, bytes, first and last position.
    Stat {
        /// Data directory.
        dir: PathBuf,
        /// Also list every stream with its event count.
        #[arg(long)]
        streams: bool,
    },
    /// Print events, one per line.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Demo { dir, replace, events, streams } => {
            // The default directory is the demo's own: a second `foldlog demo` just works. A directory the
            // user names is replaced only when asked.
            let replace = replace || dir.is_none();
            let dir = dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DEMO_DIR));
            demo(&dir, replace, events, streams.max(1))
        }
        Command::Verify { dir } => verify(&dir),
        Command::Stat { dir, streams } => stat(&dir, streams),
        Command::Dump { dir, stream, from, limit } => dump(&dir, stream.as_deref(), from, limit),
        Command::Bench { events, dir } => {
            bench_cmd::run(events, dir.as_deref()).map(|()| ExitCode::SUCCESS).map_err(|e| e as _)
        }
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("foldlog: {e}");
            ExitCode::from(2)
        }
    }
}

const DEFAULT_DEMO_DIR: &str = "foldlog-data/demo";

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

fn read_only() -> Options {
    Options { read_only: true, create_if_missing: false, ..Options::default() }
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

fn rate(n: u64, d: Duration) -> String {
    let per_s = n as f64 / d.as_secs_f64().max(1e-9);
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.0} k/s", per_s / 1e3)
    }
}

/// A small deterministic generator so the demo needs no extra crate.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn demo(dir: &Path, replace: bool, events: u64, streams: u64) -> CliResult {
    // Held until the end: a second demo on this directory is refused while this one runs.
    let owned = demo_dir::claim(dir, replace, &["bank"])?;
    let options = Options {
        durability: Durability::Group(GroupCommit::default()),
        // The directory holds the demo's marker and bank/ next to the log: the claim above checked it.
        create_in_non_empty: true,
        ..Options::default()
    };
    println!("foldlog demo: {events} events over {streams} streams into {}", dir.display());
    println!("durability: group commit (sync every 1,000 appends, 4 MiB or 10 ms)\n");
    let store = Store::open_with(dir, options.clone())?;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut payload = [0u8; 100];
    let kinds = ["Deposited", "Withdrawn", "Renamed"];
    let pb = bar(events, "append");
    let started = Instant::now();
    for i in 0..events {
        let stream = format!("account-{}", next_rand(&mut seed) % streams);
        for chunk in payload.chunks_mut(8) {
            chunk.copy_from_slice(&next_rand(&mut seed).to_le_bytes()[..chunk.len()]);
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
    println!(
        "appended  {events} events in {:.2?}: {} ({:.0} MB/s of frames), durable through position {}",
        append_time,
        rate(events, append_time),
        stats.frame_bytes as f64 / 1e6 / append_time.as_secs_f64(),
        store.durable_position().saturating_sub(1)
    );

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
    println!(
        "replayed  {n} events in {:.2?}: {} (CRC and archive checked, zero-copy; {:.0} MB payload)",
        replay_time,
        rate(n, replay_time),
        bytes as f64 / 1e6
    );

    let started = Instant::now();
    let mut read = 0u64;
    for s in 0..1000u64 {
        read += store.read_stream(&format!("account-{}", s % streams), 0).count() as u64;
    }
    println!("streams   read 1,000 streams ({read} events) in {:.2?}", started.elapsed());

    store.close()?;
    let started = Instant::now();
    let store = Store::open_with(dir, options)?;
    let report = store.recovery_report().clone();
    let first = store.read_stream("account-0", 0).next().transpose()?.map(|e| e.position());
    println!(
        "reopened  in {:.2?} (checkpoint: {:?}; {} of {} segments scanned); first event of account-0 at {:?}",
        started.elapsed(),
        report.checkpoint,
        report.segments_scanned,
        report.segments,
        first
    );
    let stats = store.stats();
    println!(
        "on disk   {} segments, {:.1} MB of frames ({:.1} MB preallocated), index {:.1} MB in RAM ({:.1} B/event)",
        stats.segments,
        stats.frame_bytes as f64 / 1e6,
        stats.file_bytes as f64 / 1e6,
        stats.index_memory_bytes as f64 / 1e6,
        stats.index_memory_bytes as f64 / stats.events.max(1) as f64
    );
    println!(
        "\nTry: foldlog stat {0} | foldlog verify {0} | foldlog dump {0} --stream account-7",
        dir.display()
    );
    demo_bank::run(&owned.dir.join("bank"))?;
    drop(owned);
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> CliResult {
    let store = Store::open_with(dir, Options { crc_every_read: true, ..read_only() })?;
    let report = store.recovery_report().clone();
    let total = store.next_position();
    let pb = bar(total, "verify");
    let mut n = 0u64;
    let mut failure: Option<String> = None;
    for e in store.read_all(0) {
        match e {
            Ok(_) => n += 1,
            Err(err) => {
                failure = Some(err.to_string());
                break;
            }
        }
        if n.is_multiple_of(65536) {
            pb.set_position(n);
        }
    }
    // Per-stream reads check the index against the frames it points at.
    let mut stream_events = 0u64;
    if failure.is_none() {
        'streams: for id in store.streams() {
            let mut expect = None;
            for e in store.read_stream(&id, 0) {
                match e {
                    Ok(e) => {
                        if expect.is_some_and(|v| v != e.stream_version()) {
                            failure =
                                Some(format!("stream {id:?}: version {} out of order", e.stream_version()));
                            break 'streams;
                        }
                        expect = Some(e.stream_version() + 1);
                        stream_events += 1;
                    }
                    Err(err) => {
                        failure = Some(err.to_string());
                        break 'streams;
                    }
                }
            }
        }
    }
    pb.finish_and_clear();
    println!("segments: {} ({} scanned on open)", report.segments, report.segments_scanned);
    println!("checkpoint: {:?}", report.checkpoint);
    if let Some((path, off, len)) = &report.torn_tail {
        println!("torn tail: {len} bytes at {}:{off} (not cut: verify is read-only)", path.display());
    }
    println!("events checked: {n} of {total} in global order, {stream_events} through the stream index");
    match failure {
        None if n == total && stream_events == total => {
            println!("OK");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            println!("CORRUPT: counts disagree");
            Ok(ExitCode::from(1))
        }
        Some(e) => {
            println!("CORRUPT: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn stat(dir: &Path, list_streams: bool) -> CliResult {
    let store = Store::open_with(dir, read_only())?;
    let s = store.stats();
    println!("directory:        {}", dir.display());
    println!("format version:   {}", foldlog::FORMAT_VERSION);
    println!("segments:         {}", s.segments);
    println!("events:           {}", s.events);
    match store.head() {
        Some(h) => println!("positions:        0 ..= {h}"),
        None => println!("positions:        (empty)"),
    }
    println!("streams:          {}", s.streams);
    println!("frame bytes:      {}", s.frame_bytes);
    println!("file bytes:       {} (preallocated)", s.file_bytes);
    println!("index RAM:        {} bytes", s.index_memory_bytes);
    println!("checkpoint:       {:?}", store.recovery_report().checkpoint);
    if list_streams {
        for (id, n) in store.stream_counts() {
            println!("{n:>10}  {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dump(dir: &Path, stream: Option<&str>, from: u64, limit: Option<u64>) -> CliResult {
    let store = Store::open_with(dir, read_only())?;
    let events: Box<dyn Iterator<Item = foldlog::Result<foldlog::EventRef<'_>>>> = match stream {
        Some(s) => Box::new(store.read_stream(s, from).take(limit.unwrap_or(u64::MAX) as usize)),
        None => Box::new(store.read_all_with(ReadAll { from, limit, ..ReadAll::default() })),
    };
    for e in events {
        let e = e?;
        let payload = match std::str::from_utf8(e.payload()) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
            _ => format!("<{} bytes>", e.payload().len()),
        };
        println!(
            "{:>10}  {}@{}  {}  v{}  {}",
            e.position(),
            e.stream_id(),
            e.stream_version(),
            e.event_type(),
            e.schema_version(),
            payload
        );
    }
    Ok(ExitCode::SUCCESS)
}
