//! A list a checkpoint saved (segment offsets, stream positions): read from the file, chunk by chunk, each
//! chunk checked against its CRC, order and bound the first time an item in it is needed.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use byteorder::{ByteOrder, LittleEndian as LE};

use super::checkpoint::{put_u32, put_u64};
use crate::corruption::CheckpointRefusal;
use crate::io as sys;

/// A part of the index that a checkpoint holds but that has not been needed yet.
#[derive(Debug)]
pub(crate) struct Stale {
    /// Why a saved list could not be used.
    pub reason: CheckpointRefusal,
}

/// The checkpoint file lists are read from. The store keeps it open; a newer checkpoint replaces the name by
/// rename, never this file's bytes, so lists read later still come from the checkpoint the directory named.
#[derive(Debug)]
pub(crate) struct Source {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) len: u64,
}

/// Items per chunk of a saved list: a chunk is read and checked as a unit, so a first read of a long stream
/// or a large segment costs one chunk (16–32 KiB), not the whole list.
const SAVED_CHUNK: usize = 4096;

/// A fixed-width little-endian list item.
pub(crate) trait Item: Copy + Ord + Into<u64> {
    /// Bytes per item.
    const LEN: usize;
    fn read(b: &[u8]) -> Self;
    fn put(self, out: &mut Vec<u8>);
}

impl Item for u32 {
    const LEN: usize = 4;
    fn read(b: &[u8]) -> u32 {
        LE::read_u32(b)
    }
    fn put(self, out: &mut Vec<u8>) {
        put_u32(out, self);
    }
}

impl Item for u64 {
    const LEN: usize = 8;
    fn read(b: &[u8]) -> u64 {
        LE::read_u64(b)
    }
    fn put(self, out: &mut Vec<u8>) {
        put_u64(out, self);
    }
}

type Loaded<T> = OnceLock<std::result::Result<T, CheckpointRefusal>>;

/// A list of `count` strictly increasing items below `limit`, saved in a checkpoint at file offset `at` as a
/// table of per-chunk CRCs (whose own CRC is `crc`) followed by the items; each chunk is read and checked the
/// first time an item in it is needed.
#[derive(Debug)]
pub(crate) struct SavedList<E> {
    source: Arc<Source>,
    at: u64,
    count: u64,
    crc: u32,
    limit: u64,
    table: Loaded<Vec<u32>>,
    chunks: OnceLock<Box<[Loaded<Vec<E>>]>>,
}

impl<E: Item> SavedList<E> {
    /// The list of `count` items below `limit` whose chunk table starts at file offset `at` of `source` and
    /// has the CRC `crc`; nothing is read yet.
    pub(super) fn new(source: &Arc<Source>, at: u64, count: u64, crc: u32, limit: u64) -> SavedList<E> {
        let (table, chunks) = (OnceLock::new(), OnceLock::new());
        SavedList { source: Arc::clone(source), at, count, crc, limit, table, chunks }
    }

    fn chunk_count(&self) -> u64 {
        self.count.div_ceil(SAVED_CHUNK as u64)
    }

    fn read(&self, at: u64, len: u64) -> std::result::Result<Vec<u8>, CheckpointRefusal> {
        if at.checked_add(len).is_none_or(|e| e > self.source.len) {
            return Err(CheckpointRefusal::ListPastEnd);
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| CheckpointRefusal::ListTooLong)?];
        sys::read_at(&self.source.file, &self.source.path, at, &mut buf)
            .map_err(|e| CheckpointRefusal::ListUnreadable(e.to_string()))?;
        Ok(buf)
    }

    /// The `i`-th item.
    pub(super) fn get(&self, i: u64) -> Result<Option<E>, Stale> {
        if i >= self.count {
            return Ok(None);
        }
        let chunk = self.chunk(i / SAVED_CHUNK as u64)?;
        Ok(usize::try_from(i % SAVED_CHUNK as u64).ok().and_then(|j| chunk.get(j)).copied())
    }

    /// Chunk `k`, read and checked on first use.
    fn chunk(&self, k: u64) -> Result<&[E], Stale> {
        let stale = |reason: &CheckpointRefusal| Stale { reason: reason.clone() };
        let n = self.chunk_count();
        let table = self.table.get_or_init(|| {
            let b = self.read(self.at, n * 4)?;
            if crc32fast::hash(&b) != self.crc {
                return Err(CheckpointRefusal::ChunkTableChecksum { at: self.at });
            }
            Ok(b.chunks_exact(4).map(LE::read_u32).collect())
        });
        let table = table.as_ref().map_err(stale)?;
        let slots = self.chunks.get_or_init(|| (0..n).map(|_| OnceLock::new()).collect());
        // `k` is below `n` (callers ask only for items below `count`); a slot or CRC missing is refused, not
        // indexed.
        let slot = usize::try_from(k).ok().and_then(|k| slots.get(k).zip(table.get(k)));
        let (slot, &chunk_crc) = slot.ok_or(Stale { reason: CheckpointRefusal::ListPastEnd })?;
        let loaded = slot.get_or_init(|| {
            let first = k * SAVED_CHUNK as u64;
            let len = (SAVED_CHUNK as u64).min(self.count - first);
            let at = self.at + n * 4 + first * E::LEN as u64;
            let b = self.read(at, len * E::LEN as u64)?;
            if crc32fast::hash(&b) != chunk_crc {
                return Err(CheckpointRefusal::ChunkChecksum { at });
            }
            let items: Vec<E> = b.chunks_exact(E::LEN).map(E::read).collect();
            let ordered =
                items.is_sorted_by(|a, b| a < b) && items.last().is_none_or(|&v| v.into() < self.limit);
            if ordered {
                Ok(items)
            } else {
                Err(CheckpointRefusal::ChunkOrder { at })
            }
        });
        loaded.as_deref().map_err(stale)
    }

    /// All items, in order (reads every chunk).
    pub(super) fn for_each(&self, mut f: impl FnMut(E)) -> Result<(), Stale> {
        for k in 0..self.chunk_count() {
            self.chunk(k)?.iter().for_each(|&e| f(e));
        }
        Ok(())
    }

    /// Bytes of RAM held by chunks read so far.
    pub(super) fn loaded_bytes(&self) -> usize {
        let chunks = self.chunks.get().map_or(0, |c| {
            c.iter().filter_map(|l| l.get()).map(|r| r.as_ref().map_or(0, Vec::capacity)).sum::<usize>()
        });
        chunks * E::LEN
    }
}

/// Writes a list as a saved list (chunk CRC table, then the items) at the end of `data`; returns its offset
/// within `data` and the table's CRC.
pub(super) fn put_list<E: Item>(data: &mut Vec<u8>, items: &[E]) -> (u64, u32) {
    let start = data.len() as u64;
    let mut table = Vec::with_capacity(items.len().div_ceil(SAVED_CHUNK) * 4);
    let mut body = Vec::with_capacity(items.len() * E::LEN);
    let mut chunk_bytes = Vec::with_capacity(SAVED_CHUNK * E::LEN);
    for chunk in items.chunks(SAVED_CHUNK) {
        chunk_bytes.clear();
        for &e in chunk {
            e.put(&mut chunk_bytes);
        }
        put_u32(&mut table, crc32fast::hash(&chunk_bytes));
        body.extend_from_slice(&chunk_bytes);
    }
    data.extend_from_slice(&table);
    data.extend_from_slice(&body);
    (start, crc32fast::hash(&table))
}
