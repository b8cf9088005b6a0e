//! The projector's command line without crashes: a second run with nothing new changes nothing, a run resumes
//! after the saved position, an event the writer has not synced is not counted until it is, and bad input
//! ends with a message and a non-zero exit code, never a panic.
//!
//! Method: a bank store written and closed here, the binary run on it to `--until` a position, the read model
//! read back through SQLite and compared with the fold of the log (and, for a rerun, with itself, byte for
//! byte in the database file).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{assert_same, fold_log, projector, read_model, seed, Bank};
use foldlog::{ExpectedVersion, NewEvent, Store};
use foldlog_testkit::Rng;

/// Runs the projector to its end (it exits by itself with `--until` reached or on an error).
fn run(store: &Path, db: &Path, until: Option<u64>) -> Output {
    projector(store, db, until).output().unwrap()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// Asserts an exit with `code` and a one-line reason containing `says`, without a panic.
fn refused(out: &Output, code: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "expected {says:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn bank_store(dir: &Path, events: usize) -> Store {
    let store = Store::open(dir).unwrap();
    Bank::new(40).write(&store, &mut Rng::new(seed(7)), events);
    store
}

#[test]
fn a_second_run_with_nothing_new_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, db) = (dir.path().join("store"), dir.path().join("read-model.db"));
    let store = bank_store(&store_dir, 2_000);
    let last = store.head().unwrap();
    store.close().unwrap();

    ok(&run(&store_dir, &db, Some(last)));
    let first = read_model(&db);
    let bytes = std::fs::read(&db).unwrap();
    let store = Store::open_with(&store_dir, foldlog::Options::default().read_only(true)).unwrap();
    assert_eq!(first.1, Some(last));
    assert_same(&first.0, &fold_log(&store, Some(last)), "the first run");

    ok(&run(&store_dir, &db, Some(last)));
    assert_eq!(read_model(&db), first, "the rerun changed the read model");
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "the rerun wrote to the database");
}

#[test]
fn a_run_resumes_after_the_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, db) = (dir.path().join("store"), dir.path().join("read-model.db"));
    let store = bank_store(&store_dir, 1_000);
    let middle = store.head().unwrap() / 2;
    ok(&run(&store_dir, &db, Some(middle)));
    let (balances, saved) = read_model(&db);
    assert_eq!(saved, Some(middle), "stopped exactly at --until");
    assert_same(&balances, &fold_log(&store, Some(middle)), "up to --until");
    // The last event is another stream's: skipped, and still the saved position.
    store.append("audit-1", ExpectedVersion::Any, &[NewEvent::new("Noted", b"")]).unwrap();
    let last = store.head().unwrap();
    ok(&run(&store_dir, &db, Some(last)));
    let (balances, saved) = read_model(&db);
    assert_eq!(saved, Some(last), "the skipped event's position is saved");
    assert_same(&balances, &fold_log(&store, Some(last)), "resumed");
}

/// A projector following the store until it is dropped (killed then, also when the test fails, so that no
/// projector outlives its test).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A read model outlives a machine crash, and an event the writer has committed but not synced may not: the
/// projector counts only what the writer has synced (`durable_only`), and the rest once it is synced.
#[test]
fn an_event_the_writer_has_not_synced_is_not_projected() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, db) = (dir.path().join("store"), dir.path().join("read-model.db"));
    let options = foldlog::Options::default().durability(foldlog::Durability::Never);
    let store = Store::open_with(&store_dir, options).unwrap();
    let mut bank = Bank::new(20);
    let mut rng = Rng::new(seed(11));
    bank.write(&store, &mut rng, 300);
    store.sync().unwrap();
    let synced = store.head().unwrap();
    bank.write(&store, &mut rng, 100);
    let last = store.head().unwrap();
    assert!(last > synced);

    let following = Killed(projector(&store_dir, &db, None).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_model(&db).1.is_none_or(|saved| saved < synced) {
        assert!(Instant::now() < deadline, "the synced events were not projected: {:?}", read_model(&db).1);
        std::thread::sleep(Duration::from_millis(5));
    }
    // Committed, readable by the projector's handle, but not synced: not counted, however long it waits.
    std::thread::sleep(Duration::from_millis(200));
    let (balances, saved) = read_model(&db);
    drop(following);
    assert_eq!(saved, Some(synced), "the projector counted events the writer has not synced");
    assert_same(&balances, &fold_log(&store, Some(synced)), "up to the synced position");

    store.sync().unwrap();
    ok(&run(&store_dir, &db, Some(last)));
    let (balances, saved) = read_model(&db);
    assert_eq!(saved, Some(last));
    assert_same(&balances, &fold_log(&store, Some(last)), "once synced");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, db) = (dir.path().join("store"), dir.path().join("read-model.db"));
    let exe = env!("CARGO_BIN_EXE_projection_sqlite");
    let usage = |args: &[&str]| std::process::Command::new(exe).args(args).output().unwrap();
    refused(&usage(&[]), 2, "STORE_DIR and DB_PATH are required");
    refused(&usage(&["s"]), 2, "STORE_DIR and DB_PATH are required");
    refused(&usage(&["s", "d", "x"]), 2, "unexpected argument x");
    refused(&usage(&["s", "d", "--until"]), 2, "--until needs a POSITION");
    refused(&usage(&["s", "d", "--until", "-1"]), 2, "--until takes a position");
    refused(&usage(&["s", "d", "--until", "1", "--until", "2"]), 2, "--until given twice");
    refused(&usage(&["s", "d", "--follow"]), 2, "unknown option --follow");
    assert!(usage(&["--help"]).status.success());

    refused(&run(&store_dir, &db, Some(0)), 1, "opening the store");
    let store = bank_store(&store_dir, 100);
    let last = store.head().unwrap();
    refused(&run(&store_dir, &dir.path().join("no-such-dir/db"), Some(0)), 1, "opening the read model");
    std::fs::write(&db, b"not a database, but long enough to look like a file header of one").unwrap();
    refused(&run(&store_dir, &db, Some(0)), 1, "opening the read model");
    std::fs::remove_file(&db).unwrap();

    // A read model of a longer log than this store: refused, not silently counted again.
    let other = dir.path().join("other");
    let longer = bank_store(&other, 200);
    ok(&run(&other, &db, Some(longer.head().unwrap())));
    refused(&run(&store_dir, &db, Some(last)), 1, "rebuild it from an empty database");
}
