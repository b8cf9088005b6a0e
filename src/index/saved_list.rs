//! A list a checkpoint saved (segment offsets, stream positions): read from the file, chunk by chunk, each
//! chunk checked against its CRC, order and bound the first time an item in it is needed.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

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
    file: File,
    path: PathBuf,
    len: u64,
    /// The whole file, while a new checkpoint is encoded (`Source::hold`): that reads every saved list back,
    /// and one read of the file costs less than the system call per chunk it replaces (20,500 of them in a
    /// close at 1 M events over 10,000 streams, 50 ms of a 65 ms close).
    whole: Mutex<Option<Arc<[u8]>>>,
}

impl Source {
    /// The checkpoint `file` at `path`, `len` bytes long.
    pub(super) fn new(file: File, path: PathBuf, len: u64) -> Source {
        Source { file, path, len, whole: Mutex::new(None) }
    }

    /// The file's length.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Keeps the whole file in memory until the guard is dropped, so that lists read meanwhile are sliced
    /// from it; `None` if it cannot be read at once (lists are then read chunk by chunk, as always).
    pub(super) fn hold(self: &Arc<Source>) -> Option<Held> {
        let mut buf = vec![0u8; usize::try_from(self.len).ok()?];
        sys::read_at(&self.file, &self.path, 0, &mut buf).ok()?;
        *self.whole_slot() = Some(buf.into());
        Some(Held(Arc::clone(self)))
    }

    fn whole_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<[u8]>>> {
        // Only ever holds a finished buffer or none: a poisoned lock still guards a valid value.
        self.whole.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The file held in memory by [`Source::hold`], until dropped.
pub(super) struct Held(Arc<Source>);

impl Drop for Held {
    fn drop(&mut self) {
        *self.0.whole_slot() = None;
    }
}

/// Items per chunk of a saved list: a chunk is read and checked as a unit, so a first read of a long stream
/// or a large segment costs one chunk (16–32 KiB), not the whole list.
const SAVED_CHUNK: usize = 4096;
/// [`SAVED_CHUNK`] as a count of items.
pub(super) const SAVED_CHUNK_ITEMS: u64 = SAVED_CHUNK as u64;

/// A fixed-width little-endian list item.
pub(crate) trait Item: Copy + Ord + Into<u64> {
    /// Bytes per item.
    const LEN: usize;
    fn read(b: &[u8]) -> Self;
    fn put(self, out: &mut Vec<u8>);
    /// The item of this value, if it fits.
    fn from_u64(v: u64) -> Option<Self>;
}

impl Item for u32 {
    const LEN: usize = 4;
    fn read(b: &[u8]) -> u32 {
        LE::read_u32(b)
    }
    fn put(self, out: &mut Vec<u8>) {
        put_u32(out, self);
    }
    fn from_u64(v: u64) -> Option<u32> {
        u32::try_from(v).ok()
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
    fn from_u64(v: u64) -> Option<u64> {
        Some(v)
    }
}

/// Bytes per chunk-table entry: the chunk's CRC32 (u32), then where its bytes end (u64, counted from the end
/// of the table).
const TABLE_ENTRY: usize = 12;

/// The most bytes a chunk can take: its first item, then a varint of at most 10 bytes per other item.
fn chunk_bytes_max<E: Item>(items: u64) -> u64 {
    E::LEN as u64 + items.saturating_sub(1) * 10
}

/// Appends `v` as an LEB128 varint (7 bits a byte, low bits first, the high bit set on every byte but the
/// last).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        // The low 7 bits, which always fit a byte.
        let low = (v & 0x7f).to_le_bytes()[0];
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// The varint at `*at` of `b`, moving `*at` past it; `None` if it runs past `b`, is longer than a u64 needs,
/// or is not in its shortest form (so every value has one encoding).
fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*at)?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return (i == 0 || byte != 0).then_some(v);
        }
    }
    None
}

/// Decodes one chunk's bytes into its `len` items: the first as `E::LEN` little-endian bytes, each next one
/// as a varint of its difference from the one before (at least `min_step`: 1 where items strictly
/// increase), the last below `limit`, and no byte left over. `None` if anything is off.
fn decode_chunk<E: Item>(b: &[u8], len: u64, limit: u64, min_step: u64) -> Option<Vec<E>> {
    let first = b.get(..E::LEN).map(E::read)?;
    let mut items = Vec::with_capacity(usize::try_from(len).ok()?);
    items.push(first);
    let (mut prev, mut at) = (first.into(), E::LEN);
    for _ in 1..len {
        let delta = get_varint(b, &mut at).filter(|&d| d >= min_step)?;
        prev = prev.checked_add(delta)?;
        items.push(E::from_u64(prev)?);
    }
    (at == b.len() && prev < limit).then_some(items)
}

type Loaded<T> = OnceLock<std::result::Result<T, CheckpointRefusal>>;

/// A list of `count` strictly increasing items below `limit`, saved in a checkpoint at file offset `at` as a
/// table of per-chunk entries (CRC and end; the table's own CRC is `crc`) followed by the chunks, each its
/// first item then varint differences (docs/format.md, "Index checkpoint"); each chunk is read and checked the
/// first time an item in it is needed.
#[derive(Debug)]
pub(crate) struct SavedList<E> {
    source: Arc<Source>,
    at: u64,
    count: u64,
    crc: u32,
    limit: u64,
    /// The smallest difference between neighbours: 1 for positions, which strictly increase; 0 for a
    /// segment's frame offsets, where every position of a gap frame names the gap's offset.
    min_step: u64,
    /// Per chunk: its CRC and where its bytes end (counted from the end of the table).
    table: Loaded<Vec<(u32, u64)>>,
    chunks: OnceLock<Box<[Loaded<Vec<E>>]>>,
}

impl<E: Item> SavedList<E> {
    /// The list of `count` items below `limit` whose chunk table starts at file offset `at` of `source` and
    /// has the CRC `crc`; nothing is read yet.
    pub(super) fn new(source: &Arc<Source>, at: u64, count: u64, crc: u32, limit: u64) -> SavedList<E> {
        let (table, chunks) = (OnceLock::new(), OnceLock::new());
        SavedList { source: Arc::clone(source), at, count, crc, limit, min_step: 1, table, chunks }
    }

    /// The same list with items that may repeat (a segment's frame offsets).
    pub(super) fn non_decreasing(mut self) -> SavedList<E> {
        self.min_step = 0;
        self
    }

    pub(super) fn chunk_count(&self) -> u64 {
        self.count.div_ceil(SAVED_CHUNK as u64)
    }

    fn read(&self, at: u64, len: u64) -> std::result::Result<Vec<u8>, CheckpointRefusal> {
        let mut buf = Vec::new();
        self.read_into(at, len, &mut buf)?;
        Ok(buf)
    }

    /// Appends the `len` bytes at file offset `at` to `out`: sliced from the file held in memory if it is
    /// (`Source::hold`), else read.
    fn read_into(&self, at: u64, len: u64, out: &mut Vec<u8>) -> std::result::Result<(), CheckpointRefusal> {
        if at.checked_add(len).is_none_or(|e| e > self.source.len) {
            return Err(CheckpointRefusal::ListPastEnd);
        }
        let whole = self.source.whole_slot().clone();
        if let Some(whole) = whole {
            let range = usize::try_from(at).ok().zip(usize::try_from(at + len).ok());
            let bytes = range.and_then(|(from, to)| whole.get(from..to));
            out.extend_from_slice(bytes.ok_or(CheckpointRefusal::ListPastEnd)?);
            return Ok(());
        }
        let from = out.len();
        out.resize(from + usize::try_from(len).map_err(|_| CheckpointRefusal::ListTooLong)?, 0);
        let buf = out.get_mut(from..).ok_or(CheckpointRefusal::ListTooLong)?;
        sys::read_at(&self.source.file, &self.source.path, at, buf)
            .map_err(|e| CheckpointRefusal::ListUnreadable(e.to_string()))
    }

    /// The `i`-th item.
    pub(super) fn get(&self, i: u64) -> Result<Option<E>, Stale> {
        if i >= self.count {
            return Ok(None);
        }
        let chunk = self.chunk(i / SAVED_CHUNK as u64)?;
        Ok(usize::try_from(i % SAVED_CHUNK as u64).ok().and_then(|j| chunk.get(j)).copied())
    }

    /// Asks the CPU for item `i`, if its chunk was read already (a hint for a read about to need it).
    pub(super) fn prefetch(&self, i: u64) {
        let k = usize::try_from(i / SAVED_CHUNK as u64).unwrap_or(usize::MAX);
        let chunk = self.chunks.get().and_then(|slots| slots.get(k)).and_then(OnceLock::get);
        if let Some(Ok(items)) = chunk {
            crate::map::prefetch(items, usize::try_from(i % SAVED_CHUNK as u64).unwrap_or(usize::MAX));
        }
    }

    /// The chunk table (per chunk: its CRC and where its bytes end), read and checked on first use.
    fn table(&self) -> Result<&[(u32, u64)], Stale> {
        let table = self.table.get_or_init(|| {
            let b = self.read(self.at, self.chunk_count() * TABLE_ENTRY as u64)?;
            if crc32fast::hash(&b) != self.crc {
                return Err(CheckpointRefusal::ChunkTableChecksum { at: self.at });
            }
            let entry = |e: &[u8]| (LE::read_u32(e), e.get(4..).map_or(0, LE::read_u64));
            Ok(b.chunks_exact(TABLE_ENTRY).map(entry).collect())
        });
        table.as_deref().map_err(|reason| Stale { reason: reason.clone() })
    }

    /// Chunk `k`, read and checked on first use.
    fn chunk(&self, k: u64) -> Result<&[E], Stale> {
        let stale = |reason: &CheckpointRefusal| Stale { reason: reason.clone() };
        let n = self.chunk_count();
        let table_len = n * TABLE_ENTRY as u64;
        let table = self.table()?;
        let slots = self.chunks.get_or_init(|| (0..n).map(|_| OnceLock::new()).collect());
        // `k` is below `n` (callers ask only for items below `count`); a slot or entry missing is refused, not
        // indexed.
        let past_end = || Stale { reason: CheckpointRefusal::ListPastEnd };
        let k_usize = usize::try_from(k).map_err(|_| past_end())?;
        let (slot, &(chunk_crc, end)) = slots.get(k_usize).zip(table.get(k_usize)).ok_or_else(past_end)?;
        let start = k_usize.checked_sub(1).and_then(|j| table.get(j)).map_or(0, |&(_, e)| e);
        let loaded = slot.get_or_init(|| {
            let first = k * SAVED_CHUNK as u64;
            let len = (SAVED_CHUNK as u64).min(self.count - first);
            let at = self.at + table_len + start;
            let bytes = end.checked_sub(start).filter(|&b| b <= chunk_bytes_max::<E>(len));
            let b = self.read(at, bytes.ok_or(CheckpointRefusal::ChunkOrder { at })?)?;
            if crc32fast::hash(&b) != chunk_crc {
                return Err(CheckpointRefusal::ChunkChecksum { at });
            }
            decode_chunk(&b, len, self.limit, self.min_step).ok_or(CheckpointRefusal::ChunkOrder { at })
        });
        loaded.as_deref().map_err(stale)
    }

    /// How many of its chunks a list that now holds `len` items can keep as they are: all of them while it
    /// holds only the saved items, else the full ones (the last, partly filled, takes the new items).
    pub(super) fn chunks_kept(&self, len: u64) -> u64 {
        if len == self.count {
            self.chunk_count()
        } else {
            self.count / SAVED_CHUNK as u64
        }
    }

    /// Appends the list's first `chunks` chunks, unchanged, to a list being written: their table entries to
    /// `table` and their bytes to `body` (where the list's chunks start, so the ends stay as saved). A
    /// chunk's bytes do not depend on where its list sits, so nothing is decoded: each chunk is checked
    /// against its CRC (damage is never carried into a new checkpoint), its length against the most its items
    /// can take; its order and bound are checked whenever it is read, as every chunk's are.
    fn copy_chunks(&self, chunks: u64, table: &mut Vec<u8>, body: &mut Vec<u8>) -> Result<(), Stale> {
        let stale = |reason| Stale { reason };
        if chunks == 0 {
            return Ok(());
        }
        let saved = self.table()?;
        let entries = usize::try_from(chunks).ok().and_then(|n| saved.get(..n));
        let entries = entries.ok_or(stale(CheckpointRefusal::ListPastEnd))?;
        let body_at = self.at + self.chunk_count() * TABLE_ENTRY as u64;
        let mut start = 0u64;
        for (&(_, end), k) in entries.iter().zip(0u64..) {
            let items = (SAVED_CHUNK as u64).min(self.count - k * SAVED_CHUNK as u64);
            if end.checked_sub(start).is_none_or(|b| b == 0 || b > chunk_bytes_max::<E>(items)) {
                return Err(stale(CheckpointRefusal::ChunkOrder { at: body_at + start }));
            }
            start = end;
        }
        let from = body.len();
        self.read_into(body_at, start, body).map_err(stale)?;
        let copied = body.get(from..).ok_or(stale(CheckpointRefusal::ListPastEnd))?;
        let mut start = 0u64;
        for &(crc, end) in entries {
            let bytes = usize::try_from(start).ok().zip(usize::try_from(end).ok());
            let chunk = bytes.and_then(|(s, e)| copied.get(s..e));
            if chunk.is_none_or(|c| crc32fast::hash(c) != crc) {
                return Err(stale(CheckpointRefusal::ChunkChecksum { at: body_at + start }));
            }
            put_u32(table, crc);
            put_u64(table, end);
            start = end;
        }
        Ok(())
    }

    /// The items from the `first`-th on, in order (reads the chunks that hold them).
    pub(super) fn for_each_from(&self, first: u64, mut f: impl FnMut(E)) -> Result<(), Stale> {
        let k0 = first / SAVED_CHUNK_ITEMS;
        for k in k0..self.chunk_count() {
            // Below `SAVED_CHUNK`, so it fits.
            let skip = if k == k0 { usize::try_from(first % SAVED_CHUNK_ITEMS).unwrap_or(0) } else { 0 };
            self.chunk(k)?.iter().skip(skip).for_each(|&e| f(e));
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

/// Writes a list of increasing items (strictly, but for a segment's frame offsets) as a saved list (chunk table, then the chunks: each its first
/// item, then varint differences) at the end of `data`; returns its offset within `data` and the table's CRC.
pub(super) fn put_list<E: Item>(data: &mut Vec<u8>, items: &[E]) -> (u64, u32) {
    let (start, table) = start_list(data, items.len().div_ceil(SAVED_CHUNK));
    let mut entries = Vec::with_capacity(table.len());
    put_chunks(&mut entries, data, table.end, items);
    (start, end_list(data, table, &entries))
}

/// As [`put_list`], for a list whose first items are those of `kept`'s first `chunks` chunks, copied as they
/// are ([`SavedList::copy_chunks`]), and the rest `items` (which start a new chunk, unless there are none).
/// Fails if a chunk to copy is damaged.
pub(super) fn put_list_keeping<E: Item>(
    data: &mut Vec<u8>,
    (kept, chunks): (&SavedList<E>, u64),
    items: &[E],
) -> Result<(u64, u32), Stale> {
    let count = usize::try_from(chunks).map_err(|_| Stale { reason: CheckpointRefusal::ListTooLong })?;
    let (start, table) = start_list(data, count + items.len().div_ceil(SAVED_CHUNK));
    let mut entries = Vec::with_capacity(table.len());
    kept.copy_chunks(chunks, &mut entries, data)?;
    put_chunks(&mut entries, data, table.end, items);
    Ok((start, end_list(data, table, &entries)))
}

/// Starts a list of `chunks` chunks at the end of `data`: room for its chunk table, whose range it returns
/// with the list's offset. The chunks are written straight after, so no list is copied twice.
fn start_list(data: &mut Vec<u8>, chunks: usize) -> (u64, std::ops::Range<usize>) {
    let start = data.len();
    data.resize(start + chunks * TABLE_ENTRY, 0);
    (start as u64, start..data.len())
}

/// Fills in the chunk table (`entries`) of the list started at `table`; returns the table's CRC.
fn end_list(data: &mut [u8], table: std::ops::Range<usize>, entries: &[u8]) -> u32 {
    // The table has one entry per chunk written, by construction; a mismatch would leave a table whose CRC
    // does not match (refused when read), never a panic.
    if let Some(room) = data.get_mut(table).filter(|t| t.len() == entries.len()) {
        room.copy_from_slice(entries);
    }
    crc32fast::hash(entries)
}

#[cfg(test)]
thread_local! {
    /// Items this thread's checkpoint encodes wrote as varints (copied chunks not counted): the tests check
    /// that a checkpoint encodes only what changed.
    pub(super) static ITEMS_ENCODED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Encodes `items` as chunks at the end of `body`, with their entries in `table` (each chunk's end counted
/// from `body_start`, where the list's chunks start).
fn put_chunks<E: Item>(table: &mut Vec<u8>, body: &mut Vec<u8>, body_start: usize, items: &[E]) {
    #[cfg(test)]
    ITEMS_ENCODED.with(|n| n.set(n.get() + items.len() as u64));
    body.reserve(items.len() * 2);
    for chunk in items.chunks(SAVED_CHUNK) {
        let from = body.len();
        if let Some((&first, rest)) = chunk.split_first() {
            first.put(body);
            let mut prev: u64 = first.into();
            for &e in rest {
                let e: u64 = e.into();
                // Increasing by construction (strictly, but for a segment's offsets); a list that were not
                // would save a zero difference, which a strict reader refuses (and rebuilds), never a wrapped
                // one.
                put_varint(body, e.saturating_sub(prev));
                prev = e;
            }
        }
        put_u32(table, crc32fast::hash(body.get(from..).unwrap_or_default()));
        put_u64(table, (body.len() - body_start) as u64);
    }
}

/// Round trips of whole lists through the checkpoint encoding, for the checkpoint's tests.
#[cfg(test)]
pub(super) mod tests_support {
    use super::{put_list, Item, SavedList, Source};
    use std::sync::Arc;

    /// Bytes `put_list` writes for `items`.
    pub fn encode<E: Item>(items: &[E]) -> usize {
        let mut data = Vec::new();
        put_list(&mut data, items);
        data.len()
    }

    /// `items` written by `put_list` to a file and read back through a `SavedList`.
    pub fn decode_all<E: Item>(items: &[E]) -> Vec<E> {
        let mut data = vec![0u8; 3]; // not at offset 0, as in a checkpoint
        let (at, crc) = put_list(&mut data, items);
        let file = tempfile::tempfile().expect("temp file");
        std::io::Write::write_all(&mut &file, &data).expect("write");
        let source = Arc::new(Source::new(file, "test".into(), data.len() as u64));
        let limit = items.last().map_or(0, |&e| e.into()) + 1;
        let list = SavedList::<E>::new(&source, at, items.len() as u64, crc, limit);
        let mut out = Vec::new();
        list.for_each_from(0, |e| out.push(e)).expect("reads back");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{get_varint, put_varint};

    /// Varints read back what was written, and only their shortest form is accepted.
    #[test]
    fn varints_round_trip_and_refuse_what_is_not_canonical() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut at = 0;
            assert_eq!(get_varint(&b, &mut at), Some(v));
            assert_eq!(at, b.len());
        }
        let refused: [&[u8]; 4] = [
            &[0x80, 0x00],
            &[0x81],
            &[0xff; 11],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        ];
        for b in refused {
            assert_eq!(get_varint(b, &mut 0), None, "{b:?}");
        }
    }
}
