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

#[cfg(feature = "tokio")]
mod async_repository;
mod codec;
mod context;
mod repository;
mod snapshot;
mod unit_of_work;
mod upcast;

#[cfg(feature = "tokio")]
pub use async_repository::AsyncRepository;
#[cfg(feature = "serde")]
pub use codec::Json;
pub use codec::{
    access_payload, deserialize_payload, Codec, CodecError, Deserialized, DomainEvent, RkyvCheck, RkyvWrite,
    ZeroCopy,
};
pub use context::EventContext;
pub use repository::{decode_event, Repository, RepositoryError, Saved};
#[cfg(feature = "encryption")]
pub(crate) use snapshot::delete_all as delete_snapshots;
use snapshot::SnapshotMeta;
pub(crate) use snapshot::{is_stream_dir_name, parse_file_name, SNAPSHOT_DIR};
pub use snapshot::{Snapshot, SnapshotData, SnapshotFiles, SnapshotPolicy, SnapshotRefusal};
pub use unit_of_work::UnitOfWork;
pub use upcast::Upcaster;

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

use crate::store::{Batch, NewEvent, Store, StreamAppend};

// NOTE: the guide's code blocks run as doctests from here, so every snippet in docs/guide.md compiles.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide.md")]
struct GuideDoctests;

/// What [`Aggregate::apply`] receives for aggregate `A`.
pub type EventView<'a, A> = <<A as Aggregate>::Codec as Codec<<A as Aggregate>::Event>>::View<'a>;

/// Domain state that is the fold of its events. Implement it on a plain struct; the id, the version and the
/// pending events live in the [`Root`] that wraps it.
///
/// A counter whose events derive rkyv's traits through the crate's own re-export (so the archive format is
/// always the one foldlog checks), saved and loaded through a [`Repository`]:
///
/// ```
/// use foldlog::rkyv::{Archive, Deserialize, Serialize};
/// use foldlog::{Aggregate, DomainEvent, Repository, Root, Store, ZeroCopy};
///
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum CounterEvent {
///     Added { n: u64 },
/// }
///
/// impl DomainEvent for CounterEvent {
///     const SCHEMA_VERSION: u32 = 1;
///     fn event_type(&self) -> &'static str {
///         "Added"
///     }
/// }
///
/// #[derive(Default)]
/// struct Counter {
///     total: u64,
/// }
///
/// impl Aggregate for Counter {
///     const NAME: &'static str = "counter";
///     type Event = CounterEvent;
///     type Codec = ZeroCopy;
///     fn apply(&mut self, event: &ArchivedCounterEvent) {
///         match event {
///             ArchivedCounterEvent::Added { n } => self.total += n.to_native(),
///         }
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let counters = Repository::<Counter>::new(&store);
/// let mut c = Root::<Counter>::new("a");
/// c.record(CounterEvent::Added { n: 2 }); // applied at once: the next line of a command sees it
/// c.record(CounterEvent::Added { n: 3 });
/// counters.save(&mut c)?;
/// assert_eq!(counters.get("a")?.total, 5);
/// assert_eq!(counters.get_at("a", 1)?.total, 2);
/// # Ok(())
/// # }
/// ```
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
        record(self);
    }
}

impl<E: DomainEvent> Decision<E> for Vec<E> {
    fn each_event(self, record: impl FnMut(E)) {
        self.into_iter().for_each(record);
    }
}

impl<E: DomainEvent> Decision<E> for Option<E> {
    fn each_event(self, record: impl FnMut(E)) {
        self.into_iter().for_each(record);
    }
}

/// How an aggregate was loaded: for logs, tests and curiosity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadInfo {
    /// Version of the snapshot the load started from (`None`: folded from the first event).
    pub snapshot_version: Option<u64>,
    /// Snapshots that were found but not used, newest first, with the reason (damaged, state schema version
    /// changed, not matching the log, ...).
    pub snapshots_rejected: Vec<(u64, SnapshotRefusal)>,
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
    /// What the pending events are saved with, and its metadata bytes.
    context: Option<(EventContext, Vec<u8>)>,
}

impl<A: Aggregate + fmt::Debug> fmt::Debug for Root<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("id", &self.id)
            .field("version", &self.version())
            .field("pending", &self.pending_event_types())
            .field("state", &self.state)
            .finish_non_exhaustive()
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
            context: None,
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

    /// Sets what the pending events (and any recorded before the next save) are saved with: correlation and
    /// causation ids, application metadata, and a command id for idempotent retries ([`EventContext`]).
    /// Cleared by a successful save.
    ///
    /// ```
    /// # use foldlog::rkyv::{Archive, Deserialize, Serialize};
    /// # use foldlog::{Aggregate, DomainEvent, Repository, Root, Store, ZeroCopy};
    /// # #[derive(Archive, Serialize, Deserialize)]
    /// # #[rkyv(crate = foldlog::rkyv)]
    /// # struct Noted;
    /// # impl DomainEvent for Noted {
    /// #     const SCHEMA_VERSION: u32 = 1;
    /// #     fn event_type(&self) -> &'static str { "Noted" }
    /// # }
    /// # #[derive(Default)] struct Note { n: u32 }
    /// # impl Aggregate for Note {
    /// #     const NAME: &'static str = "note";
    /// #     type Event = Noted;
    /// #     type Codec = ZeroCopy;
    /// #     fn apply(&mut self, _: &ArchivedNoted) { self.n += 1 }
    /// # }
    /// use foldlog::EventContext;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let repo = Repository::<Note>::new(&store);
    /// let mut note = Root::<Note>::new("n1");
    /// note.record(Noted);
    /// note.context(EventContext::new().correlation_id(42).command_id(0x5eed));
    /// repo.save(&mut note)?;
    /// let stored = store.read_stream("note-n1", 0).next().unwrap()?;
    /// assert_eq!(EventContext::of(&stored).and_then(|c| c.correlation_id), Some(42));
    /// assert_eq!(stored.event_id(), Some(0x5eed));
    /// # Ok(())
    /// # }
    /// ```
    pub fn context(&mut self, context: EventContext) -> &mut Self {
        let bytes = context.encode();
        self.context = Some((context, bytes));
        self
    }

    /// Folds a stream's history (oldest first, from any source: a store's stream, or another backend's events
    /// viewed with [`OwnedEvent::as_event_ref`](crate::OwnedEvent::as_event_ref)) into the aggregate `id`, as
    /// [`Repository::get`] does from the store. The building block of repositories over other backends, with
    /// [`Root::pending_events`], [`Root::expected_version`] and [`Root::mark_saved`]. An empty history gives
    /// a root that was never saved.
    pub fn from_history<'e>(
        id: impl Into<String>,
        history: impl IntoIterator<Item = EventRef<'e>>,
    ) -> Result<Root<A>, RepositoryError> {
        Root::from_snapshot(id, None, LoadInfo::default(), history)
    }

    /// [`Root::from_history`] from a snapshot: `snapshot` is the state right after a stream version (`None`:
    /// the empty shell) and `history` the stored events after that version, oldest first. `info` is what the
    /// caller's search for a snapshot found (the version used, the ones refused); the fold adds its counts,
    /// and [`Root::load_info`] returns it. For repositories over other backends that keep snapshots.
    pub fn from_snapshot<'e>(
        id: impl Into<String>,
        snapshot: Option<(A, u64)>,
        info: LoadInfo,
        history: impl IntoIterator<Item = EventRef<'e>>,
    ) -> Result<Root<A>, RepositoryError> {
        let mut root = Root::new(id);
        root.info = info;
        if let Some((state, version)) = snapshot {
            root.state = state;
            root.version = Some(version);
        }
        let mut scratch = AlignedVec::new();
        for e in history {
            repository::apply_stored(&mut root.state, e, &mut scratch, &mut root.info)?;
            root.version = Some(e.stream_version());
        }
        Ok(root)
    }

    /// The pending events as an append takes them (with the context's metadata and event ids, see
    /// [`Root::context`]), to be appended with [`Root::expected_version`] and first version
    /// `version() + 1`; then call [`Root::mark_saved`] with the versions they got.
    pub fn pending_events(&self) -> Vec<NewEvent<'_>> {
        repository::pending_events(self)
    }

    /// The version the aggregate's stream must be at for its pending events: the one it was loaded at, or
    /// [`ExpectedVersion::NoStream`] for a new aggregate.
    pub fn expected_version(&self) -> ExpectedVersion {
        repository::expected_version(self)
    }

    /// The pending events were appended at stream versions `versions`: they become the history, the version
    /// moves on, the context is cleared. (A [`Repository`] does this itself, and writes snapshots.)
    pub fn mark_saved(&mut self, versions: Range<u64>) {
        self.version = versions.end.checked_sub(1);
        self.pending.clear();
        self.context = None;
    }

    /// How the last load went (default for a root made with [`Root::new`]).
    pub fn load_info(&self) -> &LoadInfo {
        &self.info
    }

    /// Records a decided event: encodes it, appends it to the pending changes and applies it (from the
    /// encoded bytes, exactly as a later load will).
    ///
    /// # Panics
    ///
    /// Only if the aggregate's codec cannot encode or read back its own event, which is a bug in the codec;
    /// [`Root::try_record`] returns that instead.
    pub fn record(&mut self, event: A::Event) {
        if let Err(e) = self.try_record(event) {
            panic!("aggregate {:?}: the codec cannot round-trip a new event: {e}", self.id);
        }
    }

    /// [`Root::record`], returning a codec failure instead of panicking (nothing is recorded then).
    #[expect(
        clippy::needless_pass_by_value,
        reason = "a recorded event is given to the root, as in `record`; the root keeps its encoded bytes"
    )]
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
