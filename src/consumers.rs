//! Named consumers beyond moving them with a batch: the list of their positions (for tools that copy a whole
//! store, `foldlog export`) and an operator's reset.

use crate::error::Result;
use crate::store::{Batch, Store};

impl Store {
    /// Moves consumer `name` to `position`, forward or back (a read model kept in this store, rebuilt from an
    /// earlier point), or creates it there. Like every consumer position it is a frame in the log, so it is
    /// durable as the store's durability mode says and replayed on open. Prefer moving a consumer with the
    /// events it caused (`Batch::consumer`), which must advance; this is for operators and rebuilds.
    ///
    /// A reset backward also means that a retry of a batch written before the reset, recognised by its event
    /// ids, may be reported as a duplicate rather than as the earlier success (a retry is recognised by its
    /// consumer having reached the batch's position, which a reset undoes).
    pub fn reset_consumer(&self, name: &str, position: u64) -> Result<()> {
        let mut batch = Batch::new(&[]).consumer(name, position);
        batch.reset_consumer = true;
        self.append_batch(&batch).map(drop)
    }

    /// Forgets a named consumer: its position is gone from [`Store::consumer_position`] and
    /// [`Store::consumer_positions`], and a later batch may start it again anywhere. Recorded in the log (a
    /// consumer frame with the delete flag), so readers in other processes, backups and a reopen see it too.
    /// Returns whether the consumer existed; nothing is written if not.
    ///
    /// ```
    /// # fn main() -> foldlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = foldlog::Store::open(dir.path())?;
    /// store.reset_consumer("projector", 0)?;
    /// assert!(store.delete_consumer("projector")?);
    /// assert_eq!(store.consumer_position("projector"), None);
    /// assert!(!store.delete_consumer("projector")?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn delete_consumer(&self, name: &str) -> Result<bool> {
        if self.consumer_position(name).is_none() {
            return Ok(false);
        }
        let mut batch = Batch::new(&[]).consumer(name, 0);
        batch.delete_consumer = true;
        self.append_batch(&batch).map(|_| true)
    }

    /// Every named consumer with its recorded position, sorted by name.
    pub fn consumer_positions(&self) -> Vec<(String, u64)> {
        let ix = self.inner().read_index();
        let mut v: Vec<(String, u64)> = ix.consumers().map(|(k, p)| (k.to_owned(), p)).collect();
        v.sort_unstable();
        v
    }
}
