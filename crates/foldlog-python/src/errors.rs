//! foldlog's `Error` as the exception classes of `foldlog.errors` (python/foldlog/errors.py).
//!
//! The classes are written in Python so that they can inherit from two bases where that helps a caller
//! (`InvalidArgumentError` is also a `ValueError`, `StorageError` also an `OSError`) and carry the error's
//! fields as attributes (`err.stream`, `err.actual`, ...). Each is imported once, when first raised.

use foldlog::{Error, ExpectedVersion};
use pyo3::prelude::*;
use pyo3::{import_exception, IntoPyObjectExt};

import_exception!(foldlog.errors, FoldlogError);
import_exception!(foldlog.errors, ClosedError);
import_exception!(foldlog.errors, WrongExpectedVersionError);
import_exception!(foldlog.errors, ConsumerPositionError);
import_exception!(foldlog.errors, DuplicateEventIdError);
import_exception!(foldlog.errors, AppendConditionError);
import_exception!(foldlog.errors, CorruptError);
import_exception!(foldlog.errors, InvalidDirectoryError);
import_exception!(foldlog.errors, UnsupportedVersionError);
import_exception!(foldlog.errors, LockedError);
import_exception!(foldlog.errors, PoisonedError);
import_exception!(foldlog.errors, ReadOnlyError);
import_exception!(foldlog.errors, TooLargeError);
import_exception!(foldlog.errors, InvalidArgumentError);
import_exception!(foldlog.errors, StorageError);

/// An expected version as Python sees it: the version, or one of the strings `append` accepts.
pub(crate) fn expected_to_py(py: Python<'_>, expected: ExpectedVersion) -> PyResult<Py<PyAny>> {
    match expected {
        ExpectedVersion::Any => "any".into_py_any(py),
        ExpectedVersion::NoStream => "no_stream".into_py_any(py),
        ExpectedVersion::StreamExists => "exists".into_py_any(py),
        ExpectedVersion::Exact(v) => v.into_py_any(py),
    }
}

/// The exception for `err`; the message is the library's own.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    let built = match err {
        Error::WrongExpectedVersion { stream, expected, actual } => expected_to_py(py, expected)
            .map(|expected| WrongExpectedVersionError::new_err((message, stream, expected, actual))),
        Error::ConsumerPositionNotAdvanced { name, current, proposed } => {
            Ok(ConsumerPositionError::new_err((message, name, current, proposed)))
        }
        Error::DuplicateEventId { id, position } => {
            Ok(DuplicateEventIdError::new_err((message, id, position)))
        }
        Error::AppendConditionFailed { position, stream, event_type } => {
            Ok(AppendConditionError::new_err((message, position, stream, event_type)))
        }
        Error::Corrupt { path, offset, kind } => {
            // Python gets the kind as its description; the Rust enum has no Python counterpart (yet).
            Ok(CorruptError::new_err((message, path, offset, kind.to_string())))
        }
        Error::InvalidDirectory { path, reason } => {
            Ok(InvalidDirectoryError::new_err((message, path, reason)))
        }
        Error::UnsupportedVersion { path, found, supported } => {
            Ok(UnsupportedVersionError::new_err((message, path, found, supported)))
        }
        Error::Locked { path } => Ok(LockedError::new_err((message, path))),
        Error::Poisoned => Ok(PoisonedError::new_err(message)),
        Error::ReadOnly => Ok(ReadOnlyError::new_err(message)),
        Error::TooLarge { len, max } => Ok(TooLargeError::new_err((message, len, max))),
        Error::InvalidArgument(_) => Ok(InvalidArgumentError::new_err(message)),
        Error::Io { op, path, source } => {
            Ok(StorageError::new_err((message, op, path, source.raw_os_error())))
        }
        // `Error` is non-exhaustive: a variant added later is still a FoldlogError with its message.
        _ => Ok(FoldlogError::new_err(message)),
    };
    built.unwrap_or_else(|e| e)
}

/// The error for a call on a closed `Store` (or on a subscription whose store was closed).
pub(crate) fn closed() -> PyErr {
    ClosedError::new_err("the store is closed")
}
