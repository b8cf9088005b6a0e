//! The one I/O boundary: every system call that touches the data directory goes through here.
//!
//! That gives the crash tests two hooks on the real calls (never a fake file system): a failpoint that fails
//! the Nth call under a directory with an OS error, once or from then on, and a recorder of persistence events
//! (writes with their bytes, syncs, creates, renames, removes) from which power-loss images are built.
//! Both are scoped by directory so tests running in parallel threads do not disturb each other, and exist only
//! with the `testing` feature (the test suite and the fuzzers turn it on): a normal build calls the OS and
//! nothing else.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of I/O call, for failpoints and the persistence-event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Create or open a file.
    Open,
    /// Preallocate a file's blocks.
    Allocate,
    /// Map a file.
    Map,
    /// Write bytes (through `pwrite` or the map).
    Write,
    /// Read bytes with `pread`.
    Read,
    /// Sync a file's data (fdatasync or msync).
    SyncFile,
    /// Sync a directory.
    SyncDir,
    /// Rename a file.
    Rename,
    /// Remove a file.
    Remove,
    /// List a directory.
    ListDir,
    /// Take a lock.
    Lock,
}

/// One persistence-relevant event, as recorded for crash-image tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub enum PersistEvent {
    /// A new, empty file was created.
    Create(PathBuf),
    /// A file was preallocated (zero-filled) to this length.
    Allocate(PathBuf, u64),
    /// Bytes were stored at an offset (not durable until a later sync of that file).
    Write(PathBuf, u64, Vec<u8>),
    /// A sync of a file's bytes `[start, end)` began (`u64::MAX` for the whole file). Its `SyncFile` makes
    /// those bytes durable as they were here; a write made while it ran (group commit syncs beside the
    /// writer) may or may not be covered.
    SyncStart(PathBuf, u64, u64),
    /// The file's sync that began at its `SyncStart` completed.
    SyncFile(PathBuf),
    /// A directory was synced (every earlier create, rename and remove in it is durable).
    SyncDir(PathBuf),
    /// A file was renamed (from, to).
    Rename(PathBuf, PathBuf),
    /// A file was removed.
    Remove(PathBuf),
}

#[cfg(feature = "testing")]
use hooks::{check, pause_sync, record};
#[cfg(feature = "testing")]
pub use hooks::{testing, FaultPlan};

/// The failpoints and the recorder (`testing` feature only).
#[cfg(feature = "testing")]
mod hooks {
    use super::{Op, PersistEvent};
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A failpoint plan: fail calls under `dir`.
    #[derive(Clone, Debug)]
    pub struct FaultPlan {
        /// Only calls on paths under this directory count.
        pub dir: PathBuf,
        /// Fail the call with this 1-based number (counting only calls of `ops`, if given).
        pub nth: u64,
        /// Fail every counted call from the `nth` on, not just the `nth`.
        pub persistent: bool,
        /// The OS error to return, e.g. `libc::EIO` or `libc::ENOSPC`.
        pub errno: i32,
        /// Count only these kinds of call (`None`: all).
        pub ops: Option<Vec<Op>>,
    }

    struct Armed {
        plan: FaultPlan,
        seen: u64,
        failed: u64,
    }

    #[derive(Default)]
    struct Hooks {
        faults: Vec<Armed>,
        recorders: Vec<(PathBuf, Vec<PersistEvent>)>,
        slow_syncs: Vec<(PathBuf, Duration)>,
    }

    static ACTIVE: AtomicBool = AtomicBool::new(false);
    static HOOKS: Mutex<Option<Hooks>> = Mutex::new(None);

    fn with_hooks<R>(f: impl FnOnce(&mut Hooks) -> R) -> R {
        let mut guard = HOOKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let hooks = guard.get_or_insert_with(Hooks::default);
        let r = f(hooks);
        let active = !hooks.faults.is_empty() || !hooks.recorders.is_empty() || !hooks.slow_syncs.is_empty();
        ACTIVE.store(active, Ordering::Release);
        r
    }

    /// Test hooks: failpoints and persistence recording. Not part of the stable API.
    pub mod testing {
        use super::*;

        /// Arms a failpoint; replaces any plan for the same directory.
        pub fn arm(plan: FaultPlan) {
            with_hooks(|h| {
                h.faults.retain(|a| a.plan.dir != plan.dir);
                h.faults.push(Armed { plan, seen: 0, failed: 0 });
            });
        }

        /// Disarms the failpoint for `dir`; returns (calls counted, calls failed).
        pub fn disarm(dir: &Path) -> (u64, u64) {
            with_hooks(|h| {
                let found = h.faults.iter().find(|a| a.plan.dir == dir).map(|a| (a.seen, a.failed));
                h.faults.retain(|a| a.plan.dir != dir);
                found.unwrap_or((0, 0))
            })
        }

        /// Makes every file sync under `dir` take at least `pause` longer (`None`: as fast as the OS), so
        /// that a test sees writes land while a sync runs (group commit syncs beside the writer).
        pub fn slow_syncs(dir: &Path, pause: Option<Duration>) {
            with_hooks(|h| {
                h.slow_syncs.retain(|(d, _)| d != dir);
                if let Some(p) = pause {
                    h.slow_syncs.push((dir.to_path_buf(), p));
                }
            });
        }

        /// Starts recording persistence events under `dir`.
        pub fn record(dir: &Path) {
            with_hooks(|h| {
                h.recorders.retain(|(d, _)| d != dir);
                h.recorders.push((dir.to_path_buf(), Vec::new()));
            });
        }

        /// What was recorded under `dir` so far; recording goes on (no event of another thread is lost
        /// between two calls, as it could be between `take_recording` and `record`).
        pub fn drain_recording(dir: &Path) -> Vec<PersistEvent> {
            with_hooks(|h| {
                let found = h.recorders.iter_mut().find(|(d, _)| d == dir);
                found.map(|(_, events)| std::mem::take(events)).unwrap_or_default()
            })
        }

        /// Stops recording under `dir` and returns what was recorded.
        pub fn take_recording(dir: &Path) -> Vec<PersistEvent> {
            with_hooks(|h| {
                let pos = h.recorders.iter().position(|(d, _)| d == dir);
                pos.map(|i| h.recorders.swap_remove(i).1).unwrap_or_default()
            })
        }
    }

    /// Counts the call against an armed failpoint and fails it if the plan says so.
    pub(super) fn check(op: Op, path: &Path) -> io::Result<()> {
        if !ACTIVE.load(Ordering::Acquire) {
            return Ok(());
        }
        with_hooks(|h| {
            for a in h.faults.iter_mut().filter(|a| path.starts_with(&a.plan.dir)) {
                if a.plan.ops.as_ref().is_some_and(|ops| !ops.contains(&op)) {
                    continue;
                }
                a.seen += 1;
                if a.seen == a.plan.nth || (a.plan.persistent && a.seen > a.plan.nth) {
                    a.failed += 1;
                    return Err(io::Error::from_raw_os_error(a.plan.errno));
                }
            }
            Ok(())
        })
    }

    /// Sleeps if `slow_syncs` covers `path` (outside the hooks' lock, so other threads go on meanwhile).
    pub(super) fn pause_sync(path: &Path) {
        if !ACTIVE.load(Ordering::Acquire) {
            return;
        }
        let pause = with_hooks(|h| h.slow_syncs.iter().find(|(d, _)| path.starts_with(d)).map(|(_, p)| *p));
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    }

    /// Records a persistence event if a recorder covers `path`.
    pub(super) fn record(path: &Path, event: impl FnOnce() -> PersistEvent) {
        if !ACTIVE.load(Ordering::Acquire) {
            return;
        }
        with_hooks(|h| {
            if let Some((_, events)) = h.recorders.iter_mut().find(|(d, _)| path.starts_with(d)) {
                events.push(event());
            }
        });
    }
}

// Without the test hooks, the stand-ins compile to nothing on the I/O paths.
#[cfg(not(feature = "testing"))]
#[inline(always)]
#[expect(clippy::inline_always, reason = "a no-op stand-in for a test hook must vanish from every I/O call")]
#[expect(clippy::unnecessary_wraps, reason = "the signature of the test hook it stands in for")]
fn check(_op: Op, _path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(not(feature = "testing"))]
#[inline(always)]
fn record(_path: &Path, _event: impl FnOnce() -> PersistEvent) {}

#[cfg(not(feature = "testing"))]
#[inline(always)]
fn pause_sync(_path: &Path) {}

/// Creates a new file (failing if it exists), mode 0600.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    check(Op::Open, path)?;
    let f = os::private(OpenOptions::new().read(true).write(true).create_new(true)).open(path)?;
    record(path, || PersistEvent::Create(path.to_path_buf()));
    Ok(f)
}

/// Opens an existing file, refusing symlinks.
pub(crate) fn open(path: &Path, writable: bool) -> io::Result<File> {
    check(Op::Open, path)?;
    os::open_no_follow(path, writable)
}

/// Opens (creating if needed) the lock file `LOCK`, which writers and tools that remove a store lock
/// exclusively, and whose first bytes hold the writer's head record.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    check(Op::Open, path)?;
    os::private(OpenOptions::new().read(true).write(true).create(true).truncate(false)).open(path)
}

/// Opens an existing lock file read-only, for a reader to map the head record; `None` if there is none.
pub(crate) fn open_lock_file_to_read(path: &Path) -> io::Result<Option<File>> {
    check(Op::Open, path)?;
    match os::open_no_follow(path, false) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Grows the lock file to at least `len` bytes (never shrinks it: readers may have it mapped).
pub(crate) fn grow_lock_file(file: &File, len: u64) -> io::Result<()> {
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Takes a non-blocking flock on `file`: exclusive, or shared. `Ok(false)` if another holder's lock
/// conflicts.
///
/// Two locks guard a store (docs/format.md, "Locks"): the writer holds `LOCK` exclusively; every read-only
/// handle holds the directory itself shared, so readers never stand in a writer's way; a tool that removes or
/// replaces a store holds both exclusively, so it waits for no one and no one opens under it.
pub(crate) fn try_lock(file: &File, path: &Path, exclusive: bool) -> io::Result<bool> {
    check(Op::Lock, path)?;
    let r = if exclusive { file.try_lock() } else { file.try_lock_shared() };
    match r {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Marks the writer's held `LOCK` file as belonging to a live writer, for [`writer_is_live`]. The mark
/// dies with the writer's handle, like its flock.
pub(crate) fn mark_writer_live(lock: &File, path: &Path) -> io::Result<()> {
    check(Op::Lock, path)?;
    os::mark_live(lock)
}

/// Whether a writer has `lock` (a reader's handle on `LOCK`) open now, asked without taking anything, so a
/// writer starting this instant is never in the way; `None` where the platform cannot say.
pub(crate) fn writer_is_live(lock: &File) -> Option<bool> {
    os::is_marked_live(lock)
}

/// What [`lock_dir`] got.
pub(crate) enum DirLock {
    /// The flock, held until the file is dropped.
    Held(File),
    /// Directories cannot be locked here (a file system without directory flocks, or a platform that cannot
    /// open a directory as a file): the caller goes unlocked.
    Unsupported,
    /// Another holder's lock conflicts.
    Conflict,
}

/// Locks the directory `dir` itself, exclusively or shared (see [`try_lock`]).
pub(crate) fn lock_dir(dir: &Path, exclusive: bool) -> io::Result<DirLock> {
    check(Op::Lock, dir)?;
    let Ok(file) = File::open(dir) else { return Ok(DirLock::Unsupported) };
    let r = if exclusive { file.try_lock() } else { file.try_lock_shared() };
    Ok(match r {
        Ok(()) => DirLock::Held(file),
        Err(std::fs::TryLockError::WouldBlock) => DirLock::Conflict,
        Err(std::fs::TryLockError::Error(_)) => DirLock::Unsupported,
    })
}

/// Preallocates `len` bytes for real (not a sparse `set_len`), so a full disk is ENOSPC here rather than a
/// SIGBUS on a later write through the map.
pub(crate) fn allocate(file: &File, path: &Path, len: u64) -> io::Result<()> {
    check(Op::Allocate, path)?;
    os::allocate(file, len)?;
    record(path, || PersistEvent::Allocate(path.to_path_buf(), len));
    Ok(())
}

/// Reserves blocks again for a file already `len` bytes long whose tail [`release_blocks`] gave back. The
/// file's length and bytes do not change (holes read as zeros, and so do reserved blocks), so the persistence
/// recorder has nothing to record; a failpoint can still make it fail like [`allocate`].
pub(crate) fn reserve(file: &File, path: &Path, len: u64) -> io::Result<()> {
    check(Op::Allocate, path)?;
    os::allocate(file, len)
}

/// Gives the blocks of `[from, to)` back to the file system, keeping the file's length (a hole reads as zeros,
/// and readers that map the file keep a valid mapping). For the unused preallocated tail of the last segment
/// at a clean close; [`allocate`] takes the blocks back before anything is written there again. A platform
/// without hole punching keeps the blocks.
pub(crate) fn release_blocks(file: &File, path: &Path, from: u64, to: u64) -> io::Result<()> {
    check(Op::Allocate, path)?;
    if from < to {
        os::punch_hole(file, from, to - from)?;
    }
    Ok(())
}

/// The byte ranges in `[from, to)` of `file` that may hold data (`lseek` with `SEEK_DATA`/`SEEK_HOLE`): holes,
/// including preallocated blocks never written (and not in the page cache), read as zeros and are left out.
/// A file system without support answers with the whole range.
pub(crate) fn data_ranges(file: &File, path: &Path, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
    check(Op::Read, path)?;
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let start = match os::seek_data(file, at)? {
            os::Seek::To(s) => s,
            os::Seek::End => break,
            os::Seek::Unsupported => return Ok(vec![(from, to)]),
        };
        if start >= to {
            break;
        }
        let end = match os::seek_hole(file, start)? {
            os::Seek::To(e) => e.min(to),
            os::Seek::End => to,
            os::Seek::Unsupported => return Ok(vec![(from, to)]),
        };
        // Each step moves forward; a file system answering otherwise gets the whole range scanned.
        if end <= start || start < at {
            return Ok(vec![(from, to)]);
        }
        out.push((start, end));
        at = end;
    }
    Ok(out)
}

/// Writes all of `buf` at `offset` with `pwrite`.
pub(crate) fn write_at(file: &File, path: &Path, offset: u64, buf: &[u8]) -> io::Result<()> {
    check(Op::Write, path)?;
    os::write_all_at(file, buf, offset)?;
    record(path, || PersistEvent::Write(path.to_path_buf(), offset, buf.to_vec()));
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub(crate) fn read_at(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    check(Op::Read, path)?;
    os::read_exact_at(file, buf, offset)
}

/// Reads a whole (small) file.
pub(crate) fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    check(Op::Read, path)?;
    std::fs::read(path)
}

/// Checks a failpoint before a store through the map, and records the stored bytes.
pub(crate) fn before_map_write(path: &Path) -> io::Result<()> {
    check(Op::Write, path)
}

/// Records bytes stored through the map: called only by `MapWriter` (map.rs), which records its own stores.
pub(crate) fn after_map_write(path: &Path, offset: u64, bytes: &[u8]) {
    record(path, || PersistEvent::Write(path.to_path_buf(), offset, bytes.to_vec()));
}

/// Checks a failpoint before mapping a file.
pub(crate) fn before_map(path: &Path) -> io::Result<()> {
    check(Op::Map, path)
}

/// Runs a file sync (fdatasync, or msync for a map) through the failpoint and recorder.
pub(crate) fn sync_with(
    path: &Path,
    (start, end): (u64, u64),
    sync: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    check(Op::SyncFile, path)?;
    record(path, || PersistEvent::SyncStart(path.to_path_buf(), start, end));
    pause_sync(path);
    sync()?;
    record(path, || PersistEvent::SyncFile(path.to_path_buf()));
    Ok(())
}

/// fdatasync of a file.
pub(crate) fn sync_file(file: &File, path: &Path) -> io::Result<()> {
    sync_with(path, (0, u64::MAX), || os::sync_data(file))
}

/// macOS: asks the drive to flush its cache (`F_FULLFSYNC`), after an `msync` that only reached it.
#[cfg(target_vendor = "apple")]
pub(crate) fn full_sync(file: &File) -> io::Result<()> {
    os::sync_data(file)
}

/// fsync of a directory, so creates, renames and removes in it survive power loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    check(Op::SyncDir, dir)?;
    os::sync_dir(dir)?;
    record(dir, || PersistEvent::SyncDir(dir.to_path_buf()));
    Ok(())
}

/// Renames a file (same directory).
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    check(Op::Rename, from)?;
    std::fs::rename(from, to)?;
    record(from, || PersistEvent::Rename(from.to_path_buf(), to.to_path_buf()));
    Ok(())
}

/// Renames a file (same directory), failing with `AlreadyExists` instead of replacing an existing `to`.
///
/// Segment files are never replaced: a roll that computed a name already in use must fail, not destroy a
/// live segment. Linux has `renameat2(RENAME_NOREPLACE)`; where the file system or OS lacks it, a hard link
/// (which never replaces) followed by removing the old name does the same, at the cost of a moment where
/// both names exist (a crash there leaves a `.tmp` name that open removes; the segment name is whole).
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    check(Op::Rename, from)?;
    match os::rename_no_replace(from, to) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported || is_einval_or_enosys(&e) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)?;
        }
        r => r?,
    }
    record(from, || PersistEvent::Rename(from.to_path_buf(), to.to_path_buf()));
    Ok(())
}

/// The errors a file system or kernel without `RENAME_NOREPLACE` gives.
#[cfg(unix)]
fn is_einval_or_enosys(e: &io::Error) -> bool {
    let code = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
    matches!(code, Some(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS))
}
#[cfg(not(unix))]
fn is_einval_or_enosys(_e: &io::Error) -> bool {
    false
}

/// Removes a file.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    check(Op::Remove, path)?;
    std::fs::remove_file(path)?;
    record(path, || PersistEvent::Remove(path.to_path_buf()));
    Ok(())
}

/// Creates a directory (and parents) with mode 0700 if missing.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    check(Op::Open, dir)?;
    os::private_dir(std::fs::DirBuilder::new().recursive(true)).create(dir)
}

/// Lists a directory with every entry's own type (a symlink is not followed) and raw name, so a caller can
/// judge entries whose names are not UTF-8 too.
pub(crate) fn list_dir_entries(dir: &Path) -> io::Result<Vec<(std::ffi::OsString, std::fs::FileType)>> {
    check(Op::ListDir, dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        out.push((entry.file_name(), entry.file_type()?));
    }
    Ok(out)
}

/// Removes an empty directory (never its contents).
pub(crate) fn remove_empty_dir(dir: &Path) -> io::Result<()> {
    check(Op::Remove, dir)?;
    std::fs::remove_dir(dir)
}

/// Lists a directory: (file name, is a regular file and not a symlink).
pub(crate) fn list_dir(dir: &Path) -> io::Result<Vec<(String, bool)>> {
    check(Op::ListDir, dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let regular = entry.file_type()?.is_file();
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_owned(), regular));
        }
    }
    Ok(out)
}

/// Replaces `dir/name` atomically: a temp file (`name.tmp-<pid>-<n>`) is written, synced and renamed over it,
/// then the directory is synced. After a crash the file is the old one or the whole new one.
pub(crate) fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_parts_atomically(dir, name, &[bytes])
}

/// As [`write_file_atomically`], for a file made of `parts` one after the other (written in turn, never
/// joined in memory first).
pub(crate) fn write_parts_atomically(dir: &Path, name: &str, parts: &[&[u8]]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp =
        dir.join(format!("{name}.tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let target = dir.join(name);
    let run = || -> io::Result<()> {
        let f = create_new(&tmp)?;
        let mut at = 0u64;
        for part in parts {
            write_at(&f, &tmp, at, part)?;
            at += part.len() as u64;
        }
        sync_file(&f, &tmp)?;
        rename(&tmp, &target)?;
        sync_dir(dir)
    };
    run().inspect_err(|_| {
        let _ = remove(&tmp);
    })
}

/// What differs between operating systems, each function with the primitive its platform needs. Linux is
/// the tested platform; macOS and Windows build (`.ci/run` checks both when their targets can be installed).
mod os {
    use std::fs::{DirBuilder, File, OpenOptions};
    use std::io;
    use std::path::Path;

    /// Where a seek for data or a hole landed.
    #[cfg_attr(not(unix), allow(dead_code, reason = "Windows has no SEEK_DATA: always Unsupported"))]
    pub(super) enum Seek {
        To(u64),
        /// No data (or hole) at or after the offset.
        End,
        /// The file system or platform cannot say.
        Unsupported,
    }

    /// New files are readable and writable by their owner only.
    #[cfg(unix)]
    pub(super) fn private(o: &mut OpenOptions) -> &mut OpenOptions {
        std::os::unix::fs::OpenOptionsExt::mode(o, 0o600)
    }
    #[cfg(not(unix))]
    pub(super) fn private(o: &mut OpenOptions) -> &mut OpenOptions {
        o
    }

    #[cfg(unix)]
    pub(super) fn private_dir(d: &mut DirBuilder) -> &mut DirBuilder {
        std::os::unix::fs::DirBuilderExt::mode(d, 0o700)
    }
    #[cfg(not(unix))]
    pub(super) fn private_dir(d: &mut DirBuilder) -> &mut DirBuilder {
        d
    }

    /// Opens a file, refusing a symlink in the last component.
    #[cfg(unix)]
    pub(super) fn open_no_follow(path: &Path, writable: bool) -> io::Result<File> {
        let mut o = OpenOptions::new();
        o.read(true).write(writable);
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut o,
            rustix::fs::OFlags::NOFOLLOW.bits().cast_signed(),
        );
        o.open(path)
    }
    /// Without `O_NOFOLLOW`: the link is checked first (a race with a rename is possible; Windows is built,
    /// not tested).
    #[cfg(not(unix))]
    pub(super) fn open_no_follow(path: &Path, writable: bool) -> io::Result<File> {
        if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a symlink"));
        }
        OpenOptions::new().read(true).write(writable).open(path)
    }

    #[cfg(unix)]
    pub(super) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    pub(super) fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    #[cfg(unix)]
    pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    pub(super) fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = std::os::windows::fs::FileExt::seek_read(file, buf, offset)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    /// A sync of the file's data that survives power loss. On macOS `fsync` only reaches the drive's cache;
    /// `F_FULLFSYNC` asks the drive to flush it.
    #[cfg(target_vendor = "apple")]
    pub(super) fn sync_data(file: &File) -> io::Result<()> {
        rustix::fs::fcntl_fullfsync(file).map_err(io::Error::from)
    }
    #[cfg(not(target_vendor = "apple"))]
    pub(super) fn sync_data(file: &File) -> io::Result<()> {
        file.sync_data()
    }

    /// A sync of a directory's entries. Windows cannot open a directory as a file here, and NTFS journals
    /// its metadata: nothing to do there.
    #[cfg(unix)]
    pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
        sync_data(&File::open(dir)?)
    }
    #[cfg(not(unix))]
    pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
        Ok(())
    }

    /// `rename` that fails with `AlreadyExists` instead of replacing `to`; `EINVAL`/`ENOSYS` (or `Unsupported`)
    /// where the platform or file system lacks it.
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        // NOREPLACE is `RENAME_NOREPLACE` on Linux and `RENAME_EXCL` (renameatx_np) on macOS.
        renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    pub(super) fn rename_no_replace(_from: &Path, _to: &Path) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Reserves real blocks for `len` bytes and extends the file to it. On Linux, glibc's `posix_fallocate`,
    /// which also works where the file system has no `fallocate` (it writes a byte per block then), which
    /// `fs4`'s bare `fallocate` would refuse; elsewhere `fs4` picks the platform's call (`F_PREALLOCATE` on
    /// macOS, the allocation size on Windows).
    #[cfg(target_os = "linux")]
    pub(super) fn allocate(file: &File, len: u64) -> io::Result<()> {
        use std::os::unix::io::AsRawFd;
        let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: posix_fallocate only reads its integer arguments; the fd is valid for the borrow of `file`.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    pub(super) fn allocate(file: &File, len: u64) -> io::Result<()> {
        fs4::FileExt::allocate(file, len)
    }

    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`; a file system that cannot punch holes keeps the blocks.
    #[cfg(target_os = "linux")]
    pub(super) fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::FallocateFlags;
        match rustix::fs::fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)
        {
            Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    pub(super) fn punch_hole(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// An open-file-description (OFD) record lock on byte 0 of `file`: `F_OFD_SETLK` places a write lock,
    /// `F_OFD_GETLK` asks whether one is held without taking anything. Linux only; neither std, rustix nor
    /// fs4 has byte-range or query locks. OFD locks belong to the open file, like flock, so closing another
    /// descriptor of the same file in the same process does not drop them (POSIX record locks would).
    #[cfg(target_os = "linux")]
    fn ofd_lock(file: &File, cmd: libc::c_int, l_type: libc::c_int) -> io::Result<libc::c_int> {
        use std::os::unix::io::AsRawFd;
        // SAFETY: `flock` is a plain C struct of integers, for which all zeros is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = l_type as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 1;
        // SAFETY: the fd is valid for the borrow of `file`; `fl` is a valid, writable `flock` that fcntl
        // reads (and, for GETLK, overwrites) and does not keep.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(libc::c_int::from(fl.l_type))
    }

    /// Marks `file` (the writer's `LOCK`) as held by a live writer.
    #[cfg(target_os = "linux")]
    pub(super) fn mark_live(file: &File) -> io::Result<()> {
        ofd_lock(file, libc::F_OFD_SETLK, libc::F_WRLCK).map(drop)
    }
    #[cfg(not(target_os = "linux"))]
    pub(super) fn mark_live(_file: &File) -> io::Result<()> {
        Ok(())
    }

    /// Whether a live writer marked `file`'s `LOCK`; `None` where it cannot be asked.
    #[cfg(target_os = "linux")]
    pub(super) fn is_marked_live(file: &File) -> Option<bool> {
        ofd_lock(file, libc::F_OFD_GETLK, libc::F_RDLCK).ok().map(|t| t != libc::F_UNLCK)
    }
    #[cfg(not(target_os = "linux"))]
    pub(super) fn is_marked_live(_file: &File) -> Option<bool> {
        None
    }

    /// `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` where the platform has them.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_vendor = "apple"))]
    fn seek(file: &File, to: rustix::fs::SeekFrom) -> io::Result<Seek> {
        match rustix::fs::seek(file, to) {
            Ok(at) => Ok(Seek::To(at)),
            Err(rustix::io::Errno::NXIO) => Ok(Seek::End),
            Err(rustix::io::Errno::INVAL) => Ok(Seek::Unsupported),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_vendor = "apple"))]
    pub(super) fn seek_data(file: &File, at: u64) -> io::Result<Seek> {
        seek(file, rustix::fs::SeekFrom::Data(at))
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_vendor = "apple"))]
    pub(super) fn seek_hole(file: &File, at: u64) -> io::Result<Seek> {
        seek(file, rustix::fs::SeekFrom::Hole(at))
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_vendor = "apple"
    )))]
    pub(super) fn seek_data(_file: &File, _at: u64) -> io::Result<Seek> {
        Ok(Seek::Unsupported)
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_vendor = "apple"
    )))]
    pub(super) fn seek_hole(_file: &File, _at: u64) -> io::Result<Seek> {
        Ok(Seek::Unsupported)
    }
}
