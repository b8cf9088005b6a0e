//! T3: I/O-error injection, fail-at-N (F5 fsync failure, F6 out of space, F11 errors during recovery).
//!
//! Every system call foldlog makes on its data directory goes through `foldlog::io`, which has a failpoint:
//! `io::testing::arm(FaultPlan { nth, persistent, errno, .. })` makes the Nth call under a directory fail
//! with a real OS error, once (transient) or from then on (persistent). The calls themselves are real, on
//! real files; nothing is faked.
//!
//! For each workload (appends with roll-overs and checkpoints from an empty directory; and recovery of a
//! crashed directory with a torn tail, a stale checkpoint temp file, then more appends), each durability mode,
//! EIO and ENOSPC, transient and persistent: fail call N = 1, 2, ... until a run completes without reaching
//! call N. Each run must show:
//!
//! - the failing operation returns `Err`, never panics;
//! - a failed sync (of the segment, its durable slot or its header) poisons the store: every later call
//!   returns `Error::Poisoned`, nothing more is acknowledged and `durable_position()` does not move;
//! - other failures (a segment that could not be created, a checkpoint that could not be written) leave the
//!   store usable, and later appends are acknowledged as usual;
//! - after disarming, the directory opens and passes the oracle with K = every append that returned `Ok`
//!   (no power was lost, so the page cache holds them all).
//!
//! A last test fills a real, tiny tmpfs (in a private mount namespace, when `unshare -rm` is available) until
//! preallocating a segment fails with ENOSPC: an error, never a SIGBUS.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{check_dir, check_store, child_command, emit, random_counts, Model, Rng, ScratchDir, Verdict};
use foldlog::io::{testing, FaultPlan};
use foldlog::{Durability, Error, GroupCommit, Options, Store};
use foldlog_testkit::{open_retrying, segment_frames};

fn options(mode: &str) -> Options {
    let durability = match mode {
        "always" => Durability::Always,
        "group" => Durability::Group(
            GroupCommit::default().appends_max(3).bytes_max(2 << 10).delay_max(Duration::from_secs(3600)),
        ),
        _ => Durability::Never,
    };
    Options::default().segment_size_bytes(4096).durability(durability).checkpoint_every_bytes(5 << 10)
}

/// The starting point of a workload: files (written to a fresh directory), the model and K.
#[derive(Clone)]
struct Base {
    files: Vec<(String, Vec<u8>)>,
    model: Model,
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("read")))
        .collect();
    out.sort();
    out
}

/// A crashed directory: some history (rolled, checkpointed), then unsynced appends, copied while the store
/// was still open (a `kill -9` image), the last batch's commit frame cut off (a torn tail), and a stale
/// checkpoint temp file.
fn crashed_base(mode: &str) -> Base {
    let dir = ScratchDir::new("t3-base");
    let mut model = Model::new(0xBA5E);
    let mut rng = Rng::new(11);
    let store = Store::open_with(dir.path(), options(mode).durability(Durability::Never)).expect("open");
    for _ in 0..20 {
        let plan = model.plan(&random_counts(&mut rng, 3), None);
        model.append(&store, &plan).expect("append");
    }
    store.checkpoint().expect("checkpoint");
    for _ in 0..3 {
        let plan = model.plan(&random_counts(&mut rng, 3), None);
        model.append(&store, &plan).expect("append");
    }
    let plan = model.plan(&[("torn".to_owned(), 3)], None);
    model.append(&store, &plan).expect("append");
    let mut files = files_of(dir.path());
    drop(store);
    let last = files.iter_mut().rfind(|(n, _)| n.ends_with(".seg")).expect("a segment");
    let frames = segment_frames(&last.1);
    let (off, len) = *frames.last().expect("frames");
    last.1[off..off + len].fill(0);
    files.push(("index.ckpt.tmp-1-1".to_owned(), b"half a checkpoint".to_vec()));
    let n = model.events.len() - 3;
    model.truncate(n);
    Base { files, model }
}

/// What one run did.
#[derive(Default, Debug)]
struct Run {
    /// Calls counted by the failpoint, and failed.
    seen: u64,
    failed: u64,
    errors: u64,
    poisoned: bool,
}

/// Runs the workload with the failpoint armed; checks the store's behaviour around the failure, then the
/// directory with the oracle.
fn run_once(base: &Base, mode: &str, plan: &FaultPlan, seed: u64) -> Result<Run, String> {
    let dir = plan.dir.clone();
    for (name, bytes) in &base.files {
        std::fs::write(dir.join(name), bytes).expect("write base");
    }
    let opts = options(mode);
    let mut model = base.model.clone();
    let mut acked = model.events.len();
    let mut run = Run::default();
    testing::arm(plan.clone());
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let store = match Store::open_with(&dir, opts.clone()) {
            Ok(s) => s,
            Err(Error::Io { .. }) => {
                run.errors += 1;
                return Ok(());
            }
            Err(e) => return Err(format!("open failed with a non-I/O error: {e}")),
        };
        let mut rng = Rng::new(seed);
        // After a failed sync the store must be poisoned; after any other I/O error it may be (a half-made
        // segment that could not be removed); once poisoned it stays so.
        let mut must_be_poisoned = false;
        let mut may_be_poisoned = false;
        let mut poisoned_at: Option<u64> = None;
        for step in 0..24 {
            let result = match step {
                9 if mode != "always" => store.sync(),
                15 => store.checkpoint(),
                _ => {
                    // A batch that failed stays in `A` (its bytes may be in the map). Once a later append
                    // can succeed, the store did not keep it: cut the model back to what the store holds.
                    if !must_be_poisoned {
                        model.truncate(store.next_position() as usize);
                    }
                    let consumer = rng.chance(1, 5).then(|| ("projector".to_owned(), 1000 + step));
                    let p = model.plan(&random_counts(&mut rng, 3), consumer);
                    let r = model.append(&store, &p);
                    if matches!(r, Err(ref e) if !matches!(e, Error::Poisoned)) {
                        model.push(&p);
                    }
                    r
                }
            };
            match result {
                Ok(()) if must_be_poisoned => {
                    return Err(format!("step {step} succeeded after a failed sync"));
                }
                Ok(()) => acked = acked.max(store.next_position() as usize),
                Err(Error::Poisoned) => {
                    run.poisoned = true;
                    if !may_be_poisoned {
                        return Err(format!("step {step}: Poisoned without a failure before"));
                    }
                    must_be_poisoned = true;
                }
                Err(Error::Io { op, .. }) => {
                    run.errors += 1;
                    may_be_poisoned = true;
                    if must_be_poisoned {
                        return Err(format!(
                            "step {step}: {op} failed on a poisoned store instead of Poisoned"
                        ));
                    }
                    if matches!(op, "sync segment" | "write durable slot" | "sync segment header") {
                        must_be_poisoned = true;
                    }
                }
                Err(e) => return Err(format!("step {step}: unexpected error {e}")),
            }
            // A sync that succeeded earlier in the failing call may have moved it; nothing after may.
            match poisoned_at {
                Some(d) if store.durable_position() != d => {
                    return Err(format!("step {step}: durable position moved after a failed sync"));
                }
                None if must_be_poisoned => poisoned_at = Some(store.durable_position()),
                _ => {}
            }
        }
        match store.close() {
            Ok(()) => {}
            Err(Error::Io { .. }) => run.errors += 1,
            Err(e) => return Err(format!("close: {e}")),
        }
        Ok(())
    }));
    let (seen, failed) = testing::disarm(&dir);
    run.seen = seen;
    run.failed = failed;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(v)) => return Err(v),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()));
            return Err(format!("panicked: {msg:?}"));
        }
    }
    match check_dir(&dir, &opts, &mut model, acked) {
        Ok(Verdict::Recovered { .. }) => Ok(run),
        Ok(Verdict::Refused(e)) => Err(format!("reopen after the fault refused: {e}")),
        Err(v) => Err(format!("oracle after the fault: {v}")),
    }
}

#[derive(Default)]
struct Loop {
    runs: u64,
    n_max: u64,
    errors: u64,
    poisoned: u64,
}

/// N = 1, 2, ... until a run completes without reaching call N.
fn fail_at_n(base: &Base, mode: &str, errno: i32, persistent: bool) -> Loop {
    let mut l = Loop::default();
    for nth in 1.. {
        let dir = ScratchDir::new("t3");
        let plan = FaultPlan { dir: dir.path().to_path_buf(), nth, persistent, errno, ops: None };
        let run = run_once(base, mode, &plan, 5).unwrap_or_else(|v| {
            panic!("mode {mode}, errno {errno}, persistent {persistent}, fail call {nth}: {v}")
        });
        l.runs += 1;
        l.errors += run.errors;
        l.poisoned += u64::from(run.poisoned);
        if run.failed == 0 {
            l.n_max = nth;
            assert!(run.seen < nth, "no call failed, yet {} were counted", run.seen);
            return l;
        }
        assert!(nth < 10_000, "the workload never finishes");
    }
    unreachable!()
}

fn fault_matrix(workload: &str, base: impl Fn(&str) -> Base) {
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut total = 0;
    for mode in ["always", "group", "never"] {
        let base = base(mode);
        for (errno, ename) in [(libc::EIO, "EIO"), (libc::ENOSPC, "ENOSPC")] {
            for persistent in [false, true] {
                let l = fail_at_n(&base, mode, errno, persistent);
                total += l.runs;
                lines.push(format!(
                    "{mode} {ename} {}: N = 1..{} ({} runs, {} errors returned, {} runs poisoned)",
                    if persistent { "persistent" } else { "transient" },
                    l.n_max,
                    l.runs,
                    l.errors,
                    l.poisoned
                ));
            }
        }
    }
    eprintln!(
        "T3 I/O faults [{workload}]: {total} runs, violations 0, {:.1?}\n  {}",
        started.elapsed(),
        lines.join("\n  ")
    );
}

#[test]
fn faults_in_appends_rolls_and_checkpoints() {
    fault_matrix("append, roll-over, checkpoint", |_| Base { files: Vec::new(), model: Model::new(0xF00) });
}

#[test]
fn faults_in_recovery_and_after() {
    fault_matrix("recovery of a torn tail, then appends", crashed_base);
}

/// Only one kind of call failing, persistently, from its first use: the store must still never panic.
#[test]
fn each_kind_of_call_failing_alone() {
    use foldlog::io::Op;
    let base = crashed_base("always");
    for op in [
        Op::Open,
        Op::Allocate,
        Op::Map,
        Op::Write,
        Op::Read,
        Op::SyncFile,
        Op::SyncDir,
        Op::Rename,
        Op::Remove,
        Op::ListDir,
        Op::Lock,
    ] {
        for nth in [1, 2, 5] {
            let dir = ScratchDir::new("t3-op");
            let plan = FaultPlan {
                dir: dir.path().to_path_buf(),
                nth,
                persistent: true,
                errno: libc::EIO,
                ops: Some(vec![op]),
            };
            run_once(&base, "always", &plan, 9)
                .unwrap_or_else(|v| panic!("{op:?} failing from call {nth}: {v}"));
        }
    }
}

/// Child role for the ENOSPC test: runs inside a private mount namespace on a tiny tmpfs.
#[test]
fn enospc_child() {
    let Ok(dir) = std::env::var("FOLDLOG_ENOSPC_DIR") else { return };
    let dir = Path::new(&dir);
    let opts = Options::default().segment_size_bytes(64 << 10).durability(Durability::Always);
    let mut model = Model::new(0xE05);
    let store = Store::open_with(dir, opts.clone()).expect("open on the small file system");
    let mut rng = Rng::new(3);
    let mut failed = None;
    for _ in 0..100_000 {
        let plan = model.plan(&random_counts(&mut rng, 3), None);
        match model.append(&store, &plan) {
            Ok(()) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let e = failed.expect("the file system filled up");
    emit(&format!("ERR {e}"));
    // The store goes on refusing (or, if space came back, working); it never crashes.
    for _ in 0..3 {
        let plan = model.plan(&random_counts(&mut rng, 3), None);
        let _ = model.append(&store, &plan);
        model.truncate(store.next_position() as usize);
    }
    drop(store);
    let acked = model.events.len();
    let store = open_retrying(dir, opts.read_only(true)).expect("reopen read-only");
    let n = check_store(&store, &model, acked).expect("oracle after ENOSPC");
    emit(&format!("OK {n}"));
}

#[test]
fn enospc_while_preallocating_is_an_error_not_sigbus() {
    if std::env::var_os("FOLDLOG_ENOSPC_DIR").is_some() {
        return;
    }
    let dir = ScratchDir::new("t3-enospc");
    let child = child_command("enospc_child");
    let exe = child.get_program().to_owned();
    let args: Vec<_> = child.get_args().map(|a| a.to_owned()).collect();
    let script = "mount -t tmpfs -o size=448k foldlog-enospc \"$0\" && exec \"$@\"";
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .arg(dir.path())
        .arg(&exe)
        .args(&args)
        .env("FOLDLOG_ENOSPC_DIR", dir.path())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: cannot run unshare ({e})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains("ERR") && (stderr.contains("unshare") || stderr.contains("mount")) {
        eprintln!("skipped: no private mount namespace here ({})", stderr.trim());
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    assert_ne!(out.status.signal(), Some(libc::SIGBUS), "SIGBUS on a full file system");
    assert!(out.status.success(), "child failed: {}\nstdout {stdout}\nstderr {stderr}", out.status);
    assert!(stdout.contains("No space left on device"), "the error names ENOSPC: {stdout}");
    assert!(stdout.contains("OK "), "the oracle ran after ENOSPC: {stdout}");
    eprintln!("T3 ENOSPC on a 448 KiB tmpfs: {}", stdout.trim().replace('\n', "; "));
}

fn segment_name(base: u64, seq: usize) -> String {
    foldlog_testkit::segment_file_name(base, seq as u32)
}

/// Appends one small event at a time; before each, arms a failpoint that fails mapping the segment the next
/// roll would create. Returns the store, the model and the base of the segment whose map failed.
fn roll_with_failing_map(dir: &Path, fail_removes: bool) -> (Store, Model, u64, foldlog::Result<()>) {
    use foldlog::io::Op;
    let opts = options("always");
    let store = Store::open_with(dir, opts).expect("open");
    let mut model = Model::new(0x0E9);
    if fail_removes {
        testing::arm(FaultPlan {
            dir: dir.to_path_buf(),
            nth: 1,
            persistent: true,
            errno: libc::EIO,
            ops: Some(vec![Op::Remove]),
        });
    }
    let mut armed: Option<std::path::PathBuf> = None;
    for _ in 0..200 {
        let next = store.next_position();
        let target = dir.join(segment_name(next, store.stats().segments));
        if let Some(old) = armed.replace(target.clone()) {
            testing::disarm(&old);
        }
        testing::arm(FaultPlan {
            dir: target,
            nth: 1,
            persistent: false,
            errno: libc::ENOMEM,
            ops: Some(vec![Op::Map]),
        });
        let plan = model.plan(&[("s".to_owned(), 1)], None);
        let r = model.append(&store, &plan);
        if r.is_err() {
            if let Some(old) = armed.take() {
                testing::disarm(&old);
            }
            return (store, model, next, r);
        }
    }
    panic!("no roll happened");
}

/// Regression (found by the fail-at-N loop, `faults_in_appends_rolls_and_checkpoints`, always/EIO/transient,
/// call 51). What broke: when mapping a freshly created segment failed (a transient mmap error such as
/// ENOMEM, or `vm.max_map_count` reached), `Segment::create` returned the error but left the new file behind
/// with a valid header and no frames. The writer stayed on the previous segment and put the next events there,
/// so the directory then held a segment claiming positions the previous one also held, and every later open
/// failed with "a segment is missing". The fix makes the map part of the creation that is undone on failure,
/// so the store goes on appending and the log reopens with every acknowledged event.
#[test]
fn regression_failed_map_of_a_new_segment_leaves_no_orphan() {
    let dir = ScratchDir::new("t3-reg-map");
    let (store, mut model, base, r) = roll_with_failing_map(dir.path(), false);
    assert!(matches!(r, Err(Error::Io { .. })), "the roll's failure is an I/O error: {r:?}");
    assert!(
        !dir.path().join(segment_name(base, store.stats().segments)).exists(),
        "the half-made segment was removed"
    );
    model.truncate(store.next_position() as usize);
    for _ in 0..40 {
        let plan = model.plan(&[("s".to_owned(), 1)], None);
        model.append(&store, &plan).expect("appends go on after a failed roll");
    }
    drop(store);
    let n = model.events.len();
    match check_dir(dir.path(), &options("always"), &mut model, n) {
        Ok(Verdict::Recovered { .. }) => {}
        other => panic!("reopen after a failed roll: {other:?}"),
    }
}

/// Regression (same family). What broke: if the half-made segment could not be removed either, the writer
/// still went on in the previous segment, leaving an orphan that made the log unopenable. The fix poisons the
/// store when a failed roll leaves its file behind: nothing more is written, and a reopen takes the orphan as
/// the (empty) active segment, exactly where the log ends.
#[test]
fn regression_orphan_segment_that_cannot_be_removed_poisons_the_store() {
    let dir = ScratchDir::new("t3-reg-orphan");
    let (store, mut model, base, r) = roll_with_failing_map(dir.path(), true);
    testing::disarm(dir.path());
    assert!(matches!(r, Err(Error::Io { .. })), "the roll's failure is an I/O error: {r:?}");
    assert!(
        dir.path().join(segment_name(base, store.stats().segments)).exists(),
        "the removal was made to fail"
    );
    let plan = model.plan(&[("s".to_owned(), 1)], None);
    assert!(matches!(model.append(&store, &plan), Err(Error::Poisoned)), "the store must stop writing");
    drop(store);
    model.truncate(base as usize);
    match check_dir(dir.path(), &options("always"), &mut model, base as usize) {
        Ok(Verdict::Recovered { n, .. }) => assert_eq!(n as u64, base),
        other => panic!("reopen after an orphaned segment: {other:?}"),
    }
}
