//! `foldlog export` and `foldlog import`: the log as JSON Lines, one record per line.
//!
//! Records (docs/operations.md has the full description):
//!
//! - `{"kind":"header","format":1}`: first line; `format` is this layout's version.
//! - `{"kind":"event","position":…,"stream":…,"version":…,"type":…,"schema_version":…,"timestamp_micros":…,
//!   "event_id":…,"metadata_base64"|"metadata_text":…,"payload_base64"|"payload_text":…}` in global order.
//!   `event_id` is 32 lowercase hex digits or null. Bytes are standard base64 (with padding), or with
//!   `--text` UTF-8 text when they are valid UTF-8 (the field name says which).
//! - `{"kind":"consumer","name":…,"position":…}` after the events, one per consumer (its latest position),
//!   sorted by name.
//! - `{"kind":"stream_control","stream":…,"truncate_before":…,"deleted":…}` after the consumers, one per
//!   truncated or deleted stream, sorted by stream. The events they hide are exported all the same (every
//!   position, so that an import keeps them); the import hides them again.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use foldlog::import::{import, Record};
use foldlog::{Options, OwnedEvent, ReadAll, Store};
use serde::{Deserialize, Serialize};

/// The layout version written in the header line.
const EXPORT_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Header(Header),
    Event(Event),
    Consumer(Consumer),
    StreamControl(StreamControl),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamControl {
    stream: String,
    truncate_before: u64,
    deleted: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    position: u64,
    stream: String,
    version: u64,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u32,
    timestamp_micros: i64,
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    metadata_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    metadata_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    payload_text: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Consumer {
    name: String,
    position: u64,
}

/// (base64, text): exactly one is set.
fn encode_bytes(b: &[u8], text: bool) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) if text => (None, Some(s.to_owned())),
        _ => (Some(STANDARD.encode(b)), None),
    }
}

fn decode_bytes(what: &str, base64: Option<String>, text: Option<String>) -> Result<Vec<u8>, String> {
    match (base64, text) {
        (Some(b), None) => STANDARD.decode(b).map_err(|e| format!("{what}_base64 is not base64: {e}")),
        (None, Some(t)) => Ok(t.into_bytes()),
        (None, None) => Err(format!("{what}_base64 or {what}_text is missing")),
        (Some(_), Some(_)) => Err(format!("both {what}_base64 and {what}_text are given")),
    }
}

/// `foldlog export DIR [--text]`: the whole log, then the consumer positions, to stdout.
pub fn export(dir: &Path, text: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let store = Store::open_with(dir, Options::default().read_only(true).create_if_missing(false))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let line = |record: &Line, out: &mut dyn Write| -> Result<(), Box<dyn std::error::Error>> {
        // Rendered first, so a closed stdout is an `io::Error` like every other write.
        let rendered = serde_json::to_string(record)?;
        writeln!(out, "{rendered}")?;
        Ok(())
    };
    line(&Line::Header(Header { format: EXPORT_FORMAT }), &mut out)?;
    for e in store.read_all_with(ReadAll::default().include_hidden(true)) {
        let e = e?;
        let (metadata_base64, metadata_text) = encode_bytes(e.metadata(), text);
        let (payload_base64, payload_text) = encode_bytes(e.payload(), text);
        let record = Line::Event(Event {
            position: e.position(),
            stream: e.stream_id().to_owned(),
            version: e.stream_version(),
            event_type: e.event_type().to_owned(),
            schema_version: e.schema_version(),
            timestamp_micros: e.timestamp_micros(),
            event_id: e.event_id().map(|id| format!("{id:032x}")),
            metadata_base64,
            metadata_text,
            payload_base64,
            payload_text,
        });
        line(&record, &mut out)?;
    }
    for (name, position) in store.consumer_positions() {
        line(&Line::Consumer(Consumer { name, position }), &mut out)?;
    }
    for stream in store.streams() {
        let Some(state) = store.stream_state(&stream) else { continue };
        if state.deleted || state.first_visible > state.first_version {
            let control =
                StreamControl { stream, truncate_before: state.first_visible, deleted: state.deleted };
            line(&Line::StreamControl(control), &mut out)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One input line as an import record; `None` for the header (and blank lines).
fn parse(line: &str) -> Result<Option<Record>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let parsed: Line = serde_json::from_str(line).map_err(|e| format!("not an export record: {e}"))?;
    match parsed {
        Line::Header(h) if h.format == EXPORT_FORMAT => Ok(None),
        Line::Header(h) => {
            Err(format!("export format {} is not supported (this build reads {EXPORT_FORMAT})", h.format))
        }
        Line::Consumer(c) => Ok(Some(Record::Consumer { name: c.name, position: c.position })),
        Line::StreamControl(c) => Ok(Some(Record::StreamControl {
            stream: c.stream,
            truncate_before: c.truncate_before,
            deleted: c.deleted,
        })),
        Line::Event(e) => {
            let event_id = match e.event_id {
                None => None,
                Some(hex) if hex.len() == 32 => Some(
                    u128::from_str_radix(&hex, 16)
                        .map_err(|_| format!("event_id {hex:?} is not 32 hex digits"))?,
                ),
                Some(hex) => return Err(format!("event_id {hex:?} is not 32 hex digits")),
            };
            // Metadata first, so that a line with both fields bad names the metadata, as it always has.
            let metadata = decode_bytes("metadata", e.metadata_base64, e.metadata_text)?;
            let payload = decode_bytes("payload", e.payload_base64, e.payload_text)?;
            let event = OwnedEvent::new(e.position, e.stream, e.version, e.event_type, payload)
                .schema_version(e.schema_version)
                .timestamp_micros(e.timestamp_micros)
                .event_id(event_id)
                .metadata(metadata);
            Ok(Some(Record::Event(event)))
        }
    }
}

/// `foldlog import DIR`: reads an export from stdin into a new store at `dir`.
pub fn import_stdin(dir: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let stdin = io::stdin().lock();
    let records = stdin.lines().enumerate().filter_map(|(i, line)| {
        let n = i as u64 + 1;
        match line {
            Err(e) => Some(Err(format!("line {n}: reading standard input: {e}"))),
            Ok(line) => match parse(&line) {
                Ok(None) => None,
                Ok(Some(record)) => Some(Ok((n, record))),
                Err(why) => Some(Err(format!("line {n}: {why}"))),
            },
        }
    });
    let report = import(dir, records)?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "imported {} events, {} consumer positions and {} stream truncations or deletions into {}",
        report.events,
        report.consumer_records,
        report.stream_controls,
        dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
