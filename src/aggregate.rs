//! Aggregates: domain state that is the fold of its own history, commands that decide, and a repository that
//! loads and saves them through the log.
//!
//! The roles, as in the classic pattern:
//!
//! - A **command** is a method of the domain type. It validates, may call out and may refuse with the domain's
//!   own error; what it decides is one or more events. Nothing of it runs when an aggregate is loaded.
//! - [`Root::record`] (the classic "trigger"/"take") appends a decided event to the pending changes *and*
//!   applies it, so the next line of the command sees the new state.
//! - [`Aggregate::apply`] folds one event into the state. It never fails and never validates: an exhaustive
//!   `match` over the event enum is the single dispatch, used alike for new events and for history.
//! - [`Repository::get`] builds an empty shell (`Default`, which emits nothing), then folds the stream's history
//!   (from the newest usable snapshot on, when the aggregate opts in to [`Snapshot`]s). [`Repository::save`]
//!   appends the pending events, expecting the version the aggregate was loaded at; a concurrent change is a
//!   [`RepositoryError::Conflict`].
//!
//! Events reach `apply` through a [`Codec`]. [`ZeroCopy`] hands `apply` the rkyv archive straight from the
//! memory map (loading deserializes nothing); [`Deserialized`] hands it an owned event; a codec of your own
//! (JSON, protobuf, ...) does the same for other payloads. The log stores the type name, the schema version and
//! the bytes either way, and [`DomainEvent::upcast`] turns events of an older schema version into the current
//! form on read.
//!
//! docs/guide.md walks through all of it with the bank example; docs/format.md specifies what the repository
//! writes and the snapshot files.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, Range};

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::api::low::LowValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Portable, Serialize};

use crate::error::{Error, ExpectedVersion};
use crate::record::EventRef;
use crate::snapshot::{self, Snapshot, SnapshotMeta, SnapshotPolicy};
use crate::store::{Batch, NewEvent, Store, StreamAppend};

// NOTE: the guide's code blocks run as doctests from here, so every snippet in docs/guide.md compiles.
#[cfg(doctest)]
#[doc = include_str!("../docs/guide.md")]
struct GuideDoctests;

/// Alignment of the payloads a [`Repository`] writes, and of the scratch buffer a misaligned payload is
/// copied into: enough for every archived type rkyv produces by default.
pub const PAYLOAD_ALIGN: usize = 16;

/// Types rkyv can archive with the serializer foldlog uses (implemented for every type that derives
/// `rkyv::Serialize`).
pub trait RkyvWrite: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>> {}
impl<T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>> RkyvWrite for T {}

/// Archived types foldlog can check before handing out a reference (implemented for the `Archived*` types
/// rkyv's derive generates, which implement `CheckBytes` by default).
///
/// Both validators are needed: the lean one (no shared-pointer tracking, unit error) checks every event on
/// the fold's hot path; the full one runs only to explain a failure.
pub trait RkyvCheck:
    Portable
    + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
    + for<'a> CheckBytes<LowValidator<'a, rancor::Failure>>
{
}
impl<T> RkyvCheck for T where
    T: Portable
        + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + for<'a> CheckBytes<LowValidator<'a, rancor::Failure>>
{
}

/// Checks an archive with the lean validator, and again with the full one if that fails.
fn check_archive<T: RkyvCheck>(bytes: &[u8]) -> Result<&T, CodecError> {
    match rkyv::api::low::access::<T, rancor::Failure>(bytes) {
        Ok(archived) => Ok(archived),
        // The lean validator gives no reason; the full one says what is wrong.
        Err(_) => rkyv::access::<T, rancor::Error>(bytes).map_err(CodecError::new),
    }
}

/// An event payload that a codec could not encode or decode, or an upcaster could not convert.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

impl CodecError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> CodecError {
        CodecError(message.to_string())
    }
}

/// An aggregate's event type: the name and schema version stored with each event, and how events written
/// with an older schema version are read.
pub trait DomainEvent: Sized + 'static {
    /// The schema version new events are written with. Bump it when the stored form of the events changes
    /// (for rkyv events: any change to the enum's fields), and teach [`DomainEvent::upcast`] the old form.
    const SCHEMA_VERSION: u32;

    /// The type name stored with this event, e.g. `"Deposited"` (dumps, filters and readers that do not
    /// decode payloads see it).
    fn event_type(&self) -> &'static str;

    /// Turns a stored event with `stored.schema_version() < SCHEMA_VERSION` into the current form. Called
    /// on read only; the log keeps the old bytes. The default refuses, so an old event is a clear
    /// [`RepositoryError::Decode`] rather than a misread. [`deserialize_payload`] reads an old rkyv form.
    fn upcast(stored: &EventRef<'_>) -> Result<Self, CodecError> {
        Err(CodecError::new(format!(
            "schema version {} of {:?} is older than the current {} and no upcaster is defined",
            stored.schema_version(),
            stored.event_type(),
            Self::SCHEMA_VERSION
        )))
    }
}

/// How an aggregate's events become payload bytes, and how stored bytes come back as what
/// [`Aggregate::apply`] takes (a [`Codec::View`]).
pub trait Codec<E: DomainEvent> {
    /// What `apply` receives: a reference into the map for [`ZeroCopy`], an owned event for other codecs.
    type View<'a>;

    /// Writes the payload of `event` into `out` (which is empty).
    fn encode(event: &E, out: &mut AlignedVec) -> Result<(), CodecError>;

    /// Reads a payload of the current schema version. `scratch` (empty) is there for a codec that needs an
    /// aligned copy; a view may borrow from `payload` or from `scratch`.
    fn decode<'a>(payload: &'a [u8], scratch: &'a mut AlignedVec) -> Result<Self::View<'a>, CodecError>;

    /// Turns an owned event (an upcast one) into a view, using `scratch` if needed.
    fn from_owned<'a>(event: E, scratch: &'a mut AlignedVec) -> Result<Self::View<'a>, CodecError>;
}

/// The zero-copy rkyv codec: the payload is `rkyv::to_bytes(&event)`, and `apply` receives
/// `&Archived<Event>` checked in place in the memory map, so a fold deserializes nothing.
///
/// A payload that does not sit at an address aligned for the archive is copied into an aligned buffer first
/// (counted in [`LoadInfo::events_copied`]); the [`Repository`] writes its events so that this never happens.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZeroCopy;

/// The owned rkyv codec: same bytes as [`ZeroCopy`], but each event is deserialized and `apply` receives
/// it by value. For domain code that prefers plain Rust values over archived ones, at the cost of an
/// allocation-prone deserialization per event.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deserialized;

fn encode_rkyv<E: RkyvWrite>(event: &E, out: &mut AlignedVec) -> Result<(), CodecError> {
    let buf = std::mem::take(out);
    *out = rkyv::api::high::to_bytes_in::<_, rancor::Error>(event, buf).map_err(CodecError::new)?;
    Ok(())
}

/// Checks an rkyv archive in place if it is suitably aligned in memory, else in an aligned copy in
/// `scratch`. The returned reference points into `payload` exactly when no copy was needed.
pub fn access_payload<'a, T: RkyvCheck>(
    payload: &'a [u8],
    scratch: &'a mut AlignedVec,
) -> Result<&'a T, CodecError> {
    if (payload.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        match check_archive::<T>(payload) {
            Ok(archived) => return Ok(archived),
            // An archive that needs more alignment inside than its root has can still fail here; it is
            // retried from a 16-aligned copy below.
            Err(e) if (payload.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN) => return Err(e),
            Err(_) => {}
        }
    }
    scratch.clear();
    scratch.extend_from_slice(payload);
    let copy: &'a AlignedVec = scratch;
    check_archive::<T>(copy)
}

/// Deserializes an rkyv payload of any type into an owned value (through an aligned copy when needed). For
/// upcasters reading the archive of an older event type.
pub fn deserialize_payload<T>(payload: &[u8]) -> Result<T, CodecError>
where
    T: Archive,
    T::Archived: RkyvCheck + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let mut scratch = AlignedVec::new();
    let archived = access_payload::<T::Archived>(payload, &mut scratch)?;
    rkyv::deserialize::<T, rancor::Error>(archived).map_err(CodecError::new)
}

impl<E> Codec<E> for ZeroCopy
where
    E: DomainEvent + Archive + RkyvWrite,
    E::Archived: RkyvCheck,
{
    type View<'a> = &'a E::Archived;

    fn encode(event: &E, out: &mut AlignedVec) -> Result<(), CodecError> {
        encode_rkyv(event, out)
    }

    fn decode<'a>(payload: &'a [u8], scratch: &'a mut AlignedVec) -> Result<&'a E::Archived, CodecError> {
        access_payload::<E::Archived>(payload, scratch)
    }

    fn from_owned<'a>(event: E, scratch: &'a mut AlignedVec) -> Result<&'a E::Archived, CodecError> {
        encode_rkyv(&event, scratch)?;
        let bytes: &'a AlignedVec = scratch;
        rkyv::access::<E::Archived, rancor::Error>(bytes).map_err(CodecError::new)
    }
}

impl<E> Codec<E> for Deserialized
where
    E: DomainEvent + Archive + RkyvWrite,
    E::Archived: RkyvCheck + Deserialize<E, HighDeserializer<rancor::Error>>,
{
    type View<'a> = E;

    fn encode(event: &E, out: &mut AlignedVec) -> Result<(), CodecError> {
        encode_rkyv(event, out)
    }

    fn decode<'a>(payload: &'a [u8], scratch: &'a mut AlignedVec) -> Result<E, CodecError> {
        let archived = access_payload::<E::Archived>(payload, scratch)?;
        rkyv::deserialize::<E, rancor::Error>(archived).map_err(CodecError::new)
    }

    fn from_owned(event: E, _scratch: &mut AlignedVec) -> Result<E, CodecError> {
        Ok(event)
    }
}

/// What [`Aggregate::apply`] receives for aggregate `A`.
pub type EventView<'a, A> = <<A as Aggregate>::Codec as Codec<<A as Aggregate>::Event>>::View<'a>;

/// Domain state that is the fold of its events. Implement it on a plain struct; the id, the version and the
/// pending events live in the [`Root`] that wraps it.
///
/// `Default` is the empty shell a load starts from: it must emit no event (it cannot: only [`Root::record`]
/// records). Creation is a command like any other, whose event sets the state up.
pub trait Aggregate: Default + Sized {
    /// Stream name prefix: aggregate `42` lives in the stream `"{NAME}-42"`.
    const NAME: &'static str;
    /// The event type (usually an enum).
    type Event: DomainEvent;
    /// How the events are stored and what `apply` takes: [`ZeroCopy`], [`Deserialized`] or your own.
    type Codec: Codec<Self::Event>;

    /// Folds one event into the state. Never fails, never validates (the command did that before the event
    /// existed): an exhaustive `match` on the event is the whole method.
    fn apply(&mut self, event: EventView<'_, Self>);
}

/// What a command decided: one event, several, or none. Lets [`Root::execute`] take commands that return an
/// event, a `Vec` of events or an `Option`.
pub trait Decision<E> {
    /// Hands each decided event to `record`, in order.
    fn each_event(self, record: impl FnMut(E));
}

impl<E: DomainEvent> Decision<E> for E {
    fn each_event(self, mut record: impl FnMut(E)) {
        record(self)
    }
}

impl<E: DomainEvent> Decision<E> for Vec<E> {
    fn each_event(self, record: impl FnMut(E)) {
        self.into_iter().for_each(record)
    }
}

impl<E: DomainEvent> Decision<E> for Option<E> {
    fn each_event(self, record: impl FnMut(E)) {
        self.into_iter().for_each(record)
    }
}

/// How an aggregate was loaded: for logs, tests and curiosity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadInfo {
    /// Version of the snapshot the load started from (`None`: folded from the first event).
    pub snapshot_version: Option<u64>,
    /// Snapshots that were found but not used, newest first, with the reason (damaged, state schema version
    /// changed, not matching the log, ...).
    pub snapshots_rejected: Vec<(u64, String)>,
    /// Events folded.
    pub events_folded: u64,
    /// Of those, payloads that had to be copied to an aligned buffer before they could be read.
    pub events_copied: u64,
    /// Of those, events of an older schema version that went through [`DomainEvent::upcast`].
    pub events_upcast: u64,
}

/// An event recorded but not saved yet.
struct Pending {
    event_type: &'static str,
    schema_version: u32,
    payload: AlignedVec,
}

/// An aggregate in memory: the domain state with its id, the version it was loaded or saved at, and the
/// events recorded since. Derefs to the state; the state changes only by recording events.
pub struct Root<A: Aggregate> {
    id: String,
    state: A,
    /// Stream version of the last stored event folded into `state` (`None`: the stream did not exist).
    version: Option<u64>,
    pending: Vec<Pending>,
    info: LoadInfo,
}

impl<A: Aggregate + fmt::Debug> fmt::Debug for Root<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("id", &self.id)
            .field("version", &self.version())
            .field("pending", &self.pending_event_types())
            .field("state", &self.state)
            .finish()
    }
}

impl<A: Aggregate> Deref for Root<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.state
    }
}

impl<A: Aggregate> Root<A> {
    /// A new aggregate with this id: the empty shell, no events, never saved. Run its creation command next;
    /// saving it fails with a conflict if the id is already taken.
    pub fn new(id: impl Into<String>) -> Root<A> {
        Root {
            id: id.into(),
            state: A::default(),
            version: None,
            pending: Vec::new(),
            info: LoadInfo::default(),
        }
    }

    /// The aggregate's id (the stream is `"{A::NAME}-{id}"`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The state.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Consumes the root, keeping the state.
    pub fn into_state(self) -> A {
        self.state
    }

    /// Version of the last stored event in the state: the number of stored events for a repository's
    /// streams (versions start at 1), 0 for an aggregate never saved. Pending events are not counted.
    pub fn version(&self) -> u64 {
        self.version.unwrap_or(0)
    }

    /// Type names of the events recorded since the last load or save, oldest first.
    pub fn pending_event_types(&self) -> Vec<&'static str> {
        self.pending.iter().map(|p| p.event_type).collect()
    }

    /// How the last load went (default for a root made with [`Root::new`]).
    pub fn load_info(&self) -> &LoadInfo {
        &self.info
    }

    /// Records a decided event: encodes it, appends it to the pending changes and applies it (from the
    /// encoded bytes, exactly as a later load will). Panics only if the aggregate's codec cannot encode or
    /// read back its own event, which is a bug in the codec; [`Root::try_record`] returns that instead.
    pub fn record(&mut self, event: A::Event) {
        if let Err(e) = self.try_record(event) {
            panic!("aggregate {:?}: the codec cannot round-trip a new event: {e}", self.id);
        }
    }

    /// [`Root::record`], returning a codec failure instead of panicking (nothing is recorded then).
    pub fn try_record(&mut self, event: A::Event) -> Result<(), CodecError> {
        let mut payload = AlignedVec::new();
        A::Codec::encode(&event, &mut payload)?;
        let mut scratch = AlignedVec::new();
        let view = A::Codec::decode(&payload, &mut scratch)?;
        self.state.apply(view);
        let (event_type, schema_version) = (event.event_type(), A::Event::SCHEMA_VERSION);
        self.pending.push(Pending { event_type, schema_version, payload });
        Ok(())
    }

    /// Runs a command against the current state and records what it decided. The command's error (a refusal)
    /// is returned as is, with nothing recorded.
    pub fn execute<D, E>(&mut self, command: impl FnOnce(&A) -> Result<D, E>) -> Result<(), E>
    where
        D: Decision<A::Event>,
    {
        let decided = command(&self.state)?;
        decided.each_event(|e| self.record(e));
        Ok(())
    }
}

/// What a [`Repository`] call can fail with, besides the store's own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The store failed (I/O, corruption, read-only, ...).
    #[error(transparent)]
    Store(#[from] Error),
    /// No aggregate has this id: its stream has no events.
    #[error("no aggregate {id:?}: stream {stream:?} has no events")]
    NotFound {
        /// The id asked for.
        id: String,
        /// Its stream.
        stream: String,
    },
    /// `get_at` asked for a version the aggregate does not have.
    #[error("aggregate {id:?} has no version {version} (it has versions up to {last})")]
    NoSuchVersion {
        /// The id.
        id: String,
        /// The version asked for.
        version: u64,
        /// Its last version.
        last: u64,
    },
    /// A new aggregate (made with [`Root::new`]) was saved under an id that is taken; nothing was written.
    #[error("aggregate {id:?} already exists (at version {version}); load it instead of creating it")]
    AlreadyExists {
        /// The id.
        id: String,
        /// The existing aggregate's version.
        version: u64,
    },
    /// Someone saved the aggregate since it was loaded; nothing was written. Load it again and rerun the
    /// command against the new state.
    #[error(
        "aggregate {id:?} changed concurrently: loaded at version {loaded}, now at version {actual}; \
         reload it and run the command again"
    )]
    Conflict {
        /// The id.
        id: String,
        /// The version it was loaded at (0: created as new).
        loaded: u64,
        /// Its version in the store now.
        actual: u64,
    },
    /// A stored event could not be read by the aggregate's codec or upcaster.
    #[error(
        "cannot read event v{version} ({event_type:?}, schema v{schema_version}) of {stream:?}: {reason}"
    )]
    Decode {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// Its type name.
        event_type: String,
        /// Its schema version.
        schema_version: u32,
        /// What went wrong.
        reason: CodecError,
    },
}

/// What [`Repository::save`] did.
#[derive(Debug)]
pub struct Saved {
    /// Stream versions of the events written (empty if nothing was pending).
    pub versions: Range<u64>,
    /// A snapshot the policy asked for: its version, or why it could not be written. A failed snapshot never
    /// fails the save (the events are in the log; snapshots are only a shortcut).
    pub snapshot: Option<Result<u64, Error>>,
}

/// Turns an archived state back into the aggregate (a function pointer, so [`Repository`] needs the rkyv
/// bounds only where snapshots are switched on).
type DecodeState<A> = fn(&[u8]) -> Result<A, String>;
type EncodeState<A> = fn(&A) -> Result<AlignedVec, String>;

struct SnapshotSupport<A> {
    policy: SnapshotPolicy,
    state_version: u32,
    encode: EncodeState<A>,
    decode: DecodeState<A>,
}

impl<A> Clone for SnapshotSupport<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for SnapshotSupport<A> {}

/// Loads and saves aggregates of type `A` in a [`Store`]. Cheap to create and to copy; holds no state of
/// its own beyond its settings.
pub struct Repository<'s, A: Aggregate> {
    store: &'s Store,
    snapshots: Option<SnapshotSupport<A>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for Repository<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: Aggregate> Copy for Repository<'_, A> {}

impl<A: Aggregate> fmt::Debug for Repository<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::NAME)
            .field("snapshots", &self.snapshots.map(|s| s.policy))
            .finish()
    }
}

fn decode_error(e: &EventRef<'_>, reason: CodecError) -> RepositoryError {
    RepositoryError::Decode {
        stream: e.stream_id().to_owned(),
        version: e.stream_version(),
        event_type: e.event_type().to_owned(),
        schema_version: e.schema_version(),
        reason,
    }
}

/// Folds one stored event into `state`: decode in place (or upcast), then `apply`.
#[inline]
fn apply_stored<A: Aggregate>(
    state: &mut A,
    e: &EventRef<'_>,
    scratch: &mut AlignedVec,
    info: &mut LoadInfo,
) -> Result<(), RepositoryError> {
    scratch.clear();
    let stored = e.schema_version();
    let current = A::Event::SCHEMA_VERSION;
    let view = if stored == current {
        A::Codec::decode(e.payload(), scratch)
    } else if stored < current {
        info.events_upcast += 1;
        A::Event::upcast(e).and_then(|owned| A::Codec::from_owned(owned, scratch))
    } else {
        Err(CodecError::new(format!(
            "schema version {stored} is newer than this code's {current} (written by a newer build?)"
        )))
    };
    state.apply(view.map_err(|reason| decode_error(e, reason))?);
    if stored == current && !scratch.is_empty() {
        info.events_copied += 1;
    }
    info.events_folded += 1;
    Ok(())
}

/// Zero bytes of metadata that make the payload start 16-aligned inside the archived envelope (see
/// docs/format.md, "Aggregate events"): rkyv writes the envelope's out-of-line bytes in field order (stream id
/// and event type when longer than the 8 bytes kept inline, then metadata, then payload) from the 16-aligned
/// start of the frame body.
fn alignment_padding(stream: &str, event_type: &str) -> usize {
    let out_of_line = |s: &str| if s.len() > 8 { s.len() } else { 0 };
    (PAYLOAD_ALIGN - (out_of_line(stream) + out_of_line(event_type)) % PAYLOAD_ALIGN) % PAYLOAD_ALIGN
}

const ZEROS: [u8; PAYLOAD_ALIGN] = [0; PAYLOAD_ALIGN];

impl<'s, A: Aggregate> Repository<'s, A> {
    /// A repository without snapshots: every load folds the whole history.
    pub fn new(store: &'s Store) -> Repository<'s, A> {
        Repository { store, snapshots: None, _aggregate: PhantomData }
    }

    /// The store.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// The stream that holds aggregate `id`: `"{A::NAME}-{id}"`.
    pub fn stream_id(id: &str) -> String {
        format!("{}-{id}", A::NAME)
    }

    /// Loads the aggregate at its latest version. [`RepositoryError::NotFound`] if it has no events.
    pub fn get(&self, id: &str) -> Result<Root<A>, RepositoryError> {
        self.load(id, None)
    }

    /// Loads the aggregate as it was right after the event with stream version `version` ("time travel";
    /// versions start at 1). A root loaded in the past cannot be saved: its version is not the stream's.
    pub fn get_at(&self, id: &str, version: u64) -> Result<Root<A>, RepositoryError> {
        self.load(id, Some(version))
    }

    fn load(&self, id: &str, at: Option<u64>) -> Result<Root<A>, RepositoryError> {
        let stream = Self::stream_id(id);
        let Some(last) = self.store.stream_version(&stream) else {
            return Err(RepositoryError::NotFound { id: id.to_owned(), stream });
        };
        let wanted = at.unwrap_or(last);
        if wanted > last {
            return Err(RepositoryError::NoSuchVersion { id: id.to_owned(), version: wanted, last });
        }
        let mut root = Root::new(id);
        let mut from = 0;
        if let Some(support) = &self.snapshots {
            if let Some((state, version)) = self.load_snapshot(support, &stream, wanted, &mut root.info) {
                root.state = state;
                root.version = Some(version);
                from = version + 1;
            }
        }
        let folded = fold(&mut root.state, self.store, &stream, from, wanted, &mut root.info, |_, _| {})?;
        root.version = folded.or(root.version);
        if root.version.is_none_or(|v| v < wanted) {
            // Asked for a version below the stream's first one.
            return Err(RepositoryError::NoSuchVersion { id: id.to_owned(), version: wanted, last });
        }
        Ok(root)
    }

    /// Folds the aggregate's whole history, calling `each` with every stored event and the state right after
    /// it: statements, audits, "when did this go wrong". Uses no snapshot. Returns the aggregate at the last
    /// version folded.
    pub fn history(&self, id: &str, each: impl FnMut(&EventRef<'_>, &A)) -> Result<Root<A>, RepositoryError> {
        let stream = Self::stream_id(id);
        let Some(last) = self.store.stream_version(&stream) else {
            return Err(RepositoryError::NotFound { id: id.to_owned(), stream });
        };
        let mut root = Root::new(id);
        root.version = fold(&mut root.state, self.store, &stream, 0, last, &mut root.info, each)?;
        Ok(root)
    }

    /// Appends the pending events, expecting the stream to be at the version the aggregate was loaded at
    /// (or absent, for a new one). On success the pending events become the aggregate's history and its
    /// version moves on; a snapshot is written if the policy asks for one. On a
    /// [`RepositoryError::Conflict`] nothing was written and the root is stale: load it again.
    pub fn save(&self, root: &mut Root<A>) -> Result<Saved, RepositoryError> {
        let next = root.version.map_or(1, |v| v + 1);
        if root.pending.is_empty() {
            return Ok(Saved { versions: next..next, snapshot: None });
        }
        let stream = Self::stream_id(&root.id);
        let events: Vec<NewEvent<'_>> = root
            .pending
            .iter()
            .map(|p| NewEvent {
                event_type: p.event_type,
                payload: &p.payload,
                metadata: &ZEROS[..alignment_padding(&stream, p.event_type)],
                event_id: None,
                schema_version: p.schema_version,
                timestamp_micros: None,
            })
            .collect();
        let expected = root.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let one = [StreamAppend { stream: &stream, expected, first_version: 1, events: &events }];
        let appended = match self.store.append_batch(&Batch { streams: &one, consumer: None }) {
            Ok(mut a) => a.pop().expect("one stream in, one result out"),
            Err(Error::WrongExpectedVersion { actual, .. }) if root.version.is_none() => {
                return Err(RepositoryError::AlreadyExists {
                    id: root.id.clone(),
                    version: actual.unwrap_or(0),
                })
            }
            Err(Error::WrongExpectedVersion { actual, .. }) => {
                return Err(RepositoryError::Conflict {
                    id: root.id.clone(),
                    loaded: root.version(),
                    actual: actual.unwrap_or(0),
                })
            }
            Err(e) => return Err(e.into()),
        };
        drop(events);
        let before = root.version();
        root.version = appended.versions.end.checked_sub(1);
        root.pending.clear();
        let snapshot = match &self.snapshots {
            Some(s) if s.policy.due(before, root.version()) => Some(self.write_snapshot(s, root)),
            _ => None,
        };
        Ok(Saved { versions: appended.versions, snapshot })
    }
}

/// Folds `stream` from version `from` through `until` into `state`; returns the last version folded.
fn fold<A: Aggregate>(
    state: &mut A,
    store: &Store,
    stream: &str,
    from: u64,
    until: u64,
    info: &mut LoadInfo,
    mut each: impl FnMut(&EventRef<'_>, &A),
) -> Result<Option<u64>, RepositoryError> {
    let mut scratch = AlignedVec::new();
    let mut last = None;
    for e in store.read_stream(stream, from) {
        let e = e?;
        let v = e.stream_version();
        if v > until {
            break;
        }
        apply_stored(state, &e, &mut scratch, info)?;
        each(&e, state);
        last = Some(v);
    }
    Ok(last)
}

impl<'s, A> Repository<'s, A>
where
    A: Snapshot + Archive + RkyvWrite,
    A::Archived: RkyvCheck + Deserialize<A, HighDeserializer<rancor::Error>>,
{
    /// A repository that snapshots the aggregate's state as `policy` says and loads from the newest usable
    /// snapshot. Snapshot files live in `<store dir>/snapshots/`; they are derived data, and any of them may
    /// be deleted at any time.
    pub fn with_snapshots(store: &'s Store, policy: SnapshotPolicy) -> Repository<'s, A> {
        fn encode<A: RkyvWrite>(state: &A) -> Result<AlignedVec, String> {
            rkyv::to_bytes::<rancor::Error>(state).map_err(|e| e.to_string())
        }
        fn decode<A>(bytes: &[u8]) -> Result<A, String>
        where
            A: Archive,
            A::Archived: RkyvCheck + Deserialize<A, HighDeserializer<rancor::Error>>,
        {
            let archived = rkyv::access::<A::Archived, rancor::Error>(bytes).map_err(|e| e.to_string())?;
            rkyv::deserialize::<A, rancor::Error>(archived).map_err(|e| e.to_string())
        }
        let support = SnapshotSupport {
            policy,
            state_version: A::STATE_VERSION,
            encode: encode::<A>,
            decode: decode::<A>,
        };
        Repository { store, snapshots: Some(support), _aggregate: PhantomData }
    }

    /// Writes a snapshot of `root`'s stored state now, whatever the policy. Returns its version. Refused
    /// (`InvalidArgument`) while the root has pending events, whose state is not in the log yet.
    pub fn snapshot(&self, root: &Root<A>) -> Result<u64, Error> {
        match &self.snapshots {
            Some(s) => self.write_snapshot(s, root),
            None => Err(Error::InvalidArgument("this repository was made without snapshots".into())),
        }
    }

    /// Deletes every snapshot of aggregate `id`; returns how many there were. Loading afterwards folds the
    /// whole history and gives the same state.
    pub fn delete_snapshots(&self, id: &str) -> Result<usize, Error> {
        snapshot::delete_all(self.store.dir(), &Self::stream_id(id))
    }

    /// Versions of the snapshots of aggregate `id` on disk, newest first (unchecked: a listed one may still
    /// be refused on load).
    pub fn snapshot_versions(&self, id: &str) -> Result<Vec<u64>, Error> {
        snapshot::list(self.store.dir(), &Self::stream_id(id))
    }
}

impl<A: Aggregate> Repository<'_, A> {
    fn write_snapshot(&self, s: &SnapshotSupport<A>, root: &Root<A>) -> Result<u64, Error> {
        if !root.pending.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "aggregate {:?} has {} unsaved events; save before snapshotting",
                root.id,
                root.pending.len()
            )));
        }
        let stream = Self::stream_id(&root.id);
        let Some(version) = root.version else {
            return Err(Error::InvalidArgument(format!("aggregate {:?} has no stored events", root.id)));
        };
        // The snapshot names the event it stops at, so a log that lost or replaced that event (a crash before
        // a sync, a restored backup) is noticed on load and the snapshot ignored.
        let last = self
            .store
            .read_stream(&stream, version)
            .next()
            .transpose()?
            .filter(|e| e.stream_version() == version)
            .ok_or_else(|| Error::InvalidArgument(format!("{stream:?} has no event at version {version}")))?;
        let meta = SnapshotMeta {
            stream_version: version,
            position: last.position(),
            timestamp_micros: last.timestamp_micros(),
            state_version: s.state_version,
        };
        let state = (s.encode)(&root.state)
            .map_err(|e| Error::InvalidArgument(format!("snapshot state cannot be archived: {e}")))?;
        snapshot::write(self.store.dir(), &stream, &meta, &state, s.policy.keep)?;
        Ok(version)
    }

    /// The newest snapshot at or below `wanted` that passes every check, as a state and its version.
    fn load_snapshot(
        &self,
        s: &SnapshotSupport<A>,
        stream: &str,
        wanted: u64,
        info: &mut LoadInfo,
    ) -> Option<(A, u64)> {
        let versions = match snapshot::list(self.store.dir(), stream) {
            Ok(v) => v,
            Err(e) => {
                info.snapshots_rejected.push((0, format!("listing snapshots: {e}")));
                return None;
            }
        };
        for version in versions.into_iter().filter(|&v| v <= wanted) {
            match self.try_snapshot(s, stream, version) {
                Ok(state) => {
                    info.snapshot_version = Some(version);
                    return Some((state, version));
                }
                Err(why) => info.snapshots_rejected.push((version, why)),
            }
        }
        None
    }

    fn try_snapshot(&self, s: &SnapshotSupport<A>, stream: &str, version: u64) -> Result<A, String> {
        let file = snapshot::read(self.store.dir(), stream, version)?;
        let meta = file.meta;
        if meta.state_version != s.state_version {
            return Err(format!(
                "state schema version {} differs from this code's {}",
                meta.state_version, s.state_version
            ));
        }
        let event = self.store.read_stream(stream, version).next().transpose().map_err(|e| e.to_string())?;
        let matches = event.is_some_and(|e| {
            e.stream_version() == version
                && e.position() == meta.position
                && e.timestamp_micros() == meta.timestamp_micros
        });
        if !matches {
            return Err(format!(
                "the log's event at version {version} is not the one the snapshot was taken at"
            ));
        }
        (s.decode)(&file.state)
    }
}
