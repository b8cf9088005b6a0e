//! How events become payload bytes and back: the rkyv codecs (zero-copy and deserializing), the traits a
//! domain event implements, and payload access for code of your own.

use super::*;

/// Alignment of the payloads a [`Repository`] writes, and of the scratch buffer a misaligned payload is
/// copied into: enough for every archived type rkyv produces by default. Crate-private: a property of the
/// format (docs/format.md, "Aggregate events"), not something a codec or an upcaster needs.
pub(crate) const PAYLOAD_ALIGN: usize = 16;

// RkyvWrite and RkyvCheck are public only because the bounds of ZeroCopy, Deserialized, access_payload and
// deserialize_payload name them. The blanket impls make them aliases: every type that meets the bound has
// them, and no other can (the bound is a supertrait), so users never implement them.

/// A bound alias, nothing to implement: types rkyv can archive with the serializer foldlog uses. Every type
/// that derives `rkyv::Serialize` (through [`crate::rkyv`]) has it. Name it only in your own generic code
/// over foldlog's rkyv codecs; it changes with the serializer foldlog uses.
pub trait RkyvWrite: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>> {}
impl<T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>> RkyvWrite for T {}

/// A bound alias, nothing to implement: archived types foldlog can check before handing out a reference.
/// The `Archived*` types rkyv's derive generates have it (they implement `CheckBytes` by default). Name it
/// only in your own generic code over foldlog's rkyv codecs; it changes with the validators foldlog uses.
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
pub(super) fn check_archive<T: RkyvCheck>(bytes: &[u8]) -> Result<&T, CodecError> {
    match rkyv::api::low::access::<T, rancor::Failure>(bytes) {
        Ok(archived) => Ok(archived),
        // The lean validator gives no reason; the full one says what is wrong.
        Err(_) => rkyv::access::<T, rancor::Error>(bytes).map_err(CodecError::new),
    }
}

/// An event payload that a codec could not encode or decode, or an upcaster could not convert. Made with
/// [`CodecError::new`]; non-exhaustive so that it may carry more than a message later (a source error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
#[non_exhaustive]
pub struct CodecError(pub String);

impl CodecError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> CodecError {
        CodecError(message.to_string())
    }
}

/// An aggregate's event type: the name and schema version stored with each event, and how events written
/// with an older schema version are read.
///
/// A user's registration once stored only a name (schema version 1); now it carries an email too (version
/// 2). The old form is kept as a type of its own, only to read old events, and `upcast` turns it into the
/// current one:
///
/// ```
/// use foldlog::rkyv::{rancor, Archive, Deserialize, Serialize};
/// use foldlog::{deserialize_payload, Aggregate, CodecError, DomainEvent, EventRef, ZeroCopy};
/// use foldlog::{Batch, ExpectedVersion, NewEvent, Repository, Store, StreamAppend};
///
/// /// Version 1, as it was written.
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum UserEventV1 {
///     Registered { name: String },
/// }
///
/// #[derive(Archive, Serialize, Deserialize)]
/// #[rkyv(crate = foldlog::rkyv)]
/// enum UserEvent {
///     Registered { name: String, email: Option<String> },
/// }
///
/// impl DomainEvent for UserEvent {
///     const SCHEMA_VERSION: u32 = 2;
///
///     fn event_type(&self) -> &'static str {
///         match self {
///             UserEvent::Registered { .. } => "Registered",
///         }
///     }
///
///     fn upcast(stored: &EventRef<'_>) -> Result<Self, CodecError> {
///         match stored.schema_version() {
///             1 => match deserialize_payload::<UserEventV1>(stored.payload())? {
///                 UserEventV1::Registered { name } => Ok(UserEvent::Registered { name, email: None }),
///             },
///             v => Err(CodecError::new(format!("no upcaster from schema version {v}"))),
///         }
///     }
/// }
///
/// #[derive(Default)]
/// struct User {
///     name: String,
///     email: Option<String>,
/// }
///
/// impl Aggregate for User {
///     const NAME: &'static str = "user";
///     type Event = UserEvent;
///     type Codec = ZeroCopy;
///     fn apply(&mut self, event: &ArchivedUserEvent) {
///         match event {
///             ArchivedUserEvent::Registered { name, email } => {
///                 self.name = name.to_string();
///                 self.email = email.as_ref().map(|e| e.to_string());
///             }
///         }
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// // An event as last year's code wrote it: the version 1 form, schema version 1, stream version 1.
/// let old = foldlog::rkyv::to_bytes::<rancor::Error>(&UserEventV1::Registered { name: "Ada".into() })?;
/// let event = [NewEvent::new("Registered", &old).schema_version(1)];
/// let stream = [StreamAppend::new("user-ada", ExpectedVersion::NoStream, &event).first_version(1)];
/// store.append_batch(&Batch::new(&stream))?;
///
/// let user = Repository::<User>::new(&store).get("ada")?;
/// assert_eq!((user.name.as_str(), user.email.as_deref()), ("Ada", None));
/// assert_eq!(user.load_info().events_upcast, 1);
/// # Ok(())
/// # }
/// ```
pub trait DomainEvent: Sized + 'static {
    /// The schema version new events are written with. Bump it when the stored form of the events changes
    /// (for rkyv events: any change to the enum's fields), and teach [`DomainEvent::upcast`] the old form.
    const SCHEMA_VERSION: u32;

    /// The type name stored with this event, e.g. `"Deposited"` (dumps, filters and readers that do not
    /// decode payloads see it).
    fn event_type(&self) -> &'static str;

    /// Turns a stored event with `stored.schema_version() < SCHEMA_VERSION` into the current form. Called
    /// on read only; the log keeps the old bytes. The default refuses, so an old event is a clear
    /// [`RepositoryError::Decode`] rather than a misread. [`deserialize_payload`] reads an old rkyv form; with
    /// more than one old version, an [`Upcaster`] composes one step per version and runs them in order.
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
///
/// [`ZeroCopy`] and [`Deserialized`] cover rkyv. A codec of your own fits any other format; this one stores
/// a thermometer's readings as four little-endian bytes each, readable from any language, and hands `apply`
/// the number itself (a view need not be the event type):
///
/// ```
/// use foldlog::rkyv::util::AlignedVec;
/// use foldlog::{Aggregate, Codec, CodecError, DomainEvent, Repository, Root, Store};
///
/// /// A temperature, in hundredths of a degree.
/// enum Reading {
///     Measured(i32),
/// }
///
/// impl DomainEvent for Reading {
///     const SCHEMA_VERSION: u32 = 1;
///     fn event_type(&self) -> &'static str {
///         "Measured"
///     }
/// }
///
/// struct LittleEndian;
///
/// impl Codec<Reading> for LittleEndian {
///     type View<'a> = i32;
///
///     fn encode(event: &Reading, out: &mut AlignedVec) -> Result<(), CodecError> {
///         let Reading::Measured(centi) = event;
///         out.extend_from_slice(&centi.to_le_bytes());
///         Ok(())
///     }
///
///     fn decode<'a>(payload: &'a [u8], _scratch: &'a mut AlignedVec) -> Result<i32, CodecError> {
///         let bytes = <[u8; 4]>::try_from(payload)
///             .map_err(|_| CodecError::new(format!("{} bytes where a reading takes 4", payload.len())))?;
///         Ok(i32::from_le_bytes(bytes))
///     }
///
///     // Upcast events arrive owned; this codec's view is just the number.
///     fn from_owned<'a>(event: Reading, _scratch: &'a mut AlignedVec) -> Result<i32, CodecError> {
///         let Reading::Measured(centi) = event;
///         Ok(centi)
///     }
/// }
///
/// #[derive(Default)]
/// struct Thermometer {
///     last: i32,
///     highest: Option<i32>,
/// }
///
/// impl Aggregate for Thermometer {
///     const NAME: &'static str = "thermometer";
///     type Event = Reading;
///     type Codec = LittleEndian;
///     fn apply(&mut self, centi: i32) {
///         self.last = centi;
///         self.highest = Some(self.highest.map_or(centi, |h| h.max(centi)));
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let thermometers = Repository::<Thermometer>::new(&store);
/// let mut kitchen = Root::<Thermometer>::new("kitchen");
/// kitchen.record(Reading::Measured(2150));
/// kitchen.record(Reading::Measured(1975));
/// thermometers.save(&mut kitchen)?;
///
/// let kitchen = thermometers.get("kitchen")?;
/// assert_eq!((kitchen.last, kitchen.highest), (1975, Some(2150)));
/// let first = store.read_stream("thermometer-kitchen", 1).next().unwrap()?;
/// assert_eq!(first.payload(), 2150i32.to_le_bytes());
/// # Ok(())
/// # }
/// ```
pub trait Codec<E: DomainEvent> {
    /// What `apply` receives: a reference into the map for [`ZeroCopy`], an owned event for other codecs.
    type View<'a>;

    /// Writes the payload of `event` into `out` (which is empty).
    fn encode(event: &E, out: &mut AlignedVec) -> Result<(), CodecError>;

    /// Reads a payload of the current schema version. `scratch` (empty) is there for a codec that needs an
    /// aligned copy; a view may borrow from `payload` or from `scratch`.
    fn decode<'a>(payload: &'a [u8], scratch: &'a mut AlignedVec) -> Result<Self::View<'a>, CodecError>;

    /// Turns an owned event (an upcast one) into a view, using `scratch` if needed.
    fn from_owned(event: E, scratch: &mut AlignedVec) -> Result<Self::View<'_>, CodecError>;
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

pub(super) fn encode_rkyv<E: RkyvWrite>(event: &E, out: &mut AlignedVec) -> Result<(), CodecError> {
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

/// Events stored as JSON through serde (feature `serde`): for aggregates whose events are serde types, when a
/// readable payload matters more than zero copy (other languages read the log, `foldlog dump --payload text`
/// shows it). `apply` receives the owned event, decoded from the payload on every load.
///
/// ```
/// use foldlog::{Aggregate, DomainEvent, Json, Repository, Root, Store};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// enum Counted {
///     Added { n: u64 },
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
///     total: u64,
/// }
///
/// impl Aggregate for Counter {
///     const NAME: &'static str = "counter";
///     type Event = Counted;
///     type Codec = Json;
///     fn apply(&mut self, event: Counted) {
///         match event {
///             Counted::Added { n } => self.total += n,
///         }
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let counters = Repository::<Counter>::new(&store);
/// let mut c = Root::<Counter>::new("a");
/// c.record(Counted::Added { n: 2 });
/// counters.save(&mut c)?;
/// assert_eq!(counters.get("a")?.total, 2);
/// let stored = store.read_stream("counter-a", 1).next().expect("one event")?;
/// assert_eq!(stored.payload(), br#"{"Added":{"n":2}}"#);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

#[cfg(feature = "serde")]
impl<E> Codec<E> for Json
where
    E: DomainEvent + serde::Serialize + serde::de::DeserializeOwned,
{
    type View<'a> = E;

    fn encode(event: &E, out: &mut AlignedVec) -> Result<(), CodecError> {
        let bytes = serde_json::to_vec(event).map_err(CodecError::new)?;
        out.clear();
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode<'a>(payload: &'a [u8], _scratch: &'a mut AlignedVec) -> Result<E, CodecError> {
        serde_json::from_slice(payload).map_err(CodecError::new)
    }

    fn from_owned(event: E, _scratch: &mut AlignedVec) -> Result<E, CodecError> {
        Ok(event)
    }
}
