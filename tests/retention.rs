//! Retention rules (issue 14, item 2): a maximum count and a maximum age per stream or per stream-id prefix,
//! applied by every read at once and kept in the log.
//!
//! Goal: each read path (stream reads both ways, the global log, reads by query, subscriptions, the stream's
//! state) shows exactly the events the rules keep; a stream's own rule beats a prefix's; relaxing or clearing
//! a rule brings the events back (nothing is removed before a scavenge); rules survive a reopen and reach a
//! read-only handle; foldlog's own stream cannot be written through the public API and is skipped by global
//! reads. Method: real stores in scratch directories, with timestamps set on the events so ages are exact.

use std::time::Duration;

use foldlog::{
    Error, ExpectedVersion, NewEvent, Options, Query, QueryItem, ReadAll, Retention, RetentionTarget, Store,
    RETENTION_STREAM,
};

const HOUR: i64 = 3_600_000_000;

fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_micros()).unwrap()
}

fn versions(store: &Store, stream: &str) -> Vec<u64> {
    store.read_stream(stream, 0).map(|e| e.unwrap().stream_version()).collect()
}

fn backward(store: &Store, stream: &str) -> Vec<u64> {
    store.read_stream_backward(stream, None).map(|e| e.unwrap().stream_version()).collect()
}

fn global(store: &Store) -> Vec<(String, u64)> {
    store.read_all(0).map(|e| e.unwrap()).map(|e| (e.stream_id().to_owned(), e.stream_version())).collect()
}

/// Appends `n` events of type `Tick` to `stream`, stamped `at` (microseconds since the epoch).
fn ticks_at(store: &Store, stream: &str, n: usize, at: i64) {
    let events: Vec<NewEvent<'_>> =
        (0..n).map(|_| NewEvent::new("Tick", b"x").timestamp_micros(at)).collect();
    store.append(stream, ExpectedVersion::Any, &events).unwrap();
}

fn stream(id: &str) -> RetentionTarget {
    RetentionTarget::Stream(id.into())
}

fn prefix(p: &str) -> RetentionTarget {
    RetentionTarget::Prefix(p.into())
}

#[test]
fn a_count_rule_keeps_the_last_events_in_every_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = now();
    ticks_at(&store, "a", 5, t);
    ticks_at(&store, "b", 2, t);
    ticks_at(&store, "a", 1, t);
    store.set_retention(&stream("a"), Retention::default().max_count(2)).unwrap();

    assert_eq!(versions(&store, "a"), [4, 5]);
    assert_eq!(backward(&store, "a"), [5, 4]);
    assert_eq!(store.read_stream("a", 1).count(), 2, "a read from a hidden version starts at the first kept");
    assert_eq!(versions(&store, "b"), [0, 1], "other streams untouched");
    let all = global(&store);
    let expected: Vec<(String, u64)> =
        [("a", 4), ("b", 0), ("b", 1), ("a", 5)].iter().map(|&(s, v)| (s.to_owned(), v)).collect();
    assert_eq!(all, expected, "the global log skips the hidden events and the rule's own event");
    let query = Query::new([QueryItem::new().types(["Tick"])]);
    let by_query: Vec<u64> = store.read(&query, None, None).map(|e| e.unwrap().position()).collect();
    assert_eq!(by_query, [4, 5, 6, 7]);
    let by_type: Vec<u64> =
        store.read_all_with(ReadAll::default().event_type("Tick")).map(|e| e.unwrap().position()).collect();
    assert_eq!(by_type, [4, 5, 6, 7]);
    let mut sub = store.subscribe(0).idle_timeout(Duration::from_millis(50));
    let mut seen = Vec::new();
    while let Some(e) = sub.next_event(Duration::from_millis(50)).unwrap() {
        seen.push(e.position());
    }
    assert_eq!(seen, [4, 5, 6, 7], "a subscription's catch-up too");
    let state = store.stream_state("a").unwrap();
    assert_eq!((state.first_visible, state.last_version), (4, 5));

    // Appends go on at the next version, and the window moves with them.
    store.append("a", ExpectedVersion::Exact(5), &[NewEvent::new("Tick", b"x")]).unwrap();
    assert_eq!(versions(&store, "a"), [5, 6]);
    // A rule of zero hides the whole stream; the stream still exists for appends.
    store.set_retention(&stream("a"), Retention::default().max_count(0)).unwrap();
    assert!(versions(&store, "a").is_empty());
    assert_eq!(store.stream_version("a"), Some(6));
}

#[test]
fn an_age_rule_hides_the_events_older_than_its_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = now();
    ticks_at(&store, "s", 3, t - 5 * HOUR);
    ticks_at(&store, "s", 2, t - 2 * HOUR);
    ticks_at(&store, "s", 1, t);
    store.set_retention(&stream("s"), Retention::default().max_age(Duration::from_secs(3 * 3600))).unwrap();
    assert_eq!(versions(&store, "s"), [3, 4, 5]);
    assert_eq!(global(&store).len(), 3);
    store.set_retention(&stream("s"), Retention::default().max_age(Duration::from_secs(3600))).unwrap();
    assert_eq!(versions(&store, "s"), [5]);
    // Both limits: the stricter one wins.
    let both = Retention::default().max_age(Duration::from_secs(3 * 3600)).max_count(1);
    store.set_retention(&stream("s"), both).unwrap();
    assert_eq!(versions(&store, "s"), [5]);
    let both = Retention::default().max_age(Duration::from_secs(3 * 3600)).max_count(4);
    store.set_retention(&stream("s"), both).unwrap();
    assert_eq!(versions(&store, "s"), [3, 4, 5]);
    // An age that keeps nothing.
    store.set_retention(&stream("s"), Retention::default().max_age(Duration::ZERO)).unwrap();
    assert!(versions(&store, "s").is_empty());
}

#[test]
fn a_streams_own_rule_beats_a_prefix_and_clearing_brings_events_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = now();
    for s in ["session-1", "session-2", "sessions", "order-1"] {
        ticks_at(&store, s, 4, t);
    }
    store.set_retention(&prefix("session-"), Retention::default().max_count(1)).unwrap();
    store.set_retention(&stream("session-2"), Retention::default().max_count(3)).unwrap();
    assert_eq!(versions(&store, "session-1"), [3]);
    assert_eq!(versions(&store, "session-2"), [1, 2, 3]);
    assert_eq!(versions(&store, "sessions"), [0, 1, 2, 3], "the prefix is `session-`");
    assert_eq!(versions(&store, "order-1"), [0, 1, 2, 3]);
    assert_eq!(
        store.retention_rules().unwrap(),
        [
            (stream("session-2"), Retention::default().max_count(3)),
            (prefix("session-"), Retention::default().max_count(1)),
        ]
    );
    // A longer prefix beats a shorter one.
    store.set_retention(&prefix("session-1"), Retention::default().max_count(2)).unwrap();
    assert_eq!(versions(&store, "session-1"), [2, 3]);
    // Clearing the stream's own rule hands it back to the prefix; clearing that shows everything again.
    store.set_retention(&stream("session-2"), Retention::default()).unwrap();
    assert_eq!(versions(&store, "session-2"), [3]);
    store.set_retention(&prefix("session-"), Retention::default()).unwrap();
    store.set_retention(&prefix("session-1"), Retention::default()).unwrap();
    assert_eq!(versions(&store, "session-2"), [0, 1, 2, 3], "nothing was removed");
    assert!(store.retention_rules().unwrap().is_empty());
    assert_eq!(global(&store).len(), 16, "and the rules' own events stay out of the global log");
}

#[test]
fn rules_survive_a_reopen_and_reach_a_read_only_handle() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    {
        let store = Store::open(dir.path()).unwrap();
        ticks_at(&store, "a", 6, t);
        store.set_retention(&stream("a"), Retention::default().max_count(2)).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(versions(&store, "a"), [4, 5], "after a reopen (from the checkpoint)");
    let reader = Store::open_with(dir.path(), Options::default().read_only(true)).unwrap();
    assert_eq!(versions(&reader, "a"), [4, 5]);
    // A rule set after the reader opened reaches it with its next refresh.
    store.set_retention(&stream("a"), Retention::default().max_count(4)).unwrap();
    assert_eq!(versions(&reader, "a"), [4, 5], "not seen before the reader refreshes");
    reader.refresh().unwrap();
    assert_eq!(reader.retention_rules().unwrap(), [(stream("a"), Retention::default().max_count(4))]);
    assert_eq!(versions(&reader, "a"), [2, 3, 4, 5]);
}

#[test]
fn foldlogs_own_stream_is_refused_to_writers_and_hidden_from_global_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    ticks_at(&store, "a", 1, now());
    let refused =
        store.append(RETENTION_STREAM, ExpectedVersion::Any, &[NewEvent::new("RetentionRule", b"")]);
    assert!(
        matches!(refused, Err(Error::InvalidArgument(ref m)) if m.contains("foldlog's own")),
        "{refused:?}"
    );
    let other = store.append("$foldlog/anything", ExpectedVersion::Any, &[NewEvent::new("X", b"")]);
    assert!(matches!(other, Err(Error::InvalidArgument(_))), "{other:?}");
    let bad_target = store.set_retention(&prefix("$foldlog/"), Retention::default().max_count(1));
    assert!(matches!(bad_target, Err(Error::InvalidArgument(_))), "{bad_target:?}");
    assert!(matches!(store.set_retention(&prefix(""), Retention::default()), Err(Error::InvalidArgument(_))));

    store.set_retention(&prefix("z"), Retention::default().max_count(1)).unwrap();
    assert_eq!(global(&store), [("a".to_owned(), 0)]);
    let with_hidden: Vec<String> = store
        .read_all_with(ReadAll::default().include_hidden(true))
        .map(|e| e.unwrap().stream_id().to_owned())
        .collect();
    assert_eq!(with_hidden, ["a", RETENTION_STREAM], "tools that ask for hidden events see it");
    assert_eq!(versions(&store, RETENTION_STREAM), [0], "and it reads as a stream");
}
