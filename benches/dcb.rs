//! Dynamic consistency boundaries (issue 17, item 7): a conditional append with a 2-item query against a log
//! of 1,000,000 events next to a plain append to the same log, and the latency of a query read of one tag
//! that 100 events carry.
//!
//! The read runs before the appends (which add to the courses' tags), so every tag it reads has exactly 100
//! events.
//!
//! The log: 10,000 courses × 100 events of 100 bytes, interleaved round-robin (course `k`'s events are spread
//! over the whole log, as in a real one), each tagged `course:k` and `student:n`; one in ten is a
//! `CourseDefined`, the rest `StudentEnrolled`. Appends go on top of it (`Durability::Never`: the cost of the
//! check, not of a sync). The condition is the enrolment decision's: "no `CourseDefined` or
//! `CourseCapacityChanged` for this course, and no `StudentEnrolled` for it, after the head I read", which
//! holds, so every append is written.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foldlog::{AppendCondition, Durability, ExpectedVersion, NewEvent, Query, QueryItem, Store};

const COURSES: usize = 10_000;
const PER_COURSE: usize = 100;

/// The 1 M-event log, built once, with its tags (batches of 100 events into one stream each).
fn build(store: &Store) {
    let payload = common::payload(100, 3);
    let tags: Vec<String> = (0..COURSES).map(|k| format!("course:{k}")).collect();
    let students: Vec<String> = (0..COURSES).map(|n| format!("student:{n}")).collect();
    for round in 0..PER_COURSE {
        for chunk in 0..COURSES / 100 {
            let pairs: Vec<[&str; 2]> = (0..100)
                .map(|i| {
                    let k = chunk * 100 + i;
                    [tags[k].as_str(), students[(k * 7 + round) % COURSES].as_str()]
                })
                .collect();
            let ty = if round % 10 == 0 { "CourseDefined" } else { "StudentEnrolled" };
            let events: Vec<NewEvent<'_>> =
                pairs.iter().map(|t| NewEvent::new(ty, &payload).tags(t)).collect();
            store.append(&format!("enrolments-{}", chunk % 10), ExpectedVersion::Any, &events).expect("fill");
        }
    }
}

fn course_query(course: &str) -> Query {
    Query::new([
        QueryItem::new().types(["CourseDefined", "CourseCapacityChanged"]).tags([course]),
        QueryItem::new().types(["StudentEnrolled"]).tags([course]),
    ])
}

fn bench_dcb(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), common::options(Durability::Never)).expect("open");
    build(&store);
    assert_eq!(store.next_position(), (COURSES * PER_COURSE) as u64);
    let payload = common::payload(100, 4);
    let tags: Vec<String> = (0..COURSES).map(|k| format!("course:{k}")).collect();
    let mut conditions: Vec<AppendCondition> =
        tags.iter().map(|t| AppendCondition::new(course_query(t))).collect();
    let tag_queries: Vec<Query> =
        tags.iter().map(|t| Query::new([QueryItem::new().tags([t.as_str()])])).collect();

    let mut g = c.benchmark_group("dcb");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    // Reads first: the appends below add events to the courses' tags.
    g.throughput(Throughput::Elements(PER_COURSE as u64));
    g.bench_function(BenchmarkId::new("read_query", "tag_of_100_events_1m_log"), |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                i = (i + 1) % COURSES;
                let mut bytes = 0usize;
                for e in store.read(&tag_queries[i], None, None) {
                    bytes += e.expect("event").payload().len();
                }
                black_box(bytes);
            }
            started.elapsed()
        });
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("append", "plain_1m_log"), |b| {
        b.iter(|| {
            i = (i + 1) % COURSES;
            let t = [tags[i].as_str(), "student:new"];
            let e = [NewEvent::new("StudentEnrolled", &payload).tags(&t)];
            black_box(store.append("enrolments-new", ExpectedVersion::Any, &e).expect("append"))
        });
    });
    g.bench_function(BenchmarkId::new("append_if", "2_item_query_1m_log"), |b| {
        b.iter(|| {
            i = (i + 1) % COURSES;
            let t = [tags[i].as_str(), "student:new"];
            let e = [NewEvent::new("StudentEnrolled", &payload).tags(&t)];
            // The conditions are made once (a command builds its query either way): this measures the check.
            let condition = &mut conditions[i];
            condition.after = store.head();
            black_box(store.append_if("enrolments-new", &e, condition).expect("append_if"))
        });
    });
    // The check alone, from an old position: it must find the course's first matching event after it.
    g.bench_function(BenchmarkId::new("append_if_refused", "2_item_query_1m_log"), |b| {
        b.iter(|| {
            i = (i + 1) % COURSES;
            let e = [NewEvent::new("StudentEnrolled", &payload)];
            let condition = &mut conditions[i];
            condition.after = Some(500_000);
            black_box(store.append_if("enrolments-new", &e, condition).expect_err("refused"))
        });
    });
    g.finish();
    let stats = store.stats();
    eprintln!(
        "dcb log: {} events, {} tags, {} types, index {:.2} B/event",
        stats.events,
        stats.tags,
        stats.event_types,
        stats.index_memory_bytes as f64 / stats.events as f64
    );
}

criterion_group!(benches, bench_dcb);
criterion_main!(benches);
