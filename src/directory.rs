//! The data directory as a whole: what foldlog recognises as its own in it, the judgement `open` makes before
//! it writes anything, and the removal of a store's files for tools that replace a store.
//!
//! The rule behind all of it: nothing is written into a directory that is not a foldlog store unless the
//! caller asked for it, and nothing is deleted that foldlog did not create. Entries are recognised by name
//! and file type only (no file is opened here); segment names through [`parse_segment_file_name`], so the
//! segment naming scheme lives in one place.

use std::ffi::OsStr;
use std::fs::{File, FileType};
use std::path::{Path, PathBuf};

use crate::aggregate as snapshot;
use crate::corruption::Corruption;
use crate::error::{Error, Result};
use crate::format::{parse_segment_file_name, CHECKPOINT_FILE, KEY_FILE, LOCK_FILE};
use crate::io as sys;
use crate::options::Options;
use crate::segment::SEGMENT_TMP_SUFFIX;

/// What one directory entry is, judged by its name and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A file with a segment name (a non-regular one is refused by `open` with its own error).
    Segment,
    /// The lock file.
    Lock,
    /// The index checkpoint, the key file, or a file foldlog writes and removes on its own (temp files).
    File,
    /// The `snapshots/` directory.
    Snapshots,
    /// Anything else: not created by foldlog.
    Foreign,
}

/// The file an atomic write (`io::write_file_atomically`: `<name>.tmp-<pid>-<n>`) was preparing.
pub(crate) fn atomic_temp_target(name: &str) -> Option<&str> {
    let (target, tail) = name.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then_some(target)
}

fn classify(name: &OsStr, kind: FileType) -> Kind {
    let Some(name) = name.to_str() else { return Kind::Foreign };
    if parse_segment_file_name(name).is_some() {
        return Kind::Segment;
    }
    if kind.is_dir() {
        return if name == snapshot::SNAPSHOT_DIR { Kind::Snapshots } else { Kind::Foreign };
    }
    if !kind.is_file() {
        return Kind::Foreign;
    }
    let segment_temp =
        name.strip_suffix(SEGMENT_TMP_SUFFIX).is_some_and(|n| parse_segment_file_name(n).is_some());
    if name == LOCK_FILE {
        Kind::Lock
    } else if name == CHECKPOINT_FILE
        || name == KEY_FILE
        || segment_temp
        || atomic_temp_target(name).is_some_and(|t| t == CHECKPOINT_FILE || t == KEY_FILE)
    {
        Kind::File
    } else {
        Kind::Foreign
    }
}

fn list(dir: &Path) -> Result<Vec<(std::ffi::OsString, FileType)>> {
    let mut entries = sys::list_dir_entries(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotADirectory => {
            Error::InvalidDirectory { path: dir.to_path_buf(), reason: "not a directory".into() }
        }
        _ => Error::io("list directory", dir, e),
    })?;
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// What a directory holds, as foldlog judges it by names and file types (no file is opened or changed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryContents {
    /// Entries foldlog writes in a store directory: segment files, `LOCK`, the index checkpoint, the key file
    /// (`KEYS`), temp files of its own, and `snapshots/` with the directories and files it holds, each of the
    /// right shape.
    pub store_entries: Vec<PathBuf>,
    /// Everything else, at any depth (inside `snapshots/` too): entries foldlog did not create.
    pub foreign: Vec<PathBuf>,
    /// Whether a segment file is present, i.e. the directory holds a log.
    pub has_segments: bool,
}

impl DirectoryContents {
    /// True if the directory holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.store_entries.is_empty() && self.foreign.is_empty()
    }
}

/// Lists what `dir` holds and sorts each entry into foldlog's own or foreign (see [`DirectoryContents`]). A
/// directory that does not exist is an [`Error::InvalidDirectory`], as is a path that is not a directory.
/// Reads only; nothing is created.
pub fn inspect_directory(dir: impl AsRef<Path>) -> Result<DirectoryContents> {
    let (ours, foreign) = scan(dir.as_ref())?;
    Ok(DirectoryContents {
        has_segments: ours.iter().any(|(_, k)| *k == Ours::Segment),
        store_entries: ours.into_iter().map(|(p, _)| p).collect(),
        foreign,
    })
}

/// An entry of a store directory recognised as foldlog's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ours {
    Segment,
    Lock,
    File,
    Dir,
}

type Scan = (Vec<(PathBuf, Ours)>, Vec<PathBuf>);

fn scan(dir: &Path) -> Result<Scan> {
    check_path(dir)?;
    let mut ours = Vec::new();
    let mut foreign = Vec::new();
    for (name, kind) in list(dir).map_err(|e| missing_is_invalid(dir, e))? {
        let path = dir.join(&name);
        match classify(&name, kind) {
            Kind::Foreign => foreign.push(path),
            Kind::Snapshots => {
                scan_snapshots(&path, &mut ours, &mut foreign)?;
                ours.push((path, Ours::Dir));
            }
            Kind::Segment => ours.push((path, Ours::Segment)),
            Kind::Lock => ours.push((path, Ours::Lock)),
            Kind::File => ours.push((path, Ours::File)),
        }
    }
    Ok((ours, foreign))
}

/// `snapshots/<32 hex>/<20 digits>.snap` and their temp files; anything else in there is foreign.
fn scan_snapshots(
    snapshots: &Path,
    ours: &mut Vec<(PathBuf, Ours)>,
    foreign: &mut Vec<PathBuf>,
) -> Result<()> {
    for (name, kind) in list(snapshots)? {
        let path = snapshots.join(&name);
        if !(kind.is_dir() && name.to_str().is_some_and(snapshot::is_stream_dir_name)) {
            foreign.push(path);
            continue;
        }
        for (file, kind) in list(&path)? {
            let file_path = path.join(&file);
            let recognised = kind.is_file()
                && file.to_str().is_some_and(|f| {
                    snapshot::parse_file_name(f).is_some()
                        || atomic_temp_target(f).is_some_and(|t| snapshot::parse_file_name(t).is_some())
                });
            if recognised {
                ours.push((file_path, Ours::File));
            } else {
                foreign.push(file_path);
            }
        }
        ours.push((path, Ours::Dir));
    }
    Ok(())
}

fn missing_is_invalid(dir: &Path, e: Error) -> Error {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::InvalidDirectory { path: dir.to_path_buf(), reason: "does not exist".into() }
        }
        e => e,
    }
}

/// Refuses a path that cannot name a data directory before anything is touched: an empty path would
/// otherwise resolve to files in the working directory.
fn check_path(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Err(Error::InvalidDirectory {
            path: dir.to_path_buf(),
            reason: "the path is empty (name a directory; use \".\" for the working directory)".into(),
        });
    }
    Ok(())
}

/// The judgement `Store::open` makes before it creates, locks or writes anything in `dir`.
///
/// A directory that holds a segment file is a store (other entries are left alone and ignored). One without
/// any is a new store only if it is empty or holds nothing but what foldlog itself may leave there (`LOCK`,
/// temp files, a checkpoint, `snapshots/`); anything else means it belongs to someone else, and a log is
/// created among those files only with [`Options::create_in_non_empty`]. A read-only open never creates a log,
/// so it is refused as soon as there is no segment file. A missing directory is left to the caller (created
/// or refused per `create_if_missing`).
pub(crate) fn check_before_open(dir: &Path, options: &Options) -> Result<()> {
    check_path(dir)?;
    let entries = match list(dir) {
        Ok(entries) => entries,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kinds: Vec<Kind> = entries.iter().map(|(name, kind)| classify(name, *kind)).collect();
    if kinds.contains(&Kind::Segment) {
        return Ok(());
    }
    // Before judging it empty or foreign: what remains of a log whose segments were lost, or a store of an
    // older format, is neither.
    crate::store::check_no_lost_log(dir)?;
    // Keys are made only while a log is open, so a key file without segments is a log that lost them, and a
    // new log beside old keys would take a stream id forgotten there for a new stream's.
    if entries.iter().any(|(n, kind)| kind.is_file() && n.as_os_str() == KEY_FILE) {
        let evidence = KEY_FILE;
        return Err(Error::corrupt(dir.join(KEY_FILE), 0, Corruption::SegmentsLost { evidence }));
    }
    if let Some((name, _)) =
        entries.iter().find(|(n, _)| n.to_str().is_some_and(crate::store::is_version_1_segment_name))
    {
        return Err(Error::UnsupportedVersion {
            path: dir.join(name),
            found: 1,
            supported: crate::format::FORMAT_VERSION,
        });
    }
    let foreign: Vec<&OsStr> = entries
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| **k == Kind::Foreign)
        .map(|((n, _), _)| n.as_os_str())
        .collect();
    if options.read_only {
        let reason = match foreign.first() {
            None => "no segment files (not a foldlog store, or an empty one)".to_owned(),
            Some(first) => {
                format!("no segment files; it holds {} (not a foldlog store)", name_list(first, &foreign))
            }
        };
        return Err(Error::InvalidDirectory { path: dir.to_path_buf(), reason });
    }
    match foreign.first() {
        Some(first) if !options.create_in_non_empty => Err(Error::InvalidDirectory {
            path: dir.to_path_buf(),
            reason: format!(
                "not empty and not a foldlog store: it holds {} and no segment file; a new log is created only \
                 in a new or empty directory (or set Options::create_in_non_empty)",
                name_list(first, &foreign)
            ),
        }),
        _ => Ok(()),
    }
}

fn name_list(first: &OsStr, all: &[&OsStr]) -> String {
    let first = Path::new(first).display();
    match all.len() {
        1 => format!("{first:?}"),
        n => format!("{first:?} and {} other entr{}", n - 1, if n == 2 { "y" } else { "ies" }),
    }
}

/// An exclusive hold on a store directory's lock, taken the way a writer takes it but without opening the log:
/// for tools that replace or remove a store and must never do so while any handle (a writer, or a read-only
/// reader) has it open. Released on drop.
#[derive(Debug)]
pub struct StoreLock {
    dir: PathBuf,
    _file: File,
    /// The directory's own flock, which read-only handles share (`None` where directories cannot be locked).
    _dir: Option<File>,
}

/// What [`StoreLock::remove_store_files`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removal {
    /// Files and (emptied) snapshot directories removed.
    pub removed: Vec<PathBuf>,
    /// Entries left in place because foldlog did not create them (see [`DirectoryContents::foreign`]).
    pub kept: Vec<PathBuf>,
}

impl StoreLock {
    /// Takes `dir`'s lock exclusively. `dir` must exist; its `LOCK` file is created if missing (the one thing
    /// written). [`Error::Locked`] if any handle, in this process or another, holds the store open.
    pub fn acquire(dir: impl AsRef<Path>) -> Result<StoreLock> {
        let dir = dir.as_ref();
        check_path(dir)?;
        if !dir.is_dir() {
            return Err(Error::InvalidDirectory {
                path: dir.to_path_buf(),
                reason: "does not exist or is not a directory".into(),
            });
        }
        let lock_path = dir.join(LOCK_FILE);
        let file = sys::open_lock_file(&lock_path).map_err(|e| Error::io("open lock file", &lock_path, e))?;
        if !sys::try_lock(&file, &lock_path, true).map_err(|e| Error::io("lock", &lock_path, e))? {
            return Err(Error::Locked { path: dir.to_path_buf() });
        }
        // Readers hold the directory shared: holding it exclusively keeps them out, and waits for none.
        let dir_lock = match sys::lock_dir(dir, true).map_err(|e| Error::io("lock directory", dir, e))? {
            sys::DirLock::Held(f) => Some(f),
            sys::DirLock::Unsupported => None,
            sys::DirLock::Conflict => return Err(Error::Locked { path: dir.to_path_buf() }),
        };
        Ok(StoreLock { dir: dir.to_path_buf(), _file: file, _dir: dir_lock })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the store's files, and only those: the files [`inspect_directory`] recognises as foldlog's
    /// (segments, the index checkpoint, the key file, temp files, snapshot files and the snapshot directories
    /// they emptied); everything else is left where it is and listed in [`Removal::kept`]. `LOCK` stays too:
    /// it is held, and removing a lock file others may be opening would break the lock. Nothing is ever
    /// removed recursively. The directory is synced at the end; a crash part-way leaves a subset of the store's
    /// files (segments go last, newest first).
    pub fn remove_store_files(&self) -> Result<Removal> {
        let (ours, foreign) = scan(&self.dir)?;
        let mut removal = Removal { removed: Vec::new(), kept: foreign };
        let pick = |kind: Ours| ours.iter().filter(move |(_, k)| *k == kind).map(|(p, _)| p.clone());
        let files: Vec<PathBuf> = pick(Ours::File).collect();
        let mut segments: Vec<PathBuf> = pick(Ours::Segment).collect();
        let mut dirs: Vec<PathBuf> = pick(Ours::Dir).collect();
        // Deepest directories first, so a stream's directory goes before `snapshots/`.
        dirs.sort_unstable_by_key(|d| std::cmp::Reverse(d.components().count()));
        segments.sort_unstable();
        segments.reverse();
        for path in files.into_iter().chain(segments) {
            match sys::remove(&path) {
                Ok(()) => removal.removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove store file", path, e)),
            }
        }
        for dir in dirs {
            // A directory holding anything foreign is not empty and stays, which `kept` already says.
            if removal.kept.iter().any(|k| k.starts_with(&dir)) {
                continue;
            }
            match sys::remove_empty_dir(&dir) {
                Ok(()) => removal.removed.push(dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove snapshot directory", dir, e)),
            }
        }
        sys::sync_dir(&self.dir).map_err(|e| Error::io("sync directory", &self.dir, e))?;
        Ok(removal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_temp_names() {
        assert_eq!(atomic_temp_target("index.ckpt.tmp-12-0"), Some("index.ckpt"));
        assert_eq!(atomic_temp_target("index.ckpt.tmp-12-"), None);
        assert_eq!(atomic_temp_target("index.ckpt.tmp-x-1"), None);
        assert_eq!(atomic_temp_target("index.ckpt"), None);
        assert_eq!(atomic_temp_target("KEYS.tmp-7-3"), Some("KEYS"));
    }
}
