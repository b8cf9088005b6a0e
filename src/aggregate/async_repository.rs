//! The repository for async code (feature `tokio`): the same loads and saves, run on tokio's blocking pool so
//! that a fold or a synced append never holds up the runtime's own threads.

use std::sync::Arc;

use super::repository::SnapshotSupport;
use super::*;

/// A [`Repository`] for async code (feature `tokio`): `get`, `get_at`, `get_as_of` and `save` are `async` and
/// run the synchronous repository on tokio's blocking pool ([`tokio::task::spawn_blocking`]), so a long fold
/// or a save that waits for `fsync` ([`Durability::Always`](crate::Durability::Always)) leaves the runtime's
/// threads free for other tasks, even on a current-thread runtime.
///
/// Holds the store in an [`Arc`] (a task may outlive any borrow) and the snapshot settings; cheap to clone.
///
/// **What it costs.** Each call is a hop to a pool thread and back: a task spawn, a wake-up and a context
/// switch, a few microseconds, more than a load from a snapshot or a save with
/// [`Durability::Never`](crate::Durability::Never) take by themselves. It pays off where the call blocks for
/// longer than the hop (saves that sync, long folds, a cold page cache); for hot, short calls from code that
/// may block briefly, [`AsyncRepository::blocking`] gives the synchronous repository. The pool has its own
/// limit of threads (512 by default, `Builder::max_blocking_threads`); calls beyond it queue.
///
/// ```
/// use std::sync::Arc;
/// use foldlog::rkyv::{Archive, Deserialize, Serialize};
/// use foldlog::{Aggregate, AsyncRepository, Durability, DomainEvent, Options, Root, Store, ZeroCopy};
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
///         let ArchivedCounterEvent::Added { n } = event;
///         self.total += n.to_native();
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Arc::new(Store::open_with(dir.path(), Options::default().durability(Durability::Always))?);
/// let counters = AsyncRepository::<Counter>::new(store);
/// // One thread runs every task; the saves' fsyncs happen on the blocking pool, not on it.
/// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// let total = runtime.block_on(async {
///     let mut c = Root::<Counter>::new("a");
///     c.record(CounterEvent::Added { n: 2 });
///     counters.save(&mut c).await?;
///     let mut c = counters.get("a").await?;
///     c.record(CounterEvent::Added { n: 3 });
///     counters.save(&mut c).await?;
///     Ok::<_, foldlog::RepositoryError>(counters.get("a").await?.total)
/// })?;
/// assert_eq!(total, 5);
/// # Ok(())
/// # }
/// ```
///
/// # Panics
///
/// Every `async` method panics if awaited outside a tokio runtime (it spawns on the runtime's blocking pool),
/// and passes on a panic of the work it ran (a panicking `apply`, say).
pub struct AsyncRepository<A: Aggregate> {
    store: Arc<Store>,
    snapshots: Option<SnapshotSupport<A>>,
}

impl<A: Aggregate> Clone for AsyncRepository<A> {
    fn clone(&self) -> Self {
        AsyncRepository { store: Arc::clone(&self.store), snapshots: self.snapshots }
    }
}

impl<A: Aggregate> fmt::Debug for AsyncRepository<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRepository").field("repository", &self.blocking()).finish()
    }
}

impl<A> AsyncRepository<A>
where
    A: Snapshot + Archive + RkyvWrite,
    A::Archived: RkyvCheck + Deserialize<A, HighDeserializer<rancor::Error>>,
{
    /// An async repository with snapshots, as [`Repository::with_snapshots`].
    pub fn with_snapshots(store: Arc<Store>, policy: SnapshotPolicy) -> AsyncRepository<A> {
        let snapshots = Repository::<A>::with_snapshots(&store, policy).snapshot_support();
        AsyncRepository { store, snapshots }
    }
}

impl<A: Aggregate> AsyncRepository<A> {
    /// An async repository without snapshots, as [`Repository::new`].
    pub fn new(store: Arc<Store>) -> AsyncRepository<A> {
        AsyncRepository { store, snapshots: None }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The synchronous repository with the same settings, for code that may block (a blocking task of its
    /// own, a short call where the hop to the pool would cost more than the call).
    pub fn blocking(&self) -> Repository<'_, A> {
        Repository::from_parts(&self.store, self.snapshots)
    }
}

impl<A: Aggregate + Send + 'static> AsyncRepository<A> {
    /// [`Repository::get`], on the blocking pool.
    pub async fn get(&self, id: &str) -> Result<Root<A>, RepositoryError> {
        let id = id.to_owned();
        self.run(move |repo| repo.get(&id)).await
    }

    /// [`Repository::get_at`], on the blocking pool.
    pub async fn get_at(&self, id: &str, version: u64) -> Result<Root<A>, RepositoryError> {
        let id = id.to_owned();
        self.run(move |repo| repo.get_at(&id, version)).await
    }

    /// [`Repository::get_as_of`], on the blocking pool.
    pub async fn get_as_of(&self, id: &str, micros: i64) -> Result<Root<A>, RepositoryError> {
        let id = id.to_owned();
        self.run(move |repo| repo.get_as_of(&id, micros)).await
    }

    /// [`Repository::save`], on the blocking pool: the root moves to the pool thread for the save and comes
    /// back with its new version (or, on an error, as it was).
    ///
    /// Dropping the future does not stop the save: once started it runs to its end on the pool, and `root`
    /// is left as `Root::new(id)`, a root that was never saved (saving it writes nothing; a command on it
    /// fails to save with [`RepositoryError::AlreadyExists`]). Load the aggregate again to learn what became
    /// of the save.
    pub async fn save(&self, root: &mut Root<A>) -> Result<Saved, RepositoryError> {
        let placeholder = Root::new(root.id.clone());
        let mut owned = std::mem::replace(root, placeholder);
        let (back, saved) = self
            .run(move |repo| {
                let saved = repo.save(&mut owned);
                Ok((owned, saved))
            })
            .await?;
        *root = back;
        saved
    }

    /// Runs `work` with the synchronous repository on the blocking pool and waits for it without blocking.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(Repository<'_, A>) -> Result<R, RepositoryError> + Send + 'static,
    ) -> Result<R, RepositoryError> {
        let (store, snapshots) = (Arc::clone(&self.store), self.snapshots);
        let task = tokio::task::spawn_blocking(move || work(Repository::from_parts(&store, snapshots)));
        match task.await {
            Ok(result) => result,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only when the runtime shuts down before the pool ran the task.
                Err(e) => Err(RepositoryError::Store(Error::Io {
                    op: "run a repository call on tokio's blocking pool",
                    path: self.store.dir().to_path_buf(),
                    source: std::io::Error::other(e),
                })),
            },
        }
    }
}
