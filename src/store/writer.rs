//! The single writer: appends under the writer lock, durability (syncs and durable slots), rolls and
//! checkpoints, and the clean close.

use super::*;

/// Under group commit, batches whose frames may take this many bytes or more are written with one `pwrite`
/// from a buffer, not stored through the map. A `pwrite` dirties only the blocks it covers; a store through
/// the map dirties its whole page-cache folio, which the next sync writes whole. Below this size one system
/// call per append costs more than the stores it replaces, and with no syncs (`Never`) stores into the map
/// are faster at every size (ARCHITECTURE.md, "Write path").
pub(super) const DIRECT_MIN_BYTES: u64 = 4096;

/// The active segment and everything only the writer touches.
pub(super) struct Writer {
    pub(super) seg: usize,
    /// The active segment's sequence number (its file name and header carry it).
    pub(super) seg_seq: u32,
    /// The active segment's base position (events store their position relative to it).
    pub(super) seg_base: u64,
    pub(super) map: MapWriter,
    /// Offset where the next frame goes; equals the map's committed end between appends.
    pub(super) end: u64,
    pub(super) next_position: u64,
    pub(super) synced_end: u64,
    pub(super) slot: DurableSlot,
    /// The newest slot on disk says CLEAN; it must be replaced (and synced) before the first frame is stored.
    pub(super) clean_on_disk: bool,
    pub(super) pending_appends: u32,
    pub(super) pending_bytes: u64,
    pub(super) pending_since: Option<Instant>,
    pub(super) bytes_since_checkpoint: u64,
    /// The name definitions of the active segment that new frames may refer to.
    pub(super) names: Names,
    /// Reused per event: the offsets of its tags' definitions.
    pub(super) tag_defs: Vec<u32>,
    /// Size of the last checkpoint written; spaces out the next one.
    pub(super) last_checkpoint_bytes: u64,
    /// Reused per append: first version of each stream of the batch.
    pub(super) plan: Vec<u64>,
    /// Reused per append: (offset, length) of each frame of the batch.
    pub(super) offsets: Vec<(u64, u64)>,
    /// The active segment's file, for `pwrite` and `fdatasync` when `direct`.
    pub(super) file: File,
    /// `Durability::Always`: every batch is written `direct`, slots too, and synced with `fdatasync`; nothing
    /// is ever stored through the map. A store into a shared map dirties the whole page-cache folio it lands
    /// in (up to 2 MiB once the file was read or written sequentially), and every sync then writes all of
    /// it: one 150-byte append with a sync at 48 MiB into a segment took 3 × a plain `write` + `fdatasync`
    /// (ARCHITECTURE.md, "Write path"). `pwrite` dirties only the blocks it touches.
    pub(super) always_direct: bool,
    /// The batch being encoded goes into `buf` and is written with one `pwrite` (`always_direct`, or a batch
    /// of at least [`DIRECT_MIN_BYTES`]); otherwise its frames are stored straight into the map.
    pub(super) direct: bool,
    /// Reused per batch when `direct`: the frames from `end` on, before they are written.
    pub(super) buf: Vec<u8>,
}

impl Writer {
    /// A writer for segment slot `seg` whose frames end at `end`, with nothing pending.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        seg: usize,
        seg_seq: u32,
        seg_base: u64,
        map: MapWriter,
        end: u64,
        next_position: u64,
        synced_end: u64,
        slot: DurableSlot,
        clean_on_disk: bool,
        (file, always_direct): (File, bool),
    ) -> Writer {
        Writer {
            seg,
            seg_seq,
            seg_base,
            map,
            end,
            next_position,
            synced_end,
            slot,
            clean_on_disk,
            pending_appends: 0,
            pending_bytes: 0,
            pending_since: None,
            bytes_since_checkpoint: 0,
            names: Names::default(),
            tag_defs: Vec::new(),
            last_checkpoint_bytes: 0,
            plan: Vec::new(),
            offsets: Vec::new(),
            file,
            always_direct,
            direct: always_direct,
            buf: Vec::new(),
        }
    }
}

/// The bytes from file offset `at` on where a batch's frames are encoded: the map's free tail, or (`direct`)
/// the buffer that holds the frames from `end` on.
fn tail<'b>(map: &'b mut MapWriter, buf: &'b mut [u8], (end, at, direct): (u64, u64, bool)) -> &'b mut [u8] {
    if direct {
        let from = usize::try_from(at - end).unwrap_or(usize::MAX);
        buf.get_mut(from..).unwrap_or_default()
    } else {
        let cap = map.map().len();
        map.tail_mut(at, cap)
    }
}

impl Inner {
    /// The append path: checks under the writer lock, frames encoded in place, then published. Results go to
    /// `out`, one per stream, so the single-stream `append` allocates nothing on this path.
    pub(super) fn append_batch(&self, batch: &Batch<'_>, out: &mut dyn FnMut(Appended)) -> Result<()> {
        validate_batch(batch)?;
        let mut guard = self.lock_writer()?;
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        let w = guard.as_mut().ok_or(Error::ReadOnly)?;
        let mut plan = std::mem::take(&mut w.plan);
        plan.clear();
        let r = self.append_locked(w, batch, &mut plan, out);
        w.plan = plan;
        r
    }

    pub(super) fn append_locked(
        &self,
        w: &mut Writer,
        batch: &Batch<'_>,
        plan: &mut Vec<u64>,
        out: &mut dyn FnMut(Appended),
    ) -> Result<()> {
        if let Some(done) = self.check_batch(w, batch, plan)? {
            done.into_iter().for_each(out);
            return Ok(());
        }
        let nothing = batch.streams.iter().all(|s| s.events.is_empty()) && batch.controls.is_empty();
        if batch.consumer.is_none() && nothing {
            // Only checks, nothing to write.
            for &v in plan.iter() {
                out(Appended {
                    positions: w.next_position..w.next_position,
                    versions: v..v,
                    deduplicated: false,
                });
            }
            return Ok(());
        }
        if w.clean_on_disk {
            self.mark_dirty(w)?;
        }
        let end = self.encode_with_roll(w, batch, plan)?;
        let start = w.end;
        self.after_encode(w, start, end, batch, plan, out)
    }

    /// Everything a batch must pass before a byte is written: a retry of an earlier batch (its original
    /// result, returned as `Some`), expected versions and version room (each stream's first version goes to
    /// `plan`), positions left, and the consumer's advance.
    fn check_batch(
        &self,
        w: &Writer,
        batch: &Batch<'_>,
        plan: &mut Vec<u64>,
    ) -> Result<Option<Vec<Appended>>> {
        // Retries look stored events up through the index; make sure the lists they need are sound first.
        let stale = {
            let ix = self.read_index();
            let ids = batch.streams.iter().flat_map(|s| s.events.iter().filter_map(|e| e.event_id));
            ids.filter_map(|id| ix.event_id_position(id)).find_map(|p| ix.locate(p).err())
        };
        if let Some(stale) = stale {
            self.rebuild_index_locked(stale.reason)?;
        }
        let ix = self.read_index();
        if let Some(done) = self.find_retry(&ix, batch)? {
            return Ok(Some(done));
        }
        if !batch.system {
            let ids = batch.streams.iter().map(|s| s.stream).chain(batch.controls.iter().map(|c| c.stream));
            if let Some(id) = ids.into_iter().find(|id| id.starts_with(crate::SYSTEM_PREFIX)) {
                return Err(Error::InvalidArgument(format!(
                    "stream {id:?}: ids starting with {:?} are foldlog's own",
                    crate::SYSTEM_PREFIX
                )));
            }
        }
        for s in batch.streams {
            // A deleted stream's id is never used again, whatever the expected version says.
            if ix.control(s.stream).is_some_and(|c| c.deleted) {
                return Err(Error::StreamDeleted { stream: s.stream.to_owned() });
            }
            let actual = ix.check_expected(s.stream, s.expected)?;
            let first = match actual {
                Some(v) => v.checked_add(1),
                None => Some(s.first_version),
            };
            plan.push(check_version_room(s, first)?);
        }
        self.check_controls(&ix, batch, plan)?;
        let events: u64 = batch.streams.iter().map(|s| s.events.len() as u64).sum();
        if w.next_position.checked_add(events).is_none() {
            return Err(Error::InvalidArgument("the log has no global positions left".into()));
        }
        if let Some((name, p)) = batch.consumer.filter(|_| !batch.reset_consumer && !batch.delete_consumer) {
            if let Some(current) = ix.consumer(name).filter(|&c| p <= c) {
                return Err(Error::ConsumerPositionNotAdvanced { name: name.into(), current, proposed: p });
            }
        }
        drop(ix);
        if let Some(condition) = batch.condition {
            self.check_condition_locked(condition)?;
        }
        Ok(None)
    }

    /// Encodes the batch, rolling to a new segment first when it may not fit (so that the encoder is never
    /// stopped midway in the common case: a stopped encoder leaves partial bytes that must be zeroed up to the
    /// segment's end), or after it did not. An empty segment is rolled too when a new one would be larger
    /// (the store was reopened with bigger segments). Returns the end of the encoded frames.
    fn encode_with_roll(&self, w: &mut Writer, batch: &Batch<'_>, plan: &[u64]) -> Result<u64> {
        let bound = batch_size_bound(batch);
        let too_large =
            || Error::TooLarge { len: bound, max: self.options.segment_size_bytes - SEGMENT_HEADER_LEN };
        let cap = w.map.map().len();
        let larger_room = cap < self.options.segment_size_bytes;
        if (w.end > SEGMENT_HEADER_LEN || larger_room) && w.end.saturating_add(bound) > cap {
            self.roll(w)?;
        }
        match self.encode_batch(w, batch, plan, bound)? {
            Some(end) => Ok(end),
            // An empty segment of the configured size that cannot hold the batch: a new one could not either.
            None if w.end == SEGMENT_HEADER_LEN && w.map.map().len() >= self.options.segment_size_bytes => {
                Err(too_large())
            }
            None => {
                self.roll(w)?;
                self.encode_batch(w, batch, plan, bound)?.ok_or_else(too_large)
            }
        }
    }

    /// Idempotent retries. If no event id of the batch is known, `None`: append normally. If every event has
    /// an id, all are known, each stream's stored events match (stream, type, payload, metadata, in
    /// consecutive positions), the batch's consumer (if any) is at or past the position the batch sets and its
    /// stream controls (if any) are in force, the original result. Anything in between is a `DuplicateEventId` error.
    pub(super) fn find_retry(&self, ix: &Index, batch: &Batch<'_>) -> Result<Option<Vec<Appended>>> {
        let mut events = batch.streams.iter().flat_map(|s| s.events.iter());
        let Some((id, position)) =
            events.find_map(|e| e.event_id.and_then(|id| ix.event_id_position(id).map(|p| (id, p))))
        else {
            return Ok(None);
        };
        let conflict = Err(Error::DuplicateEventId { id, position });
        // The original batch moved its consumer to `p` together with its events, and consumer positions
        // only advance: a consumer behind `p` means the stored events came from another batch.
        if let Some((name, p)) = batch.consumer {
            if ix.consumer(name).is_none_or(|current| current < p) {
                return conflict;
            }
        }
        let mut out = Vec::with_capacity(batch.streams.len());
        for s in batch.streams {
            let mut first: Option<(u64, u64)> = None;
            for (i, e) in s.events.iter().enumerate() {
                let stored =
                    e.event_id.and_then(|id| ix.event_id_position(id)).and_then(|p| self.event_at(ix, p));
                let Some(stored) = stored else { return conflict };
                let (p0, v0) = *first.get_or_insert((stored.position(), stored.stream_version()));
                let same = p0.checked_add(i as u64) == Some(stored.position())
                    && v0.checked_add(i as u64) == Some(stored.stream_version())
                    && stored.stream_id() == s.stream
                    && stored.event_type() == e.event_type
                    && stored.payload() == e.payload
                    && stored.metadata() == e.metadata;
                if !same {
                    return conflict;
                }
            }
            let Some((p0, v0)) = first else { return conflict };
            let n = s.events.len() as u64;
            let (Some(p1), Some(v1)) = (p0.checked_add(n), v0.checked_add(n)) else { return conflict };
            out.push(Appended { positions: p0..p1, versions: v0..v1, deduplicated: true });
        }
        // The original batch truncated or deleted its streams with its events: their state shows it.
        for c in batch.controls {
            let state = ix.control(c.stream).unwrap_or_default();
            let done = match c.control {
                crate::Control::TruncateBefore(v) => state.truncate_before >= v,
                crate::Control::Delete => state.deleted,
            };
            if !done {
                return conflict;
            }
        }
        Ok(Some(out))
    }

    /// Encodes all frames of the batch past `w.end`, each name the segment has not defined yet first (its
    /// definition frame right before the frame that uses it), and records where each event and consumer
    /// frame went in `w.offsets`. Returns the end offset, or `None` if the segment is full (nothing is
    /// published; the partial bytes are zeroed so no stale frame is left behind, and the definitions made
    /// for the batch forgotten). `bound` is [`batch_size_bound`] of the batch.
    pub(super) fn encode_batch(
        &self,
        w: &mut Writer,
        batch: &Batch<'_>,
        plan: &[u64],
        bound: u64,
    ) -> Result<Option<u64>> {
        sys::before_map_write(w.map.map().path()).map_err(|e| Error::io("write", w.map.map().path(), e))?;
        let group = matches!(self.options.durability, Durability::Group(_));
        w.direct = w.always_direct || (group && bound >= DIRECT_MIN_BYTES);
        if w.direct {
            let room = w.map.map().len().saturating_sub(w.end).min(bound);
            w.buf.clear();
            w.buf.resize(usize::try_from(room).unwrap_or(0), 0);
        }
        let mut at = w.end;
        let total_events: usize = batch.streams.iter().map(|s| s.events.len()).sum();
        let frames = total_events + batch.controls.len() + usize::from(batch.consumer.is_some());
        let mut done = 0usize;
        let now = now_micros();
        let mut position = w.next_position;
        w.offsets.clear();
        for (s, &first) in batch.streams.iter().zip(plan) {
            let Some(last) = (s.events.len() as u64).checked_sub(1).map(|n| first + n) else { continue };
            let stream = match w.names.stream(s.stream, first, last) {
                Some(d) => d,
                None => match define(w, &mut at, Defined::Stream(s.stream, first)) {
                    Some(offset) => StreamDef { offset, base: first },
                    None => return Ok(self.abandon(w, at)),
                },
            };
            for (i, e) in s.events.iter().enumerate() {
                done += 1;
                let Some(fields) = event_fields(w, &mut at, stream, e, (first + i as u64, position), now)
                else {
                    return Ok(self.abandon(w, at));
                };
                let place = FramePlace { seq: w.seg_seq, offset: at };
                let dst = tail(&mut w.map, &mut w.buf, (w.end, at, w.direct));
                match encode_event(&fields.with_tags(&w.tag_defs), done == frames, place, dst) {
                    Some(len) => {
                        w.offsets.push((at, len));
                        at += len;
                    }
                    None => return Ok(self.abandon(w, at)),
                }
                position += 1;
            }
        }
        let befores = plan.get(batch.streams.len()..).unwrap_or_default();
        for (c, &before) in batch.controls.iter().zip(befores) {
            done += 1;
            let def = match w.names.any_stream(c.stream) {
                Some(d) => Some(d),
                None => define(w, &mut at, Defined::Stream(c.stream, before.min(STREAM_VERSION_MAX))),
            };
            let place = FramePlace { seq: w.seg_seq, offset: at };
            let deleted = matches!(c.control, crate::Control::Delete);
            let dst = tail(&mut w.map, &mut w.buf, (w.end, at, w.direct));
            match def.and_then(|d| encode_control(d, before, deleted, done == frames, place, dst)) {
                Some(len) => {
                    w.offsets.push((at, len));
                    at += len;
                }
                None => return Ok(self.abandon(w, at)),
            }
        }
        if let Some((name, p)) = batch.consumer {
            let def = match w.names.consumer(name) {
                Some(d) => Some(d),
                None => define(w, &mut at, Defined::Consumer(name)),
            };
            let place = FramePlace { seq: w.seg_seq, offset: at };
            let delete = batch.delete_consumer;
            let dst = tail(&mut w.map, &mut w.buf, (w.end, at, w.direct));
            match def.and_then(|d| encode_consumer(d, p, delete, true, place, dst)) {
                Some(len) => {
                    w.offsets.push((at, len));
                    at += len;
                }
                None => return Ok(self.abandon(w, at)),
            }
        }
        debug_assert!(frames > 0, "empty batches return before encoding");
        if w.direct {
            let bytes = w.buf.get(..usize::try_from(at - w.end).unwrap_or(usize::MAX)).unwrap_or_default();
            if let Err(e) = sys::write_at(&w.file, w.map.map().path(), w.end, bytes) {
                // Part of it may have reached the file past the log's end; nothing was published, but the
                // file is no longer known: stop writing until a reopen recovers it.
                let path = w.map.map().path().to_path_buf();
                return self.poison(Error::io("write frames", path, e));
            }
        }
        Ok(Some(at))
    }

    #[expect(clippy::unused_self, reason = "a step of the writer, called as its siblings are")]
    pub(super) fn abandon(&self, w: &mut Writer, at: u64) -> Option<u64> {
        // Zero the frames encoded so far and whatever the failed encoder wrote past `at` before it ran out of
        // room (it may have reached the end of the segment): left there, those bytes would sit past the log's
        // end, where a later frame boundary can land on them and recovery would take them for a bad frame.
        let (end, cap) = (w.end, w.map.map().len());
        debug_assert!(at <= cap);
        if !w.direct {
            // Direct writes encode into a buffer: nothing reached the file.
            w.map.zero(end, cap);
        }
        w.names.forget_from(end);
        None
    }

    /// Publishes the encoded frames: record, sync if the mode says so, update the index, move the watermark.
    pub(super) fn after_encode(
        &self,
        w: &mut Writer,
        start: u64,
        end: u64,
        batch: &Batch<'_>,
        plan: &[u64],
        out: &mut dyn FnMut(Appended),
    ) -> Result<()> {
        // Index entries: the encoder recorded where each event and consumer frame went.
        let offsets = std::mem::take(&mut w.offsets);
        if !w.direct {
            // Recorded for the persistence tests; a direct write was recorded by its `pwrite`.
            w.map.commit_frames(start, end);
        }
        w.end = end;
        w.pending_appends += 1;
        w.pending_bytes += end - start;
        w.bytes_since_checkpoint += end - start;
        w.pending_since.get_or_insert_with(Instant::now);
        // The group's age bound is kept by the flusher thread, so no clock is read per append.
        let must_sync = match self.options.durability {
            Durability::Always => true,
            Durability::Group(g) => w.pending_appends >= g.appends_max || w.pending_bytes >= g.bytes_max,
            Durability::Never => false,
        };
        let always = matches!(self.options.durability, Durability::Always);
        if always {
            // Durable before visible: a reader never sees an event that a failed sync could still lose.
            self.sync_frames(w)?;
        }
        w.map.publish_verified(end);
        if always {
            // Before the head: a reader in another process that loads the head, then this word, finds the
            // batch durable in the same look.
            let events: u64 = batch.streams.iter().map(|s| s.events.len() as u64).sum();
            self.publish_durable(w.next_position + events);
        }
        self.publish_head(Head { seq: w.seg_seq, end });
        self.index_batch(w, &offsets, batch, plan, out);
        w.offsets = offsets;
        if always {
            // SeqCst, as `committed`: a durable waiter registers, then loads it (see `notify`).
            self.durable.store(w.next_position, Ordering::SeqCst);
        }
        self.notify();
        self.write_finished_slot(w)?;
        if must_sync && !always {
            self.hand_off_group(w);
        }
        // Each checkpoint writes the whole file (lists that did not change are copied, not encoded again, but
        // every byte is written), so the gap between two grows with it (at least four times the last
        // checkpoint's size): checkpoints write at most a quarter of the log's own bytes, and open still
        // scans a bounded tail.
        let due = self.options.checkpoint_every_bytes.max(w.last_checkpoint_bytes.saturating_mul(4));
        if self.options.checkpoint_every_bytes > 0 && w.bytes_since_checkpoint >= due {
            // The append is already committed; a failed checkpoint is reported but loses nothing.
            self.checkpoint_locked(w)?;
        }
        Ok(())
    }

    /// Adds a published batch to the index (its frames at `offsets`, in order), reports each stream's result
    /// to `out`, and moves the committed watermark.
    fn index_batch(
        &self,
        w: &mut Writer,
        offsets: &[(u64, u64)],
        batch: &Batch<'_>,
        plan: &[u64],
        out: &mut dyn FnMut(Appended),
    ) {
        let mut ix = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut frames = offsets;
        let mut position = w.next_position;
        for (s, &v0) in batch.streams.iter().zip(plan) {
            let (run, rest) = frames.split_at(s.events.len());
            frames = rest;
            let ids = s.events.iter().map(|e| e.event_id);
            let added = ix.add_run(w.seg, s.stream, v0, run, ids).is_ok();
            // Invariant: the versions were computed from the index under the writer lock.
            assert!(added, "stream versions follow the index");
            let (p0, n) = (position, s.events.len() as u64);
            for (p, e) in (p0..).zip(s.events) {
                ix.add_labels(p, e.event_type, e.tags.iter().copied());
            }
            position += n;
            out(Appended { positions: p0..p0 + n, versions: v0..v0 + n, deduplicated: false });
        }
        let befores = plan.get(batch.streams.len()..).unwrap_or_default();
        for (c, &before) in batch.controls.iter().zip(befores) {
            let (&(off, len), rest) = frames.split_first().expect("a frame per control");
            frames = rest;
            let deleted = matches!(c.control, crate::Control::Delete);
            ix.add_control(FrameAt { seg: w.seg, offset: off, len }, c.stream, before, deleted);
        }
        if let Some((name, p)) = batch.consumer {
            let &(off, len) = frames.first().expect("consumer frame");
            ix.add_consumer(FrameAt { seg: w.seg, offset: off, len }, name, p, batch.delete_consumer);
        }
        w.next_position = position;
        self.committed.store(position, Ordering::SeqCst);
    }

    /// Syncs the active segment's frames (not the slot); poisons on failure.
    pub(super) fn sync_frames(&self, w: &mut Writer) -> Result<()> {
        // Never two syncs of one file at once (src/store/group_sync.rs).
        self.group_sync.wait_idle();
        if w.synced_end == w.end && w.pending_since.is_none() {
            return Ok(());
        }
        if let Err(e) = sync_segment(w, w.end) {
            let path = w.map.map().path().to_path_buf();
            return self.poison(Error::io("sync segment", path, e));
        }
        w.synced_end = w.end;
        w.pending_appends = 0;
        w.pending_bytes = 0;
        w.pending_since = None;
        // Record the new durable point; the slot itself reaches disk with the next sync.
        let slot =
            DurableSlot { seq: w.slot.seq + 1, durable_end: w.end, next_position: w.next_position, flags: 0 };
        self.write_slot(w, slot)
    }

    pub(super) fn write_slot(&self, w: &mut Writer, slot: DurableSlot) -> Result<()> {
        let path = w.map.map().path().to_path_buf();
        let written = if w.always_direct {
            sys::write_at(&w.file, &path, slot.file_offset(), &slot.encode())
        } else {
            w.map.write_header(slot.file_offset(), &slot.encode())
        };
        match written {
            Ok(()) => {
                w.slot = slot;
                Ok(())
            }
            Err(e) => self.poison(Error::io("write durable slot", path, e)),
        }
    }

    pub(super) fn sync_locked(&self, w: &mut Writer) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        self.sync_frames(w)?;
        self.set_durable(w.next_position);
        Ok(())
    }

    /// After a sync: moves the durable watermark, publishes it to readers in other processes and wakes the
    /// threads that wait for it (durable-only subscriptions).
    /// Never moves the watermark back: the group-commit thread may finish an older group's sync after the
    /// writer synced a newer one.
    pub(super) fn set_durable(&self, position: u64) {
        // SeqCst, as `committed`: a durable waiter registers, then loads it (see `notify`).
        self.durable.fetch_max(position, Ordering::SeqCst);
        self.publish_durable(position);
        self.notify();
    }

    /// The group-commit thread: syncs a full group's frames (without the writer lock; the writer appends on
    /// meanwhile), then moves the durable watermark. A failure poisons the store; the next append reports it.
    pub(super) fn run_group_sync(&self, job: group_sync::Job) {
        match job.map.flush_range(0, job.end) {
            Ok(()) => {
                let gate = self.group_sync.gate();
                // A store poisoned meanwhile (by a failed write or sync of the writer) stays where it was.
                if !self.poisoned.load(Ordering::Acquire) {
                    self.set_durable(job.next_position);
                }
                drop(gate);
                self.group_sync.done(Ok(job));
            }
            Err(e) => {
                let gate = self.group_sync.gate();
                let first = !self.poisoned.swap(true, Ordering::AcqRel);
                // Reported by the writer's next call, unless the store was poisoned (and reported) already.
                let failure = first.then(|| Error::io("sync segment", job.map.path().to_path_buf(), e));
                self.group_sync.done(Err(failure));
                drop(gate);
                // Nothing more is synced here (the thread ends): release whoever waits for a hand-off.
                self.group_sync.stop();
            }
        }
    }

    /// Hands the full group's sync to the group-commit thread (`src/store/group_sync.rs`); waits only for the
    /// previous group's sync, if it is still running.
    fn hand_off_group(&self, w: &mut Writer) {
        w.pending_appends = 0;
        w.pending_bytes = 0;
        w.pending_since = None;
        let job = group_sync::Job {
            map: Arc::clone(w.map.map()),
            seq: w.seg_seq,
            end: w.end,
            next_position: w.next_position,
        };
        self.group_sync.hand_off(job);
    }

    /// Writes the durable slot of a group sync the group-commit thread finished, if the writer is still in its
    /// segment and has not synced past it since. The slot reaches disk with the next sync, as every slot does.
    pub(super) fn write_finished_slot(&self, w: &mut Writer) -> Result<()> {
        let Some(job) = self.group_sync.take_finished() else { return Ok(()) };
        if job.seq != w.seg_seq || job.end <= w.synced_end {
            return Ok(());
        }
        w.synced_end = job.end;
        let slot = DurableSlot {
            seq: w.slot.seq + 1,
            durable_end: job.end,
            next_position: job.next_position,
            flags: 0,
        };
        self.write_slot(w, slot)
    }

    /// Replaces a CLEAN (or, after an operator's `TruncateCorruption` open, SEALED) slot with a plain one and
    /// syncs it before any new frame is stored, so that such a slot on disk never hides frames written after
    /// it.
    pub(super) fn mark_dirty(&self, w: &mut Writer) -> Result<()> {
        // A clean close gave the unused tail's blocks back: reserve them again before a frame is stored
        // there, so a full disk is an error now and never a SIGBUS on a store through the map.
        let path = w.map.map().path().to_path_buf();
        let cap = w.map.map().len();
        let file = sys::open(&path, true).map_err(|e| Error::io("open segment", &path, e))?;
        sys::reserve(&file, &path, cap)
            .map_err(|e| Error::io("reserve the segment's tail again", &path, e))?;
        let slot = DurableSlot { seq: w.slot.seq + 1, flags: 0, ..w.slot };
        self.write_slot(w, slot)?;
        self.sync_header(w)?;
        w.clean_on_disk = false;
        Ok(())
    }

    /// Syncs the active segment's header (its durable slots); poisons on failure.
    pub(super) fn sync_header(&self, w: &mut Writer) -> Result<()> {
        self.group_sync.wait_idle();
        match sync_segment(w, SEGMENT_HEADER_LEN) {
            Ok(()) => Ok(()),
            Err(e) => self.poison(Error::io("sync segment header", w.map.map().path().to_path_buf(), e)),
        }
    }

    /// Seals the active segment (synced in full) and starts the next one.
    ///
    /// Order: frames and a slot naming the segment's end are made durable; the next segment is created
    /// (durable, under a name no other segment has: its sequence number is one more); then a `SEALED` slot is
    /// written and synced, the evidence that a successor exists, so that losing it later is corruption and
    /// not a silently shorter log. A crash between the last two steps leaves a successor and no `SEALED`
    /// slot, which open accepts (the successor is there).
    pub(super) fn roll(&self, w: &mut Writer) -> Result<()> {
        self.sync_locked(w)?;
        // A slot naming exactly this end (the sync above may have had nothing to do, and a slot read at open
        // can name less than what recovery kept), durable before the successor exists: open walks a sealed
        // segment to exactly its slot's end.
        let s = w.slot;
        if (s.durable_end, s.next_position, s.flags) != (w.end, w.next_position, 0) {
            let end =
                DurableSlot { seq: s.seq + 1, durable_end: w.end, next_position: w.next_position, flags: 0 };
            self.write_slot(w, end)?;
        }
        self.sync_header(w)?;
        let cap = self.options.segment_size_bytes;
        let Some(seq) = w.seg_seq.checked_add(1) else {
            return Err(Error::InvalidArgument("the log has used every segment sequence number".into()));
        };
        let name = SegmentName { base: w.next_position, seq };
        let (seg, map) = match Segment::create(&self.dir, self.log_id, name, cap) {
            Ok(made) => made,
            // A half-made segment that could not be removed would claim the positions the next append writes
            // into the current segment, and the log would no longer open: write nothing until a reopen.
            Err(e) if self.dir.join(segment_file_name(name.base, name.seq)).exists() => {
                return self.poison(e)
            }
            Err(e) => return Err(e),
        };
        let sealed = DurableSlot { seq: w.slot.seq + 1, flags: SLOT_FLAG_SEALED, ..w.slot };
        self.write_slot(w, sealed)?;
        self.sync_header(w)?;
        let slot_index = self.segments.push(Arc::clone(&seg.map))?;
        {
            let mut ix = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The sealed segment's offsets never grow again: drop the Vec's growth slack.
            ix.seal_last_segment();
            ix.push_segment(SegIndex::new(w.next_position, seq, SEGMENT_HEADER_LEN));
            debug_assert_eq!(ix.segments().len(), slot_index + 1);
        }
        w.seg = slot_index;
        w.seg_seq = seq;
        w.seg_base = w.next_position;
        w.map = map;
        w.file = seg.file;
        w.names.clear();
        w.end = SEGMENT_HEADER_LEN;
        w.synced_end = SEGMENT_HEADER_LEN;
        w.slot =
            DurableSlot { seq: 0, durable_end: SEGMENT_HEADER_LEN, next_position: w.next_position, flags: 0 };
        w.clean_on_disk = false;
        // Readers in other processes learn of the roll now: the sealed segment's end is in its slot.
        self.publish_head(Head { seq, end: SEGMENT_HEADER_LEN });
        Ok(())
    }

    /// Tells readers in other processes where the committed log ends (a writer's handle only).
    pub(super) fn publish_head(&self, at: Head) {
        if let HeadRole::Publisher(p) = &self.head {
            p.publish(at);
        }
    }

    /// Tells readers in other processes that every event below `position` is durable (a writer's handle only).
    pub(super) fn publish_durable(&self, position: u64) {
        if let HeadRole::Publisher(p) = &self.head {
            p.publish_durable(position);
        }
    }

    pub(super) fn checkpoint_locked(&self, w: &mut Writer) -> Result<()> {
        // The log first: a checkpoint must never describe events that are not durable.
        self.sync_locked(w)?;
        let encoded = encode_checkpoint_parts(&self.read_index(), self.log_id);
        let encoded = match encoded {
            Ok(e) => e,
            Err(stale) => {
                self.rebuild_index_locked(stale.reason)?;
                encode_checkpoint_parts(&self.read_index(), self.log_id).map_err(|s| {
                    Error::corrupt(self.dir.join(CHECKPOINT_FILE), 0, Corruption::CheckpointList(s.reason))
                })?
            }
        };
        sys::write_parts_atomically(&self.dir, CHECKPOINT_FILE, &encoded.parts())
            .map_err(|e| Error::io("write checkpoint", self.dir.join(CHECKPOINT_FILE), e))?;
        // Opened before the index is locked, so readers wait only for the walk over the lists.
        if let Some(source) = open_written(&encoded, self.dir.join(CHECKPOINT_FILE)) {
            let mut ix = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            adopt_checkpoint(&mut ix, &encoded, source);
        }
        w.bytes_since_checkpoint = 0;
        w.last_checkpoint_bytes = encoded.len();
        Ok(())
    }

    pub(super) fn close(&self) -> Result<()> {
        if self.abandoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut guard = match self.lock_writer() {
            Ok(g) => g,
            Err(Error::Poisoned) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(w) = guard.as_mut() else { return Ok(()) };
        if w.bytes_since_checkpoint > 0 || !self.dir.join(CHECKPOINT_FILE).exists() {
            self.checkpoint_locked(w)?;
        } else {
            self.sync_locked(w)?;
        }
        if !w.clean_on_disk {
            let slot = DurableSlot {
                seq: w.slot.seq + 1,
                durable_end: w.end,
                next_position: w.next_position,
                flags: SLOT_FLAG_CLEAN,
            };
            self.write_slot(w, slot)?;
            self.sync_header(w)?;
            w.clean_on_disk = true;
        }
        release_tail(w);
        Ok(())
    }
}

/// Makes the active segment's bytes below `end` durable: `fdatasync` of the file for direct writes (which
/// never stored through the map), else `msync` of the map's range.
fn sync_segment(w: &Writer, end: u64) -> std::io::Result<()> {
    if w.always_direct {
        sys::sync_file(&w.file, w.map.map().path())
    } else {
        w.map.map().flush_range(0, end)
    }
}

/// Writes the definition of a name at `*at` and moves `*at` past it; `None` if it does not fit.
fn define(w: &mut Writer, at: &mut u64, what: Defined<'_>) -> Option<u32> {
    let offset = u32::try_from(*at).ok()?;
    let (sort, value, name) = what.parts();
    let place = FramePlace { seq: w.seg_seq, offset: *at };
    let len = encode_name(sort, value, name, place, tail(&mut w.map, &mut w.buf, (w.end, *at, w.direct)))?;
    *at += len;
    w.names.defined(what, offset);
    Some(offset)
}

/// The fields of one event frame, defining its type and tags first where the segment has not (the tags'
/// offsets go to `w.tag_defs`). `version_position` is its stream version and global position. `None` if a
/// definition does not fit or a delta does not fit its field.
fn event_fields<'e>(
    w: &mut Writer,
    at: &mut u64,
    stream: StreamDef,
    e: &NewEvent<'e>,
    (version, position): (u64, u64),
    now: i64,
) -> Option<EventFields<'e>> {
    let type_def = match w.names.event_type(e.event_type, e.schema_version) {
        Some(d) => d,
        None => define(w, at, Defined::Type(e.event_type, e.schema_version))?,
    };
    w.tag_defs.clear();
    for t in e.tags {
        let d = match w.names.tag(t) {
            Some(d) => d,
            None => define(w, at, Defined::Tag(t))?,
        };
        w.tag_defs.push(d);
    }
    Some(EventFields {
        stream_def: stream.offset,
        type_def,
        version_delta: u32::try_from(version - stream.base).ok()?,
        position_delta: u32::try_from(position - w.seg_base).ok()?,
        timestamp_micros: e.timestamp_micros.unwrap_or(now),
        event_id: e.event_id,
        tag_defs: &[],
        metadata: e.metadata,
        payload: e.payload,
    })
}

/// After a clean close: the blocks preallocated past the last frame go back to the file system (the
/// file keeps its length; `mark_dirty` takes them back before the next write). Best effort: a failure
/// costs disk space, never data, so it is not reported.
fn release_tail(w: &Writer) {
    let path = w.map.map().path().to_path_buf();
    let from = w.end.next_multiple_of(4096);
    if let Ok(file) = sys::open(&path, true) {
        let _ = sys::release_blocks(&file, &path, from, w.map.map().len());
    }
}
