//! foldlog: an embedded event-sourcing storage engine.
//!
//! A segmented, memory-mapped, checksummed append-only log of events, each belonging to a stream (one per
//! aggregate, such as `account-42`), with optimistic concurrency, atomic multi-stream appends, zero-copy reads
//! in global or stream order, and crash recovery that never loses an acknowledged event nor invents one.
//!
//! ```
//! use foldlog::{ExpectedVersion, NewEvent, Store};
//!
//! # fn main() -> foldlog::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//! store.append("account-42", ExpectedVersion::NoStream, &[NewEvent::new("Opened", b"100")])?;
//! store.append("account-42", ExpectedVersion::Exact(0), &[NewEvent::new("Deposited", b"50")])?;
//! let history: Vec<String> = store
//!     .read_stream("account-42", 0)
//!     .map(|e| e.map(|e| e.event_type().to_owned()))
//!     .collect::<foldlog::Result<_>>()?;
//! assert_eq!(history, ["Opened", "Deposited"]);
//! # Ok(())
//! # }
//! ```
//!
//! What you build ([`Options`], [`NewEvent`], [`Batch`], [`ReadAll`], [`SnapshotPolicy`], ...) is made from a
//! constructor or `Default` and one chainable setter per field (`Options::default().read_only(true)`); those
//! structs, the reports and most enums are `#[non_exhaustive]`, so a new field or variant is not a breaking
//! change. ARCHITECTURE.md, "The public API and how it grows", has the whole policy.
//!
//! The layers, bottom up: `format` (the bytes), `record` (one frame), `map` and `io` (the only modules that
//! touch the OS), `segment` (one file), `index` (streams → positions), `store` (the log: writer, durability,
//! recovery), `read` (iterators); above them, `crypto` (feature `encryption`: `Vault`, encrypted streams and
//! erasure by forgetting their keys). See ARCHITECTURE.md and docs/format.md.

// The lint wall: pedantic, with a short allow list, each entry argued. `unsafe` is denied here and allowed only
// in `map.rs` and `io.rs`, each block with a SAFETY comment. The decode paths (`record`, `format`,
// `index/checkpoint.rs`, `index/saved_list.rs`, the snapshot codec, `verify`) also deny `unwrap`, indexing
// and truncating casts in their own module headers: a byte from disk must become an error there, never a
// panic. The byte-order lints are in Cargo.toml, the `usize` byte methods disallowed in clippy.toml.
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::pedantic)]
#![allow(
    clippy::must_use_candidate,
    reason = "getters and constructors would all carry it; dropping their result is harmless. `#[must_use]` is \
              written where dropping a value is a bug (the builders' setters, which return a new value)"
)]
#![allow(
    clippy::missing_errors_doc,
    reason = "every fallible function returns `Result<_, Error>`, and each `Error` variant documents when it \
              occurs; functions whose errors need more say so in their prose"
)]
#![allow(
    clippy::wildcard_imports,
    reason = "the files of `store/` and `aggregate/` are one module cut by lifecycle; each takes its parent's \
              imports whole (`use super::*`) so that the cut adds no import lists to keep in step"
)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "in-memory offsets and lengths are bounded by a mapped segment (at most 4 GiB, and mapped, so it \
              fits the address space); values read from disk are converted with `try_from` on the decode \
              paths, which deny this lint again"
)]

mod aggregate;
pub mod backup;
mod checked;
mod consumers;
mod corruption;
#[cfg(feature = "encryption")]
mod crypto;
mod directory;
mod error;
mod format;
mod head;
pub mod import;
mod index;
// Test hooks (failpoints and the persistence recorder in `io`, the few internals the test kit needs in
// `testing`) exist only with the `testing` feature, which the test kit (`crates/foldlog-testkit`) turns on.
#[cfg(feature = "tokio")]
mod event_stream;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod io;
#[cfg(not(feature = "testing"))]
mod io;
mod map;
mod options;
mod query;
mod read;
mod record;
mod retention;
pub mod salvage;
mod segment;
mod staging;
mod store;
mod subscription;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod time;
pub mod verify;

#[cfg(feature = "tokio")]
pub use aggregate::AsyncRepository;
#[cfg(feature = "serde")]
pub use aggregate::Json;
pub use aggregate::{
    access_payload, deserialize_payload, Aggregate, Codec, CodecError, Decision, Deserialized, DomainEvent,
    EventView, LoadInfo, Repository, RepositoryError, RkyvCheck, RkyvWrite, Root, Saved, ZeroCopy,
};
pub use aggregate::{decode_event, EventContext, UnitOfWork, Upcaster};
pub use aggregate::{Snapshot, SnapshotData, SnapshotFiles, SnapshotPolicy, SnapshotRefusal};
pub use corruption::{CheckpointLoss, CheckpointRefusal, Corruption, FrameFault, Region};
#[cfg(feature = "encryption")]
pub use crypto::{Vault, VaultEvents};
pub use directory::{inspect_directory, DirectoryContents, Removal, StoreLock};
pub use error::{Error, ExpectedVersion, Result};
#[cfg(feature = "tokio")]
pub use event_stream::EventStream;
pub use format::{FORMAT_VERSION, STREAM_VERSION_MAX};
pub use options::{Durability, GroupCommit, Options, Recovery};
pub use query::{AppendCondition, Query, QueryEvents, QueryItem};
pub use read::{AllEvents, ReadAll, StreamEvents};
pub use record::{EventRef, OwnedEvent};
pub use retention::{Retention, RetentionTarget, RETENTION_STREAM, SYSTEM_PREFIX};
/// The rkyv this crate is built with. Derive your events' archive traits through it
/// (`#[derive(foldlog::rkyv::Archive, ...)]` with `#[rkyv(crate = foldlog::rkyv)]`), so that the payloads you
/// write and the archives foldlog checks always come from one rkyv version; see [`Aggregate`].
pub use rkyv;
pub use store::{
    Appended, Batch, CheckpointUse, Control, NewEvent, RecoveryReport, ScavengeOptions, ScavengeReport,
    SegmentScavenge, Stats, Store, StreamAppend, StreamControl, StreamScavenge, StreamState, FOLLOW_POLL,
    FOLLOW_POLL_MAX,
};
pub use subscription::{Stopper, Subscription};
