//! The repository: loading an aggregate by folding its stream (from a snapshot when it opts in) and saving
//! its pending events with optimistic concurrency.

use super::*;

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
    /// `get_as_of` asked for a time before the aggregate's first event.
    #[error(
        "aggregate {id:?} did not exist yet at {micros} µs since the epoch (its first event is at {first})"
    )]
    NotYetAt {
        /// The id.
        id: String,
        /// The time asked for, microseconds since the Unix epoch.
        micros: i64,
        /// Its first event's time.
        first: i64,
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
    /// The aggregate's stream was deleted ([`Store::delete_stream`]): it cannot be loaded, and saving to it
    /// fails with [`Error::StreamDeleted`].
    #[error("aggregate {id:?} was deleted (stream {stream:?})")]
    Deleted {
        /// The id.
        id: String,
        /// Its stream.
        stream: String,
    },
    /// The load needs events that were truncated ([`Store::truncate_before`]) and no snapshot at or after
    /// version `first_visible − 1` could stand in for them: take snapshots before truncating, or load with
    /// a repository that has them.
    #[error(
        "aggregate {id:?}: stream {stream:?} is truncated before version {first_visible} and no usable \
         snapshot covers the versions below it"
    )]
    Truncated {
        /// The id.
        id: String,
        /// Its stream.
        stream: String,
        /// The stream's first visible version.
        first_visible: u64,
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
#[non_exhaustive]
pub struct Saved {
    /// Stream versions of the events written (empty if nothing was pending).
    pub versions: Range<u64>,
    /// A snapshot the policy asked for: its version, or why it could not be written. A failed snapshot never
    /// fails the save (the events are in the log; snapshots are only a shortcut).
    pub snapshot: Option<Result<u64, Error>>,
}

/// Turns an archived state back into the aggregate (a function pointer, so [`Repository`] needs the rkyv
/// bounds only where snapshots are switched on).
pub(super) type DecodeState<A> = fn(&[u8]) -> Result<A, String>;
pub(super) type EncodeState<A> = fn(&A) -> Result<AlignedVec, String>;

pub(super) struct SnapshotSupport<A> {
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
///
/// A to-do list that snapshots its state every two events; two handles load it at the same version, and
/// the second save is a conflict that writes nothing:
///
/// ```
/// use foldlog::rkyv::{Archive, Deserialize, Serialize};
/// use foldlog::{Aggregate, DomainEvent, Repository, RepositoryError, Root, Snapshot, SnapshotPolicy};
/// use foldlog::{Store, ZeroCopy};
///
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum TodoEvent {
///     Added { title: String },
///     Done { index: u32 },
/// }
///
/// impl DomainEvent for TodoEvent {
///     const SCHEMA_VERSION: u32 = 1;
///     fn event_type(&self) -> &'static str {
///         match self {
///             TodoEvent::Added { .. } => "Added",
///             TodoEvent::Done { .. } => "Done",
///         }
///     }
/// }
///
/// // The state derives rkyv's traits too, for the snapshots.
/// #[derive(Default, Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// struct Todo {
///     open: Vec<String>,
///     done: u32,
/// }
///
/// impl Todo {
///     /// A command: checks, then decides an event (or refuses).
///     fn finish(&self, index: u32) -> Result<TodoEvent, String> {
///         match self.open.get(index as usize) {
///             Some(_) => Ok(TodoEvent::Done { index }),
///             None => Err(format!("no open item {index}")),
///         }
///     }
/// }
///
/// impl Aggregate for Todo {
///     const NAME: &'static str = "todo";
///     type Event = TodoEvent;
///     type Codec = ZeroCopy;
///     fn apply(&mut self, event: &ArchivedTodoEvent) {
///         match event {
///             ArchivedTodoEvent::Added { title } => self.open.push(title.to_string()),
///             ArchivedTodoEvent::Done { index } => {
///                 self.open.remove(index.to_native() as usize);
///                 self.done += 1;
///             }
///         }
///     }
/// }
///
/// impl Snapshot for Todo {
///     const STATE_VERSION: u32 = 1;
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let todos = Repository::<Todo>::with_snapshots(&store, SnapshotPolicy::every(2));
/// let mut home = Root::<Todo>::new("home");
/// home.record(TodoEvent::Added { title: "milk".into() });
/// home.record(TodoEvent::Added { title: "bread".into() });
/// let saved = todos.save(&mut home)?;
/// assert_eq!(saved.versions, 1..3);
/// assert!(matches!(saved.snapshot, Some(Ok(2))), "the save crossed two events: a snapshot at version 2");
///
/// let (mut a, mut b) = (todos.get("home")?, todos.get("home")?);
/// a.execute(|t| t.finish(0))?;
/// b.execute(|t| t.finish(1))?;
/// todos.save(&mut a)?;
/// let lost = todos.save(&mut b);
/// assert!(matches!(lost, Err(RepositoryError::Conflict { loaded: 2, actual: 3, .. })));
///
/// let home = todos.get("home")?;
/// assert_eq!((home.open.as_slice(), home.done, home.version()), (&["bread".to_string()][..], 1, 3));
/// assert_eq!((home.load_info().snapshot_version, home.load_info().events_folded), (Some(2), 1));
/// assert!(matches!(todos.get("work"), Err(RepositoryError::NotFound { .. })));
/// # Ok(())
/// # }
/// ```
pub struct Repository<'s, A: Aggregate> {
    store: &'s Store,
    snapshots: Option<SnapshotSupport<A>>,
    sealing: Sealing<'s>,
    _aggregate: PhantomData<fn() -> A>,
}

/// Whether a repository encrypts its aggregates' streams: the vault it goes through, if any (feature
/// `encryption`; without it, always plain).
#[derive(Clone, Copy, Default)]
pub(super) struct Sealing<'s> {
    #[cfg(feature = "encryption")]
    vault: Option<&'s crate::crypto::Vault<'s>>,
    _store: PhantomData<&'s Store>,
}

impl Sealing<'_> {
    /// Whether events are encrypted.
    #[cfg_attr(
        not(feature = "encryption"),
        expect(clippy::unused_self, reason = "always false without the feature")
    )]
    pub(super) fn is_on(self) -> bool {
        #[cfg(feature = "encryption")]
        return self.vault.is_some();
        #[cfg(not(feature = "encryption"))]
        false
    }
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
            .field("encrypted", &self.sealing.is_on())
            .finish()
    }
}

pub(super) fn decode_error(e: EventRef<'_>, reason: CodecError) -> RepositoryError {
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
pub(super) fn apply_stored<A: Aggregate>(
    state: &mut A,
    e: EventRef<'_>,
    scratch: &mut AlignedVec,
    info: &mut LoadInfo,
) -> Result<(), RepositoryError> {
    let stored = e.schema_version();
    let current = A::Event::SCHEMA_VERSION;
    if stored < current {
        info.events_upcast += 1;
    }
    let view = decode_event::<A>(&e, scratch).map_err(|reason| decode_error(e, reason))?;
    state.apply(view);
    if stored == current && !scratch.is_empty() {
        info.events_copied += 1;
    }
    info.events_folded += 1;
    Ok(())
}

/// Decodes a stored event of aggregate `A` as the repository does on load: `A`'s codec for the current schema
/// version (zero copy with [`ZeroCopy`] when the payload is aligned; `scratch` holds a copy otherwise), the
/// event's upcaster for an older one, an error for a newer one. For projections and process managers that
/// read `A`'s events from a subscription and must not re-implement the dispatch.
///
/// # Errors
///
/// The codec's or the upcaster's [`CodecError`], or a schema version newer than this code's.
pub fn decode_event<'a, A: Aggregate>(
    e: &EventRef<'a>,
    scratch: &'a mut AlignedVec,
) -> Result<EventView<'a, A>, CodecError> {
    scratch.clear();
    let stored = e.schema_version();
    let current = A::Event::SCHEMA_VERSION;
    match stored.cmp(&current) {
        std::cmp::Ordering::Equal => A::Codec::decode(e.payload(), scratch),
        std::cmp::Ordering::Less => {
            A::Event::upcast(e).and_then(|owned| A::Codec::from_owned(owned, scratch))
        }
        std::cmp::Ordering::Greater => Err(CodecError::new(format!(
            "schema version {stored} is newer than this code's {current} (written by a newer build?)"
        ))),
    }
}

impl<'s, A: Aggregate> Repository<'s, A> {
    /// A repository over `store` with these snapshot settings (for wrappers that keep the settings and lend
    /// the store, such as the async repository).
    #[cfg(feature = "tokio")]
    pub(super) fn from_parts(store: &'s Store, snapshots: Option<SnapshotSupport<A>>) -> Repository<'s, A> {
        Repository { store, snapshots, sealing: Sealing::default(), _aggregate: PhantomData }
    }

    /// The snapshot settings, to rebuild the repository over another borrow of the store.
    #[cfg(feature = "tokio")]
    pub(super) fn snapshot_support(&self) -> Option<SnapshotSupport<A>> {
        self.snapshots
    }

    /// A repository without snapshots: every load folds the whole history.
    pub fn new(store: &'s Store) -> Repository<'s, A> {
        Repository { store, snapshots: None, sealing: Sealing::default(), _aggregate: PhantomData }
    }

    /// A repository whose aggregates' streams are encrypted through `vault` (feature `encryption`): `save`
    /// appends through [`Vault::append`](crate::Vault::append), a load decrypts each event before the codec
    /// sees it (into a reused buffer, so a [`ZeroCopy`] aggregate still deserializes nothing, but every
    /// event is copied and decrypted), and a forgotten aggregate fails to load with
    /// [`Error::StreamForgotten`]. It takes no snapshots: a snapshot holds the state in the clear, which
    /// forgetting the key would not erase. Aggregates of such a repository cannot be saved in a
    /// [`UnitOfWork`] (it would write their events in the clear); `commit` refuses them.
    ///
    /// ```
    /// use foldlog::{Aggregate, DomainEvent, Error, Repository, RepositoryError, Root, Store, Vault, ZeroCopy};
    /// use foldlog::rkyv::{Archive, Deserialize, Serialize};
    ///
    /// #[derive(Archive, Serialize, Deserialize)]
    /// #[rkyv(crate = foldlog::rkyv)]
    /// enum PatientEvent {
    ///     Noted { text: String },
    /// }
    ///
    /// impl DomainEvent for PatientEvent {
    ///     const SCHEMA_VERSION: u32 = 1;
    ///     fn event_type(&self) -> &'static str {
    ///         "Noted"
    ///     }
    /// }
    ///
    /// #[derive(Default)]
    /// struct Patient {
    ///     notes: Vec<String>,
    /// }
    ///
    /// impl Aggregate for Patient {
    ///     const NAME: &'static str = "patient";
    ///     type Event = PatientEvent;
    ///     type Codec = ZeroCopy;
    ///     fn apply(&mut self, event: &ArchivedPatientEvent) {
    ///         let ArchivedPatientEvent::Noted { text } = event;
    ///         self.notes.push(text.to_string());
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let vault = Vault::open(&store)?;
    /// let patients = Repository::<Patient>::with_vault(&vault);
    /// let mut p = Root::<Patient>::new("p1");
    /// p.record(PatientEvent::Noted { text: "allergic to penicillin".into() });
    /// patients.save(&mut p)?;
    /// assert_eq!(patients.get("p1")?.notes, ["allergic to penicillin"]);
    ///
    /// vault.forget_stream("patient-p1")?;
    /// let gone = patients.get("p1");
    /// assert!(matches!(gone, Err(RepositoryError::Store(Error::StreamForgotten { .. }))));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "encryption")]
    pub fn with_vault(vault: &'s crate::crypto::Vault<'s>) -> Repository<'s, A> {
        let sealing = Sealing { vault: Some(vault), _store: PhantomData };
        Repository { store: vault.store(), snapshots: None, sealing, _aggregate: PhantomData }
    }

    /// Whether this repository encrypts its aggregates' streams (`Repository::with_vault`, feature `encryption`).
    pub fn is_encrypted(&self) -> bool {
        self.sealing.is_on()
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

    /// Loads the aggregate as it was at a wall-clock time (microseconds since the Unix epoch): after its last
    /// event appended at or before `micros` ("time travel by date"; found by binary search over its events'
    /// timestamps, exact while they never decrease along the stream, as appends by one writer make them). A
    /// root loaded in the past cannot be saved. [`RepositoryError::NotYetAt`] if the aggregate is younger.
    pub fn get_as_of(&self, id: &str, micros: i64) -> Result<Root<A>, RepositoryError> {
        let stream = Self::stream_id(id);
        let state = self.visible_state(id, &stream)?;
        let last = state.last_version;
        let stamp = |v: u64| -> Result<(u64, i64), RepositoryError> {
            let e = self.store.read_stream(&stream, v).next().transpose()?;
            let e =
                e.ok_or_else(|| RepositoryError::NotFound { id: id.to_owned(), stream: stream.clone() })?;
            Ok((e.stream_version(), e.timestamp_micros()))
        };
        let (first, first_time) = stamp(0)?;
        if first_time > micros && state.first_visible > state.first_version {
            // Before the first visible event: the aggregate may well have existed, in its hidden events.
            let first_visible = state.first_visible;
            return Err(RepositoryError::Truncated { id: id.to_owned(), stream, first_visible });
        }
        if first_time > micros {
            return Err(RepositoryError::NotYetAt { id: id.to_owned(), micros, first: first_time });
        }
        // The last version whose event is at or before `micros`: `first` qualifies, `last + 1` does not.
        let (mut lo, mut hi) = (first, last + 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if stamp(mid)?.1 <= micros {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.get_at(id, lo)
    }

    /// The stream's state, refused if the stream has no events or was deleted.
    fn visible_state(&self, id: &str, stream: &str) -> Result<crate::StreamState, RepositoryError> {
        match self.store.stream_state(stream) {
            None => Err(RepositoryError::NotFound { id: id.to_owned(), stream: stream.to_owned() }),
            Some(s) if s.deleted => {
                Err(RepositoryError::Deleted { id: id.to_owned(), stream: stream.to_owned() })
            }
            Some(s) => Ok(s),
        }
    }

    fn load(&self, id: &str, at: Option<u64>) -> Result<Root<A>, RepositoryError> {
        let stream = Self::stream_id(id);
        let state = self.visible_state(id, &stream)?;
        let last = state.last_version;
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
        // The events from `from` (or the stream's first) through `wanted` must all be visible.
        if from.max(state.first_version) < state.first_visible && from <= wanted {
            let first_visible = state.first_visible;
            return Err(RepositoryError::Truncated { id: id.to_owned(), stream, first_visible });
        }
        let folded = fold(
            &mut root.state,
            self.store,
            self.sealing,
            &stream,
            (from, wanted),
            &mut root.info,
            |_, _| {},
        )?;
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
        let state = self.visible_state(id, &stream)?;
        if state.first_version < state.first_visible {
            let first_visible = state.first_visible;
            return Err(RepositoryError::Truncated { id: id.to_owned(), stream, first_visible });
        }
        let last = state.last_version;
        let mut root = Root::new(id);
        root.version =
            fold(&mut root.state, self.store, self.sealing, &stream, (0, last), &mut root.info, each)?;
        Ok(root)
    }

    /// Appends the pending events, expecting the stream to be at the version the aggregate was loaded at
    /// (or absent, for a new one). On success the pending events become the aggregate's history and its
    /// version moves on; a snapshot is written if the policy asks for one. On a
    /// [`RepositoryError::Conflict`] nothing was written and the root is stale: load it again.
    #[expect(clippy::missing_panics_doc, reason = "a batch of one stream always reports one result")]
    pub fn save(&self, root: &mut Root<A>) -> Result<Saved, RepositoryError> {
        let next = root.version.map_or(1, |v| v + 1);
        if root.pending.is_empty() {
            return Ok(Saved { versions: next..next, snapshot: None });
        }
        let stream = Self::stream_id(&root.id);
        let events = pending_events(root);
        let expected = expected_version(root);
        let append = |events: &[NewEvent<'_>]| {
            let one = [StreamAppend::new(&stream, expected, events).first_version(1)];
            self.store.append_batch(&Batch::new(&one))
        };
        #[cfg(feature = "encryption")]
        let appended = match self.sealing.vault {
            Some(vault) => vault.append_sealed(&stream, &events, append),
            None => append(&events),
        };
        #[cfg(not(feature = "encryption"))]
        let appended = append(&events);
        let appended = match appended {
            Ok(mut a) => a.pop().expect("one stream in, one result out"),
            Err(e) => return Err(conflict_or(e, root)),
        };
        drop(events);
        Ok(self.saved(root, appended.versions))
    }

    /// After a successful append of `root`'s pending events at `versions`: they become its history, its
    /// version moves on, and a snapshot is written if the policy asks for one.
    pub(super) fn saved(&self, root: &mut Root<A>, versions: Range<u64>) -> Saved {
        let before = root.version();
        root.mark_saved(versions.clone());
        let snapshot = match &self.snapshots {
            Some(s) if s.policy.due(before, root.version()) => Some(self.write_snapshot(s, root)),
            _ => None,
        };
        Saved { versions, snapshot }
    }
}

/// The version `root`'s stream must be at for its pending events: the one it was loaded at, or absent.
pub(super) fn expected_version<A: Aggregate>(root: &Root<A>) -> ExpectedVersion {
    root.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
}

/// `root`'s pending events as the store takes them (docs/format.md, "Events written by a Repository"): with
/// the context's metadata and, if it has a command id, event ids taken from it.
pub(super) fn pending_events<A: Aggregate>(root: &Root<A>) -> Vec<NewEvent<'_>> {
    let (context, metadata) = match &root.context {
        Some((c, bytes)) => (Some(c), bytes.as_slice()),
        None => (None, &[][..]),
    };
    root.pending
        .iter()
        .enumerate()
        .map(|(i, p)| {
            NewEvent::new(p.event_type, &p.payload)
                .schema_version(p.schema_version)
                .metadata(metadata)
                .event_id(context.and_then(|c| c.event_id(i)))
        })
        .collect()
}

/// A store error of an append of `root`'s events, in the repository's terms: a wrong expected version is
/// `AlreadyExists` for a new root and `Conflict` for a loaded one.
pub(super) fn conflict_or<A: Aggregate>(e: Error, root: &Root<A>) -> RepositoryError {
    match e {
        Error::WrongExpectedVersion { actual, .. } if root.version.is_none() => {
            RepositoryError::AlreadyExists { id: root.id.clone(), version: actual.unwrap_or(0) }
        }
        Error::WrongExpectedVersion { actual, .. } => RepositoryError::Conflict {
            id: root.id.clone(),
            loaded: root.version(),
            actual: actual.unwrap_or(0),
        },
        e => e.into(),
    }
}

/// Folds `stream` from version `from` through `until` into `state`, decrypting each event first if `sealing`
/// says so; returns the last version folded.
pub(super) fn fold<A: Aggregate>(
    state: &mut A,
    store: &Store,
    sealing: Sealing<'_>,
    stream: &str,
    (from, until): (u64, u64),
    info: &mut LoadInfo,
    mut each: impl FnMut(&EventRef<'_>, &A),
) -> Result<Option<u64>, RepositoryError> {
    #[cfg(feature = "encryption")]
    if let Some(vault) = sealing.vault {
        if let Some(opener) = vault.opener(stream)? {
            return fold_encrypted(state, store, opener, stream, (from, until), info, each);
        }
    }
    #[cfg(not(feature = "encryption"))]
    let _ = sealing;
    let mut scratch = AlignedVec::new();
    let mut last = None;
    for e in store.read_stream(stream, from) {
        let e = e?;
        let v = e.stream_version();
        if v > until {
            break;
        }
        apply_stored(state, e, &mut scratch, info)?;
        each(&e, state);
        last = Some(v);
    }
    Ok(last)
}

/// [`fold`] for an encrypted stream: each event is decrypted into one reused owned event, which the codec
/// then reads as it would read the map.
#[cfg(feature = "encryption")]
fn fold_encrypted<A: Aggregate>(
    state: &mut A,
    store: &Store,
    mut opener: crate::crypto::Opener,
    stream: &str,
    (from, until): (u64, u64),
    info: &mut LoadInfo,
    mut each: impl FnMut(&EventRef<'_>, &A),
) -> Result<Option<u64>, RepositoryError> {
    let mut scratch = AlignedVec::new();
    let mut plain = crate::record::OwnedEvent::default();
    let mut last = None;
    for e in store.read_stream(stream, from) {
        let e = e?;
        let v = e.stream_version();
        if v > until {
            break;
        }
        opener.open_into(&e, &mut plain)?;
        apply_stored(state, plain.as_event_ref(), &mut scratch, info)?;
        each(&plain.as_event_ref(), state);
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
        let support = SnapshotSupport {
            policy,
            state_version: A::STATE_VERSION,
            encode: crate::SnapshotData::archive_state::<A>,
            decode: crate::SnapshotData::restore_state::<A>,
        };
        Repository { store, snapshots: Some(support), sealing: Sealing::default(), _aggregate: PhantomData }
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
            .read_stream_with_hidden(&stream, version)
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
                info.snapshots_rejected.push((0, SnapshotRefusal::Unlisted(e.to_string())));
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

    fn try_snapshot(&self, s: &SnapshotSupport<A>, stream: &str, version: u64) -> Result<A, SnapshotRefusal> {
        let file = snapshot::read(self.store.dir(), stream, version)?;
        let meta = file.meta;
        if meta.state_version != s.state_version {
            return Err(SnapshotRefusal::StateVersion {
                found: meta.state_version,
                current: s.state_version,
            });
        }
        // The event may be hidden by a truncation: the snapshot is what stands in for it.
        let event = self
            .store
            .read_stream_with_hidden(stream, version)
            .next()
            .transpose()
            .map_err(|e| SnapshotRefusal::LogUnreadable(e.to_string()))?;
        let matches = event.is_some_and(|e| {
            e.stream_version() == version
                && e.position() == meta.position
                && e.timestamp_micros() == meta.timestamp_micros
        });
        if !matches {
            return Err(SnapshotRefusal::NotTheLogsEvent);
        }
        (s.decode)(&file.state).map_err(SnapshotRefusal::State)
    }
}
