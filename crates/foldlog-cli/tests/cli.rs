//! The `foldlog` binary, run for real: nothing is deleted that foldlog did not create, a store in use is never
//! replaced, and every command behaves like a Unix tool (exit codes, closed pipes). Issue 10 parts 1 and 2;
//! part 4 (salvage, export and import, backup) at the end.

use foldlog_testkit::dir_fingerprint as tree;
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
            foldlog::Options::default().create_in_non_empty(true),
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

// ---------------------------------------------------------------------------------------------------------
// Part 2: commands behave like Unix tools.

use foldlog::{Batch, ExpectedVersion, NewEvent, Options, Store, StreamAppend};

/// A closed store in a fresh directory: `events` events over 50 streams, 100-byte payloads.
fn store_with(events: u32, options: Options) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), options).expect("create");
    for i in 0..events {
        let payload = [i as u8; 100];
        store
            .append(&format!("s-{}", i % 50), ExpectedVersion::Any, &[NewEvent::new("E", &payload)])
            .expect("append");
    }
    store.close().expect("close");
    dir
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    let mut full: Vec<&str> = args.to_vec();
    let d = dir.to_str().expect("utf-8 path");
    for a in &mut full {
        if *a == "DIR" {
            *a = d;
        }
    }
    foldlog(dir, &full)
}

/// The segment files of a store, in log order, found by their magic (no file name is assumed).
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && std::fs::read(p).is_ok_and(|b| b.starts_with(b"FOLDSEG\0")))
        .collect();
    segs.sort();
    segs
}

/// (offset, kind) of every frame of a segment file, walked by the header lengths.
/// (offset, kind) of every frame of a segment file (docs/format.md, "Frames": the length before padding at
/// 4..8, the kind in the low three bits of byte 8; frames start at multiples of 8). Kind 1 is an event, 2 a
/// consumer position, 3 a name definition.
fn frames_of(seg: &[u8]) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut at = 128;
    while at + 16 <= seg.len() {
        let len = u32::from_le_bytes(seg[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        out.push((at, seg[at + 8] & 7));
        at += len.div_ceil(8) * 8;
    }
    out
}

/// The event frames of a segment file.
fn events_of(seg: &[u8]) -> Vec<(usize, u8)> {
    frames_of(seg).into_iter().filter(|f| f.1 == 1).collect()
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset] ^= 0x55;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn regression_dump_into_a_closed_pipe_exits_quietly() {
    use std::io::BufRead;
    let dir = store_with(5000, Options::default());
    let mut child = Command::new(EXE)
        .args(["dump", dir.path().to_str().expect("utf-8"), "--payload", "hex"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("one line");
    assert!(first.contains("s-0@0"), "{first}");
    // The reader is gone (as `| head -1` would be); the dump has more than a pipe buffer left to write.
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
    assert!(stderr.is_empty(), "a closed pipe is a normal end, said nothing: {stderr}");
}

#[test]
fn no_command_panics_on_a_closed_stdout() {
    let dir = store_with(200, Options::default());
    let d = dir.path().to_str().expect("utf-8");
    let cwd = tempfile::tempdir().expect("tempdir");
    let commands: [&[&str]; 8] = [
        &["dump", d],
        &["stat", d, "--streams"],
        &["stat", d, "--json"],
        &["verify", d],
        &["verify", d, "--json"],
        &["demo", "--dir", "x", "--events", "100", "--streams", "5"],
        &["--help"],
        &["verify", "/nonexistent/foldlog"],
    ];
    for args in commands {
        let mut child = Command::new(EXE)
            .args(args)
            .current_dir(cwd.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take()); // every write to stdout now fails with EPIPE
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        let expected = if args.iter().any(|a| a.starts_with("/nonexistent")) { 2 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn regression_verify_checks_every_frame() {
    let dir = store_with(20, Options::default());
    let store = Store::open(dir.path()).expect("open");
    for p in [3, 7] {
        store.append_batch(&Batch::new(&[]).consumer("projector", p)).expect("consumer position");
    }
    store.close().expect("close");
    let clean = run_in(dir.path(), &["verify", "DIR"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    let seg = segment_files(dir.path()).pop().expect("a segment");
    let frames = frames_of(&std::fs::read(&seg).expect("read"));
    let (consumer_at, kind) = *frames.last().expect("frames");
    assert_eq!(kind, 2, "the last frame is the consumer position, after the last event");
    flip(&seg, consumer_at + 16 + 3);
    let out = run_in(dir.path(), &["verify", "DIR"]);
    assert_eq!(out.status.code(), Some(1), "a bad consumer frame is corruption: {}", text(&out));
    assert!(text(&out).contains(&format!("offset {consumer_at}")), "{}", text(&out));
    assert!(text(&out).contains("What to do next"), "{}", text(&out));
}

#[test]
fn verify_exits_2_for_a_missing_or_foreign_directory() {
    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::write(cwd.path().join("notes.txt"), b"mine").expect("write");
    for dir in ["/nonexistent/foldlog", ".", "notes.txt"] {
        let out = foldlog(cwd.path(), &["verify", dir]);
        assert_eq!(out.status.code(), Some(2), "verify {dir}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(dir.trim_start_matches("./")),
            "names the path"
        );
    }
    assert_eq!(std::fs::read_dir(cwd.path()).expect("list").count(), 1, "verify wrote nothing");
    let usage = foldlog(cwd.path(), &["verify"]);
    assert_eq!(usage.status.code(), Some(2), "a usage error");
}

#[test]
fn verify_reports_every_damaged_range_of_a_sealed_segment() {
    let dir = store_with(300, Options::default().segment_size_bytes(4096));
    let segs = segment_files(dir.path());
    assert!(segs.len() > 3, "several segments");
    assert!(foldlog::verify::verify_dir(dir.path()).expect("verify").is_clean(), "clean before the damage");
    let first = &segs[0];
    let frames = events_of(&std::fs::read(first).expect("read"));
    assert!(frames.len() >= 6);
    // Two separate frames of the first (sealed) segment: the 2nd and the 5th event.
    flip(first, frames[1].0 + 40);
    flip(first, frames[4].0 + 40);

    let report = foldlog::verify::verify_dir(dir.path()).expect("verify runs without opening the store");
    assert_eq!(report.damage.len(), 2, "{:#?}", report.damage);
    assert_eq!(report.damage[0].positions, foldlog::verify::Affected::Range(1..2));
    assert_eq!(report.damage[1].positions, foldlog::verify::Affected::Range(4..5));
    assert_eq!(report.events, 298, "every other event was walked");

    let out = run_in(dir.path(), &["verify", "DIR"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("DAMAGED").count(), 2, "{}", text(&out));
    let json = run_in(dir.path(), &["verify", "DIR", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["clean"], false);
    assert_eq!(v["damage"].as_array().expect("array").len(), 2);
    assert_eq!(v["damage"][1]["first_position"], 4);
    assert_eq!(v["damage"][1]["end_position"], 5);
}

#[test]
fn stat_and_verify_speak_plain_text_and_json() {
    let dir = store_with(100, Options::default());
    for args in [&["stat", "DIR", "--streams"][..], &["verify", "DIR"][..]] {
        let out = run_in(dir.path(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let s = text(&out);
        for debug in ["Used(", "Rebuilt(", "Some(", "None", "Missing"] {
            assert!(!s.contains(debug), "{args:?} printed Rust Debug output {debug:?}: {s}");
        }
    }
    let stat = run_in(dir.path(), &["stat", "DIR", "--json", "--streams"]);
    let v: serde_json::Value = serde_json::from_slice(&stat.stdout).expect("JSON");
    assert_eq!(v["events"], 100);
    assert_eq!(v["first_position"], 0);
    assert_eq!(v["last_position"], 99);
    assert_eq!(v["stream_counts"].as_array().expect("streams").len(), 50);
    let verify = run_in(dir.path(), &["verify", "DIR", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("JSON");
    assert_eq!(v["clean"], true);
    assert_eq!(v["events"], 100);
    assert_eq!(v["store"]["events_read"], 100);
}

#[test]
fn dump_shows_timestamps_metadata_and_payloads_as_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("create");
    let event = NewEvent::new("Greeted", b"hello").metadata(b"corr=42");
    store.append("greetings", ExpectedVersion::NoStream, &[event]).expect("append");
    store
        .append("bytes", ExpectedVersion::NoStream, &[NewEvent::new("Raw", &[0, 159, 255])])
        .expect("append");
    store.close().expect("close");
    let auto = String::from_utf8(run_in(dir.path(), &["dump", "DIR"]).stdout).expect("utf-8");
    assert!(auto.contains("greetings@0  Greeted"), "{auto}");
    assert!(auto.contains("metadata \"corr=42\""), "{auto}");
    assert!(auto.contains("payload \"hello\""), "{auto}");
    assert!(auto.contains("payload 3 B hex 009fff"), "{auto}");
    let stamp = auto.split_whitespace().find(|w| w.ends_with('Z')).expect("a timestamp");
    assert_eq!(stamp.len(), "2026-11-29T21:13:25.803544Z".len(), "{stamp}");
    assert_eq!(&stamp[4..5], "-");
    assert_eq!(&stamp[10..11], "T");
    let hex =
        String::from_utf8(run_in(dir.path(), &["dump", "DIR", "--payload", "hex"]).stdout).expect("utf-8");
    assert!(hex.contains("payload 68656c6c6f"), "{hex}");
    let text_mode = String::from_utf8(
        run_in(dir.path(), &["dump", "DIR", "--payload", "text", "--stream", "bytes"]).stdout,
    )
    .expect("utf-8");
    assert!(text_mode.contains("payload \"\\u0000\u{fffd}\u{fffd}\""), "{text_mode}");
    assert!(!text_mode.contains("greetings"), "--stream shows one stream");
}

#[test]
fn dump_of_a_stream_that_does_not_exist_says_so() {
    let dir = store_with(10, Options::default());
    let out = run_in(dir.path(), &["dump", "DIR", "--stream", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nosuch\" does not exist"), "{stderr}");
    assert!(stderr.contains(dir.path().to_str().expect("utf-8")), "the error names the path: {stderr}");
}

#[test]
fn verify_treats_a_torn_tail_as_no_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), Options::default().durability(foldlog::Durability::Never))
        .expect("create");
    for i in 0..10u8 {
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", &[i; 40])]).expect("append");
    }
    store.abandon(); // as kill -9: nothing was synced, so nothing was promised durable
    let seg = segment_files(dir.path()).pop().expect("a segment");
    let (last, _) = *frames_of(&std::fs::read(&seg).expect("read")).last().expect("frames");
    flip(&seg, last + 20); // the last batch is torn
    let report = foldlog::verify::verify_dir(dir.path()).expect("verify");
    assert!(report.is_clean(), "{:#?}", report.damage);
    let torn = report.torn_tail.expect("a torn tail");
    assert_eq!(torn.offset, last as u64, "the log ends where the torn batch starts");
    assert_eq!(report.events, 9);
    let out = run_in(dir.path(), &["verify", "DIR"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("torn tail"), "{}", text(&out));
}

#[test]
fn verify_survives_any_bytes_with_bounded_work() {
    let dir = store_with(200, Options::default().segment_size_bytes(8192));
    let segs = segment_files(dir.path());
    let pristine: Vec<Vec<u8>> = segs.iter().map(|s| std::fs::read(s).expect("read")).collect();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let i = (next() % segs.len() as u64) as usize;
        let mut bytes = pristine[i].clone();
        let len = bytes.len();
        match round % 4 {
            // Random bytes over a random range, header included sometimes.
            0 => {
                let at = (next() % len as u64) as usize;
                let n = (next() % 600) as usize;
                for b in bytes.iter_mut().skip(at).take(n) {
                    *b = next() as u8;
                }
            }
            // Frame headers that pass every cheap check and claim the rest of the file, at every boundary:
            // the search for the next valid frame must stay bounded.
            1 => {
                for at in (128..len - 16).step_by(16) {
                    let body = (len - at - 16) as u32;
                    bytes[at + 4..at + 8].copy_from_slice(&body.to_le_bytes());
                    bytes[at + 8] = 1;
                    bytes[at + 9..at + 16].fill(0);
                }
            }
            // A cut file.
            2 => bytes.truncate((next() % len as u64) as usize),
            // Single bit flips.
            _ => {
                for _ in 0..8 {
                    let at = (next() % len as u64) as usize;
                    bytes[at] ^= 1 << (next() % 8);
                }
            }
        }
        std::fs::write(&segs[i], &bytes).expect("write");
        let started = std::time::Instant::now();
        let report = foldlog::verify::verify_dir(dir.path());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "round {round}: unbounded work");
        if let Ok(report) = report {
            assert!(round % 4 != 1 || !report.is_clean(), "round {round}: forged frames passed as valid");
            for d in &report.damage {
                assert!(
                    d.offset + d.len <= len as u64 + 8192,
                    "round {round}: range outside the file: {d:?}"
                );
            }
        }
        std::fs::write(&segs[i], &pristine[i]).expect("restore");
    }
    assert!(foldlog::verify::verify_dir(dir.path()).expect("verify").is_clean(), "restored");
}

// ---------------------------------------------------------------------------------------------------------
// Part 4: salvage, export and import, backup.

/// Runs `foldlog` with `input` on stdin.
fn foldlog_with_input(cwd: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(EXE)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // A refusal may end the command before it read everything: a closed pipe here is fine.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// A closed store with binary payloads and metadata, event ids, streams starting at versions 0, 1 and 5,
/// and two consumers.
fn varied_store(dir: &Path) {
    let store = Store::open_with(dir, Options::default().segment_size_bytes(4096)).expect("create");
    for i in 0..120u32 {
        let payload: Vec<u8> = (0..(i % 37)).map(|j| (j * 31 + i) as u8).collect();
        let text = format!("{{\"n\":{i},\"é\":\"\\\"q\\\"\"}}");
        let metadata: &[u8] = if i % 4 == 0 { b"\x00\xffbin" } else { b"corr=1" };
        let (stream, first) = [("bin", 0), ("agg-1", 1), ("late", 5)][(i % 3) as usize];
        let events = [
            NewEvent::new("Binary", &payload)
                .event_id((i % 2 == 0).then_some(u128::from(i) * 0x1_0000_0001 + 7))
                .schema_version(i % 3)
                .metadata(metadata),
            NewEvent::new("Texty", text.as_bytes()),
        ];
        let streams = [StreamAppend::new(stream, ExpectedVersion::Any, &events).first_version(first)];
        let consumer = match i % 20 {
            7 => Some(("proj-a", u64::from(i))),
            13 => Some(("proj-b", u64::from(i) * 2)),
            _ => None,
        };
        let mut batch = Batch::new(&streams);
        batch.consumer = consumer;
        store.append_batch(&batch).expect("append");
    }
    store.close().expect("close");
}

#[test]
fn export_import_export_is_byte_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    varied_store(&src);
    for mode in [&[][..], &["--text"][..]] {
        let mut args = vec!["export", "src"];
        args.extend_from_slice(mode);
        let first = foldlog(tmp.path(), &args);
        assert_eq!(first.status.code(), Some(0), "{}", text(&first));
        let exported = String::from_utf8(first.stdout.clone()).expect("JSON Lines are UTF-8");
        assert_eq!(exported.lines().count(), 1 + 240 + 2, "header, events, consumers");
        assert!(exported.lines().next().expect("header").contains("\"kind\":\"header\""));
        if mode.is_empty() {
            assert!(exported.contains("\"payload_base64\""), "payloads as base64");
        } else {
            assert!(exported.contains("\"payload_text\":\"{\\\"n\\\""), "valid UTF-8 as text with --text");
            assert!(exported.contains("\"metadata_base64\""), "invalid UTF-8 stays base64");
        }
        let dst = format!("copy{}", mode.len());
        let imported = foldlog_with_input(tmp.path(), &["import", &dst], &first.stdout);
        assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));
        let mut args = vec!["export", &dst];
        args.extend_from_slice(mode);
        let second = foldlog(tmp.path(), &args);
        assert_eq!(second.status.code(), Some(0));
        assert!(first.stdout == second.stdout, "export -> import -> export differs ({mode:?})");
        let verify = foldlog(tmp.path(), &["verify", &dst]);
        assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    }
    // Timestamps were kept, not re-stamped at import.
    let a = Store::open_with(&src, Options::default().read_only(true)).expect("open");
    let b = Store::open_with(tmp.path().join("copy0"), Options::default().read_only(true)).expect("open");
    let owned = |s: &Store| s.read_all(0).map(|e| e.expect("read").to_owned()).collect::<Vec<_>>();
    assert_eq!(owned(&a), owned(&b), "every field of every event, timestamps included");
    assert_eq!(b.consumer_position("proj-b"), a.consumer_position("proj-b"));
}

/// Issue 14: a store with a truncated and a deleted stream verifies clean, and an export carries every event
/// (the hidden ones too, at their positions) and the controls, so the import hides the same events.
#[test]
fn truncated_and_deleted_streams_verify_and_survive_export_and_import() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let store = Store::open(&src).expect("create");
    for (stream, n) in [("a", 5), ("b", 3), ("a", 2)] {
        let events: Vec<NewEvent<'_>> = (0..n).map(|_| NewEvent::new("Tick", b"t")).collect();
        store.append(stream, ExpectedVersion::Any, &events).expect("append");
    }
    store.truncate_before("a", ExpectedVersion::Exact(6), 3).expect("truncate");
    store.delete_stream("b", ExpectedVersion::Exact(2)).expect("delete");
    store.close().expect("close");
    let verify = foldlog(tmp.path(), &["verify", "src"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let first = foldlog(tmp.path(), &["export", "src"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let exported = String::from_utf8(first.stdout.clone()).expect("UTF-8");
    assert_eq!(
        exported.lines().filter(|l| l.contains("\"kind\":\"event\"")).count(),
        10,
        "hidden events too"
    );
    let controls: Vec<&str> = exported.lines().filter(|l| l.contains("stream_control")).collect();
    assert_eq!(
        controls,
        [
            r#"{"kind":"stream_control","stream":"a","truncate_before":3,"deleted":false}"#,
            r#"{"kind":"stream_control","stream":"b","truncate_before":3,"deleted":true}"#
        ]
    );
    let imported = foldlog_with_input(tmp.path(), &["import", "copy"], &first.stdout);
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));
    let second = foldlog(tmp.path(), &["export", "copy"]);
    assert!(first.stdout == second.stdout, "export -> import -> export differs");
    let copy = Store::open_with(tmp.path().join("copy"), Options::default().read_only(true)).expect("open");
    let positions: Vec<u64> = copy.read_all(0).map(|e| e.expect("read").position()).collect();
    assert_eq!(positions, [3, 4, 8, 9]);
    assert!(copy.stream_state("b").expect("b").deleted);
}

#[test]
fn import_refuses_bad_input_by_line_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    varied_store(&src);
    let good = String::from_utf8(foldlog(tmp.path(), &["export", "src"]).stdout).expect("utf-8");
    let lines: Vec<&str> = good.lines().collect();
    let with = |n: usize, replacement: &str| -> String {
        let mut v = lines.clone();
        v[n - 1] = replacement;
        v.join("\n") + "\n"
    };
    let skip_line_5 = {
        let mut v = lines.clone();
        v.remove(4);
        v.join("\n") + "\n"
    };
    let bad_base64 = lines[3].replace("\"payload_base64\":\"", "\"payload_base64\":\"!!");
    let version_gap = lines[7].replace("\"version\":2", "\"version\":9");
    assert_ne!(version_gap, lines[7], "line 8 holds a version 2");
    let cases: Vec<(String, usize, &str)> = vec![
        (with(3, "{not json"), 3, "not an export record"),
        (skip_line_5, 5, "position 4 where 3 belongs"),
        (with(4, &bad_base64), 4, "not base64"),
        (with(8, &version_gap), 8, "version"),
        (with(2, "{\"kind\":\"event\",\"surprise\":1}"), 2, "not an export record"),
        (with(4, &lines[3].replacen('{', "{\"extra\":1,", 1)), 4, "unknown field"),
    ];
    std::fs::write(tmp.path().join("beside.txt"), b"mine").expect("write");
    for (input, line, why) in cases {
        let out = foldlog_with_input(tmp.path(), &["import", "dst"], input.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "line {line}: {stderr}");
        assert!(stderr.contains(&format!("line {line}:")), "names line {line}: {stderr}");
        assert!(stderr.contains(why), "says why ({why}): {stderr}");
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["beside.txt", "src"], "nothing half-imported is left: {names:?}");
    }
    // A destination that holds something is refused before anything is read.
    std::fs::create_dir(tmp.path().join("full")).expect("mkdir");
    std::fs::write(tmp.path().join("full/notes.txt"), b"mine").expect("write");
    let out = foldlog_with_input(tmp.path(), &["import", "full"], good.as_bytes());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(std::fs::read(tmp.path().join("full/notes.txt")).expect("kept"), b"mine");
}

#[test]
fn salvage_reports_the_loss_and_exits_1_and_0_when_nothing_was_lost() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    varied_store(&src);
    let clean = foldlog(tmp.path(), &["salvage", "src", "whole"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(text(&clean).contains("OK: every event"), "{}", text(&clean));

    let segs = segment_files(&src);
    let frames = events_of(&std::fs::read(&segs[1]).expect("read"));
    let (at, kind) = frames[2];
    assert_eq!(kind, 1);
    flip(&segs[1], at + 16 + 5);
    let before = tree(&src);
    let out = foldlog(tmp.path(), &["salvage", "src", "saved", "--json"]);
    assert_eq!(out.status.code(), Some(1), "something was lost: {}", text(&out));
    assert_eq!(tree(&src), before, "the source is only read");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["complete"], false);
    let lost = v["lost"].as_array().expect("lost");
    assert!(!lost.is_empty());
    assert!(!v["lost_to_damage"].as_array().expect("lost_to_damage").is_empty());
    assert!(v["mapping"].as_array().expect("mapping").len() >= 2, "positions after the loss moved: {v}");
    assert_eq!(v["events_copied"].as_u64().expect("n") + v["lost_count"].as_u64().expect("n"), 240);
    let verify = foldlog(tmp.path(), &["verify", "saved"]);
    assert_eq!(verify.status.code(), Some(0), "the new store verifies clean: {}", text(&verify));
    let plain = foldlog(tmp.path(), &["salvage", "src", "saved-again"]);
    assert_eq!(plain.status.code(), Some(1));
    let s = text(&plain);
    assert!(s.contains("LOST:") && s.contains("INCOMPLETE"), "{s}");
    assert!(s.contains("positions moved (old -> new)"), "{s}");
    // An existing, non-empty destination: a usage error, nothing changed.
    let again = foldlog(tmp.path(), &["salvage", "src", "saved"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
}

#[test]
fn backup_copies_a_closed_store_and_a_live_one_up_to_its_durable_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    varied_store(&src);
    std::fs::write(tmp.path().join("beside.txt"), b"mine").expect("write");
    let before = tree(&src);
    let out = foldlog(tmp.path(), &["backup", "src", "bk"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("backed up 240 events"), "{}", text(&out));
    assert_eq!(tree(&src), before, "the source is only read");
    let verify = foldlog(tmp.path(), &["verify", "bk"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let copied = foldlog(tmp.path(), &["backup", "src", "bk2", "--copy"]);
    assert!(text(&copied).contains("0 hard-linked"), "{}", text(&copied));
    let a = foldlog(tmp.path(), &["export", "src"]);
    let b = foldlog(tmp.path(), &["export", "bk2"]);
    assert!(a.stdout == b.stdout, "the backup holds the same log");

    // Beside a writer in this process: what it synced is backed up, what it has not is not.
    let live =
        Store::open_with(&src, Options::default().durability(foldlog::Durability::Never)).expect("open");
    live.append("late", ExpectedVersion::Any, &[NewEvent::new("Synced", b"1")]).expect("append");
    live.sync().expect("sync");
    live.append("late", ExpectedVersion::Any, &[NewEvent::new("NotSynced", b"2")]).expect("append");
    let out = foldlog(tmp.path(), &["backup", "src", "bk3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("backed up 241 events"), "{}", text(&out));
    let verify = foldlog(tmp.path(), &["verify", "bk3"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    drop(live);
    assert_eq!(std::fs::read(tmp.path().join("beside.txt")).expect("kept"), b"mine");
}

#[test]
fn stat_dump_and_verify_run_beside_a_live_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    varied_store(&src);
    let live = Store::open(&src).expect("a writer holds the store");
    live.append("extra", ExpectedVersion::NoStream, &[NewEvent::new("Live", b"x")]).expect("append");
    let stat = foldlog(tmp.path(), &["stat", "src", "--json"]);
    assert_eq!(stat.status.code(), Some(0), "{}", text(&stat));
    let json: serde_json::Value = serde_json::from_slice(&stat.stdout).expect("stat --json");
    assert_eq!(json["events"], 241, "the reader sees the writer's commit: {json}");
    let dump = foldlog(tmp.path(), &["dump", "src", "--stream", "extra"]);
    assert_eq!(dump.status.code(), Some(0), "{}", text(&dump));
    assert!(text(&dump).contains("extra@0  Live"), "{}", text(&dump));
    let verify = foldlog(tmp.path(), &["verify", "src"]);
    assert_eq!(verify.status.code(), Some(0), "a live store verifies clean: {}", text(&verify));
    // The writer was never in the way, nor they in its.
    live.append("extra", ExpectedVersion::Exact(0), &[NewEvent::new("Live", b"y")]).expect("append after");
}

#[test]
fn tail_prints_the_last_matching_events_then_follows_the_writer() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    let live = Store::open_with(&dir, Options::default().segment_size_bytes(4096)).expect("create");
    for i in 0..30u32 {
        let kind = if i % 2 == 0 { "Even" } else { "Odd" };
        live.append(&format!("s{}", i % 3), ExpectedVersion::Any, &[NewEvent::new(kind, &i.to_le_bytes())])
            .expect("append");
    }
    // Not following: the last two events of stream s0 with type Even (positions 18 and 24), and nothing else.
    let once =
        foldlog(tmp.path(), &["tail", "s", "--stream", "s0", "--type", "Even", "-n", "2", "--no-follow"]);
    assert_eq!(once.status.code(), Some(0), "{}", text(&once));
    let positions: Vec<String> = String::from_utf8_lossy(&once.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(positions, ["18", "24"], "{}", text(&once));

    let mut tail = Command::new(EXE)
        .args(["tail", "s", "--type", "Odd", "-n", "1"])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let mut lines = std::io::BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("the backlog line").expect("read");
    assert!(first.trim_start().starts_with("29  s2@9  Odd"), "{first}");
    // Appends after tail started, across several segment rolls: each Odd one appears, in order.
    for i in 30..400u32 {
        let kind = if i % 2 == 0 { "Even" } else { "Odd" };
        live.append(&format!("s{}", i % 3), ExpectedVersion::Any, &[NewEvent::new(kind, &i.to_le_bytes())])
            .expect("append");
    }
    assert!(live.stats().segments > 3, "the writer rolled while tail followed");
    for i in (31..400u32).step_by(2) {
        let line = lines.next().expect("a followed line").expect("read");
        let expect = format!("{i}  s{}@{}  Odd", i % 3, i / 3);
        assert!(line.trim_start().starts_with(&expect), "expected {expect:?}, got {line:?}");
    }
    assert!(tail.try_wait().expect("poll").is_none(), "tail keeps following");
    tail.kill().expect("stop tail");
    tail.wait().expect("reap");
}

#[test]
fn export_into_a_closed_pipe_exits_quietly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    varied_store(&tmp.path().join("src"));
    let mut child = Command::new(EXE)
        .args(["export", "src"])
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty());
}

/// `foldlog bench` works in a scratch directory of its own under `--dir` and removes only that: a file of the
/// user's beside it survives, and nothing of the bench is left.
#[test]
fn bench_removes_only_its_own_scratch_directory() {
    let parent = tempfile::tempdir().expect("tempdir");
    std::fs::write(parent.path().join("notes.txt"), b"mine").expect("write");
    let before = tree(parent.path());
    let out = foldlog(parent.path(), &["bench", "--events", "2000", "--dir", "."]);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("append"), "bench printed its table");
    assert_eq!(tree(parent.path()), before, "bench left or removed something beside its scratch");
}

/// `delete-stream` and `truncate` as an operator runs them: each writes its control and says what stays,
/// a wrong expected version or a bad argument changes nothing (exit 2), `stat --streams` shows the state,
/// and a store another process has open for writing is refused, untouched.
#[test]
fn delete_stream_and_truncate_from_the_command_line() {
    let dir = store_with(200, Options::default());
    let run = |args: &[&str]| run_in(dir.path(), args);
    // s-1 holds versions 0..=3 (200 events over 50 streams).
    let out = run(&["truncate", "DIR", "s-1", "--before", "2", "--expected", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("versions 2 ..= 3 stay visible"), "{}", text(&out));
    let out = run(&["delete-stream", "DIR", "s-2", "--expected", "1"]);
    assert_eq!(out.status.code(), Some(2), "a stale expected version is refused: {}", text(&out));
    let out = run(&["delete-stream", "DIR", "s-2", "--expected", "seven"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a version"), "{}", text(&out));
    let out = run(&["delete-stream", "DIR", "s-2", "--expected", "exists"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("deleted stream \"s-2\" (last version 3)"), "{}", text(&out));
    let out = run(&["delete-stream", "DIR", "s-2", "--expected", "any"]);
    assert_eq!(out.status.code(), Some(2), "a second delete is refused: {}", text(&out));
    let out = run(&["stat", "DIR", "--streams"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = text(&out);
    assert!(listing.contains("s-2  (deleted)"), "{listing}");
    assert!(listing.contains("s-1  (visible from version 2)"), "{listing}");
    assert!(listing.lines().any(|l| l.trim_end().ends_with(" s-3")), "{listing}");

    // Another process writes the store (this one, holding its lock): refused, and nothing is written.
    let writer = Store::open(dir.path()).expect("open");
    let before = writer.next_position();
    let out = run(&["truncate", "DIR", "s-3", "--before", "1", "--expected", "any"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).to_lowercase().contains("lock"), "{}", text(&out));
    assert_eq!(writer.stream_state("s-3").map(|s| s.first_visible), Some(0));
    writer.close().expect("close");

    let store = Store::open_with(dir.path(), Options::default().read_only(true)).expect("open");
    assert_eq!(store.next_position(), before);
    let s1: Vec<u64> = store.read_stream("s-1", 0).map(|e| e.expect("read").stream_version()).collect();
    assert_eq!(s1, [2, 3]);
    assert_eq!(store.read_stream("s-2", 0).count(), 0);
    assert!(store.stream_state("s-2").expect("s-2").deleted);
}

/// `retention` as an operator runs it: a rule set from the command line hides what it should from `dump` and
/// `stat`, reaches an export and the store imported from it, is cleared again, and refuses bad arguments and a
/// store another process writes (status 2, nothing written).
#[test]
fn retention_rules_from_the_command_line() {
    let dir = store_with(200, Options::default());
    let run = |args: &[&str]| run_in(dir.path(), args);
    // s-N holds versions 0..=3 (200 events over 50 streams).
    let out = run(&["retention", "DIR"]);
    assert_eq!((out.status.code(), text(&out).trim()), (Some(0), "no retention rules"));
    let out = run(&["retention", "DIR", "--prefix", "s-1", "--max-count", "2", "--max-age", "30d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(text(&out).trim(), r#"prefix "s-1": max count 2, max age 30d"#);
    let out = run(&["retention", "DIR", "--stream", "s-12", "--max-count", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dumped = |stream: &str| -> usize {
        let out = run(&["dump", "DIR", "--stream", stream]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out).lines().count()
    };
    assert_eq!((dumped("s-1"), dumped("s-12"), dumped("s-2")), (2, 1, 4));
    let out = run(&["stat", "DIR", "--streams"]);
    let listing = text(&out);
    assert!(listing.contains(r#"retention:        stream "s-12": max count 1"#), "{listing}");
    assert!(listing.contains("s-1  (visible from version 2)"), "{listing}");
    assert!(listing.contains("s-12  (visible from version 3)"), "{listing}");

    // An export carries the rules' stream, and the imported store hides the same events.
    let exported = foldlog(dir.path(), &["export", "."]);
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    let copy = tempfile::tempdir().expect("tempdir");
    let imported = foldlog_with_input(copy.path(), &["import", "c"], &exported.stdout);
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));
    let c = Store::open_with(copy.path().join("c"), Options::default().read_only(true)).expect("open");
    assert_eq!(c.read_stream("s-1", 0).count(), 2);
    assert_eq!(c.retention_rules().expect("rules").len(), 2);
    drop(c);

    for bad in [
        &["retention", "DIR", "--max-count", "2"][..],
        &["retention", "DIR", "--stream", "s-1"],
        &["retention", "DIR", "--stream", "s-1", "--max-age", "30x"],
        &["retention", "DIR", "--prefix", "$foldlog/", "--max-count", "1"],
        &["retention", "DIR", "--stream", "s-1", "--max-count", "1", "--clear"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }
    // Another process writes the store: refused, and nothing is written.
    let writer = Store::open(dir.path()).expect("open");
    let before = writer.next_position();
    let out = run(&["retention", "DIR", "--prefix", "s-", "--clear"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).to_lowercase().contains("lock"), "{}", text(&out));
    let listed = run(&["retention", "DIR"]);
    assert_eq!(listed.status.code(), Some(0), "listing works beside a writer: {}", text(&listed));
    assert_eq!(text(&listed).lines().count(), 2, "{}", text(&listed));
    assert_eq!(writer.next_position(), before);
    writer.close().expect("close");

    let out = run(&["retention", "DIR", "--prefix", "s-1", "--clear"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(text(&out).trim(), r#"stream "s-12": max count 1"#);
    assert_eq!(dumped("s-1"), 4, "cleared: nothing was removed");
}

/// `forget` as an operator runs it: the stream's content is gone for good (exit 0, said so), its events keep
/// their place, a second forget says so, a plain stream is refused (exit 2), and a store another process has
/// open for writing is refused with a message that says what to do, its key untouched.
#[test]
fn forget_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let vault = foldlog::Vault::open(&store).expect("vault");
        for stream in ["patient-1", "patient-2"] {
            let event = NewEvent::new("Noted", b"SECRET diagnosis");
            vault.append(stream, ExpectedVersion::NoStream, &[event]).expect("append");
        }
        store.append("ward", ExpectedVersion::NoStream, &[NewEvent::new("Opened", b"")]).expect("append");
        drop(vault);
        store.close().expect("close");
    }
    let run = |args: &[&str]| run_in(dir.path(), args);

    // Another process writes the store (this one): refused, exit 2, nothing forgotten.
    let writer = Store::open(dir.path()).expect("open");
    let out = run(&["forget", "DIR", "patient-2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("another process"), "{}", text(&out));
    {
        let vault = foldlog::Vault::open(&writer).expect("vault");
        assert!(!vault.is_forgotten("patient-2").expect("keys"));
    }
    writer.close().expect("close");

    let out = run(&["forget", "DIR", "patient-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("forgot stream \"patient-1\""), "{}", text(&out));
    let out = run(&["forget", "DIR", "patient-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("already forgotten"), "{}", text(&out));
    let out = run(&["forget", "DIR", "ward"]);
    assert_eq!(out.status.code(), Some(2), "a plain stream: {}", text(&out));
    assert!(text(&out).contains("not encrypted"), "{}", text(&out));
    let out = run(&["forget", "DIR", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let store = Store::open_with(dir.path(), Options::default().read_only(true)).expect("open");
    let vault = foldlog::Vault::open(&store).expect("vault");
    assert!(matches!(
        vault.read_stream("patient-1", 0).next(),
        Some(Err(foldlog::Error::StreamForgotten { .. }))
    ));
    assert_eq!(store.read_stream("patient-1", 0).count(), 1, "the event keeps its place");
    let other = vault.read_stream("patient-2", 0).next().expect("one event").expect("readable");
    assert_eq!(other.payload, b"SECRET diagnosis");
}

/// `scavenge` as an operator runs it: the dry run (read-only, beside a writer in another process) says
/// exactly what the real run then removes; the real run is refused while another process writes, and leaves
/// the store reading the same and a foreign file beside it untouched.
#[test]
fn scavenge_from_the_command_line() {
    let dir = store_with(400, Options::default().segment_size_bytes(4096));
    let run = |args: &[&str]| run_in(dir.path(), args);
    {
        let store = Store::open(dir.path()).expect("open");
        // s-N holds versions 0..=7 (400 events over 50 streams).
        store.truncate_before("s-1", ExpectedVersion::Exact(7), 6).expect("truncate");
        store.delete_stream("s-2", ExpectedVersion::Exact(7)).expect("delete");
        store.close().expect("close");
    }
    std::fs::write(dir.path().join("operator-notes.txt"), b"mine").expect("foreign file");
    let read = |store: &Store| -> Vec<(u64, String, u64)> {
        store
            .read_all(0)
            .map(|e| e.expect("read"))
            .map(|e| (e.position(), e.stream_id().into(), e.stream_version()))
            .collect()
    };
    let before = read(&Store::open_with(dir.path(), Options::default().read_only(true)).expect("open"));

    let writer = Store::open(dir.path()).expect("another process writes");
    let dry = run(&["scavenge", "DIR", "--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(0), "a dry run beside a writer: {}", text(&dry));
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("JSON");
    let refused = run(&["scavenge", "DIR"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).to_lowercase().contains("lock"), "{}", text(&refused));
    writer.close().expect("close");

    let dry_text = run(&["scavenge", "DIR", "--dry-run"]);
    assert!(text(&dry_text).contains("would remove"), "{}", text(&dry_text));
    let done = run(&["scavenge", "DIR", "--json"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    let done: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON");
    for field in ["events_removed", "bytes_before", "bytes_after", "segments", "streams"] {
        assert_eq!(plan[field], done[field], "{field}: the dry run was exact");
    }
    // s-1 lost versions 0..=5 and s-2 all but its last: 6 + 7 events, as far as they lie in sealed segments.
    let removed = done["events_removed"].as_u64().expect("a count");
    assert!(removed > 0 && removed <= 13, "{removed}");
    assert_eq!(done["dry_run"], false);
    let after = read(&Store::open_with(dir.path(), Options::default().read_only(true)).expect("open"));
    assert_eq!(after, before, "no read changed");
    let verify = run(&["verify", "DIR"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert_eq!(std::fs::read(dir.path().join("operator-notes.txt")).expect("still there"), b"mine");
}
