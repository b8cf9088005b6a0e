//! Aggregates on any [`Backend`]: the same `Root`, commands, codecs, upcasters and event contexts as
//! [`foldlog::Repository`], loading a stream's history from the backend and saving pending events with the
//! expected version the root was loaded at. Snapshots as the embedded `Repository` takes them: the same
//! policy, the same checks, kept by the backend (the library's snapshot files on the embedded store, a stream
//! of their own on JetStream; docs/jetstream.md). What only `foldlog::Repository` has: zero-copy loads
//! (JetStream's events come back owned), truncated and deleted streams, time travel by date.

use std::marker::PhantomData;
use std::ops::Range;

use foldlog::rkyv::api::high::HighDeserializer;
use foldlog::rkyv::util::AlignedVec;
use foldlog::rkyv::{rancor, Archive, Deserialize};
use foldlog::{
    Aggregate, Batch, LoadInfo, OwnedEvent, Repository, RepositoryError, RkyvCheck, RkyvWrite, Root,
    Snapshot, SnapshotData, SnapshotPolicy, SnapshotRefusal, StreamAppend,
};

use crate::{Backend, Error};

/// What a [`BackendRepository`] call can fail with: the aggregate layer's own outcomes (not found, no such
/// version, a conflict, an undecodable event), or the backend's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// As on the embedded store: `NotFound`, `NoSuchVersion`, `Conflict`, `AlreadyExists`, `Decode`.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The backend failed (I/O, the server, an unsupported operation).
    #[error(transparent)]
    Backend(#[from] Error),
}

/// [`foldlog::Repository`]'s load and save on any [`Backend`]: an application that builds its roots through
/// this type runs unchanged on the embedded store and on JetStream.
///
/// ```no_run
/// # fn run(backend: &dyn foldlog_jetstream::Backend) -> Result<(), foldlog_jetstream::AggregateError> {
/// use foldlog_jetstream::BackendRepository;
/// # type Account = foldlog_bank_stub::Account;
/// # mod foldlog_bank_stub {
/// #     use foldlog::rkyv::{Archive, Deserialize, Serialize};
/// #     #[derive(Archive, Serialize, Deserialize)] #[rkyv(crate = foldlog::rkyv)] pub struct Opened;
/// #     impl foldlog::DomainEvent for Opened {
/// #         const SCHEMA_VERSION: u32 = 1;
/// #         fn event_type(&self) -> &'static str { "Opened" }
/// #     }
/// #     #[derive(Default)] pub struct Account { pub open: bool }
/// #     impl foldlog::Aggregate for Account {
/// #         const NAME: &'static str = "account";
/// #         type Event = Opened;
/// #         type Codec = foldlog::ZeroCopy;
/// #         fn apply(&mut self, _: &ArchivedOpened) { self.open = true }
/// #     }
/// # }
/// let accounts = BackendRepository::<Account>::new(backend);
/// let mut alice = foldlog::Root::<Account>::new("alice");
/// alice.record(foldlog_bank_stub::Opened);
/// accounts.save(&mut alice)?;
/// assert!(accounts.get("alice")?.open);
/// # Ok(())
/// # }
/// ```
pub struct BackendRepository<'b, A> {
    backend: &'b dyn Backend,
    snapshots: Option<SnapshotSupport<A>>,
    _aggregate: PhantomData<fn() -> A>,
}

/// What [`BackendRepository::save`] did (as `foldlog::Saved` on the embedded `Repository`).
#[derive(Debug)]
#[non_exhaustive]
pub struct Saved {
    /// Stream versions of the events written (empty if nothing was pending).
    pub versions: Range<u64>,
    /// A snapshot the policy asked for: its version, or why it could not be written. A failed snapshot never
    /// fails the save: the events are in the log, a snapshot is only a shortcut.
    pub snapshot: Option<Result<u64, Error>>,
}

/// The snapshot settings and the state's archive functions, as function pointers so that a repository
/// without snapshots needs no rkyv bounds on `A` (the embedded `Repository` does the same).
struct SnapshotSupport<A> {
    policy: SnapshotPolicy,
    state_version: u32,
    encode: fn(&A) -> Result<AlignedVec, String>,
    decode: fn(&[u8]) -> Result<A, String>,
}

impl<'b, A: Aggregate> BackendRepository<'b, A> {
    /// A repository of `A` on `backend` without snapshots: every load folds the whole history.
    pub fn new(backend: &'b dyn Backend) -> BackendRepository<'b, A> {
        BackendRepository { backend, snapshots: None, _aggregate: PhantomData }
    }

    /// The stream that holds aggregate `id`: `"{A::NAME}-{id}"`, as on the embedded store.
    pub fn stream_id(id: &str) -> String {
        Repository::<A>::stream_id(id)
    }

    /// Loads the aggregate at its latest version: from the newest usable snapshot, if the repository has
    /// snapshots, then the events after it.
    pub fn get(&self, id: &str) -> Result<Root<A>, AggregateError> {
        self.load(id, None)
    }

    /// Loads the aggregate as it was right after stream version `version`; such a root cannot be saved. Only
    /// a snapshot at or below `version` can serve it; below them all, the history is folded from the start.
    pub fn get_at(&self, id: &str, version: u64) -> Result<Root<A>, AggregateError> {
        self.load(id, Some(version))
    }

    fn load(&self, id: &str, at: Option<u64>) -> Result<Root<A>, AggregateError> {
        let stream = Self::stream_id(id);
        let Some(last) = self.backend.stream_version(&stream)? else {
            return Err(RepositoryError::NotFound { id: id.to_owned(), stream }.into());
        };
        let wanted = at.unwrap_or(last);
        if wanted > last {
            return Err(RepositoryError::NoSuchVersion { id: id.to_owned(), version: wanted, last }.into());
        }
        let mut info = LoadInfo::default();
        let found = match &self.snapshots {
            Some(support) => self.load_snapshot(support, &stream, wanted, &mut info)?,
            None => None,
        };
        let (start, events) = match found {
            Some((state, version, after)) => (Some((state, version)), after),
            // Up to `wanted`, with room for a version 0 (a stream not written by a repository may start there;
            // a repository's starts at 1, so one event more than folded may be read).
            None => (None, self.backend.read_stream(&stream, 0, Some(wanted.saturating_add(1)))?),
        };
        let history: Vec<_> = events.iter().take_while(|e| e.stream_version <= wanted).collect();
        // The version the fold reaches; short of `wanted` (or nothing at all) when asked for a version below
        // the stream's first one.
        let reached = history.last().map(|e| e.stream_version).or(start.as_ref().map(|(_, v)| *v));
        if reached.is_none_or(|v| v < wanted) {
            return Err(RepositoryError::NoSuchVersion { id: id.to_owned(), version: wanted, last }.into());
        }
        let root = Root::from_snapshot(id, start, info, history.into_iter().map(OwnedEvent::as_event_ref))?;
        Ok(root)
    }

    /// The newest snapshot at or below `wanted` that passes every check, as its state, its version and the
    /// events after it through `wanted`. Every refusal is recorded in `info`, as on the embedded store.
    fn load_snapshot(
        &self,
        s: &SnapshotSupport<A>,
        stream: &str,
        wanted: u64,
        info: &mut LoadInfo,
    ) -> Result<Option<(A, u64, Vec<OwnedEvent>)>, Error> {
        for (version, found) in self.backend.snapshots(stream, wanted)? {
            let snap = match found {
                Ok(snap) if snap.state_version != s.state_version => {
                    let why =
                        SnapshotRefusal::StateVersion { found: snap.state_version, current: s.state_version };
                    info.snapshots_rejected.push((version, why));
                    continue;
                }
                Ok(snap) => snap,
                Err(why) => {
                    info.snapshots_rejected.push((version, why));
                    continue;
                }
            };
            // One read from the snapshot's own event: it proves the log still holds the event the snapshot
            // was taken at (a log that lost or replaced it makes the snapshot a lie), and the rest is the fold.
            let mut events = self.backend.read_stream(stream, version, Some(wanted - version + 1))?;
            let matches = events.first().is_some_and(|e| {
                e.stream_version == version
                    && e.position == snap.position
                    && e.timestamp_micros == snap.timestamp_micros
            });
            if !matches {
                info.snapshots_rejected.push((version, SnapshotRefusal::NotTheLogsEvent));
                continue;
            }
            match (s.decode)(&snap.state) {
                Ok(state) => {
                    info.snapshot_version = Some(version);
                    events.remove(0);
                    return Ok(Some((state, version, events)));
                }
                Err(e) => info.snapshots_rejected.push((version, SnapshotRefusal::State(e))),
            }
        }
        Ok(None)
    }

    /// Appends the root's pending events, expecting the stream at the version it was loaded at (absent for a
    /// new root), then writes a snapshot if the policy asks for one. A stream that moved is
    /// [`RepositoryError::Conflict`] (or `AlreadyExists` for a new root) with nothing written; a retried save
    /// whose context has the same command id returns the first save's versions.
    pub fn save(&self, root: &mut Root<A>) -> Result<Saved, AggregateError> {
        let stream = Self::stream_id(root.id());
        let events = root.pending_events();
        if events.is_empty() {
            let next = root.version() + 1;
            return Ok(Saved { versions: next..next, snapshot: None });
        }
        let one = [StreamAppend::new(&stream, root.expected_version(), &events).first_version(1)];
        let appended = self.backend.append_batch(&Batch::new(&one));
        drop(events);
        match appended.map(|mut a| a.pop()) {
            Ok(Some(a)) => {
                let before = root.version();
                root.mark_saved(a.versions.clone());
                let snapshot = match &self.snapshots {
                    Some(s) if s.policy.due(before, root.version()) => Some(self.write_snapshot(s, root)),
                    _ => None,
                };
                Ok(Saved { versions: a.versions, snapshot })
            }
            Ok(None) => {
                Err(Error::Unsupported("the backend reported no result for the stream".into()).into())
            }
            Err(Error::Store(foldlog::Error::WrongExpectedVersion { actual, .. })) => {
                let id = root.id().to_owned();
                Err(match (root.version(), actual) {
                    (0, actual) => RepositoryError::AlreadyExists { id, version: actual.unwrap_or(0) },
                    (loaded, actual) => RepositoryError::Conflict { id, loaded, actual: actual.unwrap_or(0) },
                }
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn write_snapshot(&self, s: &SnapshotSupport<A>, root: &Root<A>) -> Result<u64, Error> {
        let invalid = |why: String| Error::Store(foldlog::Error::InvalidArgument(why));
        if !root.pending_event_types().is_empty() {
            return Err(invalid(format!(
                "aggregate {:?} has unsaved events; save before snapshotting",
                root.id()
            )));
        }
        let stream = Self::stream_id(root.id());
        let version = root.version();
        // The snapshot names the event it stops at (position and timestamp), so that a load notices a log
        // that no longer holds it.
        let event = self.backend.read_stream(&stream, version, Some(1))?.pop();
        let Some(event) = event.filter(|e| e.stream_version == version && version > 0) else {
            return Err(invalid(format!("{stream:?} has no event at version {version}")));
        };
        let state = (s.encode)(root.state())
            .map_err(|e| invalid(format!("snapshot state cannot be archived: {e}")))?;
        let snap = SnapshotData::new(version, event.position, event.timestamp_micros, s.state_version, state);
        self.backend.write_snapshot(&stream, &snap, s.policy.keep)?;
        Ok(version)
    }
}

impl<'b, A> BackendRepository<'b, A>
where
    A: Snapshot + Archive + RkyvWrite,
    A::Archived: RkyvCheck + Deserialize<A, HighDeserializer<rancor::Error>>,
{
    /// A repository that snapshots the aggregate's state as `policy` says and loads from the newest usable
    /// snapshot, with `foldlog::Repository::with_snapshots`'s rules: a snapshot of another
    /// `Snapshot::STATE_VERSION`, one that does not decode, or one whose event the log no longer holds is
    /// refused (see `Root::load_info`) and the history folded instead; one newer than the version asked for
    /// is not used. On the embedded store the snapshots are the library's files, shared with
    /// `foldlog::Repository`; on JetStream the newest one per aggregate is kept (`policy.keep` is the
    /// embedded store's only).
    pub fn with_snapshots(backend: &'b dyn Backend, policy: SnapshotPolicy) -> BackendRepository<'b, A> {
        let support = SnapshotSupport {
            policy,
            state_version: A::STATE_VERSION,
            encode: SnapshotData::archive_state::<A>,
            decode: SnapshotData::restore_state::<A>,
        };
        BackendRepository { backend, snapshots: Some(support), _aggregate: PhantomData }
    }

    /// Writes a snapshot of `root`'s stored state now, whatever the policy; returns its version. Refused
    /// (`InvalidArgument`) while the root has pending events.
    pub fn snapshot(&self, root: &Root<A>) -> Result<u64, Error> {
        match &self.snapshots {
            Some(s) => self.write_snapshot(s, root),
            None => {
                Err(foldlog::Error::InvalidArgument("this repository was made without snapshots".into())
                    .into())
            }
        }
    }
}
