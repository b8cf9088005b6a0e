//! The crate's one error type.

use std::io;
use std::path::PathBuf;

use crate::corruption::Corruption;

/// Result with foldlog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The version a stream was expected to be at when appending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check: append whatever the stream's state.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

/// Everything that can go wrong. Variants say what a caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// What foldlog was doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk that must be valid are not. Nothing past `offset` in `path` was trusted; the store did
    /// not open. Run `foldlog verify`, restore from a copy, or reopen with `Recovery::TruncateCorruption` to cut
    /// the log at `offset` (losing what follows). `kind` says what is wrong, for a caller to act on.
    #[error("corrupt log: {path} at offset {offset}: {kind}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first bad byte (a frame or header start).
        offset: u64,
        /// What is wrong.
        kind: Corruption,
    },
    /// The directory is not a foldlog directory, or holds an inconsistent set of files.
    #[error("not a usable foldlog directory: {path}: {reason}")]
    InvalidDirectory {
        /// The offending directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file was written by a format version this code does not know (probably a newer foldlog).
    #[error("{path}: format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// Another handle (in this or another process) holds the directory's lock.
    #[error("{path} is locked by another foldlog handle (another process, or an open Store in this one)")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A sync failed earlier, so the OS may have dropped written pages; the store refuses all writes until it
    /// is dropped and reopened, which re-reads the disk and recovers.
    #[error("store is poisoned by an earlier failed sync; drop it and reopen")]
    Poisoned,
    /// The store was opened read-only.
    #[error("store is open read-only")]
    ReadOnly,
    /// The optimistic-concurrency check failed; nothing was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected:?}, actual {actual:?}")]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's last version (`None`: the stream does not exist).
        actual: Option<u64>,
    },
    /// The stream was deleted ([`Store::delete_stream`](crate::Store::delete_stream)): nothing may be
    /// appended to it, nor may it be truncated or deleted again. Nothing was written.
    #[error("stream {stream:?} is deleted; its id cannot be used again")]
    StreamDeleted {
        /// The stream.
        stream: String,
    },
    /// A truncation or deletion named a stream that has no events. Nothing was written.
    #[error("stream {stream:?} has no events to truncate or delete")]
    StreamNotFound {
        /// The stream.
        stream: String,
    },
    /// A batch is larger than a segment can hold; raise `Options::segment_size_bytes` or split the batch.
    #[error("batch of {len} bytes does not fit in a segment ({max} bytes available)")]
    TooLarge {
        /// Bytes the batch needs.
        len: u64,
        /// Bytes a segment has for frames.
        max: u64,
    },
    /// A conditional append's [`AppendCondition`](crate::AppendCondition) failed: an event matching its query
    /// was stored after its position. Nothing was written; read again, decide again.
    #[error(
        "append condition failed: event at position {position} (type {event_type:?} in stream {stream:?}) matches"
    )]
    AppendConditionFailed {
        /// The first matching event's position.
        position: u64,
        /// Its stream.
        stream: String,
        /// Its type.
        event_type: String,
    },
    /// An argument is out of its documented range (empty stream id, name too long, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An event id was already used by a different event.
    #[error("event id {id:032x} was already used by the event at position {position}")]
    DuplicateEventId {
        /// The id.
        id: u128,
        /// Where it was used.
        position: u64,
    },
    /// A consumer position must increase.
    #[error("consumer {name:?} is at {current}; new position {proposed} does not advance it")]
    ConsumerPositionNotAdvanced {
        /// The consumer.
        name: String,
        /// Its stored position.
        current: u64,
        /// The position offered.
        proposed: u64,
    },
    /// The stream's key was destroyed (`Vault::forget_stream`, feature
    /// `encryption`): its events are still in the log (positions, versions, types, timestamps), but their
    /// payloads and metadata can never be read again, and nothing more may be appended to it. Read the events'
    /// outline with [`Store::read_stream`](crate::Store::read_stream).
    #[error("stream {stream:?} was forgotten: its key is destroyed and its content cannot be read")]
    StreamForgotten {
        /// The stream.
        stream: String,
    },
    /// An encrypted event failed to decrypt with its stream's key (feature `encryption`): its bytes were
    /// damaged or altered, moved from another stream or type, or written to an encrypted stream without the
    /// `Vault`. Nothing of its content was returned.
    #[error("cannot decrypt event v{version} (position {position}) of stream {stream:?}: {reason}")]
    Undecryptable {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// Its position in the log.
        position: u64,
        /// What failed.
        reason: &'static str,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and where.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    /// Builds a corruption error.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, kind: Corruption) -> Error {
        Error::Corrupt { path: path.into(), offset, kind }
    }
}
