//! Group commit's syncs, run beside the writer (`Durability::Group`).
//!
//! The append that fills a group (`appends_max` appends or `bytes_max` bytes) hands the sync of the active
//! segment up to its end to the group-commit thread and returns; the writer encodes the next group while the
//! disk writes this one. An inline sync makes every group wait for the disk, which is all the difference
//! between a group commit and the raw file's `write` + `fdatasync` baseline (ARCHITECTURE.md, "Write path").
//!
//! - At most one sync is in flight: the append that fills the next group waits for it first, so at most two
//!   groups are ever acknowledged and not yet durable.
//! - A finished sync moves the durable watermark at once (the frames are on disk). Its durable slot is written
//!   by the writer at its next append and reaches disk with the next sync, as every slot does; recovery keeps
//!   valid frames past a slot, so nothing durable depends on the slot.
//! - A failed sync poisons the store, as the age-bound sync always did: the next append reports it, and the
//!   durable watermark never covers what it did not write.
//! - A roll, `sync`, `checkpoint` and `close` sync on the writer's thread, after the sync in flight (if any)
//!   has finished: two syncs of one file at once could each miss the other's write-back error (Linux reports
//!   a write-back error to one sync call only), and the one that missed it would then call lost pages
//!   durable.
//! - Poisoning and moving the durable watermark take turns (`GroupSync::gate`): once the store is poisoned the
//!   watermark never moves again, whichever thread got there first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::Error;
use crate::map::SegmentMap;

/// One group's sync: the segment's frames below `end` (events below `next_position`).
pub(super) struct Job {
    pub map: Arc<SegmentMap>,
    /// The segment's sequence number: a finished job's slot is written only if the writer is still in it.
    pub seq: u32,
    pub end: u64,
    pub next_position: u64,
}

#[derive(Default)]
struct State {
    queued: Option<Job>,
    running: bool,
    /// The last finished job, until the writer writes its slot.
    finished: Option<Job>,
    /// The error of a failed sync, until the writer's next call reports it.
    failure: Option<Error>,
    stop: bool,
}

/// The hand-off between the writer and the group-commit thread.
#[derive(Default)]
pub(super) struct GroupSync {
    state: Mutex<State>,
    cv: Condvar,
    /// A finished job waits in `state`: lets the writer skip the lock on every other append.
    finished: AtomicBool,
    /// Held to poison the store, and by the group-commit thread to check that it is not poisoned and move the
    /// durable watermark.
    gate: Mutex<()>,
}

impl GroupSync {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// See the field `gate`.
    pub fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state, once no job is queued or running (or the thread has stopped).
    fn idle(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        while (st.queued.is_some() || st.running) && !st.stop {
            st = self.cv.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st
    }

    /// Queues `job` for the group-commit thread, after the sync in flight (if any) has finished.
    pub fn hand_off(&self, job: Job) {
        let mut st = self.idle();
        if !st.stop {
            st.queued = Some(job);
            self.cv.notify_all();
        }
    }

    /// Waits until no job is queued or running (the writer's view of what is durable is then whole).
    pub fn wait_idle(&self) {
        drop(self.idle());
    }

    /// Whether a job waits for the group-commit thread to take it.
    pub fn has_queued(&self) -> bool {
        self.lock().queued.is_some()
    }

    /// The finished job whose slot the writer has not written yet.
    pub fn take_finished(&self) -> Option<Job> {
        if !self.finished.load(Ordering::Acquire) {
            return None;
        }
        let mut st = self.lock();
        self.finished.store(false, Ordering::Release);
        st.finished.take()
    }

    /// The group-commit thread: the queued job (now running), waiting up to `tick` for one.
    pub fn next_job(&self, tick: Duration) -> Option<Job> {
        let mut st = self.lock();
        if st.queued.is_none() && !st.stop {
            st = self.cv.wait_timeout(st, tick).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        let job = st.queued.take().filter(|_| !st.stop)?;
        st.running = true;
        Some(job)
    }

    /// The group-commit thread: the running job is over, its sync done or failed (with the failure to report,
    /// if nobody reported one yet).
    pub fn done(&self, outcome: Result<Job, Option<Error>>) {
        let mut st = self.lock();
        st.running = false;
        match outcome {
            Ok(job) => {
                st.finished = Some(job);
                self.finished.store(true, Ordering::Release);
            }
            Err(e) => st.failure = e,
        }
        self.cv.notify_all();
    }

    /// The error of a failed sync that no call has reported yet (once; later calls see `Poisoned`).
    pub fn take_failure(&self) -> Option<Error> {
        self.lock().failure.take()
    }

    /// No more jobs: wakes the thread and any writer waiting to hand one off.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }
}
