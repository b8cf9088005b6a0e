//! The `foldlog` binary, run for real: nothing is deleted that foldlog did not create, a store in use is never
//! replaced, and every command behaves like a Unix tool (exit codes, closed pipes). Issue 10 parts 1 and 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_foldlog");

/// A small demo: enough to roll nothing but still write both stores.
const SMALL: [&str; 4] = ["--events", "2000", "--streams", "20"];

fn foldlog(cwd: &Path, args: &[&str]) -> Output {
    Command::new(EXE).args(args).current_dir(cwd).stdin(Stdio::null()).output().expect("run foldlog")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Every path under `dir` with its length and a hash of its bytes (`None` for a directory).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<(usize, u64)>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                let mut h = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(&bytes, &mut h);
                out.insert(rel, Some((bytes.len(), std::hash::Hasher::finish(&h))));
            }
        }
    }
    out
}

fn demo(cwd: &Path, dir: &str, extra: &[&str]) -> Output {
    let mut args = vec!["demo", "--dir", dir];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(extra);
    foldlog(cwd, &args)
}

#[test]
fn regression_demo_never_touches_a_sibling() {
    let parent = tempfile::tempdir().expect("tempdir");
    let bank = parent.path().join("bank");
    std::fs::create_dir(&bank).expect("mkdir");
    std::fs::write(bank.join("ledger.txt"), b"the user's ledger").expect("write");
    let before = tree(&bank);
    let out = demo(parent.path(), "x", &[]);
    assert!(out.status.success(), "demo failed: {}", text(&out));
    assert_eq!(tree(&bank), before, "the demo touched its sibling bank/");
}

#[test]
fn regression_demo_refuses_a_directory_it_did_not_create() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let x = cwd.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    std::fs::write(x.join("notes.txt"), b"keep me").expect("write");
    std::fs::write(cwd.path().join("next-to-it.txt"), b"and me").expect("write");
    let before = tree(cwd.path());
    for dir in ["x", "."] {
        for extra in [&[][..], &["--replace"][..]] {
            let out = demo(cwd.path(), dir, extra);
            assert!(!out.status.success(), "demo --dir {dir} {extra:?} was accepted: {}", text(&out));
            assert!(
                text(&out).contains("notes.txt") || dir == ".",
                "the refusal names the entry: {}",
                text(&out)
            );
            assert_eq!(tree(cwd.path()), before, "demo --dir {dir} {extra:?} changed files");
        }
    }
}

#[test]
fn regression_demo_refuses_a_foldlog_store_it_did_not_create() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let x = cwd.path().join("x");
    let store = foldlog::Store::open(&x).expect("create");
    store
        .append("precious", foldlog::ExpectedVersion::NoStream, &[foldlog::NewEvent::new("E", b"data")])
        .expect("append");
    store.close().expect("close");
    let before = tree(cwd.path());
    for extra in [&[][..], &["--replace"][..]] {
        let out = demo(cwd.path(), "x", extra);
        assert!(!out.status.success(), "{extra:?}: {}", text(&out));
        assert!(text(&out).contains("did not create"), "{}", text(&out));
        assert_eq!(tree(cwd.path()), before, "{extra:?}: the user's store was changed");
    }
}

#[test]
fn demo_replaces_its_own_stores_only_when_asked_and_only_when_all_is_its_own() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let first = demo(cwd.path(), "x", &[]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(cwd.path().join("x/bank").is_dir(), "the bank story lives inside the demo directory");
    let before = tree(cwd.path());
    let again = demo(cwd.path(), "x", &[]);
    assert!(!again.status.success(), "a named directory is replaced only with --replace");
    assert!(text(&again).contains("--replace"), "{}", text(&again));
    assert_eq!(tree(cwd.path()), before);
    let replaced = demo(cwd.path(), "x", &["--replace"]);
    assert!(replaced.status.success(), "{}", text(&replaced));

    // Anything foreign anywhere in it, inside the bank store's snapshots too: refused, nothing removed.
    let snapshots = cwd.path().join("x/bank/snapshots");
    let stream_dir = std::fs::read_dir(&snapshots).expect("the bank story writes snapshots").next();
    let stream_dir = stream_dir.expect("one stream directory").expect("entry").path();
    for foreign in
        [cwd.path().join("x/bank/notes.txt"), stream_dir.join("notes.txt"), cwd.path().join("x/y.txt")]
    {
        std::fs::write(&foreign, b"not the demo's").expect("write");
        let before = tree(cwd.path());
        let out = demo(cwd.path(), "x", &["--replace"]);
        assert!(!out.status.success(), "{} was not noticed: {}", foreign.display(), text(&out));
        assert!(text(&out).contains("notes.txt") || text(&out).contains("y.txt"), "{}", text(&out));
        assert_eq!(tree(cwd.path()), before, "{}: something was removed", foreign.display());
        std::fs::remove_file(&foreign).expect("clean up");
    }
}

#[test]
fn demo_twice_in_the_default_directory_just_works() {
    let cwd = tempfile::tempdir().expect("tempdir");
    for run in 0..2 {
        let out = foldlog(cwd.path(), &["demo", SMALL[0], SMALL[1], SMALL[2], SMALL[3]]);
        assert!(out.status.success(), "default run {run}: {}", text(&out));
    }
    let demo_dir = cwd.path().join("foldlog-data/demo");
    assert!(demo_dir.join("FOLDLOG-DEMO").is_file());
    std::fs::write(demo_dir.join("notes.txt"), b"mine").expect("write");
    let out = foldlog(cwd.path(), &["demo", SMALL[0], SMALL[1], SMALL[2], SMALL[3]]);
    assert!(!out.status.success(), "a foreign file in the default directory is refused too");
    assert_eq!(std::fs::read(demo_dir.join("notes.txt")).expect("survives"), b"mine");
}

#[test]
fn regression_demo_never_replaces_a_store_open_elsewhere() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let first = demo(cwd.path(), "x", &[]);
    assert!(first.status.success(), "{}", text(&first));
    for held in ["x", "x/bank"] {
        let store = foldlog::Store::open_with(
            cwd.path().join(held),
            foldlog::Options { create_in_non_empty: true, ..foldlog::Options::default() },
        )
        .expect("open the demo's store");
        let before = tree(cwd.path());
        let out = demo(cwd.path(), "x", &["--replace"]);
        assert!(!out.status.success(), "{held} is open, yet the demo ran: {}", text(&out));
        assert!(text(&out).contains("locked"), "an 'in use' error: {}", text(&out));
        assert_eq!(tree(cwd.path()), before, "{held}: files changed while the store was open");
        drop(store);
    }
}

#[test]
fn regression_a_second_demo_on_a_running_ones_directory_is_refused() {
    use std::io::BufRead;
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut first = Command::new(EXE)
        .args(["demo", "--dir", "x", "--events", "3000000", "--streams", "100"])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the first demo");
    let mut lines = std::io::BufReader::new(first.stdout.take().expect("stdout")).lines();
    let started = lines.next().expect("a first line").expect("read");
    assert!(started.starts_with("foldlog demo:"), "{started}");
    let second = demo(cwd.path(), "x", &["--replace"]);
    let still_running = first.try_wait().expect("poll").is_none();
    assert!(!second.status.success(), "the second demo ran: {}", text(&second));
    assert!(text(&second).contains("locked"), "an 'in use' error: {}", text(&second));
    assert!(
        still_running,
        "inconclusive: the first demo ended before the second was refused; raise --events"
    );
    let rest: Vec<String> = lines.map(|l| l.expect("read")).collect();
    assert!(first.wait().expect("wait").success(), "the first demo failed: {rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("reopened")), "the first demo finished its story: {rest:?}");
}
