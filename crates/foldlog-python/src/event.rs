//! Events across the boundary: what Python passes in (tuples of `str` and `bytes`, borrowed without a copy)
//! and what it gets back (`Event` objects whose `payload` is a new `bytes`, copied once out of the map).

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
}

#[pymethods]
impl Event {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Event(position={}, stream={:?}, version={}, event_type={:?}, payload=<{} bytes>)",
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
#[derive(Clone, Copy)]
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
        }
    }

    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn event_type(&self) -> &'s str {
        self.event_type
    }
}

/// Makes `Event` objects from raw events. Stream ids and type names repeat (one stream per `read_stream`, a
/// few types per log), so each distinct string becomes one Python `str`, shared by the events of a call.
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

/// An event to append, as Python gave it: `(event_type, payload)` or `(event_type, payload, metadata)`.
/// The `str` and `bytes` are borrowed, not copied (a `bytearray` is copied, since it could change).
pub(crate) struct EventIn {
    event_type: PyBackedStr,
    payload: PyBackedBytes,
    metadata: Option<PyBackedBytes>,
}

impl EventIn {
    pub(crate) fn extract(obj: &Bound<'_, PyAny>) -> PyResult<EventIn> {
        let bad = || {
            PyTypeError::new_err(
                "an event is a tuple (event_type: str, payload: bytes) or (event_type, payload, metadata: bytes)",
            )
        };
        let t = obj.cast::<PyTuple>().map_err(|_| bad())?;
        let (event_type, payload, metadata) = match t.len() {
            2 => (t.get_item(0)?, t.get_item(1)?, None),
            3 => (t.get_item(0)?, t.get_item(1)?, Some(t.get_item(2)?)),
            _ => return Err(bad()),
        };
        Ok(EventIn {
            event_type: event_type.extract()?,
            payload: payload.extract()?,
            metadata: match metadata {
                Some(m) => Some(m.extract()?),
                None => None,
            },
        })
    }

    pub(crate) fn new_event(&self) -> NewEvent<'_> {
        let e = NewEvent::new(&self.event_type, &self.payload);
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
