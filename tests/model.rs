//! Model-based test: random operations run against a real store in a temporary directory and against a plain
//! in-memory model; after every operation the two must agree.
//!
//! Operations: appends with every expected-version kind and chosen first versions, multi-stream batches,
//! consumer positions, retries with event ids, filtered and stopped global reads, stream reads forward and
//! backward, clean reopen with and without the index checkpoint (and with another segment size), and
//! crash-reopen with a torn tail (bytes past the durable point zeroed); stream truncations and deletions with
//! every expected-version kind, after which every read must hide what they hide and appends to a deleted
//! stream are refused (issue 14). Segments are tiny (4–16 KiB) so rolls
//! and checkpoints happen all the time. Versions reach the numeric edge: first versions near
//! `STREAM_VERSION_MAX` and `u64::MAX`, and backward reads from `u64::MAX` (issue 9, items 5 and 6).
//! `PROPTEST_CASES` raises the case count (CI runs 1,000).

use std::collections::HashMap;
use std::path::Path;

use foldlog::{
    Batch, Durability, Error, ExpectedVersion, NewEvent, Options, ReadAll, Store, StreamAppend,
    STREAM_VERSION_MAX,
};
use proptest::prelude::*;

const STREAMS: [&str; 4] = ["acct-1", "acct-2", "a-much-longer-stream-identifier", "x"];
const TYPES: [&str; 3] = ["Opened", "Deposited", "Withdrawn"];
const CONSUMERS: [&str; 2] = ["projector", "mailer"];

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// Exact(actual + delta); delta 0 is the right version.
    Exact(i8),
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        events: Vec<(usize, u16)>,
        first_version: u64,
        ids: bool,
    },
    Multi {
        a: usize,
        b: usize,
        right: bool,
        consumer: Option<(usize, u8)>,
    },
    Consumer {
        name: usize,
        advance: u8,
    },
    Retry,
    ReadAll {
        from: u16,
        to: Option<u16>,
        ty: Option<usize>,
        limit: Option<u8>,
    },
    ReadStream {
        stream: usize,
        from: u8,
        backward: bool,
        limit: Option<u8>,
    },
    Reopen {
        drop_checkpoint: bool,
        bigger: bool,
    },
    CrashReopen {
        cut: u16,
    },
    Sync,
    /// Truncate (before a version near the stream's last, `near` picks it) or delete a stream.
    Control {
        stream: usize,
        expect: Expect,
        near: u8,
        delete: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        2 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::StreamExists),
        3 => (-1i8..=1).prop_map(Expect::Exact),
    ];
    // First versions: the usual 0 or 1, or at the numeric edge (just below the limit, past it, u64::MAX).
    let first_version = prop_oneof![
        6 => 0u64..2,
        1 => (STREAM_VERSION_MAX - 3)..=(STREAM_VERSION_MAX + 1),
        1 => Just(u64::MAX),
    ];
    prop_oneof![
        8 => (0..STREAMS.len(), expect, prop::collection::vec((0..TYPES.len(), 0u16..300), 0..4), first_version, any::<bool>())
            .prop_map(|(stream, expect, events, first_version, ids)| Op::Append { stream, expect, events, first_version, ids }),
        2 => (0..STREAMS.len(), 0..STREAMS.len(), any::<bool>(), prop::option::of((0..CONSUMERS.len(), 0u8..3)))
            .prop_map(|(a, b, right, consumer)| Op::Multi { a, b, right, consumer }),
        1 => (0..CONSUMERS.len(), 0u8..3).prop_map(|(name, advance)| Op::Consumer { name, advance }),
        1 => Just(Op::Retry),
        2 => (0u16..200, prop::option::of(0u16..200), prop::option::of(0..TYPES.len()), prop::option::of(0u8..20))
            .prop_map(|(from, to, ty, limit)| Op::ReadAll { from, to, ty, limit }),
        2 => (0..STREAMS.len(), 0u8..10, any::<bool>(), prop::option::of(0u8..10))
            .prop_map(|(stream, from, backward, limit)| Op::ReadStream { stream, from, backward, limit }),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(drop_checkpoint, bigger)| Op::Reopen { drop_checkpoint, bigger }),
        1 => (0u16..2000).prop_map(|cut| Op::CrashReopen { cut }),
        1 => Just(Op::Sync),
        1 => (0..STREAMS.len(), expect_again(), 0u8..8, prop::bool::weighted(0.2))
            .prop_map(|(stream, expect, near, delete)| Op::Control { stream, expect, near, delete }),
    ]
}

fn expect_again() -> impl Strategy<Value = Expect> {
    prop_oneof![
        2 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::StreamExists),
        3 => (-1i8..=1).prop_map(Expect::Exact),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct Ev {
    stream: String,
    version: u64,
    ty: String,
    payload: Vec<u8>,
    id: Option<u128>,
}

/// One write of a consumer position: (value, events in the log after the write, written with events).
#[derive(Clone, Debug)]
struct ConsumerWrite {
    position: u64,
    count_after: u64,
    with_events: bool,
}

/// One stream control written: (stream, merged truncation point, deleted, events in the log at the write).
#[derive(Clone, Debug)]
struct ControlWrite {
    stream: &'static str,
    before: u64,
    deleted: bool,
    count_after: u64,
}

#[derive(Default)]
struct Model {
    events: Vec<Ev>,
    consumers: HashMap<String, Vec<ConsumerWrite>>,
    /// Stream controls in log order.
    controls: Vec<ControlWrite>,
    next_id: u128,
    last_id_batch: Option<(usize, Vec<Ev>)>,
}

impl Model {
    fn last_version(&self, stream: &str) -> Option<u64> {
        self.events.iter().rev().find(|e| e.stream == stream).map(|e| e.version)
    }
    fn consumer(&self, name: &str) -> Option<u64> {
        self.consumers.get(name).and_then(|w| w.last()).map(|w| w.position)
    }
    /// The stream's truncation point and deletion, merged from the first `k` control writes.
    fn control_upto(&self, stream: &str, k: usize) -> (u64, bool) {
        self.controls
            .iter()
            .take(k)
            .filter(|c| c.stream == stream)
            .fold((0, false), |(b, d), c| (b.max(c.before), d || c.deleted))
    }
    fn control(&self, stream: &str) -> (u64, bool) {
        self.control_upto(stream, self.controls.len())
    }
    fn deleted(&self, stream: &str) -> bool {
        self.control(stream).1
    }
    fn hidden(&self, e: &Ev) -> bool {
        e.version < self.control(&e.stream).0
    }
    fn check(&self, expect: &ExpectedVersion, stream: &str) -> bool {
        let actual = self.last_version(stream);
        match expect {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(*v),
        }
    }
}

fn options(segment_size_bytes: u64) -> Options {
    Options::default()
        .segment_size_bytes(segment_size_bytes)
        .durability(Durability::Never)
        .checkpoint_every_bytes(16 << 10)
}

fn payload(seed: u64, len: u16) -> Vec<u8> {
    (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add(u64::from(i) * 7) % 251) as u8).collect()
}

fn to_expected(e: &Expect, actual: Option<u64>) -> ExpectedVersion {
    match e {
        Expect::Any => ExpectedVersion::Any,
        Expect::NoStream => ExpectedVersion::NoStream,
        Expect::StreamExists => ExpectedVersion::StreamExists,
        Expect::Exact(d) => ExpectedVersion::Exact(actual.unwrap_or(0).saturating_add_signed(i64::from(*d))),
    }
}

fn new_events(evs: &[Ev]) -> Vec<NewEvent<'_>> {
    evs.iter().map(|e| NewEvent::new(&e.ty, &e.payload).event_id(e.id)).collect()
}

/// Compares the whole store with the model: global order, every stream both ways, versions, consumers.
fn compare(store: &Store, m: &Model) {
    let got: Vec<Ev> = store
        .read_all(0)
        .map(|e| {
            let e = e.unwrap();
            Ev {
                stream: e.stream_id().into(),
                version: e.stream_version(),
                ty: e.event_type().into(),
                payload: e.payload().to_vec(),
                id: e.event_id(),
            }
        })
        .collect();
    let visible: Vec<Ev> = m.events.iter().filter(|e| !m.hidden(e)).cloned().collect();
    assert_eq!(got, visible);
    assert_eq!(store.next_position(), m.events.len() as u64);
    for s in STREAMS {
        let want: Vec<&Ev> = m.events.iter().filter(|e| e.stream == s && !m.hidden(e)).collect();
        let fwd: Vec<u64> = store.read_stream(s, 0).map(|e| e.unwrap().stream_version()).collect();
        assert_eq!(fwd, want.iter().map(|e| e.version).collect::<Vec<_>>(), "stream {s}");
        assert!(fwd.windows(2).all(|w| w[1] == w[0] + 1), "contiguous versions in {s}");
        let back: Vec<u64> =
            store.read_stream_backward(s, None).map(|e| e.unwrap().stream_version()).collect();
        assert_eq!(back, fwd.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(store.stream_version(s), m.last_version(s));
        let (before, deleted) = m.control(s);
        let state = store.stream_state(s);
        assert_eq!(state.map(|st| st.deleted), m.last_version(s).map(|_| deleted), "stream {s} deleted");
        if let (Some(st), Some(first)) = (state, m.events.iter().find(|e| e.stream == s)) {
            assert_eq!(st.first_visible, before.max(first.version), "stream {s} first visible");
        }
    }
    for c in CONSUMERS {
        assert_eq!(store.consumer_position(c), m.consumer(c), "consumer {c}");
    }
}

/// Walks the last segment's frames (16-byte headers: CRC, length, kind) and returns (offset of the first
/// event frame at or after `position`, end of the written frames).
fn tail_offsets(path: &Path, base: u64, position: u64) -> (u64, u64) {
    let b = std::fs::read(path).unwrap();
    let (mut at, mut p, mut first) = (128usize, base, None);
    while at + 16 <= b.len() {
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        if b[at + 8] == 1 {
            if p >= position && first.is_none() {
                first = Some(at as u64);
            }
            p += 1;
        }
        at += 16 + len.div_ceil(16) * 16;
    }
    (first.unwrap_or(at as u64), at as u64)
}

fn last_segment(dir: &Path) -> (std::path::PathBuf, u64) {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let last = segs.pop().unwrap();
    let name = last.file_name().unwrap().to_str().unwrap();
    let base = foldlog_testkit::parse_segment_file_name(name).unwrap().base;
    (last, base)
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut segment = 4096;
    let mut store = Store::open_with(dir.path(), options(segment)).unwrap();
    let mut m = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append { stream, expect, events, first_version, ids } => {
                let s = STREAMS[stream];
                let actual = m.last_version(s);
                let expected = to_expected(&expect, actual);
                let v0 = actual.map_or(first_version, |v| v + 1);
                // The last version the batch would take, if there is one.
                let last = (!events.is_empty()).then(|| v0.checked_add(events.len() as u64 - 1));
                let fits = last.is_none_or(|l| l.is_some_and(|l| l <= STREAM_VERSION_MAX));
                let evs: Vec<Ev> = events
                    .iter()
                    .enumerate()
                    .map(|(i, &(ty, len))| {
                        m.next_id += 1;
                        Ev {
                            stream: s.into(),
                            version: v0.wrapping_add(i as u64),
                            ty: TYPES[ty].into(),
                            payload: payload(step as u64 * 10 + i as u64, len),
                            id: ids.then_some(m.next_id),
                        }
                    })
                    .collect();
                let new = new_events(&evs);
                let batch = [StreamAppend::new(s, expected, &new).first_version(first_version)];
                let r = store.append_batch(&Batch::new(&batch));
                if first_version > STREAM_VERSION_MAX {
                    assert!(
                        matches!(r, Err(Error::InvalidArgument(_))),
                        "first version {first_version}: {r:?}"
                    );
                } else if m.deleted(s) {
                    // Refused before the expected version is looked at (fresh ids: never a retry).
                    assert!(matches!(r, Err(Error::StreamDeleted { .. })), "{r:?}");
                } else if m.check(&expected, s) && !fits {
                    assert!(matches!(r, Err(Error::InvalidArgument(_))), "past the version limit: {r:?}");
                    assert_eq!(store.next_position(), m.events.len() as u64, "nothing written");
                } else if m.check(&expected, s) {
                    let r = r.unwrap();
                    let p0 = m.events.len() as u64;
                    assert_eq!(r[0].positions, p0..p0 + evs.len() as u64);
                    assert_eq!(r[0].versions, v0..v0 + evs.len() as u64);
                    if ids && !evs.is_empty() {
                        m.last_id_batch = Some((stream, evs.clone()));
                    }
                    m.events.extend(evs);
                } else {
                    assert!(matches!(r, Err(Error::WrongExpectedVersion { .. })), "{r:?}");
                }
            }
            Op::Multi { a, b, right, consumer } => {
                if a == b {
                    continue;
                }
                let (sa, sb) = (STREAMS[a], STREAMS[b]);
                let (va, vb) = (m.last_version(sa), m.last_version(sb));
                let ea = if right {
                    va.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
                } else {
                    ExpectedVersion::Exact(99)
                };
                let ev_a = Ev {
                    stream: sa.into(),
                    version: va.map_or(0, |v| v + 1),
                    ty: "Debited".into(),
                    payload: vec![1; 10],
                    id: None,
                };
                let ev_b = Ev {
                    stream: sb.into(),
                    version: vb.map_or(0, |v| v + 1),
                    ty: "Credited".into(),
                    payload: vec![2; 10],
                    id: None,
                };
                let (na, nb) =
                    (new_events(std::slice::from_ref(&ev_a)), new_events(std::slice::from_ref(&ev_b)));
                let streams =
                    [StreamAppend::new(sa, ea, &na), StreamAppend::new(sb, ExpectedVersion::Any, &nb)];
                let consumer = consumer.map(|(c, adv)| {
                    (CONSUMERS[c], m.consumer(CONSUMERS[c]).map_or(u64::from(adv), |p| p + u64::from(adv)))
                });
                let mut batch = Batch::new(&streams);
                batch.consumer = consumer;
                let r = store.append_batch(&batch);
                let consumer_ok = consumer.is_none_or(|(c, p)| m.consumer(c).is_none_or(|cur| p > cur));
                let fits = ev_a.version <= STREAM_VERSION_MAX && ev_b.version <= STREAM_VERSION_MAX;
                if right && consumer_ok && fits && !m.deleted(sa) && !m.deleted(sb) {
                    r.unwrap();
                    m.events.push(ev_a);
                    m.events.push(ev_b);
                    if let Some((c, p)) = consumer {
                        let count_after = m.events.len() as u64;
                        m.consumers.entry(c.into()).or_default().push(ConsumerWrite {
                            position: p,
                            count_after,
                            with_events: true,
                        });
                    }
                } else {
                    assert!(r.is_err());
                }
            }
            Op::Consumer { name, advance } => {
                let c = CONSUMERS[name];
                let p = m.consumer(c).map_or(u64::from(advance), |cur| cur + u64::from(advance));
                let r = store.append_batch(&Batch::new(&[]).consumer(c, p));
                if m.consumer(c).is_none_or(|cur| p > cur) {
                    r.unwrap();
                    let count_after = m.events.len() as u64;
                    m.consumers.entry(c.into()).or_default().push(ConsumerWrite {
                        position: p,
                        count_after,
                        with_events: false,
                    });
                } else {
                    assert!(matches!(r, Err(Error::ConsumerPositionNotAdvanced { .. })), "{r:?}");
                }
            }
            Op::Retry => {
                let Some((stream, evs)) = m.last_id_batch.clone() else { continue };
                let new = new_events(&evs);
                let r = store.append(STREAMS[stream], ExpectedVersion::Any, &new);
                let known = evs.iter().filter(|e| m.events.iter().any(|x| x.id == e.id)).count();
                let next = m.last_version(STREAMS[stream]).map_or(Some(0), |v| v.checked_add(1));
                let fits = next
                    .and_then(|v| v.checked_add(evs.len() as u64 - 1))
                    .is_some_and(|l| l <= STREAM_VERSION_MAX);
                if known == 0 && m.deleted(STREAMS[stream]) {
                    assert!(matches!(r, Err(Error::StreamDeleted { .. })), "{r:?}");
                } else if known == 0 && !fits {
                    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
                } else if known == evs.len() {
                    let r = r.unwrap();
                    assert!(r.deduplicated);
                    let p0 = m.events.iter().position(|x| x.id == evs[0].id).unwrap() as u64;
                    assert_eq!(r.positions, p0..p0 + evs.len() as u64);
                } else if known == 0 {
                    // Lost in a crash: the retry writes them again, as new events at the end.
                    let r = r.unwrap();
                    assert!(!r.deduplicated);
                    let v0 = r.versions.start;
                    m.events
                        .extend(evs.into_iter().enumerate().map(|(i, e)| Ev { version: v0 + i as u64, ..e }));
                } else {
                    assert!(matches!(r, Err(Error::DuplicateEventId { .. })), "{r:?}");
                }
            }
            Op::ReadAll { from, to, ty, limit } => {
                let mut opts = ReadAll::default()
                    .from(u64::from(from))
                    .to_inclusive(to.map(u64::from))
                    .limit(limit.map(u64::from));
                opts.event_type = ty.map(|t| TYPES[t].to_string());
                let got: Vec<u64> = store.read_all_with(opts).map(|e| e.unwrap().position()).collect();
                let want: Vec<u64> = (0..m.events.len() as u64)
                    .filter(|&p| p >= u64::from(from) && to.is_none_or(|t| p <= u64::from(t)))
                    .filter(|&p| !m.hidden(&m.events[p as usize]))
                    .filter(|&p| ty.is_none_or(|t| m.events[p as usize].ty == TYPES[t]))
                    .take(limit.map_or(usize::MAX, usize::from))
                    .collect();
                assert_eq!(got, want);
            }
            Op::ReadStream { stream, from, backward, limit } => {
                let s = STREAMS[stream];
                // 9 reads from the far end: u64::MAX backward (the newest), a version near the limit forward.
                let from = match (from, backward) {
                    (9, true) => u64::MAX,
                    (9, false) => STREAM_VERSION_MAX - 1,
                    (v, _) => u64::from(v),
                };
                let mut want: Vec<u64> =
                    m.events.iter().filter(|e| e.stream == s && !m.hidden(e)).map(|e| e.version).collect();
                let it = if backward {
                    want.retain(|&v| v <= from);
                    want.reverse();
                    store.read_stream_backward(s, Some(from))
                } else {
                    want.retain(|&v| v >= from);
                    store.read_stream(s, from)
                };
                let n = limit.map_or(usize::MAX, usize::from);
                let got: Vec<u64> = it.take(n).map(|e| e.unwrap().stream_version()).collect();
                want.truncate(n);
                assert_eq!(got, want);
            }
            Op::Reopen { drop_checkpoint, bigger } => {
                store.close().unwrap();
                // Reopened with other options: segments four times larger, or back to 4 KiB (item 7).
                segment = if bigger { 16384 } else { 4096 };
                if drop_checkpoint {
                    let _ = std::fs::remove_file(dir.path().join("index.ckpt"));
                }
                store = Store::open_with(dir.path(), options(segment)).unwrap();
                compare(&store, &m);
            }
            Op::CrashReopen { cut } => {
                let durable = store.durable_position();
                store.abandon();
                // Tear the tail: zero up to `cut` bytes at the end of the written frames, never below the
                // first event that was not yet durable.
                let (path, base) = last_segment(dir.path());
                let (first_unsynced, end) = tail_offsets(&path, base, durable);
                let from = end.saturating_sub(u64::from(cut)).max(first_unsynced);
                if from < end {
                    use std::os::unix::fs::FileExt;
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.write_all_at(&vec![0u8; (end - from) as usize], from).unwrap();
                }
                store = Store::open_with(dir.path(), options(segment)).unwrap();
                let n = store.next_position();
                assert!(
                    durable <= n && n <= m.events.len() as u64,
                    "recovered {n}, durable {durable}, appended {}",
                    m.events.len()
                );
                m.events.truncate(n as usize);
                for (name, writes) in m.consumers.iter_mut() {
                    // Writes that precede a recovered event must survive; later ones may survive in order.
                    let must = writes
                        .iter()
                        .rposition(|w| w.count_after < n || (w.with_events && w.count_after <= n));
                    let got = store.consumer_position(name);
                    let kept = match got {
                        None => {
                            assert!(must.is_none(), "consumer {name} lost a write before recovered events");
                            0
                        }
                        Some(p) => {
                            let i = writes.iter().position(|w| w.position == p).expect("a written position");
                            assert!(must.is_none_or(|m| i >= m) && writes[i].count_after <= n);
                            i + 1
                        }
                    };
                    writes.truncate(kept);
                }
                // Controls before a recovered event must survive; of the later ones, a prefix (the log is one).
                let must = m.controls.iter().filter(|c| c.count_after < n).count();
                let may = m.controls.iter().filter(|c| c.count_after <= n).count();
                let shown = |k: usize| {
                    STREAMS.iter().all(|s| {
                        let (before, deleted) = m.control_upto(s, k);
                        let first = m.events.iter().find(|e| e.stream == *s).map(|e| e.version);
                        let state = store.stream_state(s).map(|st| (st.first_visible, st.deleted));
                        state == first.map(|f| (before.max(f), deleted))
                    })
                };
                let kept = (must..=may)
                    .find(|&k| shown(k))
                    .expect("the recovered controls are a prefix of the written");
                m.controls.truncate(kept);
                if let Some((_, evs)) = &m.last_id_batch {
                    if evs.iter().any(|e| !m.events.iter().any(|x| x.id == e.id)) {
                        m.last_id_batch = None;
                    }
                }
                compare(&store, &m);
                // Recovery is idempotent: a second open sees the same log.
                store.abandon();
                store = Store::open_with(dir.path(), options(segment)).unwrap();
                compare(&store, &m);
            }
            Op::Sync => {
                store.sync().unwrap();
                assert_eq!(store.durable_position(), m.events.len() as u64);
            }
            Op::Control { stream, expect, near, delete } => {
                let s = STREAMS[stream];
                let last = m.last_version(s);
                let expected = to_expected(&expect, last);
                // A point around the stream's end: below it, at last + 1, or past it (refused).
                let v = last.map_or(u64::from(near), |l| l.saturating_sub(4).saturating_add(u64::from(near)));
                let r = if delete {
                    store.delete_stream(s, expected)
                } else {
                    store.truncate_before(s, expected, v)
                };
                let (before, deleted) = m.control(s);
                if !m.check(&expected, s) {
                    assert!(matches!(r, Err(Error::WrongExpectedVersion { .. })), "{r:?}");
                } else if let Some(last) = last.filter(|_| !deleted) {
                    let end = last + 1;
                    if !delete && v > end {
                        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
                    } else {
                        r.unwrap();
                        let point = if delete { end } else { v };
                        m.controls.push(ControlWrite {
                            stream: s,
                            before: point.max(before),
                            deleted: delete,
                            count_after: m.events.len() as u64,
                        });
                    }
                } else if last.is_none() {
                    assert!(matches!(r, Err(Error::StreamNotFound { .. })), "{r:?}");
                } else {
                    assert!(matches!(r, Err(Error::StreamDeleted { .. })), "{r:?}");
                }
                compare(&store, &m);
            }
        }
    }
    compare(&store, &m);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options(segment)).unwrap();
    compare(&store, &m);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
