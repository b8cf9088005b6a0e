//! Encrypted streams and erasure by forgetting a key ("crypto-shredding"), feature `encryption`.
//!
//! A [`Vault`] is a layer over a [`Store`]: it encrypts an event's payload and metadata with its stream's own
//! data key before the store appends it, and decrypts into owned events on read. The log itself is unchanged:
//! an encrypted event is an ordinary frame whose payload is an envelope (docs/format.md, "Encrypted events")
//! and whose metadata is empty; positions, versions, types, tags, ids and timestamps stay in the clear, so
//! indexes, queries, subscriptions, backups and `verify` work as they do for any stream. Streams that were
//! never encrypted are not touched, and reads that do not go through the vault stay zero-copy.
//!
//! The keys live in the store's key file, `KEYS` (docs/format.md, "Key file"). [`Vault::forget_stream`]
//! rewrites that file without the stream's key (the record stays, marked forgotten, so that the stream is
//! known to be encrypted and forgotten rather than plain), renames it into place, then overwrites the old
//! file's bytes with zeros: from then on the stream's events are ciphertext nobody holds a key for, in the
//! live store and in every backup taken afterwards. SECURITY.md says what this does and does not protect
//! against.
//!
//! The cipher is `RustCrypto`'s XChaCha20-Poly1305 (`chacha20poly1305`): 256-bit keys from the OS's random
//! source, a random 192-bit nonce per event (long enough that random nonces never repeat in practice, unlike
//! the 96-bit ones of plain ChaCha20-Poly1305 or AES-GCM), and associated data binding the stream id, the
//! event type and the schema version, so a ciphertext moved to another stream or relabelled fails to decrypt.

// Every byte of the key file and of an envelope comes from disk: a bad one must become an error, never a panic.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

use crate::corruption::Corruption;
use crate::error::{Error, ExpectedVersion, Result};
use crate::format::{KEY_FILE, STREAM_ID_BYTES_MAX};
use crate::io as sys;
use crate::read::StreamEvents;
use crate::record::{EventRef, OwnedEvent};
use crate::store::{Appended, NewEvent, Store};

// The key file (docs/format.md, "Key file"), all integers little-endian:
//
//   header, 32 bytes:  magic 8 | version u32 | reserved 16 (zero) | crc32 of the 28 before u32
//   record, 8-aligned: magic 4 | state u8 | reserved u8 | id_len u16 | key 32 | id id_len | zero pad | crc32 u32
//
// Records are appended (a new key); the whole file is rewritten and renamed only to forget one.

/// The key file's first bytes.
const KEYS_MAGIC: [u8; 8] = *b"FLDGKEYS";
/// The key file's format version.
const KEYS_VERSION: u32 = 1;
const HEADER_MAGIC_LEN: usize = KEYS_MAGIC.len();
const HEADER_VERSION_OFFSET: usize = HEADER_MAGIC_LEN;
const HEADER_RESERVED_OFFSET: usize = HEADER_VERSION_OFFSET + size_of::<u32>();
const HEADER_CRC_OFFSET: usize = HEADER_RESERVED_OFFSET + 16;
/// The header's length in bytes.
const HEADER_LEN: usize = HEADER_CRC_OFFSET + size_of::<u32>();
const _: () = assert!(HEADER_LEN == 32);

/// A key record's first bytes.
const RECORD_MAGIC: [u8; 4] = *b"FKEY";
const RECORD_STATE_OFFSET: usize = RECORD_MAGIC.len();
const RECORD_RESERVED_OFFSET: usize = RECORD_STATE_OFFSET + 1;
const RECORD_ID_LEN_OFFSET: usize = RECORD_RESERVED_OFFSET + 1;
const RECORD_KEY_OFFSET: usize = RECORD_ID_LEN_OFFSET + size_of::<u16>();
/// Bytes of a data key (XChaCha20-Poly1305's 256-bit key).
const KEY_LEN: usize = 32;
const RECORD_ID_OFFSET: usize = RECORD_KEY_OFFSET + KEY_LEN;
/// Records start (and so end) at multiples of this, which lets a reader look for records past a damaged one.
const RECORD_ALIGN: usize = 8;
const _: () = assert!(RECORD_ID_OFFSET == 40);
const _: () = assert!(HEADER_LEN.is_multiple_of(RECORD_ALIGN));
/// `state`: the record holds the stream's key.
const STATE_LIVE: u8 = 1;
/// `state`: the stream was forgotten; the key bytes are zeros.
const STATE_FORGOTTEN: u8 = 2;

/// A record's length for a stream id of `id_len` bytes: fields, id, crc, padded to [`RECORD_ALIGN`].
const fn record_len(id_len: usize) -> usize {
    (RECORD_ID_OFFSET + id_len + size_of::<u32>()).next_multiple_of(RECORD_ALIGN)
}

// An encrypted event's payload (docs/format.md, "Encrypted events"):
//
//   version u8 (1) | nonce 24 | ciphertext of (payload | metadata | payload length u32) | tag 16

/// The envelope's version byte.
const ENVELOPE_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const CIPHERTEXT_OFFSET: usize = 1 + NONCE_LEN;
/// The plaintext's trailer: the payload's length (the metadata is what follows the payload).
const TRAILER_LEN: usize = size_of::<u32>();
/// The smallest envelope: an empty payload and metadata still carry the trailer.
const ENVELOPE_LEN_MIN: usize = CIPHERTEXT_OFFSET + TRAILER_LEN + TAG_LEN;
/// The associated data's prefix, which ties a ciphertext to this use (and version) of the key.
const AAD_PREFIX: &[u8] = b"foldlog encrypted event v1\0";

/// One stream's entry in the key file.
enum Entry {
    /// The stream's key and the cipher made from it.
    Live(Box<LiveKey>),
    /// The stream's key was destroyed.
    Forgotten,
}

/// A key held in memory: kept (besides its cipher) to write it again when the file is rewritten, and wiped
/// when dropped (the cipher wipes its own copy).
struct LiveKey {
    key: [u8; KEY_LEN],
    cipher: XChaCha20Poly1305,
}

impl LiveKey {
    fn new(key: &[u8; KEY_LEN]) -> LiveKey {
        LiveKey { key: *key, cipher: XChaCha20Poly1305::new(&(*key).into()) }
    }
}

impl Drop for LiveKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// What a vault knows of the key file.
#[derive(Default)]
struct Keys {
    /// Streams in the order of their records, for rewriting the file in the same order.
    order: Vec<String>,
    entries: HashMap<String, Entry>,
    /// A writer's handle on the key file (`None` until the first key is created, and in read-only vaults).
    file: Option<File>,
    /// Where the next record goes: the end of the last valid record.
    end: u64,
    /// A read-only vault's view of the file when it last loaded it: (inode, length, mtime), to notice that
    /// the writer added or forgot a key since.
    stamp: Option<Stamp>,
}

type Stamp = (u64, u64, Option<std::time::SystemTime>);

/// The directories whose key file a writer's [`Vault`] of this process has open: a second one would keep a
/// table of its own and miss the first one's changes.
static WRITERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Encrypted streams over a [`Store`], and erasure by forgetting their keys (feature `encryption`).
///
/// [`Vault::append`] encrypts the events' payloads and metadata with the stream's key, creating (and syncing)
/// the key with the stream's first event; [`Vault::read_stream`] decrypts them into [`OwnedEvent`]s;
/// [`Vault::forget_stream`] destroys the key, after which the stream's events stay in the log with their
/// positions, versions and types but their content can never be read again. A plain stream read through the
/// vault comes back as it is, so one read path serves both. Aggregates use
/// [`Repository::with_vault`](crate::Repository::with_vault).
///
/// A writer's store has at most one vault at a time (another is [`Error::Locked`]); a read-only store's vault
/// reads the key file the writer (in any process) maintains, and notices new and forgotten keys on each read.
///
/// ```
/// use foldlog::{Error, ExpectedVersion, NewEvent, Store, Vault};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let vault = Vault::open(&store)?;
/// let event = NewEvent::new("Registered", b"ada@example.com").metadata(b"from the web form");
/// vault.append("user-ada", ExpectedVersion::NoStream, &[event])?;
///
/// // Through the vault the event reads as written; in the log it is ciphertext.
/// let read: Vec<_> = vault.read_stream("user-ada", 0).collect::<foldlog::Result<_>>()?;
/// assert_eq!(read[0].payload, b"ada@example.com");
/// assert_eq!(read[0].metadata, b"from the web form");
/// let raw = store.read_stream("user-ada", 0).next().unwrap()?;
/// assert!(!raw.payload().windows(3).any(|w| w == b"ada"));
///
/// // Forgetting destroys the key: the event is still there, its content is gone for good.
/// vault.forget_stream("user-ada")?;
/// assert_eq!(store.read_stream("user-ada", 0).count(), 1);
/// let gone = vault.read_stream("user-ada", 0).next().unwrap();
/// assert!(matches!(gone, Err(Error::StreamForgotten { .. })));
/// # Ok(())
/// # }
/// ```
pub struct Vault<'s> {
    store: &'s Store,
    path: PathBuf,
    writer: bool,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for Vault<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl<'s> Vault<'s> {
    /// Opens `store`'s key file (`KEYS` in its directory), if there is one yet. A writer's vault removes
    /// what a crash left of an unfinished key (a torn last record, a temp file of an unfinished forget); a
    /// read-only store's vault only reads.
    ///
    /// Errors: [`Error::Locked`] if this process has another writer's vault on the same store;
    /// [`Error::Corrupt`] if the key file fails its checks (a damaged header, or a damaged record with valid
    /// ones after it, which no crash leaves); [`Error::Io`].
    pub fn open(store: &'s Store) -> Result<Vault<'s>> {
        let dir = store.dir();
        let path = dir.join(KEY_FILE);
        let writer = !store.inner().is_read_only();
        if writer {
            let mut writers = WRITERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if writers.iter().any(|d| d == dir) {
                return Err(Error::Locked { path: dir.to_path_buf() });
            }
            writers.push(dir.to_path_buf());
        }
        let vault = Vault { store, path, writer, keys: RwLock::new(Keys::default()) };
        // On error the vault is dropped here, which releases the registration.
        if writer {
            remove_temp_files(dir)?;
            *vault.write_keys() = load_for_writer(&vault.path)?;
        } else {
            *vault.write_keys() = load(&vault.path)?;
        }
        Ok(vault)
    }

    /// The store this vault encrypts for.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// Whether `stream` is encrypted: it has a key, or had one and was forgotten.
    pub fn is_encrypted(&self, stream: &str) -> Result<bool> {
        Ok(self.keys_now()?.entries.contains_key(stream))
    }

    /// Whether `stream`'s key was destroyed by [`Vault::forget_stream`].
    pub fn is_forgotten(&self, stream: &str) -> Result<bool> {
        Ok(matches!(self.keys_now()?.entries.get(stream), Some(Entry::Forgotten)))
    }

    /// Appends `events` to `stream`, their payloads and metadata encrypted with the stream's key, if its
    /// version matches `expected` (as [`Store::append`]). The stream's first append through the vault
    /// creates its key, and makes it durable in the key file before the first event is written.
    ///
    /// Errors: [`Error::StreamForgotten`]; [`Error::InvalidArgument`] for a stream that already has plain
    /// events (a stream is encrypted from its first event or not at all); [`Error::ReadOnly`]; the store's
    /// errors.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent<'_>],
    ) -> Result<Appended> {
        self.append_sealed(stream, events, |sealed| self.store.append(stream, expected, sealed))
    }

    /// Encrypts `events` for `stream` and hands them to `append`, holding the stream's key so that a
    /// concurrent [`Vault::forget_stream`] waits for the append (and then forgets what it wrote too).
    pub(crate) fn append_sealed<R, E: From<Error>>(
        &self,
        stream: &str,
        events: &[NewEvent<'_>],
        append: impl FnOnce(&[NewEvent<'_>]) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        if !self.writer {
            return Err(Error::ReadOnly.into());
        }
        let keys = self.key_for_append(stream)?;
        let Some(Entry::Live(live)) = keys.entries.get(stream) else {
            return Err(Error::StreamForgotten { stream: stream.to_owned() }.into());
        };
        let mut aad = Vec::new();
        let mut envelopes = Vec::with_capacity(events.len());
        for e in events {
            envelopes.push(seal(&live.cipher, stream, e, &mut aad)?);
        }
        let sealed: Vec<NewEvent<'_>> = events
            .iter()
            .zip(&envelopes)
            .map(|(e, envelope)| NewEvent { payload: envelope, metadata: &[], ..*e })
            .collect();
        let r = append(&sealed);
        drop(keys);
        r
    }

    /// The key table, with `stream`'s key created if it has none; a read guard, held through the append.
    fn key_for_append(&self, stream: &str) -> Result<RwLockReadGuard<'_, Keys>> {
        {
            let keys = self.read_keys();
            if keys.entries.contains_key(stream) {
                return Ok(keys);
            }
        }
        let mut keys = self.write_keys();
        if !keys.entries.contains_key(stream) {
            if self.store.stream_version(stream).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "stream {stream:?} has plain events: a stream is encrypted from its first event or not at all"
                )));
            }
            self.create_key(&mut keys, stream)?;
        }
        drop(keys);
        Ok(self.read_keys())
    }

    /// Makes a key for `stream`, appends its record to the key file (created first if missing) and syncs it,
    /// then puts it in the table. On an error the table is unchanged and the next record goes to the same
    /// place, over whatever part of this one was written.
    fn create_key(&self, keys: &mut Keys, stream: &str) -> Result<()> {
        if stream.is_empty() || stream.len() > STREAM_ID_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "stream id of {} bytes (1..={STREAM_ID_BYTES_MAX})",
                stream.len()
            )));
        }
        let mut key = [0u8; KEY_LEN];
        OsRng.try_fill_bytes(&mut key).map_err(|e| {
            Error::io(
                "draw a key from the OS's random source",
                &self.path,
                std::io::Error::other(e.to_string()),
            )
        })?;
        let live = Box::new(LiveKey::new(&key));
        let mut record = encode_record(stream, Some(&key));
        key.zeroize();
        if keys.file.is_none() {
            self.open_or_create_file(keys)?;
        }
        let file = keys.file.as_ref().ok_or(Error::ReadOnly)?;
        let written = sys::write_at(file, &self.path, keys.end, &record)
            .and_then(|()| sys::sync_file(file, &self.path))
            .map_err(|e| Error::io("write key", &self.path, e));
        let len = record.len() as u64;
        record.zeroize();
        written?;
        keys.end += len;
        keys.order.push(stream.to_owned());
        keys.entries.insert(stream.to_owned(), Entry::Live(live));
        Ok(())
    }

    /// Gives `keys` a handle on the key file: the file as it is (after a forget whose reopening failed), or a
    /// new one with only its header if there is none and the table is empty. A key file that vanished while
    /// the table holds keys is not recreated: that would make every existing key unreadable for good.
    fn open_or_create_file(&self, keys: &mut Keys) -> Result<()> {
        match sys::open(&self.path, true) {
            Ok(file) => {
                keys.file = Some(file);
                return Ok(());
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound || !keys.order.is_empty() => {
                return Err(Error::io("open key file", &self.path, e));
            }
            Err(_) => {}
        }
        sys::write_file_atomically(self.store.dir(), KEY_FILE, &encode_header())
            .map_err(|e| Error::io("create key file", &self.path, e))?;
        let file = sys::open(&self.path, true).map_err(|e| Error::io("open key file", &self.path, e))?;
        keys.file = Some(file);
        keys.end = HEADER_LEN as u64;
        Ok(())
    }

    /// Destroys `stream`'s key: its events stay in the log (positions, versions, types, timestamps, tags), but
    /// their payloads and metadata can never be decrypted again, by this store or by any backup taken from now
    /// on, and nothing more may be appended to the stream. Reads of it through the vault fail with
    /// [`Error::StreamForgotten`]. Snapshots of the stream (which hold its state in the clear, written by a
    /// repository without the vault) are deleted too.
    ///
    /// The key file is rewritten without the key (the stream's record stays, marked forgotten), synced and
    /// renamed over the old one, the directory synced; then the old file's bytes are overwritten with zeros
    /// and synced. A crash before the rename leaves the stream as it was; after it, forgotten. Forgetting a
    /// forgotten stream does nothing. A [`VaultEvents`] iterator made before the forget holds its own copy of
    /// the key and may finish its read; nothing made after it can decrypt the stream.
    ///
    /// Errors: [`Error::ReadOnly`]; [`Error::StreamNotFound`] for a stream with no events;
    /// [`Error::InvalidArgument`] for a plain (never encrypted) stream; [`Error::Io`]. An error from the last
    /// step (zeroing the old file) comes after the stream is forgotten: the key file holds no copy of the key,
    /// but the old file's blocks may (SECURITY.md).
    pub fn forget_stream(&self, stream: &str) -> Result<()> {
        if !self.writer {
            return Err(Error::ReadOnly);
        }
        let mut keys = self.write_keys();
        match keys.entries.get(stream) {
            Some(Entry::Forgotten) => return Ok(()),
            Some(Entry::Live(_)) => {}
            None if self.store.stream_version(stream).is_some() => {
                return Err(Error::InvalidArgument(format!(
                    "stream {stream:?} is not encrypted: only an encrypted stream can be forgotten"
                )))
            }
            None => return Err(Error::StreamNotFound { stream: stream.to_owned() }),
        }
        let mut bytes = encode_file(&keys, Some(stream));
        let replaced = sys::write_file_atomically(self.store.dir(), KEY_FILE, &bytes);
        let new_len = bytes.len() as u64;
        // NOTE: zeroizing a `Vec` also empties it, so its length is taken first.
        bytes.zeroize();
        if let Err(e) = replaced {
            // The rename may have happened (a failed directory sync): the file says which.
            if let Ok(now) = load_for_writer(&self.path) {
                *keys = now;
            }
            return Err(Error::io("replace key file", &self.path, e));
        }
        let old = keys.file.take();
        keys.end = new_len;
        keys.entries.insert(stream.to_owned(), Entry::Forgotten);
        // Should this fail, the next new key opens the file again (`open_or_create_file`).
        keys.file = Some(sys::open(&self.path, true).map_err(|e| Error::io("open key file", &self.path, e))?);
        drop(keys);
        crate::aggregate::delete_snapshots(self.store.dir(), stream)?;
        match old {
            Some(old) => scrub(&old, &self.path),
            None => Ok(()),
        }
    }

    /// Reads `stream` from version `from` (as [`Store::read_stream`]), decrypted: each event as it was
    /// appended. A plain stream's events come back as they are stored.
    ///
    /// Items: [`Error::StreamForgotten`] (once, then the end) for a forgotten stream; [`Error::Undecryptable`]
    /// for an event whose ciphertext fails its check (never its bytes); the store's read errors.
    pub fn read_stream(&self, stream: &str, from: u64) -> VaultEvents<'s> {
        let opener = match self.opener(stream) {
            Ok(o) => o,
            Err(e) => return VaultEvents { events: None, opener: None, error: Some(e) },
        };
        VaultEvents { events: Some(self.store.read_stream(stream, from)), opener, error: None }
    }

    /// Decrypts one event read from the store by any path (a global read, a subscription, a query): the event
    /// as it was appended, or as it is stored for a plain stream. Errors as [`Vault::read_stream`]'s items.
    pub fn decrypt(&self, event: &EventRef<'_>) -> Result<OwnedEvent> {
        let mut out = OwnedEvent::default();
        match self.opener(event.stream_id())? {
            Some(mut opener) => opener.open_into(event, &mut out)?,
            None => out = event.to_owned(),
        }
        Ok(out)
    }

    /// What decrypts `stream`'s events: `None` for a plain stream, an error for a forgotten one.
    pub(crate) fn opener(&self, stream: &str) -> Result<Option<Opener>> {
        let keys = self.keys_now()?;
        match keys.entries.get(stream) {
            None => Ok(None),
            Some(Entry::Forgotten) => Err(Error::StreamForgotten { stream: stream.to_owned() }),
            Some(Entry::Live(live)) => {
                Ok(Some(Opener { cipher: Box::new(live.cipher.clone()), aad: Vec::new() }))
            }
        }
    }

    /// The key table, current: a read-only vault first reloads the key file if the writer changed it.
    fn keys_now(&self) -> Result<RwLockReadGuard<'_, Keys>> {
        if !self.writer {
            let stamp = stamp(&self.path)?;
            if self.read_keys().stamp != stamp {
                let mut keys = self.write_keys();
                if keys.stamp != stamp {
                    *keys = load(&self.path)?;
                }
            }
        }
        Ok(self.read_keys())
    }

    fn read_keys(&self) -> RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_keys(&self) -> RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Vault<'_> {
    fn drop(&mut self) {
        if self.writer {
            let mut writers = WRITERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let dir = self.store.dir();
            if let Some(i) = writers.iter().position(|d| d == dir) {
                writers.swap_remove(i);
            }
        }
    }
}

/// A stream's events read through a [`Vault`], decrypted ([`Vault::read_stream`]).
pub struct VaultEvents<'s> {
    events: Option<StreamEvents<'s>>,
    opener: Option<Opener>,
    error: Option<Error>,
}

impl std::fmt::Debug for VaultEvents<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultEvents").field("encrypted", &self.opener.is_some()).finish_non_exhaustive()
    }
}

impl Iterator for VaultEvents<'_> {
    type Item = Result<OwnedEvent>;

    fn next(&mut self) -> Option<Result<OwnedEvent>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let event = match self.events.as_mut()?.next()? {
            Ok(e) => e,
            Err(e) => return Some(Err(e)),
        };
        Some(match &mut self.opener {
            None => Ok(event.to_owned()),
            Some(opener) => {
                let mut out = OwnedEvent::default();
                opener.open_into(&event, &mut out).map(|()| out)
            }
        })
    }
}

/// Decrypts one stream's events, reusing its buffers from one event to the next.
pub(crate) struct Opener {
    cipher: Box<XChaCha20Poly1305>,
    aad: Vec<u8>,
}

impl Opener {
    /// Decrypts `e` into `out`, reusing `out`'s buffers: every field of `out` is overwritten.
    pub(crate) fn open_into(&mut self, e: &EventRef<'_>, out: &mut OwnedEvent) -> Result<()> {
        let fail = |reason: &'static str| Error::Undecryptable {
            stream: e.stream_id().to_owned(),
            version: e.stream_version(),
            position: e.position(),
            reason,
        };
        let envelope = e.payload();
        if envelope.len() < ENVELOPE_LEN_MIN || envelope.first() != Some(&ENVELOPE_VERSION) {
            return Err(fail("not an encrypted event (written without the vault, or damaged)"));
        }
        if !e.metadata().is_empty() {
            return Err(fail("an encrypted event carries no plain metadata"));
        }
        let tag_at = envelope.len() - TAG_LEN;
        let nonce = envelope.get(1..CIPHERTEXT_OFFSET).and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok());
        let tag = envelope.get(tag_at..).and_then(|t| <[u8; TAG_LEN]>::try_from(t).ok());
        let (Some(nonce), Some(tag), Some(body)) = (nonce, tag, envelope.get(CIPHERTEXT_OFFSET..tag_at))
        else {
            return Err(fail("envelope too short"));
        };
        associated_data(&mut self.aad, e.stream_id(), e.event_type(), e.schema_version())?;
        let plain = &mut out.payload;
        plain.clear();
        plain.extend_from_slice(body);
        self.cipher
            .decrypt_in_place_detached(&XNonce::from(nonce), &self.aad, plain, &Tag::from(tag))
            .map_err(|_| fail("authentication failed: the ciphertext was damaged or altered"))?;
        let trailer_at = plain.len() - TRAILER_LEN;
        let payload_len = plain
            .get(trailer_at..)
            .and_then(|t| <[u8; 4]>::try_from(t).ok())
            .and_then(|t| usize::try_from(u32::from_le_bytes(t)).ok())
            .filter(|&n| n <= trailer_at)
            .ok_or_else(|| fail("payload length past the plaintext"))?;
        out.metadata.clear();
        out.metadata.extend_from_slice(plain.get(payload_len..trailer_at).unwrap_or_default());
        plain.truncate(payload_len);
        out.position = e.position();
        out.stream_version = e.stream_version();
        out.stream_id.clear();
        out.stream_id.push_str(e.stream_id());
        out.event_type.clear();
        out.event_type.push_str(e.event_type());
        out.schema_version = e.schema_version();
        out.timestamp_micros = e.timestamp_micros();
        out.event_id = e.event_id();
        out.tags.clear();
        out.tags.extend(e.tags().map(str::to_owned));
        Ok(())
    }
}

/// Encrypts `e`'s payload and metadata for `stream` into an envelope.
fn seal(cipher: &XChaCha20Poly1305, stream: &str, e: &NewEvent<'_>, aad: &mut Vec<u8>) -> Result<Vec<u8>> {
    let payload_len = u32::try_from(e.payload.len()).map_err(|_| {
        Error::InvalidArgument(format!("payload of {} bytes (at most 4 GiB)", e.payload.len()))
    })?;
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.try_fill_bytes(&mut nonce).map_err(|err| {
        Error::io("draw a nonce from the OS's random source", stream, std::io::Error::other(err.to_string()))
    })?;
    associated_data(aad, stream, e.event_type, e.schema_version)?;
    let body = e.payload.len() + e.metadata.len() + TRAILER_LEN;
    let mut out = Vec::with_capacity(CIPHERTEXT_OFFSET + body + TAG_LEN);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(e.payload);
    out.extend_from_slice(e.metadata);
    out.extend_from_slice(&payload_len.to_le_bytes());
    let plain = out.get_mut(CIPHERTEXT_OFFSET..).unwrap_or_default();
    let tag = cipher
        .encrypt_in_place_detached(&XNonce::from(nonce), aad, plain)
        .map_err(|_| Error::InvalidArgument(format!("event of {body} bytes is too large to encrypt")))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The associated data of an event: what the ciphertext is bound to besides the key.
fn associated_data(out: &mut Vec<u8>, stream: &str, event_type: &str, schema_version: u32) -> Result<()> {
    let len = |s: &str| {
        u32::try_from(s.len()).map_err(|_| Error::InvalidArgument(format!("name of {} bytes", s.len())))
    };
    out.clear();
    out.extend_from_slice(AAD_PREFIX);
    out.extend_from_slice(&len(stream)?.to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(&len(event_type)?.to_le_bytes());
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(&schema_version.to_le_bytes());
    Ok(())
}

fn encode_header() -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    put(&mut h, 0, &KEYS_MAGIC);
    put(&mut h, HEADER_VERSION_OFFSET, &KEYS_VERSION.to_le_bytes());
    let crc = crc32fast::hash(h.get(..HEADER_CRC_OFFSET).unwrap_or_default());
    put(&mut h, HEADER_CRC_OFFSET, &crc.to_le_bytes());
    h
}

/// A record for `stream` holding `key`, or marked forgotten (zeros where the key was) for `None`.
fn encode_record(stream: &str, key: Option<&[u8; KEY_LEN]>) -> Vec<u8> {
    let id = stream.as_bytes();
    let len = record_len(id.len());
    let id_len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut r = vec![0u8; len];
    put(&mut r, 0, &RECORD_MAGIC);
    put(&mut r, RECORD_STATE_OFFSET, &[if key.is_some() { STATE_LIVE } else { STATE_FORGOTTEN }]);
    put(&mut r, RECORD_ID_LEN_OFFSET, &id_len.to_le_bytes());
    if let Some(key) = key {
        put(&mut r, RECORD_KEY_OFFSET, key);
    }
    put(&mut r, RECORD_ID_OFFSET, id);
    let crc = crc32fast::hash(r.get(..len - size_of::<u32>()).unwrap_or_default());
    put(&mut r, len - size_of::<u32>(), &crc.to_le_bytes());
    r
}

/// Copies `bytes` into `out` at `at` (the caller sized `out` to hold them).
fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// The whole key file for `keys`, with `forget`'s record marked forgotten.
fn encode_file(keys: &Keys, forget: Option<&str>) -> Vec<u8> {
    let mut out = encode_header();
    for stream in &keys.order {
        let key = match keys.entries.get(stream.as_str()) {
            Some(Entry::Live(live)) if forget != Some(stream.as_str()) => Some(&live.key),
            _ => None,
        };
        let mut record = encode_record(stream, key);
        out.extend_from_slice(&record);
        record.zeroize();
    }
    out
}

/// One record as read.
struct Record {
    stream: String,
    key: Option<[u8; KEY_LEN]>,
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(k) = &mut self.key {
            k.zeroize();
        }
    }
}

struct Parsed {
    records: Vec<Record>,
    /// Where the valid records end (a torn last record starts there).
    end: usize,
}

/// Reads the key file's bytes: the header, then records up to the first that fails its checks. A damaged
/// record counts as a torn append (what a crash while creating a key leaves) only if no valid record follows
/// it; otherwise it is corruption, as is a damaged header.
fn parse(bytes: &[u8]) -> std::result::Result<Parsed, (u64, &'static str)> {
    let header = bytes.get(..HEADER_LEN).ok_or((0, "shorter than its header"))?;
    let field = |from: usize, to: usize| header.get(from..to).unwrap_or_default();
    if field(0, HEADER_MAGIC_LEN) != KEYS_MAGIC {
        return Err((0, "not a foldlog key file (bad magic)"));
    }
    let crc = <[u8; 4]>::try_from(field(HEADER_CRC_OFFSET, HEADER_LEN)).ok().map(u32::from_le_bytes);
    if crc != Some(crc32fast::hash(field(0, HEADER_CRC_OFFSET))) {
        return Err((0, "header checksum mismatch"));
    }
    if field(HEADER_VERSION_OFFSET, HEADER_RESERVED_OFFSET) != KEYS_VERSION.to_le_bytes() {
        return Err((0, "unknown key file version"));
    }
    let mut records: Vec<Record> = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let Some((record, len)) = parse_record(bytes, at) else {
            let mut later = (at + RECORD_ALIGN..bytes.len()).step_by(RECORD_ALIGN);
            if later.any(|next| parse_record(bytes, next).is_some()) {
                return Err((at as u64, "a damaged key record followed by valid ones"));
            }
            break;
        };
        if records.iter().any(|r| r.stream == record.stream) {
            return Err((at as u64, "two records for one stream"));
        }
        records.push(record);
        at += len;
    }
    Ok(Parsed { records, end: at.min(bytes.len()) })
}

/// The record at `at` and its length, if it passes every check.
fn parse_record(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    let rest = bytes.get(at..)?;
    if rest.get(..RECORD_MAGIC.len())? != RECORD_MAGIC {
        return None;
    }
    let id_len =
        usize::from(u16::from_le_bytes(rest.get(RECORD_ID_LEN_OFFSET..RECORD_KEY_OFFSET)?.try_into().ok()?));
    if id_len == 0 || id_len > STREAM_ID_BYTES_MAX {
        return None;
    }
    let len = record_len(id_len);
    let record = rest.get(..len)?;
    let crc_at = len - size_of::<u32>();
    let crc = u32::from_le_bytes(record.get(crc_at..)?.try_into().ok()?);
    if crc != crc32fast::hash(record.get(..crc_at)?) {
        return None;
    }
    let stream = std::str::from_utf8(record.get(RECORD_ID_OFFSET..RECORD_ID_OFFSET + id_len)?).ok()?;
    let key_bytes: [u8; KEY_LEN] = record.get(RECORD_KEY_OFFSET..RECORD_ID_OFFSET)?.try_into().ok()?;
    let key = match *record.get(RECORD_STATE_OFFSET)? {
        STATE_LIVE => Some(key_bytes),
        STATE_FORGOTTEN if key_bytes == [0; KEY_LEN] => None,
        _ => return None,
    };
    Some((Record { stream: stream.to_owned(), key }, len))
}

/// The key table a file's bytes give.
fn table(path: &Path, bytes: &[u8]) -> Result<(Keys, usize)> {
    let parsed =
        parse(bytes).map_err(|(offset, what)| Error::corrupt(path, offset, Corruption::KeyFile { what }))?;
    let mut keys = Keys::default();
    for r in &parsed.records {
        let entry = match &r.key {
            Some(k) => Entry::Live(Box::new(LiveKey::new(k))),
            None => Entry::Forgotten,
        };
        keys.order.push(r.stream.clone());
        keys.entries.insert(r.stream.clone(), entry);
    }
    keys.end = parsed.end as u64;
    Ok((keys, parsed.end))
}

/// A read-only vault's load: the key file as it is now (none yet: no keys).
fn load(path: &Path) -> Result<Keys> {
    let before = stamp(path)?;
    let mut bytes = match sys::read_file(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Keys { stamp: None, ..Keys::default() })
        }
        Err(e) => return Err(Error::io("read key file", path, e)),
    };
    let loaded = table(path, &bytes);
    bytes.zeroize();
    let (mut keys, _) = loaded?;
    keys.stamp = before;
    Ok(keys)
}

/// A writer vault's load: the key file opened for writing, a torn last record cut off and the cut synced.
fn load_for_writer(path: &Path) -> Result<Keys> {
    let file = match sys::open(path, true) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Keys::default()),
        Err(e) => return Err(Error::io("open key file", path, e)),
    };
    let len = file.metadata().map_err(|e| Error::io("stat key file", path, e))?.len();
    let mut bytes =
        vec![0u8; usize::try_from(len).map_err(|_| Error::InvalidArgument("key file too large".into()))?];
    sys::read_at(&file, path, 0, &mut bytes).map_err(|e| Error::io("read key file", path, e))?;
    let loaded = table(path, &bytes);
    bytes.zeroize();
    let (mut keys, end) = loaded?;
    if (end as u64) < len {
        // A key whose record tore was never used (the record is synced before any event uses the key).
        file.set_len(end as u64).map_err(|e| Error::io("cut torn key record", path, e))?;
        sys::sync_file(&file, path).map_err(|e| Error::io("sync key file", path, e))?;
    }
    keys.file = Some(file);
    Ok(keys)
}

/// What identifies the key file's current version to a reader: a forget renames a new file into place (a
/// new inode), a new key makes it longer.
fn stamp(path: &Path) -> Result<Option<Stamp>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            Ok(Some((inode, m.len(), m.modified().ok())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat key file", path, e)),
    }
}

/// Overwrites the replaced key file (still open, no longer named) with zeros and syncs it, so that the
/// blocks it frees do not keep the forgotten key on file systems that write in place (ext4, xfs; not on
/// copy-on-write ones, SECURITY.md).
fn scrub(old: &File, path: &Path) -> Result<()> {
    // The file has no name any more: errors, failpoints and the persistence recorder must not take these
    // writes for writes to the new `KEYS`.
    let path = &path.with_file_name(format!("{KEY_FILE} (replaced, no longer named)"));
    let len = old.metadata().map_err(|e| Error::io("stat replaced key file", path, e))?.len();
    let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
    sys::write_at(old, path, 0, &zeros)
        .and_then(|()| sys::sync_file(old, path))
        .map_err(|e| Error::io("zero replaced key file", path, e))
}

/// Removes temp files of a key file rewrite that a crash interrupted: they hold keys. Only names foldlog's
/// atomic writes make (`KEYS.tmp-<pid>-<n>`, as src/directory.rs recognises them) are touched.
fn remove_temp_files(dir: &Path) -> Result<()> {
    for (name, regular) in sys::list_dir(dir).map_err(|e| Error::io("list directory", dir, e))? {
        if regular && crate::directory::atomic_temp_target(&name) == Some(KEY_FILE) {
            let path = dir.join(&name);
            match sys::remove(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("remove key file temp", path, e))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, reason = "tests index what they just built")]
mod tests {
    use super::*;

    fn file_of(records: &[Vec<u8>]) -> Vec<u8> {
        let mut f = encode_header();
        for r in records {
            f.extend_from_slice(r);
        }
        f
    }

    #[test]
    fn records_round_trip() {
        let key = [7u8; KEY_LEN];
        let bytes = file_of(&[encode_record("a", Some(&key)), encode_record("bb", None)]);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.end, bytes.len());
        assert_eq!(parsed.records[0].stream, "a");
        assert_eq!(parsed.records[0].key, Some(key));
        assert_eq!((parsed.records[1].stream.as_str(), parsed.records[1].key), ("bb", None));
    }

    #[test]
    fn a_torn_last_record_is_cut_and_a_damaged_middle_one_is_corruption() {
        let key = [9u8; KEY_LEN];
        let whole = file_of(&[encode_record("a", Some(&key)), encode_record("b", Some(&key))]);
        let first_end = HEADER_LEN + record_len(1);
        for cut in first_end..whole.len() {
            let parsed = parse(&whole[..cut]).unwrap();
            assert_eq!((parsed.records.len(), parsed.end), (1, first_end), "cut at {cut}");
        }
        let mut damaged = whole.clone();
        damaged[HEADER_LEN + RECORD_ID_OFFSET] ^= 1;
        assert_eq!(parse(&damaged).err().map(|e| e.0), Some(HEADER_LEN as u64));
        let mut header = whole;
        header[3] ^= 1;
        assert!(parse(&header).is_err());
    }

    #[test]
    fn envelopes_round_trip_and_refuse_other_streams() {
        let cipher = LiveKey::new(&[1u8; KEY_LEN]).cipher.clone();
        let event = NewEvent::new("T", b"payload").metadata(b"meta");
        let envelope = seal(&cipher, "s", &event, &mut Vec::new()).unwrap();
        let stored = OwnedEvent::new(0, "s", 1, "T", envelope.clone());
        let mut opener = Opener { cipher: Box::new(cipher.clone()), aad: Vec::new() };
        let mut out = OwnedEvent::default();
        opener.open_into(&stored.as_event_ref(), &mut out).unwrap();
        assert_eq!((out.payload.as_slice(), out.metadata.as_slice()), (&b"payload"[..], &b"meta"[..]));
        let moved = OwnedEvent::new(0, "t", 1, "T", envelope.clone());
        assert!(opener.open_into(&moved.as_event_ref(), &mut out).is_err());
        let relabelled = OwnedEvent::new(0, "s", 1, "U", envelope);
        assert!(opener.open_into(&relabelled.as_event_ref(), &mut out).is_err());
        for len in 0..ENVELOPE_LEN_MIN {
            let short = OwnedEvent::new(0, "s", 1, "T", vec![ENVELOPE_VERSION; len]);
            assert!(opener.open_into(&short.as_event_ref(), &mut out).is_err());
        }
    }
}
