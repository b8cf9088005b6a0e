//! Subscriptions for async code (feature `tokio`): an [`EventStream`] is a `futures_core::Stream` of owned
//! events, fed by a [`Subscription`] on a thread of its own.
//!
//! Why a thread: a subscription waits on the writer's condvar (or polls a writer's head in another process),
//! which would block a runtime worker; and its events borrow the map, which an async task cannot hold across
//! awaits. The thread waits and copies each event out ([`OwnedEvent`]); the task is woken by the channel, with
//! no polling. The channel is bounded, so a slow consumer holds the thread back instead of filling memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use crate::error::Result;
use crate::record::OwnedEvent;
use crate::store::Store;
use crate::subscription::{Stopper, Subscription};

/// How many events the thread may run ahead of the consumer.
const AHEAD: usize = 1024;

/// A subscription as a `futures_core::Stream` of owned events; see [`EventStream::new`]. Dropping it stops
/// the subscription and its thread.
///
/// ```
/// use std::sync::Arc;
/// use foldlog::{EventStream, ExpectedVersion, NewEvent, Store};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Arc::new(Store::open(dir.path())?);
/// let mut events = EventStream::new(Arc::clone(&store), 0, |s| s.event_types(["Opened"]));
/// store.append("account-1", ExpectedVersion::NoStream, &[NewEvent::new("Opened", b"100")])?;
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let first = runtime.block_on(std::future::poll_fn(|cx| {
///     futures_core::Stream::poll_next(std::pin::Pin::new(&mut events), cx)
/// }));
/// assert_eq!(first.expect("an event")?.event_type, "Opened");
/// # Ok(())
/// # }
/// ```
pub struct EventStream {
    events: mpsc::Receiver<Result<OwnedEvent>>,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl EventStream {
    /// Follows `store` from position `from`, with the filters `configure` sets on the [`Subscription`] (pass
    /// `|s| s` for every event). The subscription runs on a thread named `foldlog-event-stream`.
    ///
    /// # Panics
    ///
    /// If the thread cannot be spawned.
    pub fn new(
        store: Arc<Store>,
        from: u64,
        configure: impl FnOnce(Subscription<'_>) -> Subscription<'_> + Send + 'static,
    ) -> EventStream {
        let (tx, events) = mpsc::channel(AHEAD);
        let (stopper_tx, stopper_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("foldlog-event-stream".into())
            .spawn(move || {
                let subscription = configure(store.subscribe(from));
                // The stopper belongs to this subscription; the stream needs it before the first event.
                if stopper_tx.send(subscription.stopper()).is_err() {
                    return;
                }
                for item in subscription {
                    let owned = item.map(|e| e.to_owned());
                    let failed = owned.is_err();
                    // The stream was dropped: nothing more to do.
                    if tx.blocking_send(owned).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawn the event stream's thread");
        let stopper = stopper_rx.recv().expect("the subscription thread sends its stopper first");
        EventStream { events, stopper, thread: Some(thread) }
    }

    /// Stops the subscription: the stream ends once the events already sent are taken.
    pub fn stop(&self) {
        self.stopper.stop();
    }
}

impl futures_core::Stream for EventStream {
    type Item = Result<OwnedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.stopper.stop();
        // Unblocks a thread waiting for room in the channel.
        self.events.close();
        while self.events.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}
