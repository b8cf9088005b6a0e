//! What open found and what the store holds: the recovery report and the statistics.

use super::*;

/// What `open` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum CheckpointUse {
    /// There was none: the index was built from the whole log.
    #[default]
    Missing,
    /// It was valid and covered events below this position; only the log after it was scanned.
    Used(u64),
    /// It was refused at open (damaged, foreign, or inconsistent with the log), so the index was rebuilt.
    Rebuilt(CheckpointRefusal),
    /// It was used at open, but a list it holds failed its check when first read, so the index was rebuilt
    /// from the log then.
    RebuiltAfterOpen(CheckpointRefusal),
}

impl std::fmt::Display for CheckpointUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointUse::Missing => f.write_str("none (index built from the whole log)"),
            CheckpointUse::Used(p) => write!(f, "used (covers positions below {p})"),
            CheckpointUse::Rebuilt(why) => write!(f, "refused, index rebuilt ({why})"),
            CheckpointUse::RebuiltAfterOpen(why) => {
                write!(f, "refused, index rebuilt ({why} (found after open; rebuilt from the log))")
            }
        }
    }
}

/// Statistics of an open store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Segment files.
    pub segments: usize,
    /// Committed events.
    pub events: u64,
    /// Streams.
    pub streams: usize,
    /// Distinct event types.
    pub event_types: usize,
    /// Distinct tags.
    pub tags: usize,
    /// Bytes of frames written (headers, bodies, padding), over all segments.
    pub frame_bytes: u64,
    /// Bytes of segment files on disk (preallocated).
    pub file_bytes: u64,
    /// RAM used by the index's per-event and per-stream structures.
    pub index_memory_bytes: u64,
    /// Position below which events are durable ([`crate::Store::durable_position`]).
    pub durable_position: u64,
}
