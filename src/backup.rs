//! Backup: a consistent copy of a store up to its durable position, taken while the writer keeps appending.
//!
//! The backup is taken through any handle, [`Store::backup_to`]: the writer's own (in its process), or a
//! read-only one, which runs beside a writer in another process ([`backup()`], the CLI's `foldlog backup`).
//! It first reads where the durable log ends (the segment, the offset in it, the position): the writer's
//! handle under the writer lock (appends wait for that moment and no longer), a read-only handle from the
//! last segment's durable slot, which the writer makes durable before it moves. Then it copies without any
//! lock:
//!
//! - **Sealed segments** (every one before the segment holding the durable end) are hard-linked into the
//!   backup where the file system allows, else copied. That is safe because a sealed segment is never written
//!   again: its frames were synced and its last durable slot written before its successor existed, and no
//!   code path writes to a segment that is not the last one. A hard link shares the file, not a snapshot of
//!   it, so it protects against deleting the store, not against damage to the disk or to the file in place;
//!   [`BackupOptions::hard_links`] `= false` copies every byte (for a backup on another device, for instance).
//! - **The active segment is always copied**, and only up to the durable offset: it is still written (new
//!   frames past that offset, new durable slots in its header), so a link would let those writes into the
//!   backup. The bytes below the offset are never written again. The copy's durable slots are replaced by
//!   one naming exactly that offset and position, and the rest of the file is preallocated zeros, so a batch
//!   that was committed but not yet durable (or still being written) is never in the backup, whole or torn.
//! - **The key file (`KEYS`) is copied**, never linked, after the segments: every key an event in the backup
//!   needs was synced before that event was written, so the copy has it unless the stream was forgotten in
//!   between; and a copy, unlike a link, keeps what the backup holds when the store forgets a key later, and
//!   holds no key the store had forgotten before the backup began (feature `encryption`, src/crypto.rs).
//! - **Derived data is not copied**: the index checkpoint may describe events past the durable end and
//!   snapshots are a cache; the backup's first open builds its index from the segments.
//!
//! The backup is built in a temporary directory next to `dst` and renamed into place when whole, with every
//! file and the directories synced. [`backup()`] opens the source read-only, which writes nothing there.

use std::path::{Path, PathBuf};

use crate::corruption::Corruption;
use crate::error::{Error, Result};
use crate::format::{DurableSlot, SegmentHeader, KEY_FILE, SEGMENT_HEADER_LEN, SLOT_LEN};
use crate::io as sys;
use crate::options::Options;
use crate::staging::Staging;
use crate::store::Store;

/// How a backup is made: `BackupOptions::default().hard_links(false)`. Non-exhaustive, so that another
/// option is not a breaking change.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Hard-link sealed segments when source and backup are on one file system (default `true`); `false`
    /// copies every byte.
    pub hard_links: bool,
}

impl Default for BackupOptions {
    fn default() -> BackupOptions {
        BackupOptions { hard_links: true }
    }
}

impl BackupOptions {
    /// Sets [`hard_links`](field@BackupOptions::hard_links).
    #[must_use]
    pub fn hard_links(mut self, yes: bool) -> Self {
        self.hard_links = yes;
        self
    }
}

/// What a backup holds and how it was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup's directory.
    pub dst: PathBuf,
    /// Events in the backup: every position below this one, the source's durable position at the moment
    /// of the backup.
    pub durable_position: u64,
    /// Segment files in the backup.
    pub segments: usize,
    /// Sealed segments hard-linked.
    pub linked: usize,
    /// Segments copied (the active one always is).
    pub copied: usize,
    /// Bytes copied (linked files not counted).
    pub bytes_copied: u64,
}

/// Backs up the store in `src`, up to its durable position, through a read-only handle: a writer in another
/// process may keep appending meanwhile (in the writer's own process, [`Store::backup_to`] does the same).
/// Nothing is written to the source. See the module docs.
pub fn backup(src: impl AsRef<Path>, dst: impl AsRef<Path>, options: &BackupOptions) -> Result<BackupReport> {
    let store =
        Store::open_with(src, Options { read_only: true, create_if_missing: false, ..Options::default() })?;
    store.backup_to_with(dst, options)
}

impl Store {
    /// Copies this store, up to its durable position at the moment of the call, into a new store at `dst`
    /// (which must not exist, or be an empty directory), while appends go on. See [`crate::backup`] for what
    /// is copied and why it is consistent. Call [`Store::sync`] first to include everything committed.
    ///
    /// Errors: a `dst` that exists and is not empty ([`Error::InvalidDirectory`]), a poisoned store
    /// ([`Error::Poisoned`]: what is durable is no longer known), I/O ([`Error::Io`], naming the file; no
    /// backup is left behind).
    ///
    /// ```
    /// # fn main() -> foldlog::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use foldlog::{ExpectedVersion, NewEvent, Store};
    ///
    /// let store = Store::open(tmp.path().join("live"))?;
    /// store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", b"x")])?;
    /// store.sync()?; // durable now, so in the backup
    /// let report = store.backup_to(tmp.path().join("backup"))?;
    /// assert_eq!(report.durable_position, 1);
    /// let copy = Store::open(tmp.path().join("backup"))?;
    /// assert_eq!(copy.next_position(), report.durable_position);
    /// # Ok(())
    /// # }
    /// ```
    pub fn backup_to(&self, dst: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_to_with(dst, &BackupOptions::default())
    }

    /// [`Store::backup_to`] with options.
    pub fn backup_to_with(&self, dst: impl AsRef<Path>, options: &BackupOptions) -> Result<BackupReport> {
        let dst = dst.as_ref();
        let inner = self.inner();
        let (active, end, durable) = inner.durable_end()?;
        let path_of = |i: usize| {
            inner
                .segment(i)
                .map(|m| m.path().to_path_buf())
                .ok_or_else(|| Error::corrupt(self.dir(), 0, Corruption::SegmentTableShort { slot: i }))
        };
        let sealed: Vec<PathBuf> = (0..active).map(path_of).collect::<Result<_>>()?;
        let active_path = path_of(active)?;
        let staging = Staging::new(dst)?;
        let mut report = BackupReport {
            dst: dst.to_path_buf(),
            durable_position: durable,
            segments: sealed.len() + 1,
            ..BackupReport::default()
        };
        for from in &sealed {
            let to = staging.path().join(file_name(from)?);
            if options.hard_links && std::fs::hard_link(from, &to).is_ok() {
                report.linked += 1;
                continue;
            }
            report.bytes_copied +=
                std::fs::copy(from, &to).map_err(|e| Error::io("copy sealed segment", from, e))?;
            let f = sys::open(&to, true).map_err(|e| Error::io("open copy", &to, e))?;
            sys::sync_file(&f, &to).map_err(|e| Error::io("sync copy", &to, e))?;
            report.copied += 1;
        }
        report.bytes_copied +=
            copy_active(&active_path, &staging.path().join(file_name(&active_path)?), end, durable)?;
        report.copied += 1;
        copy_key_file(self.dir(), staging.path())?;
        staging.finish()?;
        Ok(report)
    }
}

/// Copies the store's key file into the backup as it is now, if there is one (salvage copies it the same way).
pub(crate) fn copy_key_file(src_dir: &Path, dst_dir: &Path) -> Result<()> {
    let from = src_dir.join(KEY_FILE);
    let bytes = match sys::read_file(&from) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read key file", from, e)),
    };
    let to = dst_dir.join(KEY_FILE);
    let out = sys::create_new(&to).map_err(|e| Error::io("create key file copy", &to, e))?;
    sys::write_at(&out, &to, 0, &bytes).map_err(|e| Error::io("write key file copy", &to, e))?;
    sys::sync_file(&out, &to).map_err(|e| Error::io("sync key file copy", &to, e))
}

fn file_name(path: &Path) -> Result<&std::ffi::OsStr> {
    path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", path.display())))
}

/// Copies the active segment's bytes below `end` (header included), gives the copy one durable slot naming
/// `end` and `durable`, and preallocates it to the capacity its header names. Returns the bytes copied.
fn copy_active(from: &Path, to: &Path, end: u64, durable: u64) -> Result<u64> {
    let src = sys::open(from, false).map_err(|e| Error::io("open active segment", from, e))?;
    let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
    sys::read_at(&src, from, 0, &mut head).map_err(|e| Error::io("read segment header", from, e))?;
    let header = SegmentHeader::decode(&head)
        .map_err(|_| Error::corrupt(from, 0, Corruption::SegmentHeaderDamaged))?;
    // The slots are rewritten by the writer as it syncs; the copy gets exactly one, naming its end.
    let slots = SEGMENT_HEADER_LEN as usize - 2 * SLOT_LEN;
    head[slots..].fill(0);
    let slot = DurableSlot { seq: 1, durable_end: end, next_position: durable, flags: 0 };
    let at = slot.file_offset() as usize;
    head[at..at + SLOT_LEN].copy_from_slice(&slot.encode());
    let out = sys::create_new(to).map_err(|e| Error::io("create segment copy", to, e))?;
    sys::allocate(&out, to, header.capacity.max(end)).map_err(|e| Error::io("preallocate copy", to, e))?;
    sys::write_at(&out, to, 0, &head).map_err(|e| Error::io("write segment copy", to, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = SEGMENT_HEADER_LEN;
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        sys::read_at(&src, from, at, &mut buf[..n]).map_err(|e| Error::io("read active segment", from, e))?;
        sys::write_at(&out, to, at, &buf[..n]).map_err(|e| Error::io("write segment copy", to, e))?;
        at += n as u64;
    }
    sys::sync_file(&out, to).map_err(|e| Error::io("sync segment copy", to, e))?;
    Ok(end)
}
