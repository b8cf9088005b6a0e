//! A unit of work: the pending events of several aggregates (of any types), and optionally a consumer's new
//! position, saved in one atomic batch, each stream with its own expected version.

use super::repository::{conflict_or, expected_version, pending_events};
use super::*;

/// One aggregate of a unit of work, type-erased so that a unit can hold aggregates of different types.
trait Staged {
    fn stream(&self) -> &str;
    fn expected(&self) -> ExpectedVersion;
    fn events(&self) -> Vec<NewEvent<'_>>;
    fn has_pending(&self) -> bool;
    /// Whether the aggregate's repository encrypts its stream (which a unit of work cannot do).
    fn encrypted(&self) -> bool;
    /// The store refused the batch because of this aggregate's stream: the repository's error for it.
    fn conflict(&self, e: Error) -> RepositoryError;
    /// The batch was written; this aggregate's events got `versions`.
    fn saved(&mut self, versions: Range<u64>) -> Saved;
}

struct Part<'s, 'r, A: Aggregate> {
    repository: Repository<'s, A>,
    root: &'r mut Root<A>,
    stream: String,
}

impl<A: Aggregate> Staged for Part<'_, '_, A> {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn expected(&self) -> ExpectedVersion {
        expected_version(self.root)
    }

    fn events(&self) -> Vec<NewEvent<'_>> {
        pending_events(self.root)
    }

    fn has_pending(&self) -> bool {
        !self.root.pending.is_empty()
    }

    fn encrypted(&self) -> bool {
        self.repository.is_encrypted()
    }

    fn conflict(&self, e: Error) -> RepositoryError {
        conflict_or(e, self.root)
    }

    fn saved(&mut self, versions: Range<u64>) -> Saved {
        self.repository.saved(self.root, versions)
    }
}

/// Saves several aggregates at once: all of their pending events, and optionally a consumer's position, are
/// one atomic batch (a checkout that places an order and reserves stock; a process manager that records
/// what it has processed with what it decided). If any stream moved since its aggregate was loaded, nothing
/// is written and the error names that aggregate. An aggregate with nothing pending is left as it is (its
/// stream is not checked).
///
/// ```
/// use foldlog::rkyv::{Archive, Deserialize, Serialize};
/// use foldlog::{Aggregate, DomainEvent, Repository, RepositoryError, Root, Store, UnitOfWork, ZeroCopy};
///
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum Counted {
///     Added(u32),
/// }
///
/// impl DomainEvent for Counted {
///     const SCHEMA_VERSION: u32 = 1;
///     fn event_type(&self) -> &'static str {
///         "Added"
///     }
/// }
///
/// #[derive(Default)]
/// struct Counter {
///     total: u32,
/// }
///
/// impl Aggregate for Counter {
///     const NAME: &'static str = "counter";
///     type Event = Counted;
///     type Codec = ZeroCopy;
///     fn apply(&mut self, event: &ArchivedCounted) {
///         match event {
///             ArchivedCounted::Added(n) => self.total += n.to_native(),
///         }
///     }
/// }
///
/// # fn main() -> Result<(), RepositoryError> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let counters = Repository::<Counter>::new(&store);
/// let (mut a, mut b) = (Root::<Counter>::new("a"), Root::<Counter>::new("b"));
/// a.record(Counted::Added(2));
/// b.record(Counted::Added(3));
/// let mut unit = UnitOfWork::new(&store);
/// unit.add(counters, &mut a).add(counters, &mut b).consumer("mover", 0);
/// unit.commit()?;
/// assert_eq!((counters.get("a")?.total, counters.get("b")?.total), (2, 3));
/// assert_eq!(store.consumer_position("mover"), Some(0));
/// # Ok(())
/// # }
/// ```
pub struct UnitOfWork<'s, 'r> {
    store: &'s Store,
    parts: Vec<Box<dyn Staged + 'r>>,
    consumer: Option<(String, u64)>,
}

impl<'s, 'r> UnitOfWork<'s, 'r> {
    /// An empty unit of work on `store`.
    pub fn new(store: &'s Store) -> UnitOfWork<'s, 'r> {
        UnitOfWork { store, parts: Vec::new(), consumer: None }
    }

    /// Adds an aggregate loaded (or created) through `repository`; its pending events are saved on commit.
    pub fn add<A: Aggregate + 'r>(
        &mut self,
        repository: Repository<'s, A>,
        root: &'r mut Root<A>,
    ) -> &mut Self
    where
        's: 'r,
    {
        let stream = Repository::<A>::stream_id(root.id());
        self.parts.push(Box::new(Part { repository, root, stream }));
        self
    }

    /// Moves consumer `name` to `position` in the same batch (it must be past the consumer's current one).
    pub fn consumer(&mut self, name: impl Into<String>, position: u64) -> &mut Self {
        self.consumer = Some((name.into(), position));
        self
    }

    /// Writes everything as one atomic batch and returns what each aggregate's save did, in the order they
    /// were added. Errors: the aggregate whose stream moved ([`RepositoryError::Conflict`], or
    /// [`RepositoryError::AlreadyExists`] for a new one), with nothing written; an aggregate added twice, a
    /// consumer not moving forward and the store's own errors, also with nothing written.
    pub fn commit(mut self) -> Result<Vec<Saved>, RepositoryError> {
        if let Some(p) = self.parts.iter().find(|p| p.encrypted() && p.has_pending()) {
            return Err(Error::InvalidArgument(format!(
                "stream {:?} is saved through a vault: save it with Repository::save, not in a unit of work \
                 (which would write its events in the clear)",
                p.stream()
            ))
            .into());
        }
        let results = {
            let events: Vec<Vec<NewEvent<'_>>> = self.parts.iter().map(|p| p.events()).collect();
            let streams: Vec<StreamAppend<'_>> = self
                .parts
                .iter()
                .zip(&events)
                .filter(|(_, e)| !e.is_empty())
                .map(|(p, e)| StreamAppend::new(p.stream(), p.expected(), e).first_version(1))
                .collect();
            let mut batch = Batch::new(&streams);
            if let Some((name, position)) = &self.consumer {
                batch = batch.consumer(name, *position);
            }
            if streams.is_empty() && self.consumer.is_none() {
                Vec::new()
            } else {
                self.store.append_batch(&batch).map_err(|e| self.conflict(e))?
            }
        };
        let mut results = results.into_iter();
        let saved = self
            .parts
            .iter_mut()
            .map(|p| {
                let versions = if p.has_pending() {
                    results.next().map_or(0..0, |a| a.versions)
                } else {
                    let next = p.expected_next();
                    next..next
                };
                p.saved(versions)
            })
            .collect();
        Ok(saved)
    }

    fn conflict(&self, e: Error) -> RepositoryError {
        let stream = match &e {
            Error::WrongExpectedVersion { stream, .. } => stream.clone(),
            _ => return e.into(),
        };
        match self.parts.iter().find(|p| p.stream() == stream) {
            Some(part) => part.conflict(e),
            None => e.into(),
        }
    }
}

impl dyn Staged + '_ {
    /// The version the next event of an aggregate with nothing pending would get.
    fn expected_next(&self) -> u64 {
        match self.expected() {
            ExpectedVersion::Exact(v) => v + 1,
            _ => 1,
        }
    }
}

impl std::fmt::Debug for UnitOfWork<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let streams: Vec<&str> = self.parts.iter().map(|p| p.stream()).collect();
        f.debug_struct("UnitOfWork").field("streams", &streams).field("consumer", &self.consumer).finish()
    }
}
