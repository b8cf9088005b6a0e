//! `foldlog._native`: foldlog's engine as a Python extension module (PyO3, stable ABI for CPython 3.10+).
//!
//! The Python package `foldlog` (python/foldlog/) re-exports what is defined here; its `.pyi` stubs are the
//! reference for the Python API. This crate is a thin layer over the library's `Store`:
//!
//! - `store`: the `Store` class (open, append, reads, waits, close) and the handle it shares with its
//!   subscriptions;
//! - `event`: what reads return (`Event`, `Appended`) and how events cross the boundary;
//! - `subscription`: a blocking iterator over the log that a `stop()` from another thread ends;
//! - `errors`: foldlog's errors as the exception classes of `foldlog.errors`.
//!
//! Two rules hold everywhere: the GIL is released (`Python::detach`) around every call that may do I/O,
//! sync or wait, so other Python threads run meanwhile; and nothing here is `unsafe` (bytes handed to the
//! engine are borrowed from immutable Python `bytes` objects the call keeps alive; bytes handed back are
//! copied into new `bytes` objects, because a `bytes` object cannot borrow memory it does not own).

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod errors;
mod event;
mod store;
mod subscription;

use pyo3::prelude::*;

/// The extension module. Its name must match `module-name` in pyproject.toml (`foldlog._native`).
#[pymodule]
mod _native {
    #[pymodule_export]
    use crate::event::{Appended, Event};
    #[pymodule_export]
    use crate::store::Store;
    #[pymodule_export]
    use crate::subscription::Subscription;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("FORMAT_VERSION", foldlog::FORMAT_VERSION)?;
        m.add("STREAM_VERSION_MAX", foldlog::STREAM_VERSION_MAX)?;
        Ok(())
    }
}
