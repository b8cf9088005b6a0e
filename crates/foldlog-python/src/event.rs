//! Events across the boundary: what Python passes in (tuples of `str` and `bytes`, borrowed without a copy)
//! and what it gets back (`Event` objects whose `payload` is a new `bytes`, copied once out of the map, and
//! whose `tags` are a tuple of `str`).

use std::collections::HashMap;

use foldlog::{Appended as Done, EventRef, NewEvent};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyRange, PyString, PyTuple};

/// One stored event. Made by reads and subscriptions; every field is read-only.
#[pyclass(frozen, get_all, module = "foldlog")]
pub struct Event {
    /// Global position in the log (0-based, dense).
    pub(crate) position: u64,
    /// The stream the event belongs to.
    stream: Py<PyString>,
    /// Version within its stream.
    version: u64,
    /// The event's type name.
    event_type: Py<PyString>,
    /// The event's bytes.
    payload: Py<PyBytes>,
    /// Application metadata (may be empty).
    metadata: Py<PyBytes>,
    /// Schema version of the event type.
    schema_version: u32,
    /// Append time, microseconds since the Unix epoch.
    timestamp_micros: i64,
    /// The caller-chosen 128-bit id, if any.
    event_id: Option<u128>,
    /// The event's tags, in the order they were appended (a tuple of `str`, empty if none).
    tags: Py<PyTuple>,
}

#[pymethods]
impl Event {
    fn __repr__(&self, py: Python<'_>) -> String {
        let tags = self.tags.bind(py);
        let tags = if tags.is_empty() { String::new() } else { format!(", tags={tags}") };
        format!(
            "Event(position={}, stream={:?}, version={}, event_type={:?}, payload=<{} bytes>{tags})",
            self.position,
            self.stream.bind(py).to_string(),
            self.version,
            self.event_type.bind(py).to_string(),
            self.payload.bind(py).as_bytes().len(),
        )
    }
}

/// The fields of an event borrowed from the store's map: plain references, so a list of them can be made
/// with the GIL released and turned into `Event`s after.
#[derive(Clone)]
pub(crate) struct RawEvent<'s> {
    position: u64,
    stream: &'s str,
    version: u64,
    event_type: &'s str,
    payload: &'s [u8],
    metadata: &'s [u8],
    schema_version: u32,
    timestamp_micros: i64,
    event_id: Option<u128>,
    /// Empty (no allocation) for an event without tags.
    tags: Vec<&'s str>,
}

impl<'s> RawEvent<'s> {
    pub(crate) fn of(e: &EventRef<'s>) -> RawEvent<'s> {
        RawEvent {
            position: e.position(),
            stream: e.stream_id(),
            version: e.stream_version(),
            event_type: e.event_type(),
            payload: e.payload(),
            metadata: e.metadata(),
            schema_version: e.schema_version(),
            timestamp_micros: e.timestamp_micros(),
            event_id: e.event_id(),
            tags: e.tags().collect(),
        }
    }

    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn event_type(&self) -> &'s str {
        self.event_type
    }
}

/// Makes `Event` objects from raw events. Stream ids, type names and tags repeat (one stream per
/// `read_stream`, a few types per log, a tag per entity), so each distinct string becomes one Python `str`,
/// shared by the events of a call.
pub(crate) struct Converter<'s> {
    strings: HashMap<&'s str, Py<PyString>>,
}

impl<'s> Converter<'s> {
    pub(crate) fn new() -> Converter<'s> {
        Converter { strings: HashMap::new() }
    }

    fn string(&mut self, py: Python<'_>, s: &'s str) -> Py<PyString> {
        self.strings.entry(s).or_insert_with(|| PyString::new(py, s).unbind()).clone_ref(py)
    }

    pub(crate) fn event(&mut self, py: Python<'_>, raw: &RawEvent<'s>) -> PyResult<Py<Event>> {
        let tags = if raw.tags.is_empty() {
            PyTuple::empty(py).unbind()
        } else {
            let tags: Vec<_> = raw.tags.iter().map(|t| self.string(py, t)).collect();
            PyTuple::new(py, tags)?.unbind()
        };
        let event = Event {
            position: raw.position,
            stream: self.string(py, raw.stream),
            version: raw.version,
            event_type: self.string(py, raw.event_type),
            payload: PyBytes::new(py, raw.payload).unbind(),
            metadata: PyBytes::new(py, raw.metadata).unbind(),
            schema_version: raw.schema_version,
            timestamp_micros: raw.timestamp_micros,
            event_id: raw.event_id,
            tags,
        };
        Py::new(py, event)
    }
}

/// What one stream's append produced.
#[pyclass(frozen, module = "foldlog")]
pub struct Appended {
    positions: (u64, u64),
    versions: (u64, u64),
    deduplicated: bool,
}

impl From<Done> for Appended {
    fn from(a: Done) -> Appended {
        Appended {
            positions: (a.positions.start, a.positions.end),
            versions: (a.versions.start, a.versions.end),
            deduplicated: a.deduplicated,
        }
    }
}

fn range(py: Python<'_>, (start, end): (u64, u64)) -> PyResult<Bound<'_, PyRange>> {
    // Positions and versions stay below 2^63 (the format's limits), so they fit an isize on 64-bit hosts.
    let to_isize = |v: u64| isize::try_from(v).map_err(|_| pyo3::exceptions::PyOverflowError::new_err(v));
    PyRange::new(py, to_isize(start)?, to_isize(end)?)
}

#[pymethods]
impl Appended {
    /// Global positions of the events (a contiguous `range`; empty if there were none).
    #[getter]
    fn positions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyRange>> {
        range(py, self.positions)
    }

    /// Stream versions of the events (a `range`).
    #[getter]
    fn versions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyRange>> {
        range(py, self.versions)
    }

    /// True if this was a retry recognised by event ids, and nothing was written.
    #[getter]
    fn deduplicated(&self) -> bool {
        self.deduplicated
    }

    fn __repr__(&self) -> String {
        format!(
            "Appended(positions=range({}, {}), versions=range({}, {}), deduplicated={})",
            self.positions.0,
            self.positions.1,
            self.versions.0,
            self.versions.1,
            if self.deduplicated { "True" } else { "False" }
        )
    }
}

/// An event to append, as Python gave it: `(event_type, payload)`, `(event_type, payload, metadata)` or
/// `(event_type, payload, metadata, tags)` (metadata may then be `None`). The `str` and `bytes` are borrowed,
/// not copied (a `bytearray` is copied, since it could change).
pub(crate) struct EventIn {
    event_type: PyBackedStr,
    payload: PyBackedBytes,
    metadata: Option<PyBackedBytes>,
    tags: Vec<PyBackedStr>,
}

impl EventIn {
    pub(crate) fn extract(obj: &Bound<'_, PyAny>) -> PyResult<EventIn> {
        let bad = || {
            PyTypeError::new_err(
                "an event is a tuple (event_type: str, payload: bytes[, metadata: bytes | None[, tags: list[str]]])",
            )
        };
        let t = obj.cast::<PyTuple>().map_err(|_| bad())?;
        if !(2..=4).contains(&t.len()) {
            return Err(bad());
        }
        let metadata = if t.len() > 2 { Some(t.get_item(2)?).filter(|m| !m.is_none()) } else { None };
        Ok(EventIn {
            event_type: t.get_item(0)?.extract()?,
            payload: t.get_item(1)?.extract()?,
            metadata: match metadata {
                Some(m) => Some(m.extract()?),
                None => None,
            },
            tags: if t.len() > 3 { strings_arg(&t.get_item(3)?, "tags")? } else { Vec::new() },
        })
    }

    /// The tags as the engine takes them (borrowed from this event).
    pub(crate) fn tag_refs(&self) -> Vec<&str> {
        self.tags.iter().map(|t| &**t).collect()
    }

    /// The engine's view of this event; `tags` is what `tag_refs` returned.
    pub(crate) fn new_event<'a>(&'a self, tags: &'a [&'a str]) -> NewEvent<'a> {
        let e = NewEvent::new(&self.event_type, &self.payload).tags(tags);
        match &self.metadata {
            Some(m) => e.metadata(m),
            None => e,
        }
    }
}

/// A sequence of events as `EventIn`s.
pub(crate) fn events_in(events: &Bound<'_, PyAny>) -> PyResult<Vec<EventIn>> {
    let mut out = Vec::with_capacity(events.len().unwrap_or(0));
    for e in events.try_iter()? {
        out.push(EventIn::extract(&e?)?);
    }
    Ok(out)
}

/// Each event's tags as the engine takes them: made once per call, borrowed by the `NewEvent`s.
pub(crate) fn tag_refs(events: &[EventIn]) -> Vec<Vec<&str>> {
    events.iter().map(EventIn::tag_refs).collect()
}

/// The engine's events for `events`, whose tags are in `tags` (from [`tag_refs`]).
pub(crate) fn new_events<'a>(events: &'a [EventIn], tags: &'a [Vec<&'a str>]) -> Vec<NewEvent<'a>> {
    events.iter().zip(tags).map(|(e, t)| e.new_event(t)).collect()
}

/// A list of `str` given as any iterable of `str` except a lone `str` (whose characters would otherwise
/// each count as one), borrowed without a copy.
pub(crate) fn strings_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<PyBackedStr>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!("{what} is a list of str, not a str")));
    }
    let mut out = Vec::with_capacity(obj.len().unwrap_or(0));
    for s in obj.try_iter()? {
        out.push(s?.extract().map_err(|_| PyTypeError::new_err(format!("each of {what} is a str")))?);
    }
    Ok(out)
}
