//! `foldlog tail`: the last events of a store, then every new one as a writer commits it, like `tail -f`.
//! A read-only handle runs beside the writer (in any process) and follows its head (src/head.rs in the
//! library); `wait_for` polls it, so a new event is printed well within a millisecond of its commit.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use foldlog::{EventRef, ReadAll, Store};

use crate::{read_only, write_event, Bytes, CliResult};

/// Which events `tail` prints.
pub(crate) struct Filter {
    /// Only this stream's.
    pub stream: Option<String>,
    /// Only these types (any type if empty).
    pub types: Vec<String>,
}

impl Filter {
    fn matches(&self, e: &EventRef<'_>) -> bool {
        self.stream.as_deref().is_none_or(|s| s == e.stream_id())
            && (self.types.is_empty() || self.types.iter().any(|t| t == e.event_type()))
    }

    fn is_everything(&self) -> bool {
        self.stream.is_none() && self.types.is_empty()
    }
}

/// How long one wait for new events lasts before the loop looks again (and reports a refresh error).
const WAIT: Duration = Duration::from_secs(1);

pub(crate) fn tail(
    dir: &Path,
    filter: &Filter,
    from: Option<u64>,
    lines: u64,
    follow: bool,
    bytes: Bytes,
) -> CliResult {
    let store = Store::open_with(dir, read_only())?;
    let mut next = match from {
        Some(p) => p,
        None => backlog_start(&store, filter, lines)?,
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    loop {
        let end = store.next_position();
        if next < end {
            // Bounded by position, not by count: hidden events (truncated or deleted streams) are skipped.
            for e in store.read_all_with(ReadAll::default().from(next).to_inclusive(end - 1)) {
                let e = e?;
                if filter.matches(&e) {
                    write_event(&mut out, &e, bytes)?;
                }
            }
            next = end;
        }
        // Each round's lines go out at once: a follower is read live, by a person or a pipe.
        out.flush()?;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        store.wait_for(end.checked_sub(1), WAIT);
        // `wait_for` gives up quietly on an error; the refresh reports it.
        store.refresh()?;
    }
}

/// The position to start from so that the last `lines` matching events are printed first.
fn backlog_start(store: &Store, filter: &Filter, lines: u64) -> foldlog::Result<u64> {
    let end = store.next_position();
    if lines == 0 || end == 0 {
        return Ok(end);
    }
    if filter.is_everything() {
        return Ok(end.saturating_sub(lines));
    }
    // Filtered: one pass over the log, remembering the last `lines` matches.
    let keep = usize::try_from(lines).unwrap_or(usize::MAX);
    let mut last: VecDeque<u64> = VecDeque::new();
    for e in store.read_all_with(ReadAll::default().to_inclusive(end - 1)) {
        let e = e?;
        if filter.matches(&e) {
            if last.len() == keep {
                last.pop_front();
            }
            last.push_back(e.position());
        }
    }
    Ok(last.front().copied().unwrap_or(end))
}
