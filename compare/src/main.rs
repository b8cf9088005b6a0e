//! The comparison harness: one workload, several engines, one run.
//!
//! foldlog, SQLite (rusqlite, bundled), redb, fjall and the raw `write()` + `fdatasync` baseline run the same
//! scenarios on the same events, each with the setting that gives it the same durability promise. The
//! workload, the scenarios, the raw baseline and the foldlog adapter are shared with `foldlog bench`
//! (`crates/foldlog-bench`); this file adds the three peers, repetitions and CSV output.
//!
//! ```sh
//! cargo run --release --manifest-path compare/Cargo.toml -- [--quick] [--csv out.csv]
//! ```
//!
//! `--dcb` runs the dynamic-consistency-boundary comparison instead (foldlog and SQLite only, `dcb.rs`):
//! read-decide-append commands, each synced and with group commit, beside plain appends of the same events.
//!
//! `--jetstream` runs the distributed comparison instead (`jetstream.rs`): the same calls through
//! `foldlog_jetstream::Backend` on the embedded store and on nats-server at replicas 1 and 3, on loopback.
//!
//! `report` as the first argument turns such a CSV (and criterion's results) into docs/benchmarks.md's
//! tables and docs/plots/*.svg instead; see `report/mod.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod dcb;
mod jetstream;
mod peers;
mod report;

use foldlog_bench::{
    print_settings, print_table, run_engine, summarize, EngineSpec, Mode, Plan, Summary, Workload,
};

struct Args {
    quick: bool,
    csv: Option<PathBuf>,
    events: Option<usize>,
    reps: Option<usize>,
    engines: Option<Vec<String>>,
    dir: Option<PathBuf>,
    dcb: bool,
    jetstream: bool,
    commands: Option<usize>,
}

const USAGE: &str = "usage: foldlog-compare [--quick] [--csv FILE] [--events N] [--reps N] \
[--engines foldlog,raw,sqlite,redb,fjall] [--dir PARENT]\n       foldlog-compare --dcb [--quick] [--csv FILE] \
[--commands N] [--reps N] [--engines foldlog,sqlite] [--dir PARENT]\n       foldlog-compare --jetstream [--quick] \
[--csv FILE] [--reps N] [--engines foldlog-always,foldlog-never,jetstream-r1,jetstream-r3] [--dir PARENT]\n       \
foldlog-compare report [--csv FILE] [--dcb-csv FILE] [--jetstream-csv FILE] [--criterion DIR] [--doc FILE] \
[--plots DIR]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        csv: None,
        events: None,
        reps: None,
        engines: None,
        dir: None,
        dcb: false,
        jetstream: false,
        commands: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--csv" => a.csv = Some(value()?.into()),
            "--events" => a.events = Some(value()?.parse().map_err(|e| format!("--events: {e}"))?),
            "--reps" => a.reps = Some(value()?.parse().map_err(|e| format!("--reps: {e}"))?),
            "--engines" => a.engines = Some(value()?.split(',').map(str::to_owned).collect()),
            "--dir" => a.dir = Some(value()?.into()),
            "--dcb" => a.dcb = true,
            "--jetstream" => a.jetstream = true,
            "--commands" => a.commands = Some(value()?.parse().map_err(|e| format!("--commands: {e}"))?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> std::process::ExitCode {
    // The report lives in the harness's binary so that the whole benchmark pipeline is one Rust package.
    let result = if std::env::args().nth(1).as_deref() == Some("report") {
        report::run(std::env::args().skip(2))
    } else {
        run()
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("foldlog-compare: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> foldlog_bench::BenchResult<()> {
    let args = parse_args()?;
    if args.dcb && args.jetstream {
        return Err("--dcb and --jetstream are separate runs".into());
    }
    if args.dcb {
        return run_dcb(&args);
    }
    if args.jetstream {
        return run_jetstream(&args);
    }
    let all_engines: [&EngineSpec; 5] =
        [&foldlog_bench::FOLDLOG, &foldlog_bench::RAW, &peers::SQLITE, &peers::REDB, &peers::FJALL];
    let engines: Vec<&EngineSpec> = match &args.engines {
        None => all_engines.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| all_engines.iter().copied().find(|e| e.name == n).ok_or(format!("no engine {n}")))
            .collect::<Result<_, _>>()?,
    };
    let plan = Plan {
        events: args.events.unwrap_or(if args.quick { 100_000 } else { 1_000_000 }),
        streams: 10_000,
        always_for: Duration::from_millis(if args.quick { 500 } else { 3000 }),
        reads: 1000,
    };
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let scratch = tempfile::Builder::new()
        .prefix("foldlog-compare-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let workload = format!(
        "{} events, {} streams (Zipf s=1), 3 event types, {}-byte payloads (half random), {} run(s)",
        plan.events,
        plan.streams,
        foldlog_bench::PAYLOAD_BYTES,
        reps
    );
    let meta = machine(scratch.path(), workload);
    for (k, v) in &meta {
        eprintln!("{k}: {v}");
    }

    let started = Instant::now();
    let w = Workload::new(plan.events, plan.streams, 42);
    eprintln!("workload: {} events generated in {:.1?}", w.len(), started.elapsed());
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for rep in 0..reps {
        // Engines interleaved within each repetition, so a slow spell of the shared machine hits all of them.
        for spec in &engines {
            let mut progress =
                |what: &str| eprintln!("[{:>6.1?} run {}/{reps}] {what}", started.elapsed(), rep + 1);
            let mut got = Vec::new();
            match run_engine(spec, &w, &plan, scratch.path(), &mut got, &mut progress) {
                Ok(()) => all.extend(got),
                Err(e) => {
                    eprintln!("{} failed: {e}", spec.name);
                    failed.push(format!("{} (run {}): {e}", spec.name, rep + 1));
                }
            }
            clear(scratch.path());
        }
    }
    let summaries = summarize(&all);
    let names: Vec<&str> = engines.iter().map(|e| e.name).collect();
    println!(
        "\n{} events, {} streams, {} run(s), {:.0?} in all\n",
        plan.events,
        plan.streams,
        reps,
        started.elapsed()
    );
    print_table(&summaries, &names);
    print_settings(&summaries, &names);
    finish(&args, &meta, &summaries, &failed)
}

/// `--dcb`: the DCB commands on foldlog and SQLite, in both modes, with the plain appends beside them.
fn run_dcb(args: &Args) -> foldlog_bench::BenchResult<()> {
    let all_engines = [&dcb::FOLDLOG, &dcb::SQLITE];
    let engines: Vec<&dcb::DcbSpec> = match &args.engines {
        None => all_engines.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                all_engines.iter().copied().find(|e| e.name == n).ok_or(format!(
                    "no DCB engine {n} (foldlog and sqlite only: redb and fjall have no tag index to query)"
                ))
            })
            .collect::<Result<_, _>>()?,
    };
    if args.events.is_some() {
        return Err("--dcb counts commands: use --commands".into());
    }
    let plan = dcb::Plan::new(
        args.commands.unwrap_or(if args.quick { 50_000 } else { 200_000 }),
        Duration::from_millis(if args.quick { 500 } else { 3000 }),
    );
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let scratch = tempfile::Builder::new()
        .prefix("foldlog-compare-dcb-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let meta = machine(scratch.path(), plan.describe(reps));
    for (k, v) in &meta {
        eprintln!("{k}: {v}");
    }
    let started = Instant::now();
    let w = dcb::Workload::new(&plan, 42);
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for rep in 0..reps {
        // Engines interleaved, and their order and the DCB/plain order flipped every other run, so a slow
        // spell of the shared machine does not always hit the same one.
        let mut order = engines.clone();
        if rep % 2 == 1 {
            order.reverse();
        }
        for mode in [Mode::Always, Mode::Group(foldlog_bench::GROUP_EVENTS)] {
            for spec in &order {
                eprintln!("[{:>6.1?} run {}/{reps}] {}: dcb {mode:?}", started.elapsed(), rep + 1, spec.name);
                let mut got = Vec::new();
                match dcb::run_engine(spec, mode, &w, &plan, scratch.path(), rep % 2 == 1, &mut got) {
                    Ok(()) => all.extend(got),
                    Err(e) => {
                        eprintln!("{} failed: {e}", spec.name);
                        failed.push(format!("{} {mode:?} (run {}): {e}", spec.name, rep + 1));
                    }
                }
                clear(scratch.path());
            }
        }
    }
    let summaries = summarize(&all);
    let names: Vec<&str> = engines.iter().map(|e| e.name).collect();
    println!("\n{}\n{:.0?} in all\n", plan.describe(reps), started.elapsed());
    print_table(&summaries, &names);
    finish(args, &meta, &summaries, &failed)
}

/// `--jetstream`: the `Backend` calls on the embedded store and on nats-server, replicas 1 and 3.
fn run_jetstream(args: &Args) -> foldlog_bench::BenchResult<()> {
    let mut engines: Vec<&'static str> = match &args.engines {
        None => jetstream::ENGINES.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                jetstream::ENGINES.iter().copied().find(|e| e == n).ok_or(format!("no JetStream engine {n}"))
            })
            .collect::<Result<_, _>>()?,
    };
    if args.events.is_some() || args.commands.is_some() {
        return Err(
            "--jetstream has a fixed plan (the same figures every run): no --events or --commands".into()
        );
    }
    let plan = jetstream::Plan { appends: 2000, batches: 100 };
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let scratch = tempfile::Builder::new()
        .prefix("foldlog-compare-js-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let mut meta = machine(scratch.path(), plan.describe(reps));
    // The peers of this run are not the comparison's: name the client and the server instead.
    if let Some((_, engines)) = meta.iter_mut().find(|(k, _)| k == "engines") {
        *engines = format!(
            "foldlog {}, foldlog-jetstream over async-nats {}, {}",
            lock_version("foldlog"),
            lock_version("async-nats"),
            jetstream::server_version()
        );
    }
    if let Some(why) = jetstream::skipped() {
        let dropped: Vec<&str> = engines.iter().copied().filter(|e| e.starts_with("jetstream")).collect();
        if !dropped.is_empty() {
            println!("skipping {}: {why}", dropped.join(", "));
            meta.push(("skipped".into(), format!("{}: {why}", dropped.join(", "))));
        }
        engines.retain(|e| !e.starts_with("jetstream"));
    }
    for (k, v) in &meta {
        eprintln!("{k}: {v}");
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for rep in 0..reps {
        // Engines interleaved, and their order flipped every other run, so a slow spell of the shared machine
        // does not always hit the same one.
        let mut order = engines.clone();
        if rep % 2 == 1 {
            order.reverse();
        }
        for engine in order {
            eprintln!("[{:>6.1?} run {}/{reps}] {engine}", started.elapsed(), rep + 1);
            let mut got = Vec::new();
            match jetstream::run_engine(engine, &plan, scratch.path(), &mut got) {
                Ok(()) => all.extend(got),
                Err(e) => {
                    eprintln!("{engine} failed: {e}");
                    failed.push(format!("{engine} (run {}): {e}", rep + 1));
                }
            }
            clear(scratch.path());
        }
    }
    let summaries = summarize(&all);
    println!("\n{:.0?} in all\n\n{}", started.elapsed(), report::jetstream_text(&meta, &summaries));
    finish(args, &meta, &summaries, &failed)
}

/// Removes whatever a failed engine left behind.
fn clear(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The end of every run: the failures, then the CSV if one was asked for.
fn finish(
    args: &Args,
    meta: &[(String, String)],
    summaries: &[Summary],
    failed: &[String],
) -> foldlog_bench::BenchResult<()> {
    for f in failed {
        println!("FAILED: {f}");
    }
    if let Some(path) = &args.csv {
        write_csv(path, meta, summaries)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn write_csv(
    path: &Path,
    meta: &[(String, String)],
    summaries: &[Summary],
) -> foldlog_bench::BenchResult<()> {
    let mut out = String::new();
    for (k, v) in meta {
        out += &format!("# {k}: {v}\n");
    }
    out += "engine,scenario,metric,unit,higher_is_better,median,min,max,runs,setting\n";
    for s in summaries {
        let m = &s.measure;
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            m.engine,
            m.scenario,
            m.metric,
            csv_field(m.unit),
            m.higher_is_better,
            s.median,
            s.min,
            s.max,
            s.runs,
            csv_field(&m.setting)
        );
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// The facts a reader needs to judge the figures: machine, kernel, file system, versions, the command.
fn machine(scratch: &Path, workload: String) -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse::<u64>();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let version = lock_version;
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    // The foldlog commit measured (best effort: the harness may run outside a git checkout).
    let commit = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "log", "-1", "--format=%h %s"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    vec![
        ("date".into(), today()),
        (
            "cpu".into(),
            format!("{cpu}, {} cores visible", std::thread::available_parallelism().map_or(0, |n| n.get())),
        ),
        ("memory".into(), format!("{:.1} GiB", mem.unwrap_or(0) as f64 / (1 << 20) as f64)),
        ("kernel".into(), format!("Linux {}", read("/proc/sys/kernel/osrelease").trim())),
        (
            "filesystem".into(),
            format!("{} ({})", fs_type(scratch), scratch.parent().unwrap_or(scratch).display()),
        ),
        ("rustc".into(), rustc),
        ("foldlog commit".into(), commit),
        (
            "engines".into(),
            format!(
                "foldlog {}, rusqlite {} (SQLite {} bundled), redb {}, fjall {}",
                version("foldlog"),
                version("rusqlite"),
                rusqlite::version(),
                version("redb"),
                version("fjall")
            ),
        ),
        ("workload".into(), workload),
        ("command".into(), format!("cargo run --release --manifest-path compare/Cargo.toml -- {command}")),
    ]
}

/// A package's version in this harness's Cargo.lock (the first, should it hold several).
fn lock_version(name: &str) -> String {
    let lock = include_str!("../Cargo.lock");
    let tag = format!("name = \"{name}\"\nversion = \"");
    lock.find(&tag)
        .map_or("?".to_owned(), |i| lock[i + tag.len()..].split('"').next().unwrap_or("?").to_owned())
}

fn fs_type(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return "unknown".into() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized, writable statfs buffer.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        return "unknown".into();
    }
    match st.f_type {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        t => format!("fs type {t:#x}"),
    }
}

/// Today's UTC date, `YYYY-MM-DD` (civil-from-days, so no date crate is needed).
fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
