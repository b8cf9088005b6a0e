//! Subscriptions: every committed event from a position on, exactly once and in order, first caught up from
//! the map and then live as the writer commits, with no gap or duplicate at the switch.
//!
//! A subscription is a cursor over global positions, so the switch is not a special case: it reads the
//! committed log up to the watermark it saw, then waits for the watermark to move, then reads on from where it
//! stopped. It holds no lock while it waits or delivers (events borrow the map, as every read does), so the
//! writer never waits for a subscriber; many run at once. On a read-only handle the writer may be another
//! process: the wait polls its head (see [`Store::refresh`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::query::{sparse_types, Query, QueryEvents, QueryItem};
use crate::read::{AllEvents, ReadAll};
use crate::record::EventRef;
use crate::store::{Inner, Mark, Store};

/// A caller's filter; events it rejects still move the position, so a consumer can save progress past them.
type Predicate = Box<dyn Fn(&EventRef<'_>) -> bool + Send + Sync>;

/// Which events a subscription delivers.
#[derive(Default)]
struct Filter {
    types: Vec<String>,
    stream_prefix: Option<String>,
    query: Option<Query>,
    predicate: Option<Predicate>,
}

impl Filter {
    fn matches(&self, e: EventRef<'_>) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == e.event_type()))
            && self.stream_prefix.as_deref().is_none_or(|p| e.stream_id().starts_with(p))
            && self.query.as_ref().is_none_or(|q| q.matches(&e))
            && self.predicate.as_ref().is_none_or(|keep| keep(&e))
    }

    /// The query whose index read yields every event this filter can deliver in `from..end` (and maybe
    /// more; the filter still checks each), if reading through the index beats scanning the range: always
    /// for a query, for a type set where those types are rare.
    fn indexed(&self, store: &Store, from: u64, end: u64) -> Option<Query> {
        if let Some(q) = &self.query {
            return Some(q.clone());
        }
        let sparse = || sparse_types(&store.inner().read_index(), &self.types, from, end);
        (!self.types.is_empty() && sparse()).then(|| Query::new([QueryItem::new().types(self.types.clone())]))
    }
}

/// The events a subscription reads up to the watermark it saw: a walk of the log, or a read through the
/// tag and type indexes that touches only what can match.
enum Batch<'s> {
    All(AllEvents<'s>),
    /// Every position below the second field is covered once the read is exhausted.
    Indexed(QueryEvents<'s>, u64),
}

/// A live cursor over the global log; see [`Store::subscribe`].
///
/// ```
/// use std::time::Duration;
/// use foldlog::{ExpectedVersion, NewEvent, Store};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.append("account-1", ExpectedVersion::NoStream, &[NewEvent::new("Opened", b"100")])?;
/// store.append("order-9", ExpectedVersion::NoStream, &[NewEvent::new("Placed", b"{}")])?;
/// let mut accounts = store.subscribe(0).stream_prefix("account-");
/// let first = accounts.next_event(Duration::from_secs(1))?.expect("caught up from the log");
/// assert_eq!(first.event_type(), "Opened");
/// // Nothing else matches yet; the order event was examined and skipped, so the position moved past it.
/// assert!(accounts.next_event(Duration::from_millis(10))?.is_none());
/// assert_eq!(accounts.position(), 2);
/// // Live: the next matching commit is delivered as soon as it is made.
/// store.append("account-1", ExpectedVersion::Exact(0), &[NewEvent::new("Deposited", b"50")])?;
/// let live = accounts.next_event(Duration::from_secs(1))?.expect("delivered live");
/// assert_eq!((live.position(), live.event_type()), (2, "Deposited"));
/// # Ok(())
/// # }
/// ```
pub struct Subscription<'s> {
    store: &'s Store,
    /// Every position below this one was delivered or skipped.
    next: u64,
    /// Reads up to the watermark seen when it was made.
    batch: Option<Batch<'s>>,
    filter: Filter,
    idle_timeout: Option<Duration>,
    /// Delivers only events below the durable position.
    durable_only: bool,
    stop: Arc<AtomicBool>,
}

/// Stops a [`Subscription`] from another thread: a wait in progress returns at once, and the subscription
/// delivers nothing more. `Send + Sync + Clone`.
#[derive(Clone, Debug)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    inner: Weak<Inner>,
}

impl Stopper {
    /// Stops the subscription. Idempotent.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(inner) = self.inner.upgrade() {
            inner.wake_all();
        }
    }
}

/// How long one wait of the blocking iterator lasts before it looks at the stop flag again (a stop wakes it
/// at once in the writer's process; this bounds it elsewhere too).
const WAIT_SLICE: Duration = Duration::from_millis(100);

impl Store {
    /// A subscription delivering every committed event from position `from` on, in order, exactly once:
    /// the events already in the log first, then each new one as it is committed. Narrow it with
    /// [`Subscription::event_types`], [`Subscription::stream_prefix`] or [`Subscription::filter`]; read it
    /// with [`Subscription::next_event`] (with a timeout) or as a blocking iterator that a [`Stopper`] ends.
    /// Save [`Subscription::position`] with what you do with the events to resume exactly where you left off.
    pub fn subscribe(&self, from: u64) -> Subscription<'_> {
        Subscription {
            store: self,
            next: from,
            batch: None,
            filter: Filter::default(),
            idle_timeout: None,
            durable_only: false,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<'s> Subscription<'s> {
    /// Only events of these types (any type if never called).
    #[must_use]
    pub fn event_types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Self {
        self.filter.types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Only events that match `query` (tags and types, as [`Store::read`] selects them): the subscription by
    /// query of dynamic consistency boundaries. It reads through the tag and type indexes, so events that
    /// do not match cost nothing, and its [`Subscription::position`] moves past them all the same.
    ///
    /// ```
    /// use std::time::Duration;
    /// use foldlog::{ExpectedVersion::Any, NewEvent, Query, QueryItem, Store};
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let course = Query::new([QueryItem::new().tags(["course:7"])]);
    /// let mut enrolments = store.subscribe(0).query(course);
    /// store.append("courses", Any, &[NewEvent::new("StudentEnrolled", b"s1").tags(&["course:8"])])?;
    /// store.append("courses", Any, &[NewEvent::new("StudentEnrolled", b"s2").tags(&["course:7"])])?;
    /// let e = enrolments.next_event(Duration::from_secs(1))?.expect("the matching event");
    /// assert_eq!((e.position(), e.payload()), (1, &b"s2"[..]));
    /// assert_eq!(enrolments.position(), 2);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn query(mut self, query: Query) -> Self {
        self.filter.query = Some(query);
        self
    }

    /// Only events of streams whose id starts with `prefix` (a category such as `account-`).
    #[must_use]
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.filter.stream_prefix = Some(prefix.into());
        self
    }

    /// Only events for which `keep` returns true (after the type and prefix filters).
    #[must_use]
    pub fn filter(mut self, keep: impl Fn(&EventRef<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.filter.predicate = Some(Box::new(keep));
        self
    }

    /// Ends the blocking iterator when no event is delivered for this long (by default it waits until
    /// stopped).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Delivers only durable events (`true`): each one once the writer has synced it
    /// ([`Store::durable_position`] has passed it), never before; by default every committed event.
    ///
    /// For a consumer whose effects outlive a machine crash (a read model kept in another database, a message
    /// sent) following a writer in [`crate::Durability::Group`] or [`crate::Durability::Never`] mode: a
    /// committed event the writer had not synced yet is lost if the machine crashes, and its position goes to
    /// a new event later, so a consumer that had acted on it would be ahead of the log. The price is latency:
    /// an event waits for the writer's next sync. With [`crate::Durability::Always`] every committed event is
    /// already durable. On a read-only handle beside a writer in another process the durable position is the
    /// one that writer publishes after every sync (see [`Store::durable_position`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use foldlog::{Durability, ExpectedVersion, NewEvent, Options, Store};
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open_with(dir.path(), Options::default().durability(Durability::Never))?;
    /// let mut durable = store.subscribe(0).durable_only(true);
    /// store.append("order-7", ExpectedVersion::NoStream, &[NewEvent::new("Placed", b"42")])?;
    /// assert!(durable.next_event(Duration::from_millis(10))?.is_none(), "committed, not yet synced");
    /// store.sync()?;
    /// assert_eq!(durable.next_event(Duration::from_secs(1))?.map(|e| e.position()), Some(0));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn durable_only(mut self, durable_only: bool) -> Self {
        self.durable_only = durable_only;
        self
    }

    /// A handle that stops this subscription from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper { stop: Arc::clone(&self.stop), inner: Arc::downgrade(self.store.inner_arc()) }
    }

    /// The position up to which every event was delivered or skipped by the filters: resume here.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next matching event, waiting for it at most `timeout`; `Ok(None)` on timeout or once stopped.
    /// Errors: a damaged frame ([`crate::Error::Corrupt`]), or a refresh's error on a read-only handle.
    ///
    /// With [`Duration::ZERO`] it never waits: it delivers what this handle has already indexed and, on a
    /// read-only handle with nothing left of that, refreshes once ([`Store::refresh`]) and delivers what the
    /// writer committed meanwhile. A caller that polls with a zero timeout thus needs no `refresh` of its own;
    /// a positive timeout is cheaper still, since the wait itself polls the writer's head, quickly while
    /// events come and less often through a silence ([`crate::FOLLOW_POLL`], [`crate::FOLLOW_POLL_MAX`]).
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<EventRef<'s>>> {
        let deadline = Instant::now() + timeout;
        let inner = self.store.inner_arc();
        // A read-only handle looks at the writer's head at least once, even when the deadline has passed.
        let mut looked = !inner.is_read_only();
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            if let Some(event) = self.next_in_batch()? {
                return Ok(Some(event));
            }
            let (mark, end) = if self.durable_only {
                (Mark::Durable, self.store.durable_position())
            } else {
                (Mark::Committed, self.store.next_position())
            };
            if end > self.next {
                self.batch = Some(if let Some(query) = self.filter.indexed(self.store, self.next, end) {
                    Batch::Indexed(self.store.read_between(&query, self.next, end, None), end)
                } else {
                    let upto = ReadAll::default().from(self.next).to_inclusive(end - 1);
                    Batch::All(self.store.read_all_with(upto))
                });
                continue;
            }
            if looked && Instant::now() >= deadline {
                return Ok(None);
            }
            inner.wait_until(mark, self.next.saturating_add(1), deadline, Some(&self.stop))?;
            looked = true;
        }
    }

    /// The next matching event of the current batch, moving the position past everything examined.
    fn next_in_batch(&mut self) -> Result<Option<EventRef<'s>>> {
        loop {
            // Matched per event rather than through a `dyn Iterator`, which kept the walk's `next` from being
            // inlined into this loop (catch-up delivery measured about a quarter slower that way).
            let event = match self.batch.as_mut() {
                None => return Ok(None),
                Some(Batch::All(all)) => all.next(),
                Some(Batch::Indexed(read, _)) => read.next(),
            };
            let Some(event) = event else { break };
            let event = event?;
            self.next = event.position() + 1;
            if self.filter.matches(event) {
                return Ok(Some(event));
            }
        }
        // Past what the read skipped: hidden events (truncated or deleted streams) for a walk, and what
        // cannot match for a read through the indexes.
        let covered = match &self.batch {
            Some(Batch::All(all)) => all.examined(),
            Some(Batch::Indexed(_, end)) => *end,
            None => self.next,
        };
        self.next = self.next.max(covered);
        self.batch = None;
        Ok(None)
    }
}

impl<'s> Iterator for Subscription<'s> {
    type Item = Result<EventRef<'s>>;

    /// Blocks until the next matching event; `None` once stopped, or after the idle timeout if one is set.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let wait = self.idle_timeout.unwrap_or(WAIT_SLICE);
            match self.next_event(wait) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) if self.stop.load(Ordering::Acquire) || self.idle_timeout.is_some() => return None,
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl std::fmt::Debug for Subscription<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.next)
            .field("types", &self.filter.types)
            .field("stream_prefix", &self.filter.stream_prefix)
            .field("query", &self.filter.query)
            .field("filtered", &self.filter.predicate.is_some())
            .field("durable_only", &self.durable_only)
            .finish_non_exhaustive()
    }
}
