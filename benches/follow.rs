//! Wake latency: how long after `append` returns a subscriber sees the event, in the writer's process (a
//! subscription woken by the writer's condvar; issue 13's target p50 ≤ 20 µs, p99 ≤ 200 µs) and in another
//! process (a read-only handle polling the writer's head; issues 10 and 13: p99 ≤ 1 ms). Not a criterion
//! bench: the quantity is a latency distribution, between threads or processes, which criterion's timing
//! loop cannot express. Run with `cargo bench --bench follow`; `FOLLOW_EVENTS` (default 5,000) and
//! `FOLLOW_INTERVAL_US` (default 500) set the workload, `FOLLOW_IDLE_SECS` (default 3) the idle run.
//!
//! The writer appends one event at a time, paced, with the wall-clock time just before its `append` in the
//! payload; the subscriber (a thread, or this binary again as a child) records now − that time for each
//! event. Both read `SystemTime` on one machine, so the clocks agree.
//!
//! The idle run measures what a caught-up subscriber on a read-only handle costs while nothing is written:
//! a child process waits in `next_event` for `FOLLOW_IDLE_SECS` beside an idle writer and reports the CPU time
//! (`getrusage`, user + system) it used meanwhile.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foldlog::{Durability, EventRef, ExpectedVersion, NewEvent, Options, Store};

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn writer_options() -> Options {
    Options::default().durability(Durability::Never).segment_size_bytes(1 << 20)
}

fn main() {
    if let Ok(dir) = std::env::var("FOLLOW_READER_DIR") {
        return reader(&dir, env("FOLLOW_EVENTS", 5000));
    }
    if let Ok(dir) = std::env::var("FOLLOW_IDLE_DIR") {
        return idle_reader(&dir, Duration::from_secs(env("FOLLOW_IDLE_SECS", 3)));
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs benches as tests: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events = env("FOLLOW_EVENTS", 5000);
    let interval = Duration::from_micros(env("FOLLOW_INTERVAL_US", 500));
    in_process(events, interval);
    other_process(events, interval);
    idle();
}

/// Appends `events` events, one per call, `interval` apart, each stamped with the time just before it.
fn write_paced(store: &Store, events: u64, interval: Duration) {
    for i in 0..events {
        std::thread::sleep(interval);
        let stamp = now_nanos().to_le_bytes();
        let stream = format!("s{}", i % 16);
        store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("E", &stamp)]).expect("append");
    }
}

fn stamp_of(e: &EventRef<'_>) -> u64 {
    u64::from_le_bytes(e.payload().try_into().expect("an 8-byte stamp"))
}

/// A subscription in a thread of the writer's process.
fn in_process(events: u64, interval: Duration) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(tmp.path(), writer_options()).expect("writer");
    let lags = std::thread::scope(|s| {
        let subscriber = s.spawn(|| {
            let mut sub = store.subscribe(0);
            let mut lags = Vec::with_capacity(events as usize);
            while (lags.len() as u64) < events {
                let e = sub.next_event(Duration::from_secs(10)).expect("read").expect("an event within 10 s");
                lags.push(now_nanos().saturating_sub(stamp_of(&e)));
            }
            lags
        });
        write_paced(&store, events, interval);
        subscriber.join().expect("subscriber")
    });
    println!("{}", summary("subscription in the writer's process", lags));
}

/// A subscription on a read-only handle in a child process.
fn other_process(events: u64, interval: Duration) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(tmp.path(), writer_options()).expect("writer");
    store.append("warmup", ExpectedVersion::Any, &[NewEvent::new("W", &0u64.to_le_bytes())]).expect("append");
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env("FOLLOW_READER_DIR", tmp.path())
        .env("FOLLOW_EVENTS", events.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the reader");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("READY"));
    write_paced(&store, events, interval);
    for line in lines.map_while(Result::ok) {
        println!("{line}");
    }
    assert!(child.wait().expect("reader").success(), "the reader failed");
}

fn reader(dir: &str, events: u64) {
    let store = Store::open_with(dir, Options::default().read_only(true).create_if_missing(false))
        .expect("reader open");
    let mut sub = store.subscribe(store.next_position());
    println!("READY");
    std::io::stdout().flush().expect("flush");
    let mut lags = Vec::with_capacity(events as usize);
    while (lags.len() as u64) < events {
        let e = sub.next_event(Duration::from_secs(10)).expect("read").expect("an event within 10 s");
        lags.push(now_nanos().saturating_sub(stamp_of(&e)));
    }
    println!("{}", summary("subscription on a read-only handle in another process", lags));
}

/// A caught-up subscription on a read-only handle in a child process, beside a writer that appends nothing.
fn idle() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(tmp.path(), writer_options()).expect("writer");
    store.append("warmup", ExpectedVersion::Any, &[NewEvent::new("W", &0u64.to_le_bytes())]).expect("append");
    let out = Command::new(std::env::current_exe().expect("this binary"))
        .env("FOLLOW_IDLE_DIR", tmp.path())
        .output()
        .expect("run the idle reader");
    assert!(out.status.success(), "the idle reader failed: {}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    drop(store);
}

fn idle_reader(dir: &str, wait: Duration) {
    let store = Store::open_with(dir, Options::default().read_only(true).create_if_missing(false))
        .expect("reader open");
    let mut sub = store.subscribe(store.next_position());
    let (cpu, started) = (cpu_time(), std::time::Instant::now());
    assert!(sub.next_event(wait).expect("read").is_none(), "nothing is written");
    let (cpu, wall) = (cpu_time() - cpu, started.elapsed());
    println!(
        "idle subscription on a read-only handle in another process: {:.1} ms of CPU in {:.1} s ({:.2} % of a \
         core)",
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64(),
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    );
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given; `RUSAGE_SELF` is always valid.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0, "getrusage");
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn summary(what: &str, mut lags: Vec<u64>) -> String {
    lags.sort_unstable();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    format!(
        "{what}: over {} events, one per append: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, \
         max {:.0} µs",
        lags.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}
