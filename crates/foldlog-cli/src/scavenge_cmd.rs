//! `foldlog scavenge`: rewrites a store's sealed segments without the events truncations, deletions and
//! retention rules hide (issue 14, item 3), or with `--dry-run` reports exactly what it would remove. A real
//! run takes the writer's lock, so it is refused while another process writes the store (status 2: run it
//! through that process, `Store::scavenge`); a dry run opens the store read-only and works beside a writer.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use foldlog::{Durability, Options, ScavengeOptions, Store};
use serde::Serialize;

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

#[derive(Serialize)]
struct Json<'a> {
    dir: String,
    dry_run: bool,
    events_removed: u64,
    bytes_before: u64,
    bytes_after: u64,
    segments: Vec<SegmentJson<'a>>,
    streams: Vec<StreamJson<'a>>,
}

#[derive(Serialize)]
struct SegmentJson<'a> {
    path: std::borrow::Cow<'a, str>,
    events: u64,
    events_removed: u64,
    bytes_before: u64,
    bytes_after: u64,
}

#[derive(Serialize)]
struct StreamJson<'a> {
    stream: &'a str,
    events_removed: u64,
    bytes_removed: u64,
}

/// Runs (or, dry, plans) a scavenge of `dir` and prints the report: per segment and per stream, then the
/// totals; `json` prints one object instead.
pub fn scavenge(dir: &Path, dry_run: bool, json: bool) -> CliResult {
    let report = if dry_run {
        let store = Store::open_with(dir, Options::default().read_only(true).create_if_missing(false))?;
        store.scavenge(ScavengeOptions::default().dry_run(true))?
    } else {
        let options = Options::default().create_if_missing(false).durability(Durability::Always);
        let store = Store::open_with(dir, options)?;
        let report = store.scavenge(ScavengeOptions::default())?;
        store.close()?;
        report
    };
    let mut out = io::stdout().lock();
    if json {
        let doc = Json {
            dir: dir.display().to_string(),
            dry_run,
            events_removed: report.events_removed,
            bytes_before: report.bytes_before,
            bytes_after: report.bytes_after,
            segments: report
                .segments
                .iter()
                .map(|s| SegmentJson {
                    path: s.path.to_string_lossy(),
                    events: s.events,
                    events_removed: s.events_removed,
                    bytes_before: s.bytes_before,
                    bytes_after: s.bytes_after,
                })
                .collect(),
            streams: report
                .streams
                .iter()
                .map(|s| StreamJson {
                    stream: &s.stream,
                    events_removed: s.events_removed,
                    bytes_removed: s.bytes_removed,
                })
                .collect(),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for s in report.segments.iter().filter(|s| s.events_removed > 0) {
        let name =
            s.path.file_name().map_or_else(|| s.path.display().to_string(), |n| n.to_string_lossy().into());
        writeln!(
            out,
            "segment {name}: {verb} {} of {} events, {} -> {} bytes",
            s.events_removed, s.events, s.bytes_before, s.bytes_after
        )?;
    }
    for s in &report.streams {
        writeln!(
            out,
            "stream {}: {verb} {} events ({} bytes)",
            crate::quoted(&s.stream),
            s.events_removed,
            s.bytes_removed
        )?;
    }
    writeln!(
        out,
        "{verb} {} events from {} sealed segments: {} -> {} frame bytes",
        report.events_removed,
        report.segments.len(),
        report.bytes_before,
        report.bytes_after
    )?;
    Ok(ExitCode::SUCCESS)
}
