//! `Subscription`: the log from a position on, then each new event as it is committed.
//!
//! No thread of its own: `__next__` reads the next chunk of the log with the GIL released, and when it has
//! caught up it waits for a commit (the engine's `wait_for`, woken by the writer's publish) in slices of
//! `WAIT_SLICE`, looking between slices whether `stop()` was called from another thread, the store was
//! closed, or a signal (Ctrl-C) arrived.
//!
//! A subscription by query reads with the engine's query read (`Store::read`, through the tag and type
//! indexes) instead of the log scan: the same loop, only the chunk read differs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use foldlog::Query;

use crate::errors::to_py;
use crate::event::{Converter, Event, RawEvent};
use crate::store::{read_all, read_query, Shared, WAIT_SLICE};

/// Which events a subscription returns.
pub(crate) enum Filter {
    /// Those of these types (all if `None`): a scan of the log.
    Types(Option<Vec<String>>),
    /// Those matching a query: reads through the tag and type indexes.
    Query(Query),
}

impl Filter {
    /// Up to `limit` events from position `from` on, and the position to look from next.
    fn read<'s>(
        &self,
        store: &'s foldlog::Store,
        from: u64,
        limit: u64,
    ) -> foldlog::Result<(Vec<RawEvent<'s>>, u64)> {
        match self {
            Filter::Types(types) => read_all(store, from, None, types.as_deref(), Some(limit)),
            Filter::Query(query) => {
                let (events, head) = read_query(store, query, from, Some(limit))?;
                // A full chunk covered the log only up to its last event; a short one, up to the head.
                let next = match events.last() {
                    Some(last) if events.len() as u64 == limit => last.position() + 1,
                    _ => head.map_or(0, |h| h + 1).max(from),
                };
                Ok((events, next))
            }
        }
    }
}

/// A blocking iterator over a store's log; see `Store.subscribe`.
#[pyclass(frozen, module = "foldlog")]
pub struct Subscription {
    shared: Arc<Shared>,
    filter: Filter,
    batch_size: u64,
    /// The next position to look at.
    cursor: AtomicU64,
    /// Where a new subscription would resume to see exactly what this one has not returned yet.
    resume: AtomicU64,
    stopped: AtomicBool,
    /// Events read but not yet returned. Only the iterating thread touches it.
    buffer: Mutex<VecDeque<Py<Event>>>,
}

impl Subscription {
    pub(crate) fn new(
        shared: Arc<Shared>,
        from_position: u64,
        filter: Filter,
        batch_size: u64,
    ) -> PyResult<Subscription> {
        Ok(Subscription {
            shared,
            filter,
            batch_size,
            cursor: AtomicU64::new(from_position),
            resume: AtomicU64::new(from_position),
            stopped: AtomicBool::new(false),
            buffer: Mutex::new(VecDeque::new()),
        })
    }

    fn ended(&self) -> bool {
        self.stopped.load(Ordering::Acquire) || self.shared.is_closed()
    }
}

#[pymethods]
impl Subscription {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next event; blocks (with the GIL released) until there is one. Ends after `stop()`.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<Event>>> {
        let mut buffer = self
            .buffer
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("a subscription is iterated by one thread at a time"))?;
        loop {
            if self.ended() {
                buffer.clear();
                return Ok(None);
            }
            if let Some(event) = buffer.pop_front() {
                let resume =
                    buffer.front().map_or_else(|| self.cursor.load(Ordering::Acquire), |e| e.get().position);
                self.resume.store(resume, Ordering::Release);
                return Ok(Some(event));
            }
            let Ok(store) = self.shared.get() else { return Ok(None) };
            let from = self.cursor.load(Ordering::Acquire);
            let (raws, next) =
                py.detach(|| self.filter.read(&store, from, self.batch_size)).map_err(|e| to_py(py, e))?;
            self.cursor.store(next, Ordering::Release);
            if raws.is_empty() {
                self.resume.store(next, Ordering::Release);
                // Caught up: wait for a commit past what was looked at.
                py.detach(|| store.wait_for(next.checked_sub(1), WAIT_SLICE));
                drop(store);
                py.check_signals()?;
                continue;
            }
            let mut conv = Converter::new();
            for raw in &raws {
                buffer.push_back(conv.event(py, raw)?);
            }
        }
    }

    /// Ends the iteration: the iterating thread (blocked or not) returns within a moment, with no further
    /// event. Safe to call from any thread, and more than once.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// True once stopped (or the store was closed).
    #[getter]
    fn stopped(&self) -> bool {
        self.ended()
    }

    /// The position to resume from: every event before it was returned or filtered out.
    #[getter]
    fn position(&self) -> u64 {
        self.resume.load(Ordering::Acquire)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.stop();
        false
    }
}
