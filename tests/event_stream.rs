//! `EventStream` (feature `tokio`; issue 13, item 7): a subscription as a `futures_core::Stream` in an async
//! task, woken by the channel (no polling), every matching event once and in order while a writer thread
//! appends; dropping the stream stops its thread.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use foldlog::{EventStream, ExpectedVersion, NewEvent, Store};
use futures_core::Stream;

async fn next(stream: &mut EventStream) -> Option<foldlog::Result<foldlog::OwnedEvent>> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

#[test]
fn an_async_task_receives_every_matching_event_once_in_order_while_a_writer_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("open"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for i in 0..5_000u32 {
                let kind = if i % 3 == 0 { "Kept" } else { "Skipped" };
                store
                    .append(
                        &format!("s{}", i % 7),
                        ExpectedVersion::Any,
                        &[NewEvent::new(kind, &i.to_le_bytes())],
                    )
                    .expect("append");
            }
        })
    };
    let mut stream = EventStream::new(Arc::clone(&store), 0, |s| s.event_types(["Kept"]));
    let positions = runtime.block_on(async {
        let mut positions = Vec::new();
        while positions.len() < 1_667 {
            let event = tokio::time::timeout(Duration::from_secs(30), next(&mut stream))
                .await
                .expect("an event within 30 s")
                .expect("the stream goes on")
                .expect("read");
            assert_eq!(event.event_type, "Kept");
            positions.push(event.position);
        }
        positions
    });
    writer.join().expect("writer");
    let expected: Vec<u64> = (0..5_000u64).filter(|p| p % 3 == 0).collect();
    assert_eq!(positions, expected);
    // Dropping the stream stops the subscription's thread (the drop joins it).
    drop(stream);
}

#[test]
fn a_stopped_stream_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("open"));
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", b"1")]).expect("append");
    let mut stream = EventStream::new(Arc::clone(&store), 0, |s| s);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let first = runtime.block_on(next(&mut stream)).expect("one event").expect("read");
    assert_eq!(first.position, 0);
    stream.stop();
    assert!(runtime.block_on(next(&mut stream)).is_none(), "stopped: the stream ends");
}
