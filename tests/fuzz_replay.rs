//! T4 on stable: every committed fuzz input goes through the same function its cargo-fuzz target calls
//! (`foldlog_testkit::{frame_decode, segment_open, dir_damage, index_checkpoint}`), so CI covers the
//! corpora without nightly. Replayed, per target:
//!
//! - `fuzz/seeds/<target>/`: the hand-made seed corpus (≥ 20 per target), written by `generate_seeds` below;
//! - `fuzz/regressions/<target>/`: every crash the fuzzer ever found, minimized (committed);
//! - `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`: a local fuzzing session's corpus and crashes,
//!   when present (git-ignored).
//!
//! Regenerate the seeds with `FOLDLOG_WRITE_SEEDS=1 cargo test --release --test fuzz_replay generate_seeds`.

use std::path::{Path, PathBuf};

use foldlog_testkit::{hash64, sample_log, segment_frames, template_checkpoint, Rng, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(target: &str, kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fuzz_dir().join(kind).join(target))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn replay(target: &str) {
    if !fuzz_dir().exists() {
        // The packaged crate ships no corpora (a repository checkout always has `fuzz/`).
        eprintln!("T4 replay [{target}]: no fuzz/ directory here (a packaged crate): nothing to replay");
        return;
    }
    let (_, run) = TARGETS.iter().find(|(n, _)| *n == target).expect("known target");
    let mut counts = Vec::new();
    for kind in ["seeds", "regressions", "corpus", "artifacts"] {
        let files = inputs(target, kind);
        for path in &files {
            let data = std::fs::read(path).expect("read fuzz input");
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(
                r.is_ok(),
                "{target}: {} fails; reproduce with `cargo +nightly fuzz run {target} {}`",
                path.display(),
                path.display()
            );
        }
        counts.push(format!("{} {kind}", files.len()));
    }
    assert!(inputs(target, "seeds").len() >= 20, "{target}: fewer than 20 seeds");
    eprintln!("T4 replay [{target}]: {} inputs passed", counts.join(", "));
}

#[test]
fn replay_frame_decode() {
    replay("frame_decode");
}

#[test]
fn replay_segment_open() {
    replay("segment_open");
}

#[test]
fn replay_dir_damage() {
    replay("dir_damage");
}

#[test]
fn replay_index_checkpoint() {
    replay("index_checkpoint");
}

// ------------------------------------------------------------------------------------------------------------
// The seed generator
// ------------------------------------------------------------------------------------------------------------

/// A workload script for `dir_damage` and `sample_log`, built to the parser in `foldlog_testkit`.
struct Script(Vec<u8>);

impl Script {
    fn new(ops: u8) -> Script {
        Script(vec![ops.saturating_sub(4)])
    }
    /// The first byte whose meaning is (kind, streams, first stream), found by search so the generator stays
    /// in step with the parser's arithmetic.
    fn op(kind: u8, streams: u8, first: u8) -> u8 {
        (0..=255u8)
            .find(|op| op % 8 == kind && 1 + (op >> 3) % 3 == streams && (op >> 5) % 5 == first)
            .expect("an op byte")
    }
    fn append(mut self, streams: u8, first: u8, counts: &[u8], consumer: Option<u8>) -> Script {
        self.0.push(Script::op(if consumer.is_some() { 4 } else { 0 }, streams, first));
        self.0.extend(counts.iter().take(streams as usize).map(|c| c.saturating_sub(1)));
        if let Some(c) = consumer {
            self.0.push(c);
        }
        self
    }
    /// A truncation of stream `s<stream>` before `version` (`Some`), or a deletion of one (`None`): the
    /// parser's op bytes 195, 203, ..., 251, where `op >> 3` picks the stream and its lowest bit the kind, so
    /// not every stream has both; the first op of the kind for `stream`, else of the kind at all.
    fn control(mut self, stream: u8, version: Option<u8>) -> Script {
        let delete = u8::from(version.is_none());
        let ops = (0..=255u8).filter(|op| op % 8 == 3 && op >> 6 == 3 && (op >> 3) & 1 == delete);
        let op = ops.clone().find(|op| (op >> 3) % 5 == stream).or(ops.min()).expect("a control op byte");
        self.0.push(op);
        self.0.extend(version);
        self
    }
    fn sync(mut self) -> Script {
        self.0.push(5);
        self
    }
    fn checkpoint(mut self) -> Script {
        self.0.push(6);
        self
    }
    fn reopen(mut self) -> Script {
        self.0.push(7);
        self
    }
    /// A busy workload: `batches` appends across all stream shapes, with syncs, checkpoints and a reopen.
    fn busy(batches: u8, salt: u64) -> Script {
        let mut rng = Rng::new(salt);
        let mut s = Script::new(batches);
        for i in 0..batches {
            let streams = 1 + (rng.below(3) as u8);
            let counts = [1 + rng.below(4) as u8, 1 + rng.below(4) as u8, 1 + rng.below(4) as u8];
            let consumer = rng.chance(1, 5).then(|| rng.below(9) as u8);
            s = match i % 13 {
                5 => s.sync(),
                7 => s.control(rng.below(5) as u8, Some(rng.below(8) as u8)),
                9 => s.checkpoint(),
                11 if i % 26 == 24 => s.control(rng.below(5) as u8, None),
                12 => s.reopen(),
                _ => s.append(streams, rng.below(5) as u8, &counts, consumer),
            };
        }
        s
    }
}

fn u32le(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = fuzz_dir().join("seeds").join(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create seed directory");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("{name}-{:016x}", hash64(0, &[bytes]))), bytes).expect("write seed");
    }
}

#[test]
fn generate_seeds() {
    if std::env::var_os("FOLDLOG_WRITE_SEEDS").is_none() {
        return;
    }
    // Real logs to take frames, segments and checkpoints from.
    let small = sample_log(&Script::new(6).append(1, 0, &[1], None).append(2, 1, &[2, 3], Some(3)).sync().0);
    let busy = sample_log(&Script::busy(40, 1).0);
    let wide = sample_log(&Script::busy(30, 2).0);

    // frame_decode: flags (bit 0: recompute every CRC along the walk) + the bytes of segment number 0 after its
    // header (a segment of another number needs bit 0: its CRCs cover its own number).
    let mut fd = Vec::new();
    for (i, seg) in busy.0.iter().chain(&small.0).enumerate().take(6) {
        let frames = segment_frames(seg);
        let flags = u8::from(i != 0 && i != busy.0.len());
        for (j, upto) in [2usize, 5, 9, frames.len()].into_iter().enumerate() {
            let Some(&(off, len)) = frames.get(upto.saturating_sub(1)) else { continue };
            fd.push((format!("prefix-{i}-{j}"), [&[flags][..], &seg[128..off + len]].concat()));
            let mut flipped = seg[128..off + len].to_vec();
            let at = (j * 37 + 20) % flipped.len();
            flipped[at] ^= 0x20;
            fd.push((format!("flipped-crc-fixed-{i}-{j}"), [&[1u8][..], &flipped].concat()));
        }
    }
    let first = &busy.0[0];
    let end = segment_frames(first).last().map_or(128, |(o, l)| o + l);
    let region = &first[128..end];
    fd.push(("truncated".into(), [&[0u8][..], &region[..region.len() / 2]].concat()));
    fd.push(("names-only".into(), [&[0u8][..], &region[..64]].concat()));
    fd.push(("zeros".into(), vec![0u8; 64]));
    let mut huge = region.to_vec();
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    fd.push(("huge-length".into(), [&[1u8][..], &huge].concat()));
    fd.push(("empty".into(), vec![1u8]));
    write_seeds("frame_decode", &fd);

    // segment_open: flags (bit 0 valid header, bit 1 frame CRCs, bit 2 header CRCs) + capacity u16 + file.
    let mut so = Vec::new();
    for (name, log) in [("small", &small), ("busy", &busy), ("wide", &wide)] {
        let seg = &log.0[0];
        for flags in [0u8, 1, 3, 7] {
            so.push((format!("{name}-first-segment-flags{flags}"), [&[flags, 0, 0][..], seg].concat()));
        }
        let last = log.0.last().expect("segments");
        so.push((format!("{name}-last-segment-raw"), [&[0u8, 0, 0][..], last].concat()));
        let end = segment_frames(seg).last().map_or(128, |(o, l)| o + l);
        so.push((format!("{name}-cut-at-end"), [&[0u8, 0, 0][..], &seg[..end]].concat()));
        so.push((format!("{name}-cut-mid-frame"), [&[1u8, 0, 0][..], &seg[..end - 8]].concat()));
        let mut torn = seg.clone();
        torn[end - 300..end].fill(0);
        so.push((format!("{name}-torn-tail"), [&[0u8, 0, 0][..], &torn].concat()));
    }
    so.push(("empty-file".into(), vec![0u8, 0, 0]));
    so.push(("header-only".into(), [&[1u8, 0, 0][..], &busy.0[0][..128]].concat()));
    so.push(("zeros-with-header".into(), [&[1u8, 16, 0][..], &vec![0u8; 4096][..]].concat()));
    let mut junk = vec![0u8; 4096];
    Rng::new(9).fill(&mut junk);
    so.push(("junk-with-header".into(), [&[3u8, 0, 0][..], &junk[..]].concat()));
    write_seeds("segment_open", &so);

    // dir_damage: run id + workload script + damage operations (kind, file, arguments).
    let mut dd = Vec::new();
    let damages: [(&str, Vec<u8>); 14] = [
        ("none", vec![]),
        ("flip-first-segment", [vec![0, 0], u32le(700), vec![3]].concat()),
        ("flip-last-segment-tail", [vec![0, 254], u32le(4000), vec![1]].concat()),
        ("truncate-last", [vec![1, 254], u32le(2000)].concat()),
        ("truncate-first", [vec![1, 0], u32le(1000)].concat()),
        ("zero-range", [vec![2, 1], u32le(300), vec![200, 0]].concat()),
        ("splice-frame", vec![3, 1, 2, 5, 0]),
        ("splice-frame-at-end", vec![3, 254, 1, 0, 1]),
        ("rewrite-length", [vec![4, 0, 3], u32le(0xFFFF)].concat()),
        ("recompute-crc", vec![5, 0, 2, 40, 0x55]),
        ("delete-file", vec![6, 1]),
        ("foreign-frame", vec![7, 254, 1, 1]),
        ("garbage", [vec![8, 0], u32le(1500), vec![64], 7u64.to_le_bytes().to_vec()].concat()),
        ("extend-junk", vec![9, 254, 3, 1, 1, 2, 3, 4, 5, 6, 7, 8]),
    ];
    for (i, (name, damage)) in damages.iter().enumerate() {
        let script = Script::busy(12 + 2 * i as u8, i as u64).0;
        let n = u8::from(!damage.is_empty());
        dd.push((format!("dmg-{name}"), [&(i as u64 + 1).to_le_bytes()[..], &script, &[n], damage].concat()));
    }
    for i in 0..8u8 {
        let script = Script::busy(20 + i, 100 + u64::from(i)).0;
        let mut damage = vec![3u8];
        for j in 0..3u8 {
            let (_, d) = &damages[1 + ((i * 3 + j) as usize % 13)];
            damage.extend_from_slice(d);
        }
        dd.push((format!("dmg-combo-{i}"), [&[i + 50; 8][..], &script, &damage].concat()));
    }
    dd.push((
        "checkpoint-flip".into(),
        [&[9u8; 8][..], &Script::busy(25, 9).0, &[1, 0, 255], &u32le(90), &[2]].concat(),
    ));
    dd.push(("empty".into(), Vec::new()));
    // No damage operation, then the newest segment lost (deleted, cut below a header, renamed away): the
    // open must refuse, since a SEALED slot or the checkpoint proves it existed.
    for (i, (name, how)) in [("delete", 1u8), ("truncate", 2 + 4 * 40), ("rename", 3)].into_iter().enumerate()
    {
        let script = Script::busy(30 + i as u8, 200 + i as u64).0;
        dd.push((format!("lose-last-{name}"), [&[i as u8 + 70; 8][..], &script, &[0], &[how]].concat()));
    }
    write_seeds("dir_damage", &dd);

    // index_checkpoint: mode (0 raw file, 1 patches, 2 body under a valid header; bit 7 recompute CRCs).
    let ckpt = template_checkpoint();
    let mut ic = Vec::new();
    ic.push(("valid".into(), [&[0u8][..], &ckpt].concat()));
    for cut in [0usize, 40, 79, 80, 120, ckpt.len() / 2, ckpt.len() - 1] {
        ic.push((format!("truncated-{cut}"), [&[0u8][..], &ckpt[..cut]].concat()));
    }
    for (i, at) in [20u16, 33, 45, 90, 100, 130, 200].iter().enumerate() {
        let patch = [&at.to_le_bytes()[..], &[0xA5u8]].concat();
        ic.push((format!("patch-{at}"), [&[1u8][..], &patch].concat()));
        ic.push((format!("patch-{at}-crc-fixed"), [&[0x81u8][..], &patch].concat()));
        let _ = i;
    }
    ic.push(("body-only".into(), [&[2u8][..], &ckpt[32..64], &ckpt[80..]].concat()));
    ic.push(("body-only-crc-fixed".into(), [&[0x82u8][..], &ckpt[32..64], &ckpt[80..]].concat()));
    let mut shifted = ckpt[32..64].to_vec();
    shifted[0] ^= 1;
    ic.push(("next-position-changed-crc-fixed".into(), [&[0x82u8][..], &shifted, &ckpt[80..]].concat()));
    ic.push(("header-zeros-crc-fixed".into(), [&[0x80u8][..], &[0u8; 80][..]].concat()));
    ic.push(("extended".into(), [&[0x80u8][..], &ckpt, &[0u8; 16][..]].concat()));
    write_seeds("index_checkpoint", &ic);
}
