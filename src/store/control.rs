//! Deleting and truncating streams: the public calls, what a stream's state is, and the checks a batch's
//! stream controls pass under the writer lock. A control is a frame of its own in the log (kind 4,
//! docs/format.md "Stream control"), so every reader of the log (recovery, followers, backups, verify and
//! salvage) sees what the writer decided; the index keeps the merged result per stream (`Index::control`).

use super::*;
use crate::index::StreamControl as ControlState;

/// What the store knows of one stream: its versions and whether it was truncated or deleted. From
/// [`Store::stream_state`]. Non-exhaustive: the store may say more about a stream later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamState {
    /// Version of the stream's first event, hidden or not.
    pub first_version: u64,
    /// Version of the stream's last event, hidden or not: what an expected version is checked against.
    pub last_version: u64,
    /// The first version a read returns: events below it were truncated (or deleted), or its retention rule
    /// hides them ([`Store::set_retention`]), and every read skips them. The stream's first version when
    /// nothing is hidden.
    pub first_visible: u64,
    /// The stream was deleted: every event is hidden and appends are refused ([`Error::StreamDeleted`]).
    pub deleted: bool,
}

impl Store {
    /// Hides `stream`'s events below version `version` from every read: [`Store::read_stream`] and
    /// [`Store::read_stream_backward`], [`Store::read_all`], subscriptions, [`Store::read`] by query and the
    /// repository. Positions and versions of all events stay as they are, and appends go on at the next
    /// version. The truncation is a frame in the log (so followers, backups and a reopen see it) and only ever
    /// moves forward: a lower `version` than an earlier truncation's changes nothing.
    ///
    /// `expected` is checked against the stream's last version, hidden events included. Errors:
    /// [`Error::WrongExpectedVersion`]; [`Error::StreamNotFound`] if the stream has no events;
    /// [`Error::StreamDeleted`]; [`Error::InvalidArgument`] if `version` is past the last version + 1.
    ///
    /// ```
    /// use foldlog::{ExpectedVersion, NewEvent, Store};
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let ticks: Vec<NewEvent> = (0..5).map(|_| NewEvent::new("Tick", b"")).collect();
    /// store.append("clock", ExpectedVersion::NoStream, &ticks)?;
    /// store.truncate_before("clock", ExpectedVersion::Exact(4), 3)?;
    /// let versions: Vec<u64> =
    ///     store.read_stream("clock", 0).map(|e| e.map(|e| e.stream_version())).collect::<foldlog::Result<_>>()?;
    /// assert_eq!(versions, [3, 4]);
    /// assert_eq!(store.read_all(0).count(), 2, "hidden from the global log too");
    /// assert_eq!(store.stream_version("clock"), Some(4), "versions go on");
    /// # Ok(())
    /// # }
    /// ```
    pub fn truncate_before(&self, stream: &str, expected: ExpectedVersion, version: u64) -> Result<()> {
        let one = [crate::StreamControl::truncate_before(stream, expected, version)];
        self.inner.append_batch(&Batch::new(&[]).controls(&one), &mut |_| {})
    }

    /// Deletes `stream` (a soft delete): every event of it is hidden from every read, as by
    /// [`Store::truncate_before`] its last version + 1, and any later append to it is refused with
    /// [`Error::StreamDeleted`]: the id is never used again. Positions and versions of other events stay as
    /// they are. Recorded as a frame in the log.
    ///
    /// `expected` is checked against the stream's last version. Errors: [`Error::WrongExpectedVersion`];
    /// [`Error::StreamNotFound`] if the stream has no events; [`Error::StreamDeleted`] if it was deleted
    /// already.
    ///
    /// ```
    /// use foldlog::{Error, ExpectedVersion, NewEvent, Store};
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// store.append("session-9", ExpectedVersion::NoStream, &[NewEvent::new("Started", b"")])?;
    /// store.delete_stream("session-9", ExpectedVersion::Exact(0))?;
    /// assert_eq!(store.read_stream("session-9", 0).count(), 0);
    /// let again = store.append("session-9", ExpectedVersion::Any, &[NewEvent::new("Started", b"")]);
    /// assert!(matches!(again, Err(Error::StreamDeleted { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        let one = [crate::StreamControl::delete(stream, expected)];
        self.inner.append_batch(&Batch::new(&[]).controls(&one), &mut |_| {})
    }

    /// The state of `stream`: its last version, the first version a read returns, and whether it was
    /// deleted; `None` if it has no events.
    ///
    /// The first visible version counts the stream's retention rule ([`Store::set_retention`]) too; if the
    /// rules cannot be read (a damaged rule event, which reads report), it counts the truncation alone.
    pub fn stream_state(&self, stream: &str) -> Option<StreamState> {
        let rules = self.inner.retention_rules().ok().flatten();
        let ix = self.inner.read_index();
        let s = ix.stream(stream)?;
        let last_version = s.last_version()?;
        let control = ix.control(stream).unwrap_or_default();
        Some(StreamState {
            first_version: s.first_version,
            last_version,
            first_visible: s.first_version.max(self.inner.first_visible(&ix, rules.as_deref(), stream)),
            deleted: control.deleted,
        })
    }
}

impl Inner {
    /// The checks of a batch's stream controls (expected versions, the stream's existence, deletion, the
    /// truncation point's range), under the writer lock; each control's truncation point goes to `plan`
    /// after the streams' first versions.
    #[expect(clippy::unused_self, reason = "a step of the writer's checks, called as its siblings are")]
    pub(super) fn check_controls(&self, ix: &Index, batch: &Batch<'_>, plan: &mut Vec<u64>) -> Result<()> {
        for c in batch.controls {
            let actual = ix.check_expected(c.stream, c.expected)?;
            let Some(last) = actual else {
                return Err(Error::StreamNotFound { stream: c.stream.to_owned() });
            };
            let state: ControlState = ix.control(c.stream).unwrap_or_default();
            if state.deleted {
                return Err(Error::StreamDeleted { stream: c.stream.to_owned() });
            }
            let end = last + 1;
            let before = match c.control {
                crate::Control::TruncateBefore(v) if v > end => {
                    return Err(Error::InvalidArgument(format!(
                        "stream {:?}: cannot truncate before version {v}: its last version is {last}",
                        c.stream
                    )))
                }
                crate::Control::TruncateBefore(v) => v,
                crate::Control::Delete => end,
            };
            plan.push(before.max(state.truncate_before));
        }
        Ok(())
    }
}
