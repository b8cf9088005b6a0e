//! Time travel by date: the first position at or after a wall-clock time, found by binary search over the log
//! (every event carries its append time, docs/format.md "Event"), and an aggregate as it was at a date.
//!
//! Appends stamp events with the writer's clock, so timestamps grow with positions as long as the clock does;
//! an importer may carry older times over, and a clock stepped back breaks the order. The search then still
//! returns a position whose event is at or after the time and whose predecessor is before it, but not
//! necessarily the first such in the log: [`Store::position_at_time`] says so.

use crate::error::Result;
use crate::store::Store;

impl Store {
    /// The position of the first event appended at or after `micros` (microseconds since the Unix epoch), by
    /// binary search over the committed log: `next_position()` if every event is older. Exact when
    /// timestamps never decrease along the log (appends by one writer with a clock that does not step back);
    /// otherwise some event at or after `micros` whose predecessor is older.
    ///
    /// ```
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use foldlog::{ExpectedVersion, NewEvent, Store};
    ///
    /// let store = Store::open(dir.path())?;
    /// for t in [1_000, 2_000, 3_000] {
    ///     store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", b"").timestamp_micros(t)])?;
    /// }
    /// assert_eq!(store.position_at_time(2_000)?, 1);
    /// assert_eq!(store.position_at_time(2_500)?, 2);
    /// assert_eq!(store.position_at_time(9_000)?, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn position_at_time(&self, micros: i64) -> Result<u64> {
        let (mut lo, mut hi) = (0, self.next_position());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(event) = self.read_all(mid).next().transpose()? else { break };
            if event.timestamp_micros() < micros {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}
