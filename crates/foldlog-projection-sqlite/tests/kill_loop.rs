//! The projector under `kill -9`: its read model counts every event exactly once, whenever it dies.
//!
//! Method: the test process holds a bank store writable and writes 8,000 events over 300 accounts (and a few
//! other streams, which the projector must skip), then starts the projector binary as a child process on it,
//! read-only, SIGKILLs it after a random 1–80 ms (while it opens, mid-batch, mid-commit, or idle), starts it
//! again, and so on, 40 times, while a writer thread appends 12,000 more events live, one append at a time, a
//! tenth of a millisecond apart (so the projector mostly has work when it dies). After every kill the read
//! model must equal the fold of the log up to the position it saved (a batch is never half counted, nor
//! counted twice) and the saved position must not have gone back. Then the projector runs with `--until` the
//! last position and exits by itself, and the read model must equal the fold of the whole log, checked two
//! ways: the fold of `read_all(0)` here, and every account loaded through the repository (the aggregate's own
//! fold); the saved position must be the last position.
//!
//! `FOLDLOG_SEED` replays the workload and the kill delays (not the scheduler's timing). `--nocapture` shows
//! where the kills landed.

#![cfg(unix)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_same, fold_log, projector, read_model, seed, Bank};
use foldlog::{Repository, Store};
use foldlog_bank::Account;
use foldlog_testkit::Rng;

const ACCOUNTS: usize = 300;
const EVENTS_BEFORE: usize = 8_000;
const EVENTS_LIVE: usize = 12_000;
const KILLS: usize = 40;
const WRITE_PAUSE: Duration = Duration::from_micros(100);
const SIGKILL: i32 = 9;

#[test]
fn every_event_counted_once_across_kill_9() {
    let started = Instant::now();
    let seed = seed(0x5eed_9b0b);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, db) = (dir.path().join("store"), dir.path().join("read-model.db"));
    let store = Store::open(&store_dir).unwrap();
    let mut bank = Bank::new(ACCOUNTS);
    bank.write(&store, &mut rng, EVENTS_BEFORE);

    let mut saved_at_kill = Vec::with_capacity(KILLS);
    let mut kills = Kills::default();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut rng = Rng::new(seed ^ 0x11fe);
            let mut written = 0;
            // One append (1–3 events) at a time, a little apart: each commit of the projector finds a few
            // new events waiting, so it is mostly busy (reading, folding, committing) when it is killed.
            while written < EVENTS_LIVE {
                written += bank.write(&store, &mut rng, 1);
                std::thread::sleep(WRITE_PAUSE);
            }
        });
        let mut last_saved = None;
        for cycle in 0..KILLS {
            let child = projector(&store_dir, &db, None).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
            let mut child = child.unwrap();
            let delay = Duration::from_millis(1 + rng.below(80));
            std::thread::sleep(delay);
            let head = store.head();
            let out = kill(&mut child);
            assert_eq!(
                out.status.signal(),
                Some(SIGKILL),
                "cycle {cycle}: the projector ended before it was killed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let (balances, saved) = read_model(&db);
            assert!(
                saved >= last_saved,
                "cycle {cycle}: the saved position went back from {last_saved:?} to {saved:?}"
            );
            let context = format!("cycle {cycle} (killed after {delay:?}, saved {saved:?})");
            assert_same(&balances, &fold_log(&store, saved), &context);
            if !String::from_utf8_lossy(&out.stderr).contains("from position") {
                kills.in_open += 1;
            } else if saved < head {
                kills.behind += 1;
            } else {
                kills.caught_up += 1;
            }
            saved_at_kill.push(saved);
            last_saved = saved;
        }
        writer.join().unwrap();
    });

    let last = store.head().unwrap();
    let out = finish(projector(&store_dir, &db, Some(last)), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "the last run failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (balances, saved) = read_model(&db);
    assert_eq!(saved, Some(last), "the saved position is the last event's");
    let fold = fold_log(&store, Some(last));
    assert_same(&balances, &fold, "the read model against the fold of the whole log");
    let repo: Repository<'_, Account> = Repository::new(&store);
    for root in &bank.accounts {
        let stream = Repository::<Account>::stream_id(root.id());
        let loaded = repo.get(root.id()).unwrap();
        let expected = (loaded.version() > 0).then(|| (loaded.transactions as i64, loaded.balance));
        assert_eq!(balances.get(&stream).copied(), expected, "{stream} against its aggregate");
    }
    let counted: i64 = balances.values().map(|(events, _)| events).sum();
    println!(
        "{KILLS} kills: {} while it opened the store and the database, {} while it was behind the writer's \
         head, {} once it had caught up; saved positions at the kills: {saved_at_kill:?}; then {counted} \
         account events of the {} in the log counted once each, up to position {last}; {:.1?} in all",
        kills.in_open,
        kills.behind,
        kills.caught_up,
        last + 1,
        started.elapsed()
    );
}

/// Where the kills landed, roughly: the writer's head is read just before the kill, and the projector prints
/// a line once both are open.
#[derive(Default)]
struct Kills {
    in_open: usize,
    behind: usize,
    caught_up: usize,
}

/// SIGKILLs the child (`Child::kill` sends SIGKILL on Unix) and collects what it printed to stderr.
fn kill(child: &mut Child) -> Output {
    // An error here means it had already ended; its status says how.
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_end(&mut pipe, &mut stderr).unwrap();
    }
    Output { status, stdout: Vec::new(), stderr }
}

/// Runs the projector to its end, killing it (and failing) after `limit`.
fn finish(mut cmd: std::process::Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let out = kill(&mut child);
            panic!("the projector did not finish in {limit:?}:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}
