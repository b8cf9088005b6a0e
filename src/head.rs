//! The head record: how a writer tells read-only handles in other processes where its committed log ends.
//!
//! The writer holds `LOCK` exclusively and keeps a 64-byte record at its start (docs/format.md, "The head
//! record"). After every commit it stores one word there: the active segment's number and the end of its
//! committed frames. A reader loads the word and indexes frames only below it, so it never reads bytes the
//! writer may still be storing, and it sees every batch whole (the writer publishes only batch ends).
//!
//! Why a word in a mapped file rather than rereading the durable slots: slots move only on sync, so a reader
//! of a `Group` or `Never` store would lag by up to a commit group (or forever); and a seqlock is not needed,
//! because one `u64` says everything a reader must know (the segment number tells it a roll happened, and the
//! rolled segment's own slot gives its final end).
//!
//! A head outlives its writer (a killed writer's last head stays in `LOCK`), and batches the writer stored but
//! had not published yet are whole in the file; so a read-only open asks whether a writer is live
//! ([`writer_is_live`], an OFD lock query on Linux that takes nothing) and, if none is, reads every valid frame
//! as a writer's recovery would.
//!
//! The writer also stores a second word there after every sync: the position below which every event is
//! durable. A reader cannot learn that from the head (a `Group` or `Never` writer commits ahead of its syncs),
//! and a projector that must not act on events a machine crash could take back waits for this word instead.
//!
//! The record is runtime coordination, never recovery data: no open depends on it. A record that is missing,
//! short or of another log means no writer has published anything for this log; readers then fall back to
//! reading every valid frame (a store nobody writes to), and look again on every refresh.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::head;
use crate::io as sys;
use crate::map::HeadMap;

/// Where the writer's committed log ends: segment number `seq`, file offset `end` in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: u32,
    pub end: u64,
}

/// What a reader loads from the record: the head, then the durable position (loaded after the head, so for a
/// writer that stores the durable word before the head, as `Durability::Always` does, it covers the head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub head: Head,
    /// Every event below this global position is durable (0 from a writer that predates the word).
    pub durable: u64,
}

/// The writer's side: the mapped record, stored to after every commit.
pub(crate) struct HeadPublisher {
    map: HeadMap,
}

impl HeadPublisher {
    /// Prepares the record in the held `LOCK` file for `log_id` (grown to its length, fixed bytes written
    /// where they differ) and publishes the recovered head.
    pub fn start(lock: &File, lock_path: &Path, log_id: [u8; 16], at: Head) -> Result<HeadPublisher> {
        let prepare = || -> std::io::Result<HeadMap> {
            sys::grow_lock_file(lock, head::LEN as u64)?;
            HeadMap::writable(lock, lock_path)
        };
        let map = prepare().map_err(|e| Error::io("map the head record", lock_path, e))?;
        // A record of another log (the directory held one before) must never bound this log's readers:
        // zero the word first, so a reader that copies the new fixed bytes sees nothing published yet.
        let fixed = head::fixed(log_id);
        if map.fixed() != fixed {
            map.store(0);
            map.store_durable(0);
            map.set_fixed(&fixed);
        }
        let publisher = HeadPublisher { map };
        publisher.publish(at);
        Ok(publisher)
    }

    /// Publishes a head: every frame below it in segment `seq` is committed and final.
    pub fn publish(&self, at: Head) {
        self.map.store(head::pack(at.seq, at.end));
    }

    /// Publishes a durable position: every event below it is on stable storage (a sync completed).
    pub fn publish_durable(&self, position: u64) {
        self.map.store_durable(position);
    }
}

/// A reader's side: the record mapped read-only, once a writer has prepared it for this log.
pub(crate) struct HeadWatcher {
    lock_path: PathBuf,
    log_id: [u8; 16],
    map: Mutex<Option<HeadMap>>,
}

impl HeadWatcher {
    /// A watcher of `dir`'s `LOCK` for the log `log_id`; maps nothing yet.
    pub fn new(dir: &Path, log_id: [u8; 16]) -> HeadWatcher {
        HeadWatcher { lock_path: dir.join(crate::format::LOCK_FILE), log_id, map: Mutex::new(None) }
    }

    /// The head and durable position a writer of this log published, or `None` if none did (no record, a
    /// short one, or another log's). Never an error: without a head, a reader reads what is valid.
    pub fn load(&self) -> Option<Published> {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.is_none() {
            *map = self.try_map();
        }
        let m = map.as_ref()?;
        // Checked on every load: a writer of a new log in this directory rewrites the fixed bytes.
        if m.fixed() != head::fixed(self.log_id) {
            return None;
        }
        let (seq, end) = head::unpack(m.load())?;
        Some(Published { head: Head { seq, end }, durable: m.load_durable() })
    }

    fn try_map(&self) -> Option<HeadMap> {
        let file = sys::open_lock_file_to_read(&self.lock_path).ok()??;
        if file.metadata().ok()?.len() < head::LEN as u64 {
            return None;
        }
        HeadMap::read_only(&file, &self.lock_path).ok()
    }
}

/// The head record of `dir`'s `LOCK` as it is now, for any log: its log id and head. For tools that read
/// the segment files directly (verify, salvage) and learn the log's id only from them.
pub(crate) fn peek(dir: &Path) -> Option<([u8; 16], Head)> {
    let lock_path = dir.join(crate::format::LOCK_FILE);
    let file = sys::open_lock_file_to_read(&lock_path).ok()??;
    if file.metadata().ok()?.len() < head::LEN as u64 {
        return None;
    }
    let map = HeadMap::read_only(&file, &lock_path).ok()?;
    let fixed = map.fixed();
    let word = map.load();
    let log_id: [u8; 16] = fixed.get(head::LOG_ID)?.try_into().ok()?;
    if fixed != head::fixed(log_id) {
        return None;
    }
    let (seq, end) = head::unpack(word)?;
    Some((log_id, Head { seq, end }))
}

/// Whether a writer has `dir`'s store open now (src/io.rs, `writer_is_live`): `Some(false)` also when there is
/// no `LOCK` at all, which every writer creates; `None` where the platform cannot tell.
pub(crate) fn writer_is_live(dir: &Path) -> Option<bool> {
    match sys::open_lock_file_to_read(&dir.join(crate::format::LOCK_FILE)) {
        Ok(Some(file)) => sys::writer_is_live(&file),
        Ok(None) => Some(false),
        Err(_) => None,
    }
}
