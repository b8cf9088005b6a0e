//! Why the projector stopped: each failure names what it was doing, so the message alone says what to fix.

use std::path::Path;

/// A reason to exit non-zero. `Usage` exits 2, everything else 1.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The store could not be opened or read.
    #[error("{doing}: {source}")]
    Store { doing: String, source: foldlog::Error },
    /// The database could not be opened, read or written.
    #[error("{doing}: {source}")]
    Sqlite { doing: String, source: rusqlite::Error },
    /// An event of an account stream that the bank's codec cannot read, or whose amount does not fit.
    #[error("event {position} of stream {stream}: {why}")]
    Event { position: u64, stream: String, why: String },
    /// The read model says something no projector of this crate writes.
    #[error("the read model in {db}: {why}")]
    ReadModel { db: String, why: String },
}

impl Failure {
    pub(crate) fn usage(why: impl Into<String>) -> Failure {
        Failure::Usage(why.into())
    }

    pub(crate) fn read_model(db: &Path, why: impl Into<String>) -> Failure {
        Failure::ReadModel { db: db.display().to_string(), why: why.into() }
    }
}

/// Adds what was being done to a store or SQLite error.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T> Doing<T> for Result<T, foldlog::Error> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|source| Failure::Store { doing: what(), source })
    }
}

impl<T> Doing<T> for Result<T, rusqlite::Error> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|source| Failure::Sqlite { doing: what(), source })
    }
}
