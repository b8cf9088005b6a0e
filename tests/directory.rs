//! What `Store::open` may do to a directory: it never writes into a directory that is not a foldlog store
//! (unless asked to), a read-only open writes nothing anywhere, and a bad path is refused before anything is
//! touched. Issue 10 part 1 and issue 9 item 9b.

mod common;

use foldlog_testkit::dir_fingerprint as tree;
use std::path::PathBuf;

use common::{child_command, emit, spawn_retrying};
use foldlog::{Error, ExpectedVersion, NewEvent, Options, Store};

fn foreign_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"the user's own file").expect("write");
    std::fs::create_dir(dir.path().join("photos")).expect("mkdir");
    std::fs::write(dir.path().join("photos").join("cat.jpg"), b"\xff\xd8 not really").expect("write");
    dir
}

fn read_only() -> Options {
    Options::default().read_only(true).create_if_missing(false)
}

#[test]
fn regression_open_refuses_a_foreign_non_empty_directory() {
    let dir = foreign_dir();
    let before = tree(dir.path());
    match Store::open(dir.path()) {
        Err(Error::InvalidDirectory { path, reason }) => {
            assert_eq!(path, dir.path(), "the error names the directory");
            assert!(reason.contains("notes.txt") || reason.contains("photos"), "names an entry: {reason}");
        }
        Ok(_) => panic!("a log was created among the user's files"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    assert_eq!(tree(dir.path()), before, "nothing was written");
}

#[test]
fn regression_read_only_open_writes_nothing() {
    let empty = tempfile::tempdir().expect("tempdir");
    let foreign = foreign_dir();
    for dir in [empty.path(), foreign.path()] {
        let before = tree(dir);
        let r = Store::open_with(dir, read_only());
        assert!(matches!(r, Err(Error::InvalidDirectory { .. })), "{}: {:?}", dir.display(), r.err());
        assert_eq!(tree(dir), before, "{}: a read-only open wrote something", dir.display());
    }
}

#[test]
fn a_read_only_open_of_a_store_without_its_lock_file_creates_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("create");
    store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", b"x")]).expect("append");
    store.close().expect("close");
    std::fs::remove_file(dir.path().join("LOCK")).expect("a copied store may come without its LOCK");
    let before = tree(dir.path());
    let store = Store::open_with(dir.path(), read_only()).expect("read-only open");
    assert_eq!(store.read_all(0).count(), 1);
    assert_eq!(tree(dir.path()), before, "a read-only open wrote something");
    // The reader holds the directory, shared: a writer starts beside it (and makes the `LOCK` it needs),
    // while a tool that would remove the store is kept out until the reader is gone.
    let writer = Store::open(dir.path()).expect("a writer beside the reader");
    drop(writer);
    assert!(matches!(foldlog::StoreLock::acquire(dir.path()), Err(Error::Locked { .. })));
    drop(store);
    foldlog::StoreLock::acquire(dir.path()).expect("the reader is gone");
}

/// The child half of [`regression_open_empty_path_creates_nothing`]: opens `""` in its working directory.
#[test]
fn empty_path_child() {
    if std::env::var_os("FOLDLOG_EMPTY_PATH_CHILD").is_none() {
        return;
    }
    match Store::open("") {
        Ok(_) => emit("OPENED"),
        Err(e) => emit(&format!("REFUSED {e}")),
    }
}

#[test]
fn regression_open_empty_path_creates_nothing() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = spawn_retrying(
        child_command("empty_path_child").env("FOLDLOG_EMPTY_PATH_CHILD", "1").current_dir(cwd.path()),
    )
    .expect("spawn")
    .wait_with_output()
    .expect("child output");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("REFUSED"), "Store::open(\"\") must be refused: {said}");
    assert!(tree(cwd.path()).is_empty(), "the working directory was written: {:?}", tree(cwd.path()).keys());
}

#[test]
fn a_log_is_created_among_foreign_files_only_when_asked_and_they_survive() {
    let dir = foreign_dir();
    let before = tree(dir.path());
    let options = Options::default().create_in_non_empty(true);
    let store = Store::open_with(dir.path(), options).expect("asked to create here");
    store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", b"x")]).expect("append");
    store.close().expect("close");
    let after = tree(dir.path());
    for (path, content) in &before {
        assert_eq!(after.get(path), Some(content), "{} changed", path.display());
    }
    // Now it is a store: a plain open works and still leaves the user's files alone.
    let store = Store::open(dir.path()).expect("a store with foreign files next to it opens");
    assert_eq!(store.read_all(0).count(), 1);
}

#[test]
fn a_directory_holding_only_a_lock_file_counts_as_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("LOCK"), b"").expect("write");
    let store = Store::open(dir.path()).expect("LOCK alone is foldlog's own leftover");
    store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", b"x")]).expect("append");
}

#[test]
fn a_path_that_is_a_file_is_refused_and_left_alone() {
    let dir = foreign_dir();
    let file = dir.path().join("notes.txt");
    let before = tree(dir.path());
    for options in [Options::default(), read_only(), Options::default().create_in_non_empty(true)] {
        match Store::open_with(&file, options) {
            Err(Error::InvalidDirectory { path, .. }) => assert_eq!(path, file),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a file opened as a store"),
        }
    }
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn inspect_directory_sorts_entries_into_ours_and_foreign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("create");
    store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", b"x")]).expect("append");
    store.close().expect("close");
    std::fs::write(dir.path().join("notes.txt"), b"mine").expect("write");
    std::fs::create_dir_all(dir.path().join("snapshots").join("not-a-stream-hash")).expect("mkdir");
    let found = foldlog::inspect_directory(dir.path()).expect("inspect");
    assert!(found.has_segments);
    let mut foreign = found.foreign.clone();
    foreign.sort();
    assert_eq!(
        foreign,
        [dir.path().join("notes.txt"), dir.path().join("snapshots").join("not-a-stream-hash")],
        "foreign entries, inside snapshots/ too"
    );
    assert!(found.store_entries.contains(&dir.path().join("LOCK")));
    assert!(matches!(
        foldlog::inspect_directory(dir.path().join("nope")),
        Err(Error::InvalidDirectory { .. })
    ));
}

#[test]
fn removing_a_store_removes_only_its_files_and_never_while_it_is_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options::default().segment_size_bytes(4096);
    let store = Store::open_with(dir.path(), options).expect("create");
    for i in 0..100u32 {
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", &i.to_le_bytes())]).expect("append");
    }
    assert!(store.stats().segments > 1, "several segments");
    // While any handle has it open, the store cannot be locked for removal.
    assert!(matches!(foldlog::StoreLock::acquire(dir.path()), Err(Error::Locked { .. })));
    store.close().expect("close");
    let reader = Store::open_with(dir.path(), read_only()).expect("read-only");
    assert!(
        matches!(foldlog::StoreLock::acquire(dir.path()), Err(Error::Locked { .. })),
        "a reader holds it"
    );
    drop(reader);

    std::fs::write(dir.path().join("notes.txt"), b"mine").expect("write");
    std::fs::create_dir_all(dir.path().join("snapshots").join("keep")).expect("mkdir");
    std::fs::write(dir.path().join("snapshots").join("keep").join("x.snap"), b"mine too").expect("write");
    let lock = foldlog::StoreLock::acquire(dir.path()).expect("nobody has it open");
    let removal = lock.remove_store_files().expect("remove");
    assert!(removal.removed.len() > 2, "segments and checkpoint removed: {:?}", removal.removed);
    drop(lock);
    let left: Vec<PathBuf> = tree(dir.path()).into_keys().collect();
    assert_eq!(
        left,
        [
            PathBuf::from("LOCK"),
            PathBuf::from("notes.txt"),
            PathBuf::from("snapshots"),
            PathBuf::from("snapshots/keep"),
            PathBuf::from("snapshots/keep/x.snap")
        ],
        "only foldlog's files went"
    );
    assert_eq!(std::fs::read(dir.path().join("notes.txt")).expect("read"), b"mine");
    let mut kept = removal.kept;
    kept.sort();
    assert_eq!(kept, [dir.path().join("notes.txt"), dir.path().join("snapshots").join("keep")]);
}
