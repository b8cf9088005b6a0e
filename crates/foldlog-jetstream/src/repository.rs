//! Aggregates on any [`Backend`]: the same `Root`, commands, codecs, upcasters and event contexts as
//! [`foldlog::Repository`], loading a stream's history from the backend and saving pending events with the
//! expected version the root was loaded at. What only the embedded store has: zero-copy loads (JetStream's
//! events come back owned) and snapshots (a JetStream snapshot bucket is future work, docs/jetstream.md).

use std::marker::PhantomData;
use std::ops::Range;

use foldlog::{Aggregate, Batch, OwnedEvent, Repository, RepositoryError, Root, StreamAppend};

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
    _aggregate: PhantomData<fn() -> A>,
}

impl<'b, A: Aggregate> BackendRepository<'b, A> {
    /// A repository of `A` on `backend`.
    pub fn new(backend: &'b dyn Backend) -> BackendRepository<'b, A> {
        BackendRepository { backend, _aggregate: PhantomData }
    }

    /// The stream that holds aggregate `id`: `"{A::NAME}-{id}"`, as on the embedded store.
    pub fn stream_id(id: &str) -> String {
        Repository::<A>::stream_id(id)
    }

    /// Loads the aggregate at its latest version.
    pub fn get(&self, id: &str) -> Result<Root<A>, AggregateError> {
        self.load(id, None)
    }

    /// Loads the aggregate as it was right after stream version `version`; such a root cannot be saved.
    pub fn get_at(&self, id: &str, version: u64) -> Result<Root<A>, AggregateError> {
        self.load(id, Some(version))
    }

    fn load(&self, id: &str, at: Option<u64>) -> Result<Root<A>, AggregateError> {
        let stream = Self::stream_id(id);
        let Some(last) = self.backend.stream_version(&stream)? else {
            return Err(RepositoryError::NotFound { id: id.to_owned(), stream }.into());
        };
        let wanted = at.unwrap_or(last);
        let events = self.backend.read_stream(&stream, 0, None)?;
        let first = events.first().map_or(last, |e| e.stream_version);
        if wanted > last || wanted < first {
            return Err(RepositoryError::NoSuchVersion { id: id.to_owned(), version: wanted, last }.into());
        }
        let history = events.iter().take_while(|e| e.stream_version <= wanted).map(OwnedEvent::as_event_ref);
        Ok(Root::from_history(id, history)?)
    }

    /// Appends the root's pending events, expecting the stream at the version it was loaded at (absent for a
    /// new root); returns the versions they got. A stream that moved is [`RepositoryError::Conflict`] (or
    /// `AlreadyExists` for a new root) with nothing written; a retried save whose context has the same
    /// command id returns the first save's versions.
    pub fn save(&self, root: &mut Root<A>) -> Result<Range<u64>, AggregateError> {
        let stream = Self::stream_id(root.id());
        let events = root.pending_events();
        if events.is_empty() {
            let next = root.version() + 1;
            return Ok(next..next);
        }
        let one = [StreamAppend::new(&stream, root.expected_version(), &events).first_version(1)];
        let appended = self.backend.append_batch(&Batch::new(&one));
        drop(events);
        match appended.map(|mut a| a.pop()) {
            Ok(Some(a)) => {
                root.mark_saved(a.versions.clone());
                Ok(a.versions)
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
}
