//! How a store is opened: every limit and policy in one struct with documented defaults.

use std::time::Duration;

/// When appended events are made durable (survive power loss). Every mode survives a process crash
/// (`kill -9`) once `append` has returned: the bytes are in the OS page cache.
///
/// Non-exhaustive: another policy (a periodic sync, say) may be added without a breaking release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Sync before `append` returns: an acknowledged event survives power loss. Costs one sync (milliseconds
    /// on most disks) per append call; batch events to amortize it.
    Always,
    /// Group commit: `append` returns once the events are written and visible; a sync runs when any bound of
    /// the group is reached. Acknowledged durable = at or below [`crate::Store::durable_position`].
    Group(GroupCommit),
    /// The OS writes back when it likes; only an explicit [`crate::Store::sync`] (or a clean close) makes
    /// events durable. Survives process crashes, not power loss.
    Never,
}

/// Bounds of one commit group: a sync runs as soon as any is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    /// Sync after this many append calls.
    pub appends_max: u32,
    /// Sync after this many bytes of frames.
    pub bytes_max: u64,
    /// Sync when the oldest unsynced append is this old (a background thread enforces it when idle).
    pub delay_max: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit { appends_max: 1000, bytes_max: 4 << 20, delay_max: Duration::from_millis(10) }
    }
}

/// What `open` does with corruption it finds in the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Cut only a torn tail (bytes never promised durable); anything else is `Error::Corrupt`.
    #[default]
    Strict,
    /// Operator's choice: cut the last segment at the first bad frame even below the durable point, losing
    /// what follows. Sealed segments are never cut.
    TruncateCorruption,
}

/// Options for [`crate::Store::open_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Capacity of each segment file, preallocated; a batch must fit in one. Default 64 MiB, at least 4 KiB,
    /// at most 4 GiB, rounded down to a multiple of 16.
    pub segment_size_bytes: u64,
    /// When appends are made durable. Default: group commit with [`GroupCommit::default`].
    pub durability: Durability,
    /// Write an index checkpoint after this many bytes of log (and on clean close), so open scans at most
    /// this much; the gap also grows to four times the last checkpoint's size, since each one rewrites the whole
    /// index. Default 64 MiB; 0 means only on close (and `Store::checkpoint`).
    pub checkpoint_every_bytes: u64,
    /// How many of the most recent event ids are remembered for idempotent retries. Default 100,000.
    pub event_ids_remembered: usize,
    /// Create the directory and a new log if there is none. Default true.
    pub create_if_missing: bool,
    /// Create a new log in an existing directory that holds files foldlog did not create. By default such a
    /// directory is refused with [`crate::Error::InvalidDirectory`] naming an entry, so a mistyped path never
    /// scatters a log among someone's files: a new log is created only in a new or empty directory (one holding
    /// only foldlog's own leftovers, such as `LOCK`, counts as empty; see docs/format.md). A directory that
    /// already holds segment files is a store and opens whatever else it holds. Default false.
    pub create_in_non_empty: bool,
    /// Open without writing anything, anywhere: a shared lock on `LOCK` (on the directory itself if there is
    /// no `LOCK` file; none is created), torn tails left in place. Default false.
    pub read_only: bool,
    /// Corruption policy. Default [`Recovery::Strict`].
    pub recovery: Recovery,
    /// Check every frame's CRC on every read. By default a frame's CRC is checked the first time this process
    /// trusts it (when recovery scans it, when the writer writes it, or on its first read) and later reads
    /// only repeat the cheap structural checks, since mapped bytes do not change under a locked store (see
    /// SECURITY.md). `foldlog verify` turns this on. Default false.
    pub crc_every_read: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size_bytes: 64 << 20,
            durability: Durability::Group(GroupCommit::default()),
            checkpoint_every_bytes: 64 << 20,
            event_ids_remembered: 100_000,
            create_if_missing: true,
            create_in_non_empty: false,
            read_only: false,
            recovery: Recovery::Strict,
            crc_every_read: false,
        }
    }
}
