//! Shared by the crash, fault and environment tests.
//!
//! The oracle itself lives in the test kit (`crates/foldlog-testkit`) so the fuzz targets use the very same
//! checks; it is re-exported here. In short, with `A` the events appended in order and
//! `K` the number acknowledged as durable:
//!
//! - [`check_store`]: the store returns exactly `A[..n]` for some `K ≤ n ≤ |A|`, `n` on a batch boundary;
//!   every event is authentic on its own (its payload embeds stream, version, position, run and a hash);
//!   stream reads forward and backward, `stream_version`, `streams()` and consumer positions agree;
//! - [`check_dir`]: additionally a read-only open that must agree, a second open that must return the same,
//!   and a new append that must get position `n` and survive another reopen.
//!
//! Besides the oracle: a random batch shape generator, seed and size knobs from the environment, and the
//! re-execution of the test binary as a child process.

#![allow(dead_code, unused_imports)]

use std::process::{Command, Stdio};

pub use foldlog_testkit::{check_dir, check_store, Model, Plan, Rng, ScratchDir, TestEvent, Verdict};

/// A number from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The seed of a randomized test: `$FOLDLOG_SEED` if set, else `default` (so CI runs are reproducible).
pub fn seed(default: u64) -> u64 {
    env_u64("FOLDLOG_SEED", default)
}

/// Stream names used by the workloads: few enough that streams get long, many enough for multi-stream batches.
pub const STREAMS: [&str; 6] = ["account-1", "account-2", "order-7", "order-8", "cart-x", "s"];

/// A random batch shape: 1–3 distinct streams with 1–`max_events` events each.
pub fn random_counts(rng: &mut Rng, max_events: u64) -> Vec<(String, usize)> {
    let streams = 1 + rng.below(3) as usize;
    let first = rng.below(STREAMS.len() as u64) as usize;
    (0..streams)
        .map(|i| (STREAMS[(first + i) % STREAMS.len()].to_owned(), 1 + rng.below(max_events) as usize))
        .collect()
}

/// A command re-running this test binary, restricted to the one test `name`.
pub fn child_command(name: &str) -> Command {
    child_command_of(&std::env::current_exe().expect("path of the test binary"), name)
}

/// A private copy of this test binary in `dir`, for long runs: a concurrent `cargo test` replaces the
/// binary under `target/` when it rebuilds, and a child spawned at that moment would not start.
pub fn private_exe(dir: &std::path::Path) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let copy = dir.join(exe.file_name().expect("a file name"));
    std::fs::copy(&exe, &copy).expect("copy the test binary");
    copy
}

/// As [`child_command`], running the binary at `exe`.
pub fn child_command_of(exe: &std::path::Path, name: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Spawns `cmd`, retrying for a while on `ETXTBSY`: exec of the test binary itself fails with "text file
/// busy" while anything still holds the freshly linked executable open for writing (seen here right after a
/// rebuild). Any other error is returned at once.
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Writes one whole line to the process's stdout pipe. The line (below `PIPE_BUF`) leaves in a single
/// `write`, so a parent reading the pipe sees every line the child finished and nothing half-written, even
/// when the child is killed right after. `io::stdout` is not captured by the test harness.
pub fn emit(line: &str) {
    use std::io::Write;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    assert!(buf.len() < 4096, "lines stay below PIPE_BUF");
    let mut out = std::io::stdout().lock();
    out.write_all(&buf).and_then(|()| out.flush()).expect("write to the stdout pipe");
}

/// Flips every bit of the byte at `offset` of the file at `path` (damage for a test to find).
pub fn flip(path: &std::path::Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open for damage");
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).expect("read the byte");
    f.write_all_at(&[!b[0]], offset).expect("write the flipped byte");
}

pub use foldlog_testkit::segment_files;
