//! Conditional appends: a batch's [`AppendCondition`] checked under the writer lock, and
//! [`Store::append_if`]. The writer lock is what makes it exact: no append can come between the check against
//! the index (which holds every committed event) and the write, so two writers deciding on the same facts
//! cannot both succeed.

use super::*;
use crate::query::{first_match, AppendCondition};

impl Inner {
    /// Fails with [`Error::AppendConditionFailed`], naming the first matching event, if an event matching the
    /// condition's query is in the log after its position. The caller holds the writer lock.
    pub(super) fn check_condition_locked(&self, condition: &AppendCondition) -> Result<()> {
        let query = &condition.fail_if_events_match;
        let from = condition.after.map_or(0, |a| a.saturating_add(1));
        let find = |ix: &Index| first_match(ix, query, from, ix.next_position());
        let found = match find(&self.read_index()) {
            Ok(found) => found,
            Err(stale) => {
                self.rebuild_index_locked(stale.reason)?;
                find(&self.read_index()).map_err(|s| {
                    Error::corrupt(self.dir.join(CHECKPOINT_FILE), 0, Corruption::CheckpointList(s.reason))
                })?
            }
        };
        let Some(position) = found else { return Ok(()) };
        let ix = self.read_index();
        let event = self.event_at(&ix, position).filter(|e| query.matches(e)).ok_or_else(|| {
            let (seg, offset) = ix.locate(position).ok().flatten().unwrap_or((0, 0));
            let path = self.segment(seg).map_or_else(|| self.dir.clone(), |m| m.path().to_path_buf());
            let kind = Corruption::Frame { fault: FrameFault::NotInQuery { position }, region: Region::Log };
            Error::corrupt(path, offset, kind)
        })?;
        Err(Error::AppendConditionFailed {
            position,
            stream: event.stream_id().to_owned(),
            event_type: event.event_type().to_owned(),
        })
    }
}

impl Store {
    /// Appends `events` to `stream` (whatever its version) if no event matching `condition`'s query was
    /// stored after its position; otherwise writes nothing and returns [`Error::AppendConditionFailed`],
    /// naming the first such event. For expected versions and a consumer position in the same batch, use
    /// [`Batch::condition`] with [`Store::append_batch`].
    ///
    /// A course takes at most two students; each enrolment is decided on a read of the course's events and
    /// appended only if none arrived since:
    ///
    /// ```
    /// use foldlog::{AppendCondition, Error, NewEvent, Query, QueryItem, Store};
    ///
    /// fn enroll(store: &Store, student: &str) -> foldlog::Result<bool> {
    ///     let course = Query::new([QueryItem::new().types(["StudentEnrolled"]).tags(["course:7"])]);
    ///     let read = store.read(&course, None, None);
    ///     let head = read.head();
    ///     if read.count() >= 2 {
    ///         return Ok(false); // full
    ///     }
    ///     let tags = ["course:7", student];
    ///     let event = [NewEvent::new("StudentEnrolled", b"").tags(&tags)];
    ///     store.append_if("enrolments", &event, &AppendCondition::new(course).after(head))?;
    ///     Ok(true)
    /// }
    ///
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// assert!(enroll(&store, "student:1")? && enroll(&store, "student:2")?);
    /// assert!(!enroll(&store, "student:3")?, "the course is full");
    /// // A decision made on an old read is refused: an enrolment arrived after position 0.
    /// let late = [NewEvent::new("StudentEnrolled", b"").tags(&["course:7", "student:4"])];
    /// let stale = AppendCondition::new(Query::new([QueryItem::new().tags(["course:7"])])).after(0);
    /// let refused = store.append_if("enrolments", &late, &stale);
    /// assert!(matches!(refused, Err(Error::AppendConditionFailed { position: 1, .. })));
    /// # Ok(())
    /// # }
    /// ```
    #[expect(clippy::missing_panics_doc, reason = "a batch of one stream always reports one result")]
    pub fn append_if(
        &self,
        stream: &str,
        events: &[NewEvent<'_>],
        condition: &AppendCondition,
    ) -> Result<Appended> {
        let one = [StreamAppend::new(stream, ExpectedVersion::Any, events)];
        let mut out = None;
        self.inner.append_batch(&Batch::new(&one).condition(condition), &mut |a| out = Some(a))?;
        Ok(out.expect("one stream in, one result out"))
    }
}
