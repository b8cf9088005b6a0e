//! A new store built whole before anyone sees it: the tools that create a store from something else
//! (`salvage`, `backup`, the CLI's `import`) write into a temporary directory next to the destination and
//! rename it into place at the end, so a destination either does not exist or holds a finished store.
//!
//! The destination must not exist, or be an empty directory (which is replaced by the rename). The temporary
//! directory is `<parent>/.<name>.foldlog-tmp-<pid>-<n>`; if the work fails, only foldlog's own files are
//! removed from it (the way [`StoreLock::remove_store_files`] judges them) and then the directory itself, if
//! that left it empty. A crash leaves the temporary directory behind, under a name that says what it is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::directory::StoreLock;
use crate::error::{Error, Result};
use crate::format::{CHECKPOINT_FILE, LOCK_FILE};
use crate::io as sys;

/// A temporary directory that becomes `dst` on [`Staging::finish`], or is cleaned up on drop.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
    dst: PathBuf,
    done: bool,
}

/// Refuses a destination that exists and is anything but an empty directory.
fn check_destination(dst: &Path) -> Result<()> {
    if dst.as_os_str().is_empty() {
        return Err(Error::InvalidDirectory { path: dst.to_path_buf(), reason: "the path is empty".into() });
    }
    match std::fs::symlink_metadata(dst) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("inspect destination", dst, e)),
        Ok(m) if !m.is_dir() => Err(Error::InvalidDirectory {
            path: dst.to_path_buf(),
            reason: "exists and is not a directory; name a new directory".into(),
        }),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dst).map_err(|e| Error::io("list destination", dst, e))?;
            if entries.next().is_some() {
                return Err(Error::InvalidDirectory {
                    path: dst.to_path_buf(),
                    reason:
                        "exists and is not empty; a new store is written only into a new or empty directory"
                            .into(),
                });
            }
            Ok(())
        }
    }
}

impl Staging {
    /// Checks `dst` (missing or empty) and creates the temporary directory next to it (creating `dst`'s
    /// parent if needed).
    pub(crate) fn new(dst: &Path) -> Result<Staging> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        check_destination(dst)?;
        let name = dst.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::InvalidDirectory {
            path: dst.to_path_buf(),
            reason: "the destination needs a final path component in UTF-8".into(),
        })?;
        let parent = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sys::create_dir(&parent).map_err(|e| Error::io("create directory", &parent, e))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".{name}.foldlog-tmp-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| Error::io("create temporary directory", &dir, e))?;
        Ok(Staging { dir, dst: dst.to_path_buf(), done: false })
    }

    /// The temporary directory to build the store in.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Removes the index checkpoint the store built here wrote on close. Salvage and import build with no
    /// event-id window (`event_ids_remembered: 0`: the source decided which ids were retries, and a window
    /// here would refuse an id the source legitimately reused after forgetting it), and a checkpoint would
    /// carry that empty window into the first open. Without one, the first open rebuilds the index from the
    /// log, remembering ids as its own options say.
    pub(crate) fn remove_checkpoint(&self) -> Result<()> {
        let path = self.dir.join(CHECKPOINT_FILE);
        match sys::remove(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove checkpoint", path, e))
            }
            _ => Ok(()),
        }
    }

    /// Moves the finished store into place: checks `dst` again, removes it if it is an empty directory, and
    /// renames the temporary directory to it without ever replacing anything, then syncs the parent.
    pub(crate) fn finish(mut self) -> Result<()> {
        check_destination(&self.dst)?;
        if self.dst.exists() {
            sys::remove_empty_dir(&self.dst)
                .map_err(|e| Error::io("remove empty destination", &self.dst, e))?;
        }
        sys::sync_dir(&self.dir).map_err(|e| Error::io("sync directory", &self.dir, e))?;
        sys::rename_no_replace(&self.dir, &self.dst)
            .map_err(|e| Error::io("move the new store into place", &self.dst, e))?;
        self.done = true;
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        sys::sync_dir(parent).map_err(|e| Error::io("sync directory", parent, e))?;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Only what foldlog wrote there goes; anything else keeps the directory (and itself) in place.
        if let Ok(lock) = StoreLock::acquire(&self.dir) {
            let _ = lock.remove_store_files();
            drop(lock);
            let _ = sys::remove(&self.dir.join(LOCK_FILE));
        }
        let _ = sys::remove_empty_dir(&self.dir);
    }
}
