//! Snapshot files: an aggregate's state at one version, rkyv-archived and checksummed, kept apart from the
//! log in `<store dir>/snapshots/`. Derived data: a missing, damaged or outdated snapshot only means a longer
//! fold. The byte layout is in docs/format.md, "Snapshot file"; all I/O goes through `crate::io`.

#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};

use byteorder::{ByteOrder, LittleEndian as LE};
use rkyv::util::AlignedVec;

use super::Aggregate;
use crate::error::{Error, Result};
use crate::format::snap;
use crate::io as sys;

/// Opt-in for snapshots: an aggregate whose state can be archived with rkyv (derive `Archive`, `Serialize`,
/// `Deserialize` on the state struct) and that names the version of that archived layout.
pub trait Snapshot: Aggregate {
    /// Version of the state's archived layout. Bump it whenever the state struct changes: snapshots written
    /// with another version are ignored and the state rebuilt from the events.
    const STATE_VERSION: u32;
}

/// When a [`crate::Repository`] writes snapshots, and how many it keeps:
/// `SnapshotPolicy::every(100).keep(3)`. Non-exhaustive, so that another knob is not a breaking change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotPolicy {
    /// Write a snapshot when a save makes the stream cross a multiple of this many events (0: never; only
    /// explicit [`crate::Repository::snapshot`] calls write one). Default 1,000.
    pub every_events: u64,
    /// Snapshots kept per aggregate, newest first; older ones are deleted when a new one is written (at
    /// least 1). Older snapshots serve `get_at` of older versions. Default 2.
    pub keep: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy { every_events: 1000, keep: 2 }
    }
}

impl SnapshotPolicy {
    /// A snapshot every `n` events, keeping the default number.
    pub fn every(n: u64) -> SnapshotPolicy {
        SnapshotPolicy { every_events: n, ..SnapshotPolicy::default() }
    }

    /// Sets [`every_events`](field@SnapshotPolicy::every_events).
    #[must_use]
    pub fn every_events(mut self, n: u64) -> Self {
        self.every_events = n;
        self
    }

    /// Sets [`keep`](field@SnapshotPolicy::keep).
    #[must_use]
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n;
        self
    }

    /// True if a save that moved the stream from version `before` to `after` crossed a multiple of
    /// `every_events`. Public for repositories over other backends (`foldlog-jetstream`), so that they write
    /// snapshots at the same versions as [`crate::Repository`].
    pub fn due(&self, before: u64, after: u64) -> bool {
        self.every_events > 0 && after / self.every_events > before / self.every_events
    }
}

/// Why a snapshot file was not used (see [`crate::LoadInfo::snapshots_rejected`]). A snapshot is a cache:
/// refusing one costs a longer fold, never a wrong state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotRefusal {
    /// The snapshot directory could not be listed (the OS error's text).
    Unlisted(String),
    /// The file could not be read (its path and the OS error's text).
    Unreadable(String),
    /// The file is shorter than a snapshot's fixed header and CRC.
    TooShort {
        /// The file's length in bytes.
        len: usize,
    },
    /// The CRC does not match.
    Checksum,
    /// Not a snapshot's magic number.
    BadMagic,
    /// Written by another snapshot format version.
    FormatVersion {
        /// The version in the file.
        found: u32,
    },
    /// The header's lengths contradict each other.
    HeaderLengths,
    /// The state's length does not match the file's.
    StateLength,
    /// Reserved or padding bytes are not zero.
    ReservedBytes,
    /// The file holds another stream's snapshot (a hash collision or a misplaced file).
    OtherStream,
    /// The file name and the header name different stream versions.
    NameMismatch {
        /// The version in the file name.
        name: u64,
        /// The version in the header.
        header: u64,
    },
    /// Written by code with another `Snapshot::STATE_VERSION`.
    StateVersion {
        /// The state version in the file.
        found: u32,
        /// This code's state version.
        current: u32,
    },
    /// Reading the log's event at the snapshot's version failed (the error's text).
    LogUnreadable(String),
    /// The log's event at the snapshot's version is not the one the snapshot was taken at.
    NotTheLogsEvent,
    /// The state bytes do not decode as this code's state (rkyv's message).
    State(String),
}

impl std::fmt::Display for SnapshotRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotRefusal::Unlisted(e) => write!(f, "listing snapshots: {e}"),
            SnapshotRefusal::Unreadable(e) => write!(f, "reading {e}"),
            SnapshotRefusal::TooShort { len } => write!(f, "{len} bytes is too short for a snapshot"),
            SnapshotRefusal::Checksum => f.write_str("CRC mismatch"),
            SnapshotRefusal::BadMagic => f.write_str("not a snapshot file (bad magic)"),
            SnapshotRefusal::FormatVersion { found } => {
                write!(f, "snapshot format version {found} (this build reads {VERSION})")
            }
            SnapshotRefusal::HeaderLengths => f.write_str("inconsistent header lengths"),
            SnapshotRefusal::StateLength => f.write_str("state length does not match the file length"),
            SnapshotRefusal::ReservedBytes => f.write_str("non-zero reserved or padding bytes"),
            SnapshotRefusal::OtherStream => {
                f.write_str("snapshot of another stream (hash collision or misplaced file)")
            }
            SnapshotRefusal::NameMismatch { name, header } => {
                write!(f, "file name says version {name}, header says {header}")
            }
            SnapshotRefusal::StateVersion { found, current } => {
                write!(f, "state schema version {found} differs from this code's {current}")
            }
            SnapshotRefusal::LogUnreadable(e) => write!(f, "reading the log: {e}"),
            SnapshotRefusal::NotTheLogsEvent => {
                f.write_str("the log's event at its version is not the one the snapshot was taken at")
            }
            SnapshotRefusal::State(e) => write!(f, "the state does not decode: {e}"),
        }
    }
}

/// Directory under the store directory that holds all snapshots.
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
/// `SNAPSHOT_MAGIC`: ASCII `FOLDSNP` and a zero byte.
const MAGIC: [u8; 8] = *b"FOLDSNP\0";
/// `SNAPSHOT_FORMAT_VERSION`.
const VERSION: u32 = 1;
/// Bytes of the fixed header before the stream id (`format::snap`).
const FIXED_LEN: usize = snap::FIXED_LEN;
/// The state bytes start at a multiple of this.
const STATE_ALIGN: usize = 16;
/// Stream ids are at most this long (as in the log).
const STREAM_ID_MAX: usize = 1024;
const SUFFIX: &str = ".snap";

/// The header fields of a snapshot besides the stream id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotMeta {
    /// Stream version of the last event folded into the state.
    pub stream_version: u64,
    /// Global position of that event.
    pub position: u64,
    /// Its append timestamp.
    pub timestamp_micros: i64,
    /// `Snapshot::STATE_VERSION` of the code that wrote it.
    pub state_version: u32,
}

/// A snapshot read and checked: the header and the state bytes in an aligned buffer.
pub(crate) struct SnapshotFile {
    pub meta: SnapshotMeta,
    pub state: AlignedVec,
}

/// FNV-1a, 128-bit: a stable hash for directory names (collisions cost only a refused snapshot: the full
/// stream id is inside every file and checked).
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// `<store dir>/snapshots/<32 hex digits of the stream id's hash>`.
pub(crate) fn stream_dir(store_dir: &Path, stream: &str) -> PathBuf {
    store_dir.join(SNAPSHOT_DIR).join(format!("{:032x}", fnv1a_128(stream.as_bytes())))
}

/// Whether `name` is shaped like a stream's snapshot directory (what [`stream_dir`] makes: 32 lowercase hex
/// digits).
pub(crate) fn is_stream_dir_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn file_name(version: u64) -> String {
    format!("{version:020}{SUFFIX}")
}

/// The stream version named by a snapshot file name, or `None` if the name is not a snapshot's.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Builds the file: header, stream id, padding, state, CRC.
pub(crate) fn encode(stream: &str, meta: &SnapshotMeta, state: &[u8]) -> Vec<u8> {
    let header_len = round_up(FIXED_LEN + stream.len(), STATE_ALIGN);
    let mut out = Vec::with_capacity(header_len + state.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    // Stream ids are at most `STREAM_ID_BYTES_MAX` bytes (checked before any event is stored), so both fit.
    let header_field = u32::try_from(header_len).expect("a stream id's length fits u32");
    let id_field = u32::try_from(stream.len()).expect("a stream id's length fits u32");
    out.extend_from_slice(&header_field.to_le_bytes());
    out.extend_from_slice(&meta.stream_version.to_le_bytes());
    out.extend_from_slice(&meta.position.to_le_bytes());
    out.extend_from_slice(&meta.timestamp_micros.to_le_bytes());
    out.extend_from_slice(&meta.state_version.to_le_bytes());
    out.extend_from_slice(&id_field.to_le_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    debug_assert_eq!(out.len(), FIXED_LEN);
    out.extend_from_slice(stream.as_bytes());
    out.resize(header_len, 0);
    out.extend_from_slice(state);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks every field of a snapshot file against `stream` and returns its header and state. Never panics
/// on any input: every length is checked against the bytes before it is used.
pub(crate) fn decode(bytes: &[u8], stream: &str) -> Result<SnapshotFile, SnapshotRefusal> {
    let too_short = || SnapshotRefusal::TooShort { len: bytes.len() };
    let (body, crc) = bytes.split_last_chunk::<4>().ok_or_else(too_short)?;
    let fixed: &[u8; FIXED_LEN] = body.first_chunk().ok_or_else(too_short)?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err(SnapshotRefusal::Checksum);
    }
    if fixed[snap::MAGIC] != MAGIC {
        return Err(SnapshotRefusal::BadMagic);
    }
    let version = LE::read_u32(&fixed[snap::VERSION]);
    if version != VERSION {
        return Err(SnapshotRefusal::FormatVersion { found: version });
    }
    let header_len = LE::read_u32(&fixed[snap::HEADER_LEN]) as usize;
    let id_len = LE::read_u32(&fixed[snap::STREAM_ID_LEN]) as usize;
    let state_len = LE::read_u64(&fixed[snap::STATE_LEN]);
    if id_len == 0 || id_len > STREAM_ID_MAX || header_len != round_up(FIXED_LEN + id_len, STATE_ALIGN) {
        return Err(SnapshotRefusal::HeaderLengths);
    }
    if (header_len as u64).checked_add(state_len) != Some(body.len() as u64) {
        return Err(SnapshotRefusal::StateLength);
    }
    // The lengths add up to the body, so these splits succeed; were they not to, the file is refused.
    let (header, state_bytes) = body.split_at_checked(header_len).ok_or(SnapshotRefusal::StateLength)?;
    let (id, padding) = header
        .get(FIXED_LEN..)
        .and_then(|rest| rest.split_at_checked(id_len))
        .ok_or(SnapshotRefusal::HeaderLengths)?;
    if fixed[snap::RESERVED] != [0; 8] || padding.iter().any(|&b| b != 0) {
        return Err(SnapshotRefusal::ReservedBytes);
    }
    if id != stream.as_bytes() {
        return Err(SnapshotRefusal::OtherStream);
    }
    let meta = SnapshotMeta {
        stream_version: LE::read_u64(&fixed[snap::STREAM_VERSION]),
        position: LE::read_u64(&fixed[snap::POSITION]),
        timestamp_micros: LE::read_i64(&fixed[snap::TIMESTAMP]),
        state_version: LE::read_u32(&fixed[snap::STATE_VERSION]),
    };
    let mut state = AlignedVec::with_capacity(state_bytes.len());
    state.extend_from_slice(state_bytes);
    Ok(SnapshotFile { meta, state })
}

/// A snapshot as a store keeps it: the state's archived bytes and the event it was taken after. The building
/// block of snapshots for repositories over other backends (`foldlog-jetstream`): [`SnapshotData::encode`]
/// gives the bytes of a snapshot file (docs/format.md, "Snapshot file": checksummed, the stream id inside),
/// [`SnapshotData::decode`] checks them, and [`SnapshotFiles`] keeps them where [`crate::Repository`] does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SnapshotData {
    /// Stream version of the last event folded into the state.
    pub stream_version: u64,
    /// Global position of that event: with the timestamp, how a load recognises that the log still holds
    /// the event the snapshot was taken at.
    pub position: u64,
    /// That event's append timestamp (microseconds since the Unix epoch).
    pub timestamp_micros: i64,
    /// [`Snapshot::STATE_VERSION`] of the code that wrote it.
    pub state_version: u32,
    /// The archived state, aligned as rkyv reads it.
    pub state: AlignedVec,
}

impl SnapshotData {
    /// A snapshot of `state` (archived bytes) taken right after the event at `stream_version`, which has
    /// `position` and `timestamp_micros`, by code whose state layout is `state_version`.
    pub fn new(
        stream_version: u64,
        position: u64,
        timestamp_micros: i64,
        state_version: u32,
        state: AlignedVec,
    ) -> SnapshotData {
        SnapshotData { stream_version, position, timestamp_micros, state_version, state }
    }

    /// The bytes of `stream`'s snapshot file holding this snapshot.
    pub fn encode(&self, stream: &str) -> Vec<u8> {
        encode(stream, &self.meta(), &self.state)
    }

    /// Checks the bytes of a snapshot file (CRC, magic, format version, lengths, that it is `stream`'s) and
    /// returns the snapshot; never panics on any input.
    ///
    /// # Errors
    ///
    /// Why the bytes are not a usable snapshot of `stream`.
    pub fn decode(bytes: &[u8], stream: &str) -> Result<SnapshotData, SnapshotRefusal> {
        decode(bytes, stream).map(SnapshotData::from)
    }

    /// The archived bytes of `state`, as a snapshot holds them (rkyv, checked on the way back by
    /// [`SnapshotData::restore_state`]). With it, a repository over another backend archives a state exactly as
    /// [`crate::Repository::with_snapshots`] does.
    ///
    /// # Errors
    ///
    /// rkyv's, in words.
    pub fn archive_state<A: super::RkyvWrite>(state: &A) -> std::result::Result<AlignedVec, String> {
        rkyv::to_bytes::<rkyv::rancor::Error>(state).map_err(|e| e.to_string())
    }

    /// A state from a snapshot's archived bytes, checked before it is read.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid archive of `A` (rkyv's check, in words).
    pub fn restore_state<A>(bytes: &[u8]) -> std::result::Result<A, String>
    where
        A: rkyv::Archive,
        A::Archived:
            super::RkyvCheck + rkyv::Deserialize<A, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let archived = rkyv::access::<A::Archived, rkyv::rancor::Error>(bytes).map_err(|e| e.to_string())?;
        rkyv::deserialize::<A, rkyv::rancor::Error>(archived).map_err(|e| e.to_string())
    }

    fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            stream_version: self.stream_version,
            position: self.position,
            timestamp_micros: self.timestamp_micros,
            state_version: self.state_version,
        }
    }
}

impl From<SnapshotFile> for SnapshotData {
    fn from(f: SnapshotFile) -> SnapshotData {
        let m = f.meta;
        SnapshotData::new(m.stream_version, m.position, m.timestamp_micros, m.state_version, f.state)
    }
}

/// A store's snapshot files (`<store dir>/snapshots/`), the ones [`crate::Repository::with_snapshots`] writes
/// and loads from, for repositories that reach the store another way (`foldlog-jetstream`'s
/// `BackendRepository`): what one writes, the other reads. Only files: whether a snapshot still matches the
/// log, and whether its state decodes, is the caller's check.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotFiles<'s> {
    store: &'s crate::Store,
}

impl<'s> SnapshotFiles<'s> {
    /// The snapshot files of `store`.
    pub fn new(store: &'s crate::Store) -> SnapshotFiles<'s> {
        SnapshotFiles { store }
    }

    /// Versions of `stream`'s snapshots, newest first (unchecked: [`SnapshotFiles::read`] may refuse one).
    ///
    /// # Errors
    ///
    /// The snapshot directory exists but cannot be listed.
    pub fn versions(&self, stream: &str) -> Result<Vec<u64>> {
        list(self.store.dir(), stream)
    }

    /// Reads and checks `stream`'s snapshot at `version`.
    ///
    /// # Errors
    ///
    /// Why it cannot be used: unreadable, damaged, another stream's, or named for another version.
    pub fn read(&self, stream: &str, version: u64) -> Result<SnapshotData, SnapshotRefusal> {
        read(self.store.dir(), stream, version).map(SnapshotData::from)
    }

    /// Writes `stream`'s snapshot atomically, then deletes all but the newest `keep` (at least 1), as a
    /// [`crate::Repository`] does.
    ///
    /// # Errors
    ///
    /// The file could not be written or an old one removed.
    pub fn write(&self, stream: &str, snapshot: &SnapshotData, keep: usize) -> Result<()> {
        write(self.store.dir(), stream, &snapshot.meta(), &snapshot.state, keep)
    }
}

/// Versions of `stream`'s snapshots on disk, newest first. No directory means none.
pub(crate) fn list(store_dir: &Path, stream: &str) -> Result<Vec<u64>> {
    let dir = stream_dir(store_dir, stream);
    let entries = match sys::list_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list snapshots", dir, e)),
    };
    let mut versions: Vec<u64> = entries
        .into_iter()
        .filter(|(_, regular)| *regular)
        .filter_map(|(n, _)| parse_file_name(&n))
        .collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    Ok(versions)
}

/// Reads and checks the snapshot of `stream` at `version`; the error says why it cannot be used.
pub(crate) fn read(store_dir: &Path, stream: &str, version: u64) -> Result<SnapshotFile, SnapshotRefusal> {
    let path = stream_dir(store_dir, stream).join(file_name(version));
    let bytes =
        sys::read_file(&path).map_err(|e| SnapshotRefusal::Unreadable(format!("{}: {e}", path.display())))?;
    let file = decode(&bytes, stream)?;
    if file.meta.stream_version != version {
        return Err(SnapshotRefusal::NameMismatch { name: version, header: file.meta.stream_version });
    }
    Ok(file)
}

/// Writes a snapshot atomically (temp file, sync, rename, sync of the directory), then deletes all but the
/// newest `keep` snapshots of the stream.
pub(crate) fn write(
    store_dir: &Path,
    stream: &str,
    meta: &SnapshotMeta,
    state: &[u8],
    keep: usize,
) -> Result<()> {
    let dir = stream_dir(store_dir, stream);
    sys::create_dir(&dir).map_err(|e| Error::io("create snapshot directory", &dir, e))?;
    let name = file_name(meta.stream_version);
    sys::write_file_atomically(&dir, &name, &encode(stream, meta, state))
        .map_err(|e| Error::io("write snapshot", dir.join(&name), e))?;
    for old in list(store_dir, stream)?.into_iter().skip(keep.max(1)) {
        let path = dir.join(file_name(old));
        match sys::remove(&path) {
            // Another thread saving the same aggregate pruned it first: the snapshot written above stands.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.map_err(|e| Error::io("remove old snapshot", path, e))?,
        }
    }
    Ok(())
}

/// Deletes every snapshot of `stream`; returns how many were deleted.
pub(crate) fn delete_all(store_dir: &Path, stream: &str) -> Result<usize> {
    let dir = stream_dir(store_dir, stream);
    let versions = list(store_dir, stream)?;
    for v in &versions {
        let path = dir.join(file_name(*v));
        match sys::remove(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.map_err(|e| Error::io("remove snapshot", path, e))?,
        }
    }
    Ok(versions.len())
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests index and convert what they just built"
)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta { stream_version: 42, position: 1234, timestamp_micros: -5, state_version: 3 }
    }

    #[test]
    fn round_trip_and_every_single_byte_flip_is_refused() {
        let state: Vec<u8> = (0..100u8).collect();
        let bytes = encode("account-7", &meta(), &state);
        assert_eq!(bytes.len(), 80 + 100 + 4, "64 + 9 id bytes padded to 80, the state, the CRC");
        let file = decode(&bytes, "account-7").expect("valid");
        assert_eq!(file.meta, meta());
        assert_eq!(&file.state[..], &state[..]);
        assert_eq!(file.state.as_ptr() as usize % 16, 0);
        assert!(decode(&bytes, "account-8").is_err(), "another stream's snapshot");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad, "account-7").is_err(), "flip at byte {i} accepted");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], "account-7").is_err(), "truncation to {len} accepted");
        }
    }

    #[test]
    fn file_names_and_policy() {
        assert_eq!(parse_file_name(&file_name(7)), Some(7));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("00000000000000000007.snap.tmp-1-2"), None);
        assert_eq!(parse_file_name("7.snap"), None);
        assert_ne!(stream_dir(Path::new("d"), "a"), stream_dir(Path::new("d"), "b"));
        let p = SnapshotPolicy::every(10);
        assert!(p.due(9, 10) && p.due(5, 25) && !p.due(10, 19) && !p.due(0, 9));
        assert!(!SnapshotPolicy::every(0).due(0, 1_000_000));
    }
}
