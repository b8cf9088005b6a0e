//! The backends' one error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a [`crate::Backend`] call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store's own outcome, the same on both backends: a wrong expected version, a reused event id, a
    /// consumer position that does not advance, an invalid argument, or (embedded only) I/O and corruption.
    #[error(transparent)]
    Store(#[from] foldlog::Error),
    /// The backend cannot do this with the guarantees the call promises (on JetStream 2.9: an atomic append
    /// across several streams, or events together with a consumer position). Nothing was written.
    #[error("not supported by this backend: {0}")]
    Unsupported(String),
    /// Talking to the NATS server failed (connection, timeout, an API error). Whether a publish that failed
    /// this way was stored is unknown: retry it with the same event ids and the retry is recognised.
    #[error("JetStream {op} failed: {source}")]
    JetStream {
        /// What the backend was doing.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A message in the JetStream log is not one this crate wrote (or was damaged).
    #[error("JetStream message at sequence {sequence} is not a foldlog batch: {reason}")]
    Decode {
        /// The message's stream sequence.
        sequence: u64,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Wraps a client error with what was being done.
    pub(crate) fn nats(op: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::JetStream { op, source: Box::new(source) }
    }

    /// True for a failed optimistic-concurrency check: reload and decide again.
    pub fn is_wrong_expected_version(&self) -> bool {
        matches!(self, Error::Store(foldlog::Error::WrongExpectedVersion { .. }))
    }
}
