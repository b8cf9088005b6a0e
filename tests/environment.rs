//! T7: the environment a store lives in (F13): other processes, killed lock holders, stray files, renamed,
//! foreign or deleted segments, a directory copied while a writer runs. Each outcome is either the right
//! events (checked with the oracle) or a clear error naming the problem; never a panic, never a wrong event.
//!
//! The cross-process tests re-execute this test binary as a child (`FOLDLOG_ENV_ROLE` selects the role, the
//! test `env_child` runs it).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use common::{check_dir, check_store, child_command, emit, random_counts, Model, Rng, ScratchDir, Verdict};
use foldlog::{CheckpointUse, Corruption, Durability, Error, Options, Store};
use foldlog_testkit::{open_retrying, parse_segment_file_name, segment_file_name};

fn options() -> Options {
    Options::default().segment_size_bytes(4096).durability(Durability::Always)
}

/// A closed log of `batches` random batches over a few 4 KiB segments, with a checkpoint.
fn log_with(dir: &Path, batches: usize, run: u64) -> Model {
    let mut model = Model::new(run);
    let mut rng = Rng::new(run);
    let store = Store::open_with(dir, options()).expect("open");
    for _ in 0..batches {
        let plan = model.plan(&random_counts(&mut rng, 3), None);
        model.append(&store, &plan).expect("append");
    }
    store.close().expect("close");
    model
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg") && p.is_file())
        .collect();
    v.sort();
    v
}

fn recovered(dir: &Path, model: &mut Model) -> usize {
    let k = model.events.len();
    match check_dir(dir, &options(), model, k) {
        Ok(Verdict::Recovered { n, .. }) => n,
        other => panic!("expected the log to open with every event: {other:?}"),
    }
}

/// The child: `try-open` reports whether it could open; `hold` opens, appends, reports and sleeps forever.
#[test]
fn env_child() {
    let (Ok(role), Ok(dir)) = (std::env::var("FOLDLOG_ENV_ROLE"), std::env::var("FOLDLOG_ENV_DIR")) else {
        return;
    };
    match role.as_str() {
        "try-open" => match Store::open_with(&dir, options()) {
            Ok(_) => emit("OPENED"),
            Err(Error::Locked { .. }) => emit("LOCKED"),
            Err(e) => emit(&format!("ERROR {e}")),
        },
        "hold" => {
            let store = open_retrying(Path::new(&dir), options()).expect("open");
            let plan_run = std::env::var("FOLDLOG_ENV_RUN").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
            let mut model = Model::new(plan_run);
            let plan = model.plan(&[("held".to_owned(), 5)], None);
            model.append(&store, &plan).expect("append");
            emit("HOLDING");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn child(role: &str, dir: &Path) -> std::process::Child {
    common::spawn_retrying(
        child_command("env_child")
            .env("FOLDLOG_ENV_ROLE", role)
            .env("FOLDLOG_ENV_DIR", dir)
            .env("FOLDLOG_ENV_RUN", "77"),
    )
    .expect("spawn child")
}

fn child_says(role: &str, dir: &Path) -> String {
    let out = child(role, dir).wait_with_output().expect("child output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| ["OPENED", "LOCKED", "ERROR"].iter().any(|t| l.starts_with(t)))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_second_open_in_this_process_is_refused_until_the_first_is_dropped() {
    let dir = ScratchDir::new("env-lock");
    let store = Store::open_with(dir.path(), options()).expect("open");
    assert!(matches!(Store::open_with(dir.path(), options()), Err(Error::Locked { .. })));
    // Readers run beside the writer and beside each other; a second writer is still refused.
    let ro = options().read_only(true);
    let reader = Store::open_with(dir.path(), ro.clone()).expect("a reader beside the writer");
    let reader2 = Store::open_with(dir.path(), ro).expect("readers share the directory's lock");
    assert!(
        matches!(Store::open_with(dir.path(), options()), Err(Error::Locked { .. })),
        "no second writer beside readers"
    );
    // Removing the store waits for every handle.
    drop(store);
    assert!(matches!(foldlog::StoreLock::acquire(dir.path()), Err(Error::Locked { .. })), "readers hold it");
    drop((reader, reader2));
    open_retrying(dir.path(), options()).expect("a writer after everyone left");
}

#[test]
fn a_second_open_from_another_process_is_refused() {
    let dir = ScratchDir::new("env-lock-proc");
    let store = Store::open_with(dir.path(), options()).expect("open");
    assert_eq!(child_says("try-open", dir.path()), "LOCKED");
    drop(store);
    // Another test thread may be forking right now and briefly hold a copy of our lock's descriptor (see
    // `open_retrying`), so allow the child a few tries.
    let mut said = String::new();
    for _ in 0..20 {
        said = child_says("try-open", dir.path());
        if said == "OPENED" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(said, "OPENED");
}

#[test]
fn the_lock_dies_with_a_killed_holder() {
    let dir = ScratchDir::new("env-kill-holder");
    let mut holder = child("hold", dir.path());
    let out = holder.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l == "HOLDING")), "holder never got the lock");
    assert!(matches!(Store::open_with(dir.path(), options()), Err(Error::Locked { .. })));
    holder.kill().expect("SIGKILL");
    holder.wait().expect("reap");
    let mut model = Model::new(77);
    let plan = model.plan(&[("held".to_owned(), 5)], None);
    model.push(&plan);
    assert_eq!(recovered(dir.path(), &mut model), 5, "the killed holder's acknowledged events survive");
}

#[test]
fn stray_files_are_ignored() {
    let dir = ScratchDir::new("env-stray");
    let mut model = log_with(dir.path(), 30, 3);
    let d = dir.path();
    std::fs::write(d.join(".DS_Store"), b"\0\0\0\x01Bud1").expect("write");
    std::fs::write(d.join("._00000000000000000000.seg"), b"\0\x05\x16\x07AppleDouble").expect("write");
    std::fs::write(d.join("index.ckpt.tmp-1-1"), b"half a checkpoint").expect("write");
    std::fs::write(d.join("00000000000000000000.seg.bak"), b"an editor's backup").expect("write");
    std::fs::write(d.join("0000000000000000000.seg"), b"nineteen digits").expect("write");
    std::fs::write(d.join("notes.txt"), b"hello").expect("write");
    std::fs::create_dir(d.join("backup")).expect("mkdir");
    std::fs::write(d.join("backup").join("00000000000000000000-0000000000.seg"), b"not ours").expect("write");
    recovered(d, &mut model);
    assert!(!d.join("index.ckpt.tmp-1-1").exists(), "a stale checkpoint temp file is removed");
    for kept in
        [".DS_Store", "._00000000000000000000.seg", "notes.txt", "backup", "00000000000000000000.seg.bak"]
    {
        assert!(d.join(kept).exists(), "{kept} is left alone");
    }
}

#[test]
fn a_symlink_or_directory_with_a_segment_name_is_refused() {
    for kind in ["symlink", "directory"] {
        let dir = ScratchDir::new("env-symlink");
        let model = log_with(dir.path(), 30, 4);
        let next = model.events.len() as u64;
        let name = dir.path().join(segment_file_name(next, segments(dir.path()).len() as u32));
        if kind == "symlink" {
            std::os::unix::fs::symlink(dir.path().join("00000000000000000000-0000000000.seg"), &name)
                .expect("symlink");
        } else {
            std::fs::create_dir(&name).expect("mkdir");
        }
        match Store::open_with(dir.path(), options()) {
            Err(Error::InvalidDirectory { path, reason }) => {
                assert_eq!(path, name, "{kind}: the error names the file");
                assert!(reason.contains("not a regular file"), "{kind}: {reason}");
            }
            other => panic!("{kind} with a segment name: {other:?}"),
        }
        let ro = options().read_only(true);
        assert!(
            matches!(Store::open_with(dir.path(), ro), Err(Error::InvalidDirectory { .. })),
            "{kind}, read-only"
        );
    }
}

#[test]
fn segment_file_names_must_agree_with_their_headers() {
    let dir = ScratchDir::new("env-rename");
    log_with(dir.path(), 40, 5);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "a few segments");
    // The last segment renamed to a later base: its header disagrees with its name.
    let last = segs.last().expect("segments").clone();
    let seq =
        parse_segment_file_name(&last.file_name().expect("name").to_string_lossy()).expect("a name").seq;
    let renamed = dir.path().join(segment_file_name(99_999, seq));
    std::fs::rename(&last, &renamed).expect("rename");
    match Store::open_with(dir.path(), options()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, renamed),
        Err(Error::InvalidDirectory { .. }) => {}
        other => panic!("renamed segment: {other:?}"),
    }
    std::fs::rename(&renamed, &last).expect("rename back");
    // A copy of a sealed segment under the next segment's name.
    let copy = dir.path().join(segment_file_name(99_999, segs.len() as u32));
    std::fs::copy(&segs[0], &copy).expect("copy");
    assert!(
        Store::open_with(dir.path(), options()).is_err(),
        "a segment copied under another name is refused"
    );
}

#[test]
fn a_segment_or_checkpoint_from_another_log_is_refused_or_ignored() {
    let a = ScratchDir::new("env-log-a");
    let b = ScratchDir::new("env-log-b");
    let mut model_a = log_with(a.path(), 40, 6);
    log_with(b.path(), 40, 6);
    let (segs_a, segs_b) = (segments(a.path()), segments(b.path()));
    // Same workload, so same positions and file names; only the log ids differ.
    assert_eq!(
        segs_a.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        segs_b.iter().map(|p| p.file_name()).collect::<Vec<_>>()
    );
    // A foreign checkpoint is ignored (rebuilt), and the log opens with its own events.
    std::fs::copy(b.path().join("index.ckpt"), a.path().join("index.ckpt")).expect("copy checkpoint");
    let store = Store::open_with(a.path(), options()).expect("open with a foreign checkpoint");
    assert!(
        matches!(store.recovery_report().checkpoint, CheckpointUse::Rebuilt(_)),
        "{:?}",
        store.recovery_report()
    );
    let n = model_a.events.len();
    check_store(&store, &model_a, n).expect("own events");
    drop(store);
    // A foreign segment in the middle of the sequence is refused, naming it.
    let victim = segs_a[1].clone();
    std::fs::copy(&segs_b[1], &victim).expect("copy segment");
    match Store::open_with(a.path(), options()) {
        Err(Error::InvalidDirectory { path, reason }) => {
            assert_eq!(path, victim);
            assert!(reason.contains("another log"), "{reason}");
        }
        other => panic!("foreign segment: {other:?}"),
    }
    let _ = &mut model_a;
}

#[test]
fn a_sealed_segment_deleted_while_open() {
    // Reads keep working from the maps the store holds; the next open refuses clearly.
    let dir = ScratchDir::new("env-delete");
    let mut model = log_with(dir.path(), 40, 8);
    let store = Store::open_with(dir.path(), options()).expect("open");
    let segs = segments(dir.path());
    std::fs::remove_file(&segs[1]).expect("delete a sealed segment");
    let n = model.events.len();
    check_store(&store, &model, n).expect("reads go on from the live maps");
    let plan = model.plan(&[("after-delete".to_owned(), 2)], None);
    model.append(&store, &plan).expect("appends go on");
    drop(store);
    match Store::open_with(dir.path(), options()) {
        Err(Error::Corrupt { path, kind, .. }) => {
            assert_eq!(kind, Corruption::SegmentNumber { found: 2, expected: 1 }, "{kind}");
            assert_eq!(path, segs[2], "the error names the segment after the gap");
        }
        other => panic!("a missing sealed segment: {other:?}"),
    }
}

#[test]
fn a_directory_copied_while_a_writer_runs() {
    // A copy taken file by file while appends go on is like a crash image with files from different moments:
    // it opens with an authentic prefix of what was appended, or refuses clearly. It is not a backup method.
    let dir = ScratchDir::new("env-copy-src");
    let store = std::sync::Arc::new(Store::open_with(dir.path(), options()).expect("open"));
    let writer = {
        let store = std::sync::Arc::clone(&store);
        std::thread::spawn(move || {
            let mut model = Model::new(9);
            let mut rng = Rng::new(9);
            for _ in 0..400 {
                let plan = model.plan(&random_counts(&mut rng, 3), None);
                model.append(&store, &plan).expect("append");
            }
            model
        })
    };
    let mut outcomes = (0, 0);
    let mut copies = Vec::new();
    for _ in 0..10 {
        let copy = ScratchDir::new("env-copy");
        for entry in std::fs::read_dir(dir.path()).expect("list").filter_map(|e| e.ok()) {
            if entry.file_name() != "LOCK" {
                let _ = std::fs::copy(entry.path(), copy.path().join(entry.file_name()));
            }
        }
        copies.push(copy);
        std::thread::sleep(Duration::from_millis(2));
    }
    let model = writer.join().expect("writer");
    drop(store);
    for copy in &copies {
        let mut m = model.clone();
        match check_dir(copy.path(), &options(), &mut m, 0) {
            Ok(Verdict::Recovered { .. }) => outcomes.0 += 1,
            Ok(Verdict::Refused(_)) => outcomes.1 += 1,
            Err(v) => panic!("a copy taken during writes: {v}"),
        }
    }
    eprintln!("T7 copies taken during writes: {} opened with a prefix, {} refused", outcomes.0, outcomes.1);
}

// ------------------------------------------------------------------------------------------------------------
// Hostile files
// ------------------------------------------------------------------------------------------------------------

/// Regression (found by reading the recovery path against the fuzz targets' contract, then confirmed here).
/// What broke: frame offsets are kept as u32 in the index, but nothing bounded a segment's capacity, neither
/// the one in a segment header nor `Options::segment_size_bytes`. A forged 4 GiB + 64 KiB (sparse) segment
/// with a valid checkpoint whose last covered frame ends past 4 GiB made open resume its scan there and panic
/// ("segment offsets fit in u32") on the next frame; a store opened with segments over 4 GiB would panic the
/// same way once a segment filled past 4 GiB. The fix: a header claiming more than 4 GiB is corruption, and
/// the option is clamped to 4 GiB, so no frame ever starts past what the index can hold.
#[test]
fn regression_frame_offsets_past_4_gib_are_refused_not_a_panic() {
    use foldlog_testkit::{checkpoint_for, fix_segment_crcs, segment_frames};
    use std::os::unix::fs::FileExt;
    // Two real frames (positions 0 and 1 of stream "s") to place far out.
    let src = ScratchDir::new("env-4g-src");
    let store = Store::open_with(src.path(), options()).expect("open");
    let mut model = Model::new(4);
    for _ in 0..2 {
        let plan = model.plan(&[("s".to_owned(), 1)], None);
        model.append(&store, &plan).expect("append");
    }
    drop(store);
    let seg = std::fs::read(src.path().join("00000000000000000000-0000000000.seg")).expect("read");
    let frames = segment_frames(&seg);
    let (f0, f1) =
        (&seg[frames[0].0..frames[0].0 + frames[0].1], &seg[frames[1].0..frames[1].0 + frames[1].1]);
    let capacity: u64 = (1 << 32) + (64 << 10);
    let o0 = ((1u64 << 32) - f0.len() as u64 / 2) / 16 * 16;
    let end = o0 + f0.len() as u64;
    assert!(o0 < 1 << 32 && end > 1 << 32);
    let mut header = seg[..128].to_vec();
    header[40..48].copy_from_slice(&capacity.to_le_bytes());
    header[64..128].fill(0);
    fix_segment_crcs(&mut header);
    let mut log_id = [0u8; 16];
    log_id.copy_from_slice(&seg[16..32]);
    let dir = ScratchDir::new("env-4g");
    std::fs::write(dir.path().join("LOCK"), b"").expect("lock file");
    let file = std::fs::File::create(dir.path().join("00000000000000000000-0000000000.seg")).expect("create");
    file.set_len(capacity).expect("sparse file");
    file.write_all_at(&header, 0).expect("header");
    file.write_all_at(f0, o0).expect("frame 0");
    file.write_all_at(f1, end).expect("frame 1");
    drop(file);
    let ckpt = checkpoint_for(log_id, &[("s", 0, o0, f0.len() as u64)]);
    std::fs::write(dir.path().join("index.ckpt"), ckpt).expect("checkpoint");
    for read_only in [true, false] {
        let r = std::panic::catch_unwind(|| {
            Store::open_with(dir.path(), options().read_only(read_only)).map(|_| ())
        });
        match r {
            Ok(Err(Error::Corrupt { .. })) => {}
            Ok(other) => panic!("read_only {read_only}: a 4 GiB segment: {other:?}"),
            Err(_) => panic!("read_only {read_only}: open panicked on a hostile segment"),
        }
    }
}

/// Regression (found by the `segment_open` fuzz target within seconds; input kept in
/// `fuzz/regressions/segment_open/`). What broke: a durable slot carries a write counter `seq`, and every sync
/// or close writes the next slot with `seq + 1`. A slot with a valid CRC and `seq` = u64::MAX (a forged or
/// misdirected header) was trusted, so the first sync or the close in `Drop` overflowed and panicked (release
/// builds keep overflow checks), a panic inside a destructor. The fix: a slot whose `seq` is beyond 2^62, which
/// no writer can reach, is not a valid slot; open falls back to the other slot or to none, and cuts nothing it
/// would not cut for a torn tail.
#[test]
fn regression_forged_slot_sequence_near_u64_max_is_ignored_not_an_overflow() {
    use foldlog_testkit::fix_segment_crcs;
    let dir = ScratchDir::new("env-slot-seq");
    let mut model = log_with(dir.path(), 10, 10);
    let seg = segments(dir.path()).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    // Slot A (offset 64) becomes the newest: seq = u64::MAX - 0 (odd, so it belongs in slot A), CRC valid.
    let slot_a = u64::from_le_bytes(bytes[64..72].try_into().expect("8 bytes"));
    let slot_b = u64::from_le_bytes(bytes[96..104].try_into().expect("8 bytes"));
    let newest = if slot_a >= slot_b { 64 } else { 96 };
    let mut forged = bytes[newest..newest + 32].to_vec();
    forged[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    bytes[64..96].copy_from_slice(&forged);
    fix_segment_crcs(&mut bytes);
    std::fs::write(&seg, &bytes).expect("write");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let n = model.events.len();
        check_dir(dir.path(), &options(), &mut model, n)
    }));
    match r {
        Ok(Ok(Verdict::Recovered { .. })) => {}
        Ok(other) => panic!("a forged slot sequence: {other:?}"),
        Err(_) => panic!("a forged slot sequence made the store panic"),
    }
}

/// Regression (found by the `index_checkpoint` fuzz target; input kept in `fuzz/regressions/index_checkpoint/`).
/// What broke: a checkpoint's segment entries were checked against the segment's capacity but not against
/// its header, so a checkpoint (CRCs recomputed) naming a segment end below 128 was accepted. Checkpoint
/// lists are read lazily; when one later failed its own CRC, the store rebuilt its index from the log using
/// that end and panicked computing `end - 128`. An end off the 16-byte frame grid would have sent scans and
/// the writer to unaligned offsets. The fix: a checkpoint whose segment ends are not frame boundaries inside
/// the segment is refused at open and the index rebuilt from the log.
#[test]
fn regression_checkpoint_segment_end_below_the_header_is_refused() {
    use foldlog_testkit::fix_checkpoint_crcs;
    for bad_end in [64u64, 200] {
        let dir = ScratchDir::new("env-ckpt-end");
        let mut model = log_with(dir.path(), 40, 12);
        let path = dir.path().join("index.ckpt");
        let mut ckpt = std::fs::read(&path).expect("a checkpoint");
        // Directory at 80: segment count, then the first segment's base and end.
        ckpt[96..104].copy_from_slice(&bad_end.to_le_bytes());
        fix_checkpoint_crcs(&mut ckpt);
        // Damage one list after the CRCs were fixed, so a lazy read of it fails and triggers a rebuild.
        let dir_len = u64::from_le_bytes(ckpt[56..64].try_into().expect("8 bytes")) as usize;
        let last = ckpt.len() - 1;
        assert!(80 + dir_len < last, "lists follow the directory");
        ckpt[last] ^= 0xFF;
        std::fs::write(&path, &ckpt).expect("write");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let n = model.events.len();
            check_dir(dir.path(), &options(), &mut model, n)
        }));
        match r {
            Ok(Ok(Verdict::Recovered { report, .. })) => {
                assert!(matches!(report.checkpoint, CheckpointUse::Rebuilt(_)), "end {bad_end}: {report:?}")
            }
            Ok(other) => panic!("end {bad_end}: {other:?}"),
            Err(_) => panic!("end {bad_end}: a forged checkpoint made the store panic"),
        }
    }
}

/// Regression (found by the `dir_damage` fuzz target; input kept in `fuzz/regressions/dir_damage/`). What
/// broke: when the frame header put its CRC first and the length second, the global reader kept testing
/// bytes 0..4 (now the CRC) for "no more frames in this segment". A non-zero byte there past the end of a
/// segment's frames (one flipped bit in unused space, left alone because the last close was clean) made
/// `read_all` fail with "no frame (zero length)" at the end of that segment once it was sealed, although
/// recovery had accepted the log. The fix tests the length field; a zero length ends a segment's frames for
/// readers exactly as for recovery.
#[test]
fn regression_garbage_crc_bytes_past_a_sealed_segments_end_do_not_stop_reads() {
    use foldlog_testkit::segment_frames;
    let dir = ScratchDir::new("env-end-crc");
    let mut model = log_with(dir.path(), 40, 13);
    let segs = segments(dir.path());
    let sealed = &segs[..segs.len() - 1];
    let (path, mut bytes, end) = sealed
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).expect("read");
            let end = segment_frames(&bytes).last().map(|(o, l)| o + l).expect("frames");
            (p.clone(), bytes, end)
        })
        .find(|(_, bytes, end)| end + 16 <= bytes.len())
        .expect("a sealed segment with room for one more header");
    bytes[end] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let n = model.events.len();
    assert_eq!(recovered(dir.path(), &mut model), n, "every event is read back");
}
