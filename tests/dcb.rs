//! Dynamic consistency boundaries: tags, reads by query, conditional appends (issue 17).
//!
//! Goal: a conditional append is exact. Its check runs under the writer lock against the index, so a rule
//! that spans entities ("a course takes at most N students") holds whatever the interleaving of writers, and
//! whatever the crashes. Method: the tag and type indexes are compared with a fold of the log after appends,
//! a checkpointed reopen, a rebuild and a mix of saved and new lists; the refusal is checked for what it
//! names and for writing nothing, alone and combined with expected versions and consumer positions; then many
//! threads race to enroll students into courses with a capacity, and the final log must never hold more
//! enrolments than the capacity, nor a student twice; last, a child process enrolling students is killed
//! (`kill -9`) over and over, and every recovered log must keep the same rule.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{child_command_of, env_u64, private_exe, seed, spawn_retrying, Rng, ScratchDir};
use foldlog::{
    AppendCondition, Batch, Durability, Error, ExpectedVersion, NewEvent, Options, Query, QueryItem, Store,
    StreamAppend,
};
use foldlog_testkit::open_retrying;

/// The positions of the events of `store` that match `q`, by a fold of the whole log (no index).
fn fold(store: &Store, q: &Query, after: Option<u64>) -> Vec<u64> {
    let from = after.map_or(0, |a| a + 1);
    store.read_all(from).map(|e| e.unwrap()).filter(|e| q.matches(e)).map(|e| e.position()).collect()
}

fn read(store: &Store, q: &Query, after: Option<u64>) -> Vec<u64> {
    store.read(q, after, None).map(|e| e.unwrap().position()).collect()
}

const TYPES: [&str; 3] = ["CourseDefined", "StudentEnrolled", "StudentLeft"];

/// Appends `n` events of random types with 0–3 random tags out of `tags`, over a few streams.
fn append_random(store: &Store, rng: &mut Rng, n: usize, tags: &[String]) {
    for _ in 0..n {
        let picked: Vec<&str> =
            (0..rng.below(4)).map(|_| tags[rng.below(tags.len() as u64) as usize].as_str()).collect();
        let ty = TYPES[rng.below(3) as usize];
        let stream = format!("s-{}", rng.below(5));
        store.append(&stream, ExpectedVersion::Any, &[NewEvent::new(ty, b"x").tags(&picked)]).unwrap();
    }
}

fn queries(tags: &[String]) -> Vec<Query> {
    let mut qs = vec![Query::all()];
    for t in tags {
        qs.push(Query::new([QueryItem::new().tags([t.as_str()])]));
        qs.push(Query::new([QueryItem::new().types(["StudentEnrolled"]).tags([t.as_str()])]));
    }
    for ty in TYPES {
        qs.push(Query::new([QueryItem::new().types([ty])]));
    }
    qs.push(Query::new([
        QueryItem::new().types(["CourseDefined", "StudentLeft"]).tags([tags[0].as_str(), tags[1].as_str()]),
        QueryItem::new().tags([tags[2].as_str()]),
    ]));
    qs.push(Query::new([QueryItem::new().tags(["never-used"])]));
    qs
}

/// Every query, from the start and from the middle, against the fold.
fn check_all(store: &Store, tags: &[String], what: &str) {
    let middle = store.next_position() / 2;
    for q in queries(tags) {
        for after in [None, Some(middle)] {
            assert_eq!(read(store, &q, after), fold(store, &q, after), "{what}: {q:?} after {after:?}");
        }
    }
}

/// The tag and type indexes agree with a fold of the log: live, after a checkpointed reopen (saved lists,
/// read lazily), with appends on top of a checkpoint (saved and new parts of one list), and rebuilt from the
/// log when the checkpoint is gone.
#[test]
fn query_reads_agree_with_a_fold_after_reopen_checkpoint_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_size_bytes(64 << 10);
    let tags: Vec<String> = (0..12).map(|i| format!("tag:{i}")).collect();
    let mut rng = Rng::new(seed(17));
    let store = open_retrying(dir.path(), options.clone()).unwrap();
    append_random(&store, &mut rng, 3000, &tags);
    check_all(&store, &tags, "live");
    let stats = store.stats();
    assert_eq!((stats.event_types, stats.tags), (3, 12));
    store.close().unwrap();

    let store = open_retrying(dir.path(), options.clone()).unwrap();
    assert!(matches!(store.recovery_report().checkpoint, foldlog::CheckpointUse::Used(3000)));
    check_all(&store, &tags, "from the checkpoint");
    append_random(&store, &mut rng, 500, &tags);
    check_all(&store, &tags, "saved and new parts");
    store.close().unwrap();

    let store = open_retrying(dir.path(), options.clone()).unwrap();
    check_all(&store, &tags, "a checkpoint of a checkpoint-backed index");
    store.close().unwrap();

    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = open_retrying(dir.path(), options.clone().read_only(true)).unwrap();
    check_all(&store, &tags, "rebuilt from the log");
    // Limits and `after` past the head.
    let q = Query::new([QueryItem::new().tags([tags[0].as_str()])]);
    let all = fold(&store, &q, None);
    let first3: Vec<u64> = store.read(&q, None, Some(3)).map(|e| e.unwrap().position()).collect();
    assert_eq!(first3, all[..3]);
    assert_eq!(store.read(&q, Some(u64::MAX), None).count(), 0);
    assert_eq!(store.read(&q, None, None).head(), Some(3499));
}

/// Everything a subscription delivers without waiting, and where its position ends.
fn drain(sub: &mut foldlog::Subscription<'_>) -> (Vec<u64>, u64) {
    let mut got = Vec::new();
    while let Some(e) = sub.next_event(Duration::ZERO).unwrap() {
        got.push(e.position());
    }
    (got, foldlog::Subscription::position(sub))
}

/// Subscriptions by query (issue 17, item 5) deliver exactly what a fold of the log selects, in order, caught
/// up and then live, and their position moves past what does not match; so do subscriptions by a type set,
/// read through the type index where the type is rare and by a scan where it is common, and the type-filtered
/// global read with its bounds and limit. Live, and from a checkpoint (saved lists).
#[test]
fn subscriptions_and_filtered_reads_by_query_agree_with_a_fold() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_size_bytes(64 << 10);
    let tags: Vec<String> = (0..8).map(|i| format!("tag:{i}")).collect();
    let mut rng = Rng::new(seed(23));
    let store = open_retrying(dir.path(), options.clone()).unwrap();
    let rare = |store: &Store, rng: &mut Rng| {
        for _ in 0..5 {
            let n = 40 + rng.below(40) as usize;
            append_random(store, rng, n, &tags);
            store.append("rare", ExpectedVersion::Any, &[NewEvent::new("Rare", b"r")]).unwrap();
        }
    };
    rare(&store, &mut rng);
    let check = |store: &Store, what: &str| {
        let head = store.next_position();
        let mut qs = queries(&tags);
        qs.push(Query::new([QueryItem::new().types(["Rare"])]));
        for q in &qs {
            for from in [0, head / 3] {
                let (got, position) = drain(&mut store.subscribe(from).query(q.clone()));
                let want = fold(store, q, from.checked_sub(1));
                assert_eq!(got, want, "{what}: subscription to {q:?} from {from}");
                assert_eq!(position, head, "{what}: the position moves past what does not match");
            }
        }
        for types in [vec!["Rare"], vec!["StudentEnrolled"], vec!["Rare", "CourseDefined"], vec!["Nope"]] {
            let q = Query::new([QueryItem::new().types(types.clone())]);
            let (got, position) = drain(&mut store.subscribe(0).event_types(types.clone()));
            assert_eq!(
                (got, position),
                (fold(store, &q, None), head),
                "{what}: subscription to types {types:?}"
            );
        }
        for ty in ["Rare", "StudentEnrolled", "Nope"] {
            let q = Query::new([QueryItem::new().types([ty])]);
            let all = fold(store, &q, None);
            let bounded = |from: u64, to: u64| -> Vec<u64> {
                all.iter().copied().filter(|&p| p >= from && p <= to).collect()
            };
            for (from, to, limit) in [(0, None, None), (head / 4, Some(head / 2), None), (1, None, Some(2))] {
                let opts =
                    foldlog::ReadAll::default().from(from).to_inclusive(to).event_type(ty).limit(limit);
                let got: Vec<u64> = store.read_all_with(opts).map(|e| e.unwrap().position()).collect();
                let mut want = bounded(from, to.unwrap_or(u64::MAX));
                want.truncate(limit.map_or(usize::MAX, |l| l as usize));
                assert_eq!(got, want, "{what}: read_all of type {ty} from {from} to {to:?} limit {limit:?}");
            }
        }
    };
    check(&store, "live");
    // Live delivery: subscriptions made at the head see exactly the matches appended after it.
    let qs = queries(&tags);
    let start = store.next_position();
    let mut subs: Vec<_> = qs.iter().map(|q| store.subscribe(start).query(q.clone())).collect();
    rare(&store, &mut rng);
    for (q, sub) in qs.iter().zip(&mut subs) {
        assert_eq!(drain(sub), (fold(&store, q, Some(start - 1)), store.next_position()), "live: {q:?}");
    }
    drop(subs);
    store.close().unwrap();
    let store = open_retrying(dir.path(), options).unwrap();
    check(&store, "from a checkpoint");
}

/// A subscription by query blocks at the head and wakes for a matching commit made by another thread; the
/// commits that do not match before it do not wake it with an event.
#[test]
fn a_query_subscription_wakes_for_a_matching_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_retrying(dir.path(), Options::default()).unwrap();
    let q = Query::new([QueryItem::new().types(["StudentEnrolled"]).tags(["course:7"])]);
    let mut sub = store.subscribe(0).query(q);
    assert!(sub.next_event(Duration::from_millis(20)).unwrap().is_none());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            let other = NewEvent::new("StudentEnrolled", b"s1").tags(&["course:8"]);
            store.append("courses", ExpectedVersion::Any, &[other]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let wanted = NewEvent::new("StudentEnrolled", b"s2").tags(&["course:7", "student:2"]);
            store.append("courses", ExpectedVersion::Any, &[wanted]).unwrap();
        });
        let e = sub.next_event(Duration::from_secs(10)).unwrap().expect("woken by the matching commit");
        assert_eq!((e.position(), e.payload()), (1, &b"s2"[..]));
    });
    assert_eq!(sub.position(), 2);
}

/// A read whose item pairs a rare tag with a common type joins on the tag alone and checks the type on each
/// frame (a loose join): the events of other types that carry the tag are skipped, count toward no limit, and
/// the result is what a fold selects; live and from a checkpoint.
#[test]
fn a_rare_tag_carried_by_several_types_reads_only_the_types_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_retrying(dir.path(), Options::default()).unwrap();
    for i in 0..2000u32 {
        let ty = if i % 10 == 0 { "Other" } else { "Common" };
        // Every 50th event carries the rare tag, whatever its type (Common, Other or Third in turn).
        let rare = i % 50 == 0;
        let ty = if rare { ["Common", "Other", "Third"][(i / 50 % 3) as usize] } else { ty };
        let tags: &[&str] = if rare { &["rare", "x"] } else { &["x"] };
        store.append("s", ExpectedVersion::Any, &[NewEvent::new(ty, b"e").tags(tags)]).unwrap();
    }
    let queries = [
        Query::new([QueryItem::new().types(["Common"]).tags(["rare"])]),
        Query::new([QueryItem::new().types(["Common", "Third"]).tags(["rare"])]),
        Query::new([
            QueryItem::new().types(["Third"]).tags(["rare", "x"]),
            QueryItem::new().types(["Other"]),
        ]),
    ];
    let check = |store: &Store, what: &str| {
        for q in &queries {
            for after in [None, Some(700)] {
                assert_eq!(read(store, q, after), fold(store, q, after), "{what}: {q:?} after {after:?}");
            }
            let all = fold(store, q, None);
            let first3: Vec<u64> = store.read(q, None, Some(3)).map(|e| e.unwrap().position()).collect();
            assert_eq!(first3, all[..3], "{what}: skipped candidates take no place in the limit");
        }
    };
    check(&store, "live");
    store.close().unwrap();
    let store = open_retrying(dir.path(), Options::default()).unwrap();
    check(&store, "from a checkpoint");
}

/// A refused conditional append names the first matching event after the position and writes nothing; the
/// same append on the newer position succeeds.
#[test]
fn a_refused_condition_names_the_event_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_retrying(dir.path(), Options::default()).unwrap();
    let define = [NewEvent::new("CourseDefined", b"cap=1").tags(&["course:7"])];
    store.append("courses", ExpectedVersion::NoStream, &define).unwrap();
    let other = [NewEvent::new("StudentEnrolled", b"").tags(&["course:8", "student:1"])];
    store.append("enrolments", ExpectedVersion::Any, &other).unwrap();
    let course = Query::new([QueryItem::new().types(["StudentEnrolled"]).tags(["course:7"])]);
    let e1 = [NewEvent::new("StudentEnrolled", b"").tags(&["course:7", "student:1"])];
    // Nothing matches after position 0 (the other course's enrolment does not carry course:7).
    let done = store.append_if("enrolments", &e1, &AppendCondition::new(course.clone()).after(0)).unwrap();
    assert_eq!(done.positions, 2..3);
    let e2 = [NewEvent::new("StudentEnrolled", b"").tags(&["course:7", "student:2"])];
    let refused = store.append_if("enrolments", &e2, &AppendCondition::new(course.clone()).after(1));
    match refused {
        Err(Error::AppendConditionFailed { position, stream, event_type }) => {
            assert_eq!(
                (position, stream.as_str(), event_type.as_str()),
                (2, "enrolments", "StudentEnrolled")
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.next_position(), 3, "a refused append writes nothing");
    // `after` None: any matching event at all.
    assert!(store.append_if("enrolments", &e2, &AppendCondition::new(course.clone())).is_err());
    store.append_if("enrolments", &e2, &AppendCondition::new(course).after(2)).unwrap();
    assert_eq!(store.next_position(), 4);
    // The message names the event for a person too.
    let err = store.append_if("x", &e2, &AppendCondition::default()).unwrap_err();
    assert!(err.to_string().contains("position 0"), "{err}");
}

/// One batch may carry expected versions, a consumer position and a condition: any failed check writes
/// nothing of it, and a batch that passes them all writes all of it.
#[test]
fn a_condition_combines_with_expected_versions_and_consumer_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_retrying(dir.path(), Options::default()).unwrap();
    let tagged = [NewEvent::new("Booked", b"").tags(&["room:1"])];
    store.append("booking-1", ExpectedVersion::NoStream, &tagged).unwrap();
    let room = Query::new([QueryItem::new().tags(["room:1"])]);
    let fresh = AppendCondition::new(room.clone()).after(0);
    let stale = AppendCondition::new(room);
    let (a, b) = ([NewEvent::new("Booked", b"").tags(&["room:1"])], [NewEvent::new("Billed", b"")]);
    let streams = [
        StreamAppend::new("booking-2", ExpectedVersion::NoStream, &a),
        StreamAppend::new("bill-2", ExpectedVersion::NoStream, &b),
    ];
    // The condition fails: nothing, not even the consumer position, is written.
    let r = store.append_batch(&Batch::new(&streams).consumer("booker", 1).condition(&stale));
    assert!(matches!(r, Err(Error::AppendConditionFailed { position: 0, .. })), "{r:?}");
    // An expected version fails with a condition that holds: still nothing.
    let wrong = [StreamAppend::new("booking-1", ExpectedVersion::NoStream, &a)];
    let r = store.append_batch(&Batch::new(&wrong).condition(&fresh));
    assert!(matches!(r, Err(Error::WrongExpectedVersion { .. })), "{r:?}");
    store.append_batch(&Batch::default().consumer("booker", 5)).unwrap();
    let r = store.append_batch(&Batch::new(&streams).consumer("booker", 3).condition(&fresh));
    assert!(matches!(r, Err(Error::ConsumerPositionNotAdvanced { .. })), "{r:?}");
    assert_eq!((store.next_position(), store.consumer_position("booker")), (1, Some(5)));
    // All three pass: all of it is written, atomically.
    let done = store.append_batch(&Batch::new(&streams).consumer("booker", 6).condition(&fresh)).unwrap();
    assert_eq!((done[0].positions.clone(), done[1].positions.clone()), (1..2, 2..3));
    assert_eq!(store.consumer_position("booker"), Some(6));
    // A batch of no events checks its condition and writes nothing either way.
    assert!(store.append_batch(&Batch::default().condition(&fresh)).is_err());
    store.append_batch(&Batch::default().condition(&AppendCondition::new(Query::all()).after(2))).unwrap();
    assert_eq!(store.next_position(), 3);
}

/// The course rule, decided from a read and guarded by a condition: the events of `course` that change its
/// head count, and the students enrolled in it.
fn course_query(course: &str) -> Query {
    Query::new([QueryItem::new().types(["StudentEnrolled", "StudentLeft"]).tags([course])])
}

/// One enrolment attempt: read the course, decide, append if nothing changed since. `Ok(true)` enrolled,
/// `Ok(false)` full or already enrolled; `Err` refused by the condition (someone else got in first).
fn try_enroll(
    store: &Store,
    course: &str,
    student: &str,
    capacity: usize,
    think: Duration,
) -> foldlog::Result<bool> {
    let q = course_query(course);
    let read = store.read(&q, None, None);
    let head = read.head();
    let mut enrolled = BTreeSet::new();
    for e in read {
        let e = e?;
        let who = e.tags().find(|t| t.starts_with("student:")).unwrap_or_default().to_owned();
        if e.event_type() == "StudentEnrolled" {
            enrolled.insert(who);
        } else {
            enrolled.remove(&who);
        }
    }
    if enrolled.len() >= capacity || enrolled.contains(student) {
        return Ok(false);
    }
    // A decision takes time (a request, a check elsewhere): the window in which another writer gets in.
    std::thread::sleep(think);
    let tags = [course, student];
    let event = [NewEvent::new("StudentEnrolled", student.as_bytes()).tags(&tags)];
    store.append_if(&format!("enrolments-{course}"), &event, &AppendCondition::new(q).after(head))?;
    Ok(true)
}

/// Enrolments per course in the whole log (a fold, no index): course → students in log order.
fn enrolments(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in store.read_all(0) {
        let e = e.unwrap();
        if e.event_type() != "StudentEnrolled" {
            continue;
        }
        let course = e.tags().find(|t| t.starts_with("course:")).unwrap().to_owned();
        let student = e.tags().find(|t| t.starts_with("student:")).unwrap().to_owned();
        out.entry(course).or_default().push(student);
    }
    out
}

/// The rule on a whole log: no course over `capacity`, no student twice in a course.
fn check_rule(store: &Store, capacity: usize) -> Result<usize, String> {
    let mut total = 0;
    for (course, students) in enrolments(store) {
        if students.len() > capacity {
            return Err(format!(
                "{course} has {} students, capacity {capacity}: {students:?}",
                students.len()
            ));
        }
        let unique: BTreeSet<&String> = students.iter().collect();
        if unique.len() != students.len() {
            return Err(format!("{course} enrolled a student twice: {students:?}"));
        }
        total += students.len();
    }
    Ok(total)
}

/// The race: 8 threads × 3 courses of capacity 5, each thread trying to enroll 10 students of its own into
/// every course, retrying when its condition is refused, and pausing 0.2 ms between its read and its append
/// (the decision), so that other writers get in between. Without the condition (or with a check outside the
/// writer lock) two writers that read the same head count both append; with it, every course ends with
/// exactly its capacity, never more, and refusals did happen (the race was real).
#[test]
fn concurrent_enrolments_never_exceed_the_capacity() {
    const THREADS: usize = 8;
    const CAPACITY: usize = 5;
    const THINK: Duration = Duration::from_micros(200);
    let rounds = env_u64("FOLDLOG_DCB_ROUNDS", 5);
    let mut refusals_total = 0u64;
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_retrying(dir.path(), Options::default()).unwrap());
        let barrier = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut refusals = 0u64;
                    for s in 0..10 {
                        for c in 0..3 {
                            let (course, student) = (format!("course:{c}"), format!("student:{t}-{s}"));
                            loop {
                                match try_enroll(&store, &course, &student, CAPACITY, THINK) {
                                    Ok(_) => break,
                                    Err(Error::AppendConditionFailed { .. }) => refusals += 1,
                                    Err(e) => panic!("thread {t}: {e}"),
                                }
                            }
                        }
                    }
                    refusals
                })
            })
            .collect();
        refusals_total += workers.into_iter().map(|w| w.join().unwrap()).sum::<u64>();
        let total = check_rule(&store, CAPACITY).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(total, 3 * CAPACITY, "round {round}: every course filled up exactly");
        let store = Arc::into_inner(store).unwrap();
        store.close().unwrap();
        let store = open_retrying(dir.path(), Options::default()).unwrap();
        assert_eq!(check_rule(&store, CAPACITY), Ok(3 * CAPACITY), "round {round}, reopened");
    }
    eprintln!("dcb race: {rounds} rounds, {refusals_total} refused conditions retried");
    assert!(refusals_total > 0, "no condition was ever refused: the threads never raced");
}

const KILL_CAPACITY: usize = 4;

/// The child of the kill loop: opens the store (small segments, frequent checkpoints), then enrolls students
/// from several threads into courses until killed: course after course, every student of a thread of its
/// own, in courses of this cycle. Prints `E <n>` after each acknowledged enrolment.
#[test]
fn dcb_kill_child() {
    let Ok(dir) = std::env::var("FOLDLOG_DCB_KILL_DIR") else { return };
    let cycle = env_u64("FOLDLOG_DCB_KILL_CYCLE", 0);
    let options = kill_options();
    let store = Arc::new(Store::open_with(&dir, options).expect("child open"));
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let course = format!("course:{cycle}-{}", n / 8 % 500);
                    let student = format!("student:{cycle}-{t}-{n}");
                    match try_enroll(&store, &course, &student, KILL_CAPACITY, Duration::ZERO) {
                        Ok(true) => println!("E {n}"),
                        Ok(false) | Err(Error::AppendConditionFailed { .. }) => {}
                        Err(e) => panic!("child: {e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn kill_options() -> Options {
    Options::default()
        .segment_size_bytes(8192)
        .checkpoint_every_bytes(6 << 10)
        .durability(Durability::Group(foldlog::GroupCommit::default().appends_max(4)))
}

/// The kill loop: a child enrolls students from four threads until `kill -9` after a random delay; the
/// parent then opens the directory and checks the rule on the whole recovered log, and that the query reads
/// agree with a fold (the tag index, checkpointed or rebuilt, survived the crash); the next child continues on
/// the same directory. `FOLDLOG_DCB_KILL_CYCLES` sets the cycles (default 20).
#[test]
fn dcb_kill_loop() {
    let cycles = env_u64("FOLDLOG_DCB_KILL_CYCLES", 20);
    let scratch = ScratchDir::new("dcb-kill");
    let exe = private_exe(scratch.path());
    let dir = scratch.path().join("store");
    let mut rng = Rng::new(seed(0xDCB));
    let mut acknowledged_total = 0u64;
    for cycle in 0..cycles {
        let mut cmd = child_command_of(&exe, "dcb_kill_child");
        cmd.env("FOLDLOG_DCB_KILL_DIR", &dir).env("FOLDLOG_DCB_KILL_CYCLE", cycle.to_string());
        let mut child = spawn_retrying(&mut cmd).expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(Result::ok).filter(|l| l.starts_with("E ")).count()
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(120)));
        child.kill().expect("kill -9");
        let status = child.wait().expect("wait");
        let acknowledged = reader.join().unwrap() as u64;
        acknowledged_total += acknowledged;
        assert!(status.code().is_none(), "cycle {cycle}: the child ended by itself: {status:?}");
        let store = foldlog_testkit::open_retrying(&dir, kill_options()).expect("open after kill -9");
        check_rule(&store, KILL_CAPACITY).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        let enrolled: usize = enrolments(&store).values().map(Vec::len).sum();
        assert!(enrolled as u64 >= acknowledged_total, "cycle {cycle}: acknowledged enrolments lost");
        // Each course's query read against one fold of the log.
        let mut folded: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for e in store.read_all(0) {
            let e = e.unwrap();
            if let Some(course) = e.tags().find(|t| t.starts_with("course:")) {
                folded.entry(course.to_owned()).or_default().push(e.position());
            }
        }
        for (course, positions) in &folded {
            assert_eq!(&read(&store, &course_query(course), None), positions, "cycle {cycle}: {course}");
        }
        // Half the cycles close cleanly (a checkpoint), half leave the recovery to the next child.
        if cycle % 2 == 0 {
            store.close().unwrap();
        } else {
            store.abandon();
        }
    }
    eprintln!("dcb kill loop: {cycles} cycles, {acknowledged_total} enrolments acknowledged");
    assert!(acknowledged_total > 0, "no child ever enrolled anyone");
}
