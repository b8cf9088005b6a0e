//! How a store is opened: every limit and policy in one struct with documented defaults.
//!
//! The structs here are `#[non_exhaustive]` so that a new setting is not a breaking change: build them from
//! `Default` and chain the setters named after their fields (`Options::default().read_only(true)`). The
//! fields stay public for reading, and for assignment when that reads better (`options.read_only = flag`).

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
    /// Group commit: `append` returns once the events are written and visible; a sync starts when any bound
    /// of the group is reached, on the group-commit thread, while appends go on (the append that fills the
    /// next group waits for it, so at most two groups are ever unsynced). Acknowledged durable = at or below
    /// [`crate::Store::durable_position`].
    Group(GroupCommit),
    /// The OS writes back when it likes; only an explicit [`crate::Store::sync`] (or a clean close) makes
    /// events durable. Survives process crashes, not power loss.
    Never,
}

/// Bounds of one commit group: its sync starts as soon as any is reached. Start from the default and change
/// what you need:
///
/// ```
/// use std::time::Duration;
/// use foldlog::{Durability, GroupCommit, Options};
///
/// let group = GroupCommit::default().appends_max(64).delay_max(Duration::from_millis(2));
/// let options = Options::default().durability(Durability::Group(group));
/// assert_eq!(options.durability, Durability::Group(group));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

impl GroupCommit {
    /// Sets [`appends_max`](field@GroupCommit::appends_max) (default 1000).
    #[must_use]
    pub fn appends_max(mut self, n: u32) -> Self {
        self.appends_max = n;
        self
    }

    /// Sets [`bytes_max`](field@GroupCommit::bytes_max) (default 4 MiB).
    #[must_use]
    pub fn bytes_max(mut self, n: u64) -> Self {
        self.bytes_max = n;
        self
    }

    /// Sets [`delay_max`](field@GroupCommit::delay_max) (default 10 ms).
    #[must_use]
    pub fn delay_max(mut self, d: Duration) -> Self {
        self.delay_max = d;
        self
    }
}

/// What `open` does with corruption it finds in the last segment.
///
/// Non-exhaustive: another policy may be added without a breaking release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Recovery {
    /// Cut only a torn tail (bytes never promised durable); anything else is `Error::Corrupt`.
    #[default]
    Strict,
    /// Operator's choice: cut the last segment at the first bad frame even below the durable point, losing
    /// what follows. Sealed segments are never cut.
    TruncateCorruption,
}

/// Options for [`crate::Store::open_with`]: start from [`Options::default`] and chain a setter per change.
///
/// ```
/// use foldlog::{Durability, Options, Store};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let options = Options::default().durability(Durability::Always).segment_size_bytes(1 << 20);
/// let store = Store::open_with(dir.path(), options)?;
/// # drop(store);
/// // The fields can be read, and assigned too.
/// let mut read_only = Options::default().create_if_missing(false);
/// read_only.read_only = true;
/// # Ok(())
/// # }
/// ```
///
/// Non-exhaustive, so a new option is not a breaking change: it cannot be built as a struct literal outside
/// this crate.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches, each with its own setter and default; no two of them form a state machine"
)]
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
    /// Open without writing anything, anywhere: a shared lock on the directory itself (never on `LOCK`), torn
    /// tails left in place. Any number of read-only handles, in any processes, run beside the one writer; each
    /// sees a committed prefix of the log ending at a batch boundary and follows the writer with
    /// [`crate::Store::refresh`] or [`crate::Store::wait_for`]. Only a tool removing the store
    /// ([`crate::StoreLock`]) keeps them out. Default false.
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

// One setter per field, named after it, each returning the options so they chain. The defaults are on the
// fields' documentation.
impl Options {
    /// Sets [`segment_size_bytes`](field@Options::segment_size_bytes).
    #[must_use]
    pub fn segment_size_bytes(mut self, bytes: u64) -> Self {
        self.segment_size_bytes = bytes;
        self
    }

    /// Sets [`durability`](field@Options::durability).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`checkpoint_every_bytes`](field@Options::checkpoint_every_bytes).
    #[must_use]
    pub fn checkpoint_every_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_every_bytes = bytes;
        self
    }

    /// Sets [`event_ids_remembered`](field@Options::event_ids_remembered).
    #[must_use]
    pub fn event_ids_remembered(mut self, n: usize) -> Self {
        self.event_ids_remembered = n;
        self
    }

    /// Sets [`create_if_missing`](field@Options::create_if_missing).
    #[must_use]
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// Sets [`create_in_non_empty`](field@Options::create_in_non_empty).
    #[must_use]
    pub fn create_in_non_empty(mut self, yes: bool) -> Self {
        self.create_in_non_empty = yes;
        self
    }

    /// Sets [`read_only`](field@Options::read_only).
    #[must_use]
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// Sets [`recovery`](field@Options::recovery).
    #[must_use]
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = recovery;
        self
    }

    /// Sets [`crc_every_read`](field@Options::crc_every_read).
    #[must_use]
    pub fn crc_every_read(mut self, yes: bool) -> Self {
        self.crc_every_read = yes;
        self
    }
}
