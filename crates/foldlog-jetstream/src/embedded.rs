//! The embedded store as a [`Backend`]: every call is the store's own, events copied out of the map.

use std::time::Duration;

use foldlog::{
    Batch, ExpectedVersion, NewEvent, OwnedEvent, ReadAll, SnapshotData, SnapshotFiles, SnapshotRefusal,
    Store, Subscription,
};

use crate::{Appended, Backend, EventSubscription, FoundSnapshot, Result};

fn owned<'a>(
    events: impl Iterator<Item = foldlog::Result<foldlog::EventRef<'a>>>,
) -> Result<Vec<OwnedEvent>> {
    Ok(events.map(|e| e.map(|e| e.to_owned())).collect::<foldlog::Result<_>>()?)
}

fn limited(limit: Option<u64>) -> usize {
    limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

impl Backend for Store {
    fn append(&self, stream: &str, expected: ExpectedVersion, events: &[NewEvent<'_>]) -> Result<Appended> {
        Ok(Store::append(self, stream, expected, events)?.into())
    }

    fn append_batch(&self, batch: &Batch<'_>) -> Result<Vec<Appended>> {
        Ok(Store::append_batch(self, batch)?.into_iter().map(Appended::from).collect())
    }

    fn read_stream(&self, stream: &str, from_version: u64, limit: Option<u64>) -> Result<Vec<OwnedEvent>> {
        owned(Store::read_stream(self, stream, from_version).take(limited(limit)))
    }

    fn read_stream_backward(
        &self,
        stream: &str,
        from_version: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<OwnedEvent>> {
        owned(Store::read_stream_backward(self, stream, from_version).take(limited(limit)))
    }

    fn read_all(&self, opts: &ReadAll) -> Result<Vec<OwnedEvent>> {
        owned(self.read_all_with(opts.clone()))
    }

    fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        Ok(Store::stream_version(self, stream))
    }

    fn next_position(&self) -> Result<u64> {
        Ok(Store::next_position(self))
    }

    fn consumer_position(&self, name: &str) -> Result<Option<u64>> {
        Ok(Store::consumer_position(self, name))
    }

    fn save_consumer_position(&self, name: &str, position: u64) -> Result<()> {
        Store::append_batch(self, &Batch::default().consumer(name, position))?;
        Ok(())
    }

    fn snapshots(&self, stream: &str, at_most: u64) -> Result<Box<dyn Iterator<Item = FoundSnapshot> + '_>> {
        // The library's snapshot files, so `foldlog::Repository::with_snapshots` on the same store reads what
        // a `BackendRepository` wrote and the other way round. An unlisted directory is a refusal, as there.
        let files = SnapshotFiles::new(self);
        let versions = match files.versions(stream) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Box::new(std::iter::once((0, Err(SnapshotRefusal::Unlisted(e.to_string()))))))
            }
        };
        let stream = stream.to_owned();
        Ok(Box::new(
            versions.into_iter().filter(move |&v| v <= at_most).map(move |v| (v, files.read(&stream, v))),
        ))
    }

    fn write_snapshot(&self, stream: &str, snapshot: &SnapshotData, keep: usize) -> Result<()> {
        Ok(SnapshotFiles::new(self).write(stream, snapshot, keep)?)
    }

    fn subscribe(&self, from: u64) -> Result<Box<dyn EventSubscription + '_>> {
        Ok(Box::new(Embedded(Store::subscribe(self, from))))
    }
}

struct Embedded<'s>(Subscription<'s>);

impl EventSubscription for Embedded<'_> {
    fn next_event(&mut self, timeout: Duration) -> Result<Option<OwnedEvent>> {
        Ok(self.0.next_event(timeout)?.map(|e| e.to_owned()))
    }

    fn position(&self) -> u64 {
        self.0.position()
    }
}
