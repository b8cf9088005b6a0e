//! The list of consumer positions, for tools that copy a whole store (`foldlog export`).
//!
//! NOTE: a method of `Store` kept in its own `impl` block outside store.rs while store.rs is being split into
//! modules; it belongs with the store's other read methods (`consumer_position`).

use crate::store::Store;

impl Store {
    /// Every named consumer with its recorded position, sorted by name.
    pub fn consumer_positions(&self) -> Vec<(String, u64)> {
        let ix = self.inner().read_index();
        let mut v: Vec<(String, u64)> = ix.consumers().map(|(k, p)| (k.to_owned(), p)).collect();
        v.sort_unstable();
        v
    }
}
