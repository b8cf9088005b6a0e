//! The `Store` class: one open foldlog directory, shared by the threads of a Python process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use foldlog::{
    AppendCondition, Batch, Durability, EventRef, ExpectedVersion, Options, Query, QueryItem, ReadAll,
    StreamAppend,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::errors::{self, to_py};
use crate::event::{events_in, new_events, strings_arg, tag_refs, Appended, Converter, EventIn, RawEvent};
use crate::subscription::{Filter, Subscription};

/// How long one blocking wait lasts before it looks whether the store was closed or a signal arrived
/// (Ctrl-C); a commit ends it at once.
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(20);

/// The engine handle behind a `Store` object and its subscriptions. Each call takes a reference for its
/// duration (an `Arc` clone under a short read lock), so `close` can take the handle away while other
/// threads finish what they are doing.
pub(crate) struct Shared {
    store: RwLock<Option<Arc<foldlog::Store>>>,
    closed: AtomicBool,
}

impl Shared {
    /// The open store, or `ClosedError`.
    pub(crate) fn get(&self) -> PyResult<Arc<foldlog::Store>> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(errors::closed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Reads up to `limit` events of the global log from `from` (to `to` inclusive), keeping those whose type
/// is in `types` (all if `None`). Returns them and the position after the last one looked at.
pub(crate) fn read_all<'s>(
    store: &'s foldlog::Store,
    from: u64,
    to: Option<u64>,
    types: Option<&[String]>,
    limit: Option<u64>,
) -> foldlog::Result<(Vec<RawEvent<'s>>, u64)> {
    let mut opts = ReadAll::default().from(from).to_inclusive(to);
    match types {
        // One type: the engine filters as it scans, and counts the limit in matches.
        Some([only]) => opts = opts.event_type(only.clone()).limit(limit),
        Some(_) => {}
        None => opts = opts.limit(limit),
    }
    let mut out = Vec::new();
    let mut next = from;
    let mut left = limit.unwrap_or(u64::MAX);
    for e in store.read_all_with(opts) {
        if left == 0 {
            break;
        }
        let e = RawEvent::of(&e?);
        next = e.position() + 1;
        if types.is_none_or(|t| t.iter().any(|t| t == e.event_type())) {
            out.push(e);
            left -= 1;
        }
    }
    Ok((out, next))
}

/// Reads up to `limit` events matching `query` from position `from` on, up to the head when the read is
/// made. Returns them and that head (`None` for an empty log): the read covers every position up to it,
/// unless the limit cut it short.
pub(crate) fn read_query<'s>(
    store: &'s foldlog::Store,
    query: &Query,
    from: u64,
    limit: Option<u64>,
) -> foldlog::Result<(Vec<RawEvent<'s>>, Option<u64>)> {
    let read = store.read(query, from.checked_sub(1), limit);
    let head = read.head();
    let events = read.map(|e| e.map(|e| RawEvent::of(&e))).collect::<foldlog::Result<Vec<_>>>()?;
    Ok((events, head))
}

/// A query as Python gives it: `None` or an iterable of items (an empty one matches every event, as
/// does `None`). An item is a tuple `(types, tags)` or any object with `types` and `tags` attributes (such
/// as `eventsourcing`'s `DCBQueryItem`), each a list of `str`; an item matches the events whose type is one
/// of its types (any, if none) and that carry all of its tags.
pub(crate) fn query_arg(query: Option<&Bound<'_, PyAny>>) -> PyResult<Query> {
    let Some(query) = query.filter(|q| !q.is_none()) else { return Ok(Query::all()) };
    let bad = || {
        PyTypeError::new_err(
            "a query is a list of items, each a tuple (types: list[str], tags: list[str]) or an object \
             with `types` and `tags` attributes",
        )
    };
    let mut items = Vec::new();
    for item in query.try_iter().map_err(|_| bad())? {
        let item = item?;
        let (types, tags) = match item.cast::<PyTuple>() {
            Ok(t) if t.len() == 2 => (t.get_item(0)?, t.get_item(1)?),
            Ok(_) => return Err(bad()),
            Err(_) => (item.getattr("types").map_err(|_| bad())?, item.getattr("tags").map_err(|_| bad())?),
        };
        let types = strings_arg(&types, "a query item's types")?;
        let tags = strings_arg(&tags, "a query item's tags")?;
        items.push(QueryItem::new().types(types.iter().map(|t| &**t)).tags(tags.iter().map(|t| &**t)));
    }
    Ok(Query::new(items))
}

/// An append condition as Python gives it: the query of the events that must not exist, and the position
/// after which they count (`None`: anywhere in the log).
fn condition_arg(query: Option<&Bound<'_, PyAny>>, after: Option<u64>) -> PyResult<AppendCondition> {
    Ok(AppendCondition::new(query_arg(query)?).after(after))
}

/// Converts raw events into a Python list of `Event`s.
pub(crate) fn to_list<'py>(py: Python<'py>, raws: &[RawEvent<'_>]) -> PyResult<Bound<'py, PyList>> {
    let mut conv = Converter::new();
    let events = raws.iter().map(|r| conv.event(py, r)).collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, events)
}

/// `types=` as a list of names: `None` for all, a single `str` for one type, any iterable of `str`.
pub(crate) fn types_arg(types: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<String>>> {
    let Some(types) = types.filter(|t| !t.is_none()) else { return Ok(None) };
    if let Ok(one) = types.cast::<PyString>() {
        return Ok(Some(vec![one.to_str()?.to_owned()]));
    }
    let mut out = Vec::new();
    for t in types.try_iter()? {
        out.push(t?.extract::<String>()?);
    }
    Ok(Some(out))
}

/// `expected=`: `"any"`, `"no_stream"`, `"exists"`, or the stream's last version (an `int`).
fn expected_arg(obj: &Bound<'_, PyAny>) -> PyResult<ExpectedVersion> {
    if let Ok(s) = obj.cast::<PyString>() {
        return match s.to_str()? {
            "any" => Ok(ExpectedVersion::Any),
            "no_stream" => Ok(ExpectedVersion::NoStream),
            "exists" => Ok(ExpectedVersion::StreamExists),
            other => Err(PyValueError::new_err(format!(
                "expected must be \"any\", \"no_stream\", \"exists\" or a version, not {other:?}"
            ))),
        };
    }
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err("expected must be a str or an int, not a bool"));
    }
    obj.extract::<u64>().map(ExpectedVersion::Exact).map_err(|_| {
        PyTypeError::new_err("expected must be \"any\", \"no_stream\", \"exists\" or a version (an int >= 0)")
    })
}

fn durability_arg(name: &str) -> PyResult<Durability> {
    match name {
        "always" => Ok(Durability::Always),
        "group" => Ok(Options::default().durability),
        "never" => Ok(Durability::Never),
        other => Err(PyValueError::new_err(format!(
            "durability must be \"always\", \"group\" or \"never\", not {other:?}"
        ))),
    }
}

/// One stream's part of `append_batch`, as Python gave it.
struct StreamIn {
    stream: PyBackedStr,
    expected: ExpectedVersion,
    first_version: u64,
    events: Vec<EventIn>,
}

impl StreamIn {
    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<StreamIn> {
        let bad = || {
            PyTypeError::new_err(
                "each stream of a batch is a tuple (stream, events[, expected[, first_version]])",
            )
        };
        let t = obj.cast::<PyTuple>().map_err(|_| bad())?;
        if !(2..=4).contains(&t.len()) {
            return Err(bad());
        }
        Ok(StreamIn {
            stream: t.get_item(0)?.extract()?,
            events: events_in(&t.get_item(1)?)?,
            expected: if t.len() > 2 { expected_arg(&t.get_item(2)?)? } else { ExpectedVersion::Any },
            first_version: if t.len() > 3 { t.get_item(3)?.extract()? } else { 0 },
        })
    }
}

/// An open foldlog store: a directory holding an append-only log of events in streams.
#[pyclass(frozen, weakref, module = "foldlog")]
pub struct Store {
    shared: Arc<Shared>,
    path: PathBuf,
    durability: String,
    read_only: bool,
}

impl Store {
    fn store(&self) -> PyResult<Arc<foldlog::Store>> {
        self.shared.get()
    }
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (path, *, durability = "group", read_only = false, create = true, segment_size = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        read_only: bool,
        create: bool,
        segment_size: Option<u64>,
    ) -> PyResult<Store> {
        let mut options = Options::default()
            .durability(durability_arg(durability)?)
            .read_only(read_only)
            .create_if_missing(create && !read_only);
        if let Some(bytes) = segment_size {
            options = options.segment_size_bytes(bytes);
        }
        let opened = py.detach(|| foldlog::Store::open_with(&path, options)).map_err(|e| to_py(py, e))?;
        Ok(Store {
            shared: Arc::new(Shared {
                store: RwLock::new(Some(Arc::new(opened))),
                closed: AtomicBool::new(false),
            }),
            path,
            durability: durability.to_owned(),
            read_only,
        })
    }

    /// Appends `events` to `stream` if its last version matches `expected`.
    #[pyo3(signature = (stream, events, expected = None, *, first_version = 0))]
    fn append(
        &self,
        py: Python<'_>,
        stream: PyBackedStr,
        events: &Bound<'_, PyAny>,
        expected: Option<&Bound<'_, PyAny>>,
        first_version: u64,
    ) -> PyResult<Appended> {
        let expected = expected.map(expected_arg).transpose()?.unwrap_or(ExpectedVersion::Any);
        let events = events_in(events)?;
        let tags = tag_refs(&events);
        let news = new_events(&events, &tags);
        let one = [StreamAppend::new(&stream, expected, &news).first_version(first_version)];
        let store = self.store()?;
        let mut done = py.detach(|| store.append_batch(&Batch::new(&one))).map_err(|e| to_py(py, e))?;
        Ok(done.remove(0).into())
    }

    /// Appends `events` to `stream` (whatever its version) if no event matching `query` was stored after
    /// position `after` (anywhere, if `None`); otherwise writes nothing and raises `AppendConditionError`
    /// naming the first such event.
    #[pyo3(signature = (stream, events, query, after = None))]
    fn append_if(
        &self,
        py: Python<'_>,
        stream: PyBackedStr,
        events: &Bound<'_, PyAny>,
        query: Option<&Bound<'_, PyAny>>,
        after: Option<u64>,
    ) -> PyResult<Appended> {
        let condition = condition_arg(query, after)?;
        let events = events_in(events)?;
        let tags = tag_refs(&events);
        let news = new_events(&events, &tags);
        let store = self.store()?;
        let done = py.detach(|| store.append_if(&stream, &news, &condition)).map_err(|e| to_py(py, e))?;
        Ok(done.into())
    }

    /// Appends several streams' events, and optionally a consumer's new position, atomically; with a
    /// `condition` `(query, after)`, only if no event matching the query was stored after `after`.
    #[pyo3(signature = (streams, consumer = None, *, condition = None))]
    fn append_batch(
        &self,
        py: Python<'_>,
        streams: &Bound<'_, PyAny>,
        consumer: Option<(PyBackedStr, u64)>,
        condition: Option<(Bound<'_, PyAny>, Option<u64>)>,
    ) -> PyResult<Vec<Appended>> {
        let condition = condition.map(|(query, after)| condition_arg(Some(&query), after)).transpose()?;
        let mut parts = Vec::new();
        for s in streams.try_iter()? {
            parts.push(StreamIn::extract(&s?)?);
        }
        let tags: Vec<_> = parts.iter().map(|p| tag_refs(&p.events)).collect();
        let news: Vec<Vec<_>> = parts.iter().zip(&tags).map(|(p, t)| new_events(&p.events, t)).collect();
        let appends: Vec<_> = parts
            .iter()
            .zip(&news)
            .map(|(p, n)| StreamAppend::new(&p.stream, p.expected, n).first_version(p.first_version))
            .collect();
        let mut batch = Batch::new(&appends);
        if let Some((name, position)) = &consumer {
            batch = batch.consumer(name, *position);
        }
        if let Some(condition) = &condition {
            batch = batch.condition(condition);
        }
        let store = self.store()?;
        let done = py.detach(|| store.append_batch(&batch)).map_err(|e| to_py(py, e))?;
        Ok(done.into_iter().map(Appended::from).collect())
    }

    /// Events of one stream, oldest first (newest first with `backward=True`).
    #[pyo3(signature = (stream, from_version = None, to_version = None, *, backward = false, limit = None))]
    fn read_stream<'py>(
        &self,
        py: Python<'py>,
        stream: PyBackedStr,
        from_version: Option<u64>,
        to_version: Option<u64>,
        backward: bool,
        limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let store = self.store()?;
        let raws = py
            .detach(|| {
                let events: Box<dyn Iterator<Item = foldlog::Result<EventRef<'_>>>> = if backward {
                    Box::new(store.read_stream_backward(&stream, from_version))
                } else {
                    Box::new(store.read_stream(&stream, from_version.unwrap_or(0)))
                };
                let past = |v: u64| to_version.is_some_and(|to| if backward { v < to } else { v > to });
                let mut out = Vec::new();
                for e in events.take(limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX))) {
                    let e = e?;
                    if past(e.stream_version()) {
                        break;
                    }
                    out.push(RawEvent::of(&e));
                }
                Ok(out)
            })
            .map_err(|e| to_py(py, e))?;
        to_list(py, &raws)
    }

    /// Events of the whole log in commit order, from `from_position` to `to_position` (inclusive).
    #[pyo3(signature = (from_position = 0, to_position = None, *, types = None, limit = None))]
    fn read_all<'py>(
        &self,
        py: Python<'py>,
        from_position: u64,
        to_position: Option<u64>,
        types: Option<&Bound<'_, PyAny>>,
        limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let types = types_arg(types)?;
        let store = self.store()?;
        let (raws, _) = py
            .detach(|| read_all(&store, from_position, to_position, types.as_deref(), limit))
            .map_err(|e| to_py(py, e))?;
        to_list(py, &raws)
    }

    /// The events matching `query` after position `after` (from the first if `None`), oldest first, at most
    /// `limit` of them, and the head when the read was made: `(events, head)`.
    #[pyo3(signature = (query = None, after = None, *, limit = None))]
    fn read_query<'py>(
        &self,
        py: Python<'py>,
        query: Option<&Bound<'_, PyAny>>,
        after: Option<u64>,
        limit: Option<u64>,
    ) -> PyResult<(Bound<'py, PyList>, Option<u64>)> {
        let query = query_arg(query)?;
        let from = after.map_or(0, |a| a.saturating_add(1));
        let store = self.store()?;
        let (raws, head) = py.detach(|| read_query(&store, &query, from, limit)).map_err(|e| to_py(py, e))?;
        Ok((to_list(py, &raws)?, head))
    }

    /// A blocking iterator over the log from `from_position`: every event committed, then each new one as
    /// it is committed, until `stop()` (from any thread) or the store's close. Only the events of `types`,
    /// or only those matching `query` (not both), if given.
    #[pyo3(signature = (from_position = 0, *, types = None, query = None, batch_size = 512))]
    fn subscribe(
        &self,
        from_position: u64,
        types: Option<&Bound<'_, PyAny>>,
        query: Option<&Bound<'_, PyAny>>,
        batch_size: u64,
    ) -> PyResult<Subscription> {
        self.store()?;
        let types = types_arg(types)?;
        let filter = match query.filter(|q| !q.is_none()) {
            None => Filter::Types(types),
            Some(_) if types.is_some() => {
                return Err(PyValueError::new_err("subscribe takes types or a query, not both"))
            }
            Some(q) => Filter::Query(query_arg(Some(q))?),
        };
        Subscription::new(Arc::clone(&self.shared), from_position, filter, batch_size.max(1))
    }

    /// Blocks until a position beyond `after` (any if `None`) is committed, or `timeout` seconds pass.
    /// Returns the head then, or `None` on timeout.
    #[pyo3(signature = (after = None, timeout = None))]
    fn wait_for(&self, py: Python<'_>, after: Option<u64>, timeout: Option<f64>) -> PyResult<Option<u64>> {
        let deadline = match timeout {
            Some(t) if !(t >= 0.0 && t.is_finite()) => {
                return Err(PyValueError::new_err("timeout must be a finite number of seconds >= 0"))
            }
            Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
            None => None,
        };
        loop {
            let store = self.store()?;
            let slice =
                deadline.map_or(WAIT_SLICE, |d| d.saturating_duration_since(Instant::now()).min(WAIT_SLICE));
            if let Some(head) = py.detach(|| store.wait_for(after, slice)) {
                return Ok(Some(head));
            }
            drop(store);
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Highest committed position, `None` for an empty log.
    fn head(&self) -> PyResult<Option<u64>> {
        Ok(self.store()?.head())
    }

    /// The position the next event will get (the number of events in the log).
    fn next_position(&self) -> PyResult<u64> {
        Ok(self.store()?.next_position())
    }

    /// Events below this position survive power loss.
    fn durable_position(&self) -> PyResult<u64> {
        Ok(self.store()?.durable_position())
    }

    /// Last version of `stream`, `None` if it has no events.
    fn stream_version(&self, stream: &str) -> PyResult<Option<u64>> {
        Ok(self.store()?.stream_version(stream))
    }

    /// All stream ids, sorted.
    fn streams(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let store = self.store()?;
        Ok(py.detach(|| store.streams()))
    }

    /// A consumer's recorded position, `None` if it has none.
    fn consumer_position(&self, name: &str) -> PyResult<Option<u64>> {
        Ok(self.store()?.consumer_position(name))
    }

    /// Every consumer with its recorded position.
    fn consumer_positions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, position) in self.store()?.consumer_positions() {
            d.set_item(name, position)?;
        }
        Ok(d)
    }

    /// Makes everything appended so far durable.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.store()?;
        py.detach(|| store.sync()).map_err(|e| to_py(py, e))
    }

    /// Catches a read-only handle up with the writer (in any process); returns the next position.
    fn refresh(&self, py: Python<'_>) -> PyResult<u64> {
        let store = self.store()?;
        py.detach(|| store.refresh()).map_err(|e| to_py(py, e))
    }

    /// Syncs, marks the log cleanly closed and releases the directory. Later calls raise `ClosedError`;
    /// subscriptions end. Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.closed.store(true, Ordering::Release);
        let taken = self.shared.store.write().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut store) = taken else { return Ok(()) };
        py.detach(move || {
            // Other threads may be inside a call (a subscription's wait ends within a slice): wait for them
            // briefly, so the close reports its errors here. Past that, the last of them closes the store.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(store) {
                    Ok(store) => return store.close(),
                    Err(shared) if Instant::now() < deadline => {
                        store = shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => return Ok(()),
                }
            }
        })
        .map_err(|e| to_py(py, e))
    }

    /// True once `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The data directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The durability mode the store was opened with.
    #[getter]
    fn durability(&self) -> &str {
        &self.durability
    }

    /// True for a read-only handle.
    #[getter]
    fn read_only(&self) -> bool {
        self.read_only
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.shared.is_closed() { ", closed" } else { "" };
        format!("Store({:?}, durability={:?}{state})", self.path.display().to_string(), self.durability)
    }
}
