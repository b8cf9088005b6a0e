//! Upcasting chains: one step per schema version (v1 → v2, v2 → v3, ...), composed so that an event stored at
//! any old version reaches the current form by running the steps from its version on, in order.

use super::*;

/// Reads an event stored at one schema version and runs the steps from there to the chain's newest form.
type Read<T> = Box<dyn Fn(&EventRef<'_>) -> Result<T, CodecError> + Send + Sync>;

/// A chain of upcasting steps for an event type, written one step per schema version and run in order: an
/// event stored at version 1 goes through every step, one stored at version 2 through all but the first.
/// Call [`Upcaster::upcast`] from [`DomainEvent::upcast`] (or from the function named by the derive's
/// `#[domain_event(upcast = ...)]`).
///
/// A chain names every form it knows:
/// - [`Upcaster::oldest`]`(version, read)`: the oldest schema version still found in logs and how to read it
///   (for rkyv forms, [`deserialize_payload`]);
/// - [`Upcaster::then`]`(read, step)`: the next version, how to read events stored at it, and the step from the
///   form before to it; one call per intermediate version;
/// - [`Upcaster::then_current`]`(step)`: the last step, into the current event type (whose own version is read
///   by the aggregate's codec, not by the chain).
///
/// The versions are implicit (each step is one version up), so a chain cannot skip one. What it cannot do is
/// a clear [`CodecError`] that names the missing step and the event type: an event older than the chain's
/// oldest form ("no upcast step v1 → v2"), a chain that ends below the code's [`DomainEvent::SCHEMA_VERSION`]
/// (a version bump without its step), an event newer than the code.
///
/// # Why a chain of typed closures
///
/// Each step is an ordinary function from one concrete form to the next, so the compiler checks that step
/// `n` takes what step `n - 1` gives, and a step is written once, not once per older version. Composition
/// happens when the chain is built: every reader is wrapped in the new step, so bringing an event up is one
/// boxed call that runs its steps in order, without `Any`, and without a common intermediate form (rkyv
/// archives have no field names, so a self-describing form such as a JSON value would not help them; each
/// version keeps the type it was written with instead). The price is one allocation per version, paid once
/// if the chain lives in a `static` ([`std::sync::LazyLock`]), as below. The readers receive the whole
/// [`EventRef`], so a reader can also dispatch on [`EventRef::event_type`] when each event type has a payload
/// type of its own (JSON events, say).
///
/// # Example
///
/// A wallet's credit stored whole euros (v1), then cents (v2), and now cents and a currency (v3). Each step
/// is written once; a v1 event runs both, a v2 event the second:
///
/// ```
/// use std::sync::LazyLock;
/// use foldlog::rkyv::{rancor, Archive, Deserialize, Serialize};
/// use foldlog::{deserialize_payload, Aggregate, CodecError, DomainEvent, EventRef, Upcaster, ZeroCopy};
/// use foldlog::{Batch, ExpectedVersion, NewEvent, Repository, Store, StreamAppend};
///
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum WalletV1 {
///     Credited { euros: u32 },
/// }
///
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum WalletV2 {
///     Credited { cents: u64 },
/// }
///
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum WalletEvent {
///     Credited { cents: u64, currency: String },
/// }
///
/// static WALLET_UPCASTER: LazyLock<Upcaster<WalletEvent>> = LazyLock::new(|| {
///     Upcaster::oldest(1, |e| deserialize_payload::<WalletV1>(e.payload()))
///         .then(
///             |e| deserialize_payload::<WalletV2>(e.payload()),
///             |WalletV1::Credited { euros }| Ok(WalletV2::Credited { cents: u64::from(euros) * 100 }),
///         )
///         .then_current(|WalletV2::Credited { cents }| {
///             Ok(WalletEvent::Credited { cents, currency: "EUR".into() })
///         })
/// });
///
/// impl DomainEvent for WalletEvent {
///     const SCHEMA_VERSION: u32 = 3;
///     fn event_type(&self) -> &'static str {
///         "Credited"
///     }
///     fn upcast(stored: &EventRef<'_>) -> Result<Self, CodecError> {
///         WALLET_UPCASTER.upcast(stored)
///     }
/// }
///
/// #[derive(Default)]
/// struct Wallet {
///     cents: u64,
///     currencies: Vec<String>,
/// }
///
/// impl Aggregate for Wallet {
///     const NAME: &'static str = "wallet";
///     type Event = WalletEvent;
///     type Codec = ZeroCopy;
///     fn apply(&mut self, event: &ArchivedWalletEvent) {
///         let ArchivedWalletEvent::Credited { cents, currency } = event;
///         self.cents += cents.to_native();
///         self.currencies.push(currency.to_string());
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// // What the code of two earlier releases wrote: a v1 event, then a v2 event.
/// let v1 = foldlog::rkyv::to_bytes::<rancor::Error>(&WalletV1::Credited { euros: 7 })?;
/// let v2 = foldlog::rkyv::to_bytes::<rancor::Error>(&WalletV2::Credited { cents: 50 })?;
/// let events = [
///     NewEvent::new("Credited", &v1).schema_version(1),
///     NewEvent::new("Credited", &v2).schema_version(2),
/// ];
/// let stream = [StreamAppend::new("wallet-w", ExpectedVersion::NoStream, &events).first_version(1)];
/// store.append_batch(&Batch::new(&stream))?;
///
/// let w = Repository::<Wallet>::new(&store).get("w")?;
/// assert_eq!((w.cents, w.currencies.as_slice()), (750, &["EUR".to_string(), "EUR".to_string()][..]));
/// assert_eq!(w.load_info().events_upcast, 2);
/// # Ok(())
/// # }
/// ```
pub struct Upcaster<T> {
    /// Schema version of the oldest form the chain reads.
    oldest: u32,
    /// Schema version of `T`, the chain's newest form.
    newest: u32,
    /// `reads[i]` brings an event stored at version `oldest + i` to `T`. After [`Upcaster::then_current`] there
    /// is no reader for `newest` itself: the aggregate's codec reads the current version.
    reads: Vec<Read<T>>,
}

impl<T> fmt::Debug for Upcaster<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upcaster")
            .field("oldest", &self.oldest)
            .field("newest", &self.newest)
            .field("form", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: 'static> Upcaster<T> {
    /// A chain whose oldest form is `T`, stored at schema `version`, read by `read`.
    pub fn oldest(
        version: u32,
        read: impl Fn(&EventRef<'_>) -> Result<T, CodecError> + Send + Sync + 'static,
    ) -> Upcaster<T> {
        Upcaster { oldest: version, newest: version, reads: vec![labelled(version, read)] }
    }

    /// The next schema version, `U`: `read` reads events stored at it, and `step` turns the form before
    /// (`T`) into it. Events stored at older versions run their steps, then this one.
    #[must_use]
    pub fn then<U: 'static>(
        self,
        read: impl Fn(&EventRef<'_>) -> Result<U, CodecError> + Send + Sync + 'static,
        step: impl Fn(T) -> Result<U, CodecError> + Send + Sync + 'static,
    ) -> Upcaster<U> {
        let mut next = self.then_current(step);
        next.reads.push(labelled(next.newest, read));
        next
    }

    /// The last step, from the newest old form (`T`) to the current event type `U`, whose schema version is
    /// one above `T`'s (and must be `U`'s [`DomainEvent::SCHEMA_VERSION`]; [`Upcaster::upcast`] checks).
    #[must_use]
    pub fn then_current<U: 'static>(
        self,
        step: impl Fn(T) -> Result<U, CodecError> + Send + Sync + 'static,
    ) -> Upcaster<U> {
        let Upcaster { oldest, newest, reads } = self;
        let step = std::sync::Arc::new(step);
        let reads = reads
            .into_iter()
            .map(|read| -> Read<U> {
                let step = std::sync::Arc::clone(&step);
                Box::new(move |stored: &EventRef<'_>| {
                    let form = read(stored)?;
                    step(form).map_err(|e| {
                        CodecError::new(format!(
                            "upcast step v{newest} → v{} of {:?} failed: {e}",
                            newest + 1,
                            stored.event_type()
                        ))
                    })
                })
            })
            .collect();
        Upcaster { oldest, newest: newest + 1, reads }
    }

    /// The schema versions the chain reads, oldest first: from its oldest form up to, not including, its
    /// newest.
    pub fn versions(&self) -> Range<u32> {
        self.oldest..self.newest
    }
}

/// `read`, with its errors saying which stored form it was reading.
fn labelled<T>(
    version: u32,
    read: impl Fn(&EventRef<'_>) -> Result<T, CodecError> + Send + Sync + 'static,
) -> Read<T> {
    Box::new(move |stored: &EventRef<'_>| {
        read(stored).map_err(|e| {
            CodecError::new(format!("reading {:?} as stored at v{version}: {e}", stored.event_type()))
        })
    })
}

impl<E: DomainEvent> Upcaster<E> {
    /// Brings `stored` (an event of an older schema version) to the current form `E`, running every step
    /// from its version on, in order.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] naming the event type and the versions when the chain has no step from the stored
    /// version (it starts later, or ends below `E::SCHEMA_VERSION`), when the event is not older than the
    /// current version, or when a reader or a step fails.
    pub fn upcast(&self, stored: &EventRef<'_>) -> Result<E, CodecError> {
        let (version, current, event_type) =
            (stored.schema_version(), E::SCHEMA_VERSION, stored.event_type());
        if version >= current {
            let what =
                if version == current { "the current one, read by the codec" } else { "newer than the code" };
            return Err(CodecError::new(format!(
                "{event_type:?} at schema version {version} cannot be upcast: it is {what} (v{current})"
            )));
        }
        if self.newest < current {
            return Err(CodecError::new(format!(
                "no upcast step v{} → v{} for {event_type:?}: the chain ends at v{}, the code is at v{current}",
                self.newest,
                self.newest + 1,
                self.newest,
            )));
        }
        if self.newest > current {
            return Err(CodecError::new(format!(
                "the upcast chain for {event_type:?} ends at v{}, past the code's v{current}",
                self.newest
            )));
        }
        let read =
            version.checked_sub(self.oldest).and_then(|i| self.reads.get(i as usize)).ok_or_else(|| {
                CodecError::new(format!(
                    "no upcast step v{version} → v{} for {event_type:?}: the chain starts at v{}",
                    version + 1,
                    self.oldest
                ))
            })?;
        read(stored)
    }
}
