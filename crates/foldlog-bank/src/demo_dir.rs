//! The demo's directory rules, shared by `foldlog demo` and `examples/bank.rs` (in this crate): nothing is deleted that
//! foldlog did not create (docs/operations.md).
//!
//! The demo writes only inside a directory it owns: one it created (or found empty) and marked with a
//! [`MARKER`] file. It never touches anything outside it. On a later run it replaces the stores in there only
//! if the caller allows it, only if every entry is recognised (the marker, the store subdirectories it named,
//! foldlog's own files), and only if no process has any of them open; removing then deletes only the files
//! `foldlog::StoreLock::remove_store_files` recognises, never anything recursively. The marker stays locked
//! for the whole run, so a second demo on the same directory is told it is in use before it looks further.

use std::error::Error;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use foldlog::{inspect_directory, StoreLock};

/// Name of the file that marks a directory as the demo's own.
pub const MARKER: &str = "FOLDLOG-DEMO";
/// First line of the marker: a file of that name without it is not ours.
const MARKER_FIRST_LINE: &str = "foldlog demo directory";
const MARKER_TEXT: &str = "foldlog demo directory\n\n\
    Created by `foldlog demo` (or the bank example). A later run replaces the foldlog stores in here, removing\n\
    only files it recognises as foldlog's, and refuses to run while anything else is here or while a process\n\
    has one of the stores open. Delete this directory when you no longer need it.\n";

type Fallible<T> = Result<T, Box<dyn Error>>;

/// A directory the demo owns for as long as this value lives (its marker is locked).
#[derive(Debug)]
pub struct DemoDir {
    /// The directory.
    pub dir: PathBuf,
    _marker: File,
}

/// Claims `dir` for the demo: creates it if missing, marks it if empty, or takes over a directory marked by an
/// earlier run. `stores` are the subdirectories the demo keeps stores in (the directory itself may hold one
/// too). An earlier run's stores are replaced only with `replace`; anything the demo did not create is an
/// error naming it, and nothing is removed. A directory in use by another process is `foldlog::Error::Locked`.
pub fn claim(dir: &Path, replace: bool, stores: &[&str]) -> Fallible<DemoDir> {
    if dir.as_os_str().is_empty() {
        return Err("the demo directory path is empty".into());
    }
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    if inspect_directory(dir)?.is_empty() {
        if let Some(marker) = mark_empty(dir)? {
            return Ok(DemoDir { dir: dir.to_path_buf(), _marker: marker });
        }
    }
    let marker = open_marker(dir)?;
    replace_earlier_stores(dir, replace, stores)?;
    Ok(DemoDir { dir: dir.to_path_buf(), _marker: marker })
}

/// Marks an empty directory as the demo's: the marker, created, locked, written and synced. `None` if
/// another demo created a marker first.
fn mark_empty(dir: &Path) -> Fallible<Option<File>> {
    let marker_path = dir.join(MARKER);
    match OpenOptions::new().read(true).write(true).create_new(true).open(&marker_path) {
        Ok(mut marker) => {
            lock(&marker, dir)?;
            marker
                .write_all(MARKER_TEXT.as_bytes())
                .and_then(|()| marker.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", marker_path.display()))?;
            Ok(Some(marker))
        }
        // Another demo got there first: judge the directory as one with a marker.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(format!("cannot create {}: {e}", marker_path.display()).into()),
    }
}

/// The marker of a directory an earlier run created, locked; an error naming what is there if it is not the
/// demo's.
fn open_marker(dir: &Path) -> Fallible<File> {
    let marker_path = dir.join(MARKER);
    match OpenOptions::new().read(true).open(&marker_path) {
        Ok(mut marker) if marker_path.is_file() => {
            lock(&marker, dir)?;
            let mut text = String::new();
            let _ = (&mut marker).take(4096).read_to_string(&mut text);
            if !text.starts_with(MARKER_FIRST_LINE) {
                return Err(not_ours(dir, &format!("{MARKER:?}, a file the demo did not write")));
            }
            Ok(marker)
        }
        _ => {
            let contents = inspect_directory(dir)?;
            let what = if contents.has_segments {
                "a foldlog store that foldlog demo did not create".to_owned()
            } else {
                let first = contents.foreign.first().or(contents.store_entries.first());
                first.map_or_else(|| "files".to_owned(), |p| format!("{:?}", file_name(p)))
            };
            Err(not_ours(dir, &what))
        }
    }
}

/// In a directory that is ours: every entry must be recognised before anything is removed; then an earlier
/// run's stores are removed if `replace` allows it, each locked first.
fn replace_earlier_stores(dir: &Path, replace: bool, stores: &[&str]) -> Fallible<()> {
    let contents = inspect_directory(dir)?;
    let mut store_dirs = vec![dir.to_path_buf()];
    let mut earlier_stores = has_store_files(&contents.store_entries, dir);
    for entry in &contents.foreign {
        let name = file_name(entry);
        if name == MARKER {
            continue;
        }
        if stores.contains(&name.as_str()) && entry.is_dir() {
            let sub = inspect_directory(entry)?;
            if let Some(foreign) = sub.foreign.first() {
                return Err(not_ours(dir, &format!("{:?}", foreign.display().to_string())));
            }
            earlier_stores |= has_store_files(&sub.store_entries, entry);
            store_dirs.push(entry.clone());
            continue;
        }
        return Err(not_ours(dir, &format!("{name:?}")));
    }
    if !earlier_stores {
        return Ok(());
    }
    if !replace {
        return Err(format!(
            "{} holds the stores of an earlier demo run; pass --replace to replace them (only files the demo \
             recognises as foldlog's are removed)",
            dir.display()
        )
        .into());
    }
    // Lock every store before removing anything from any of them.
    let locks = store_dirs.iter().map(StoreLock::acquire).collect::<Result<Vec<_>, _>>()?;
    for lock in &locks {
        lock.remove_store_files()?;
    }
    Ok(())
}

fn lock(marker: &File, dir: &Path) -> Fallible<()> {
    match marker.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Box::new(foldlog::Error::Locked { path: dir.to_path_buf() })),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", dir.join(MARKER).display()).into()),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Whether `entries` (foldlog's own, per `inspect_directory`) hold more than the lock file.
fn has_store_files(entries: &[PathBuf], dir: &Path) -> bool {
    entries.iter().any(|p| p != &dir.join("LOCK"))
}

fn not_ours(dir: &Path, what: &str) -> Box<dyn Error> {
    format!(
        "{} holds {what}, which foldlog demo did not create; nothing was changed. The demo writes only into a \
         new or empty directory, or one an earlier demo run created: choose another --dir",
        dir.display()
    )
    .into()
}
