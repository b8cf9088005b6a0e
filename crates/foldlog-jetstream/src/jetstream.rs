//! The JetStream backend. The mapping (one JetStream stream per log, one subject per foldlog stream, one
//! message per batch, optimistic concurrency through `Nats-Expected-Last-Subject-Sequence`, retries through
//! `Nats-Msg-Id`, positions from sequences, consumer positions in a stream of their own) is explained in
//! `docs/jetstream.md`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self as js, Context};
use async_nats::HeaderMap;
use foldlog::{Batch, ExpectedVersion, NewEvent, OwnedEvent, ReadAll, SnapshotData, SnapshotRefusal};
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use crate::codec::{self, StoredBatch};
use crate::{
    expected_matches, subject, Appended, Backend, Error, EventSubscription, FoundSnapshot, Result,
    SnapshotFound,
};

/// Low bits of a global position that hold the event's index within its message; the bits above hold the
/// message's JetStream stream sequence. A batch is one message (so it stays atomic), and the embedded store
/// gives every event its own position; this keeps both: positions increase in commit order, a batch's
/// positions are contiguous, and a position names exactly one event.
pub const POSITION_INDEX_BITS: u32 = 16;

/// The most events one batch (one message) may hold on JetStream; also bounded by the server's
/// `max_payload` (1 MiB by default).
pub const EVENTS_PER_MESSAGE_MAX: usize = 1 << POSITION_INDEX_BITS;

/// The global position of the `index`th event of the message at stream sequence `seq`.
pub(crate) fn position(seq: u64, index: u64) -> u64 {
    (seq << POSITION_INDEX_BITS) | index
}

fn split(position: u64) -> (u64, u64) {
    (position >> POSITION_INDEX_BITS, position & ((1 << POSITION_INDEX_BITS) - 1))
}

/// An expected subject sequence no subject can have: the retry probe (see `append_one`) publishes with it so
/// the server answers "duplicate" or refuses, and never stores.
const NEVER_A_SEQUENCE: u64 = 1 << 62;

/// Where and how the JetStream backend keeps a log. Made with [`JetStreamOptions::new`] and one setter per
/// field; non-exhaustive so a new setting is not a breaking change.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JetStreamOptions {
    /// Server URLs, comma-separated (`nats://127.0.0.1:4222,nats://127.0.0.1:4223`).
    pub url: String,
    /// The log's name (`[A-Za-z0-9_-]+`): stream `FOLDLOG_<log>`, subjects `foldlog.<log>.s.<stream>`,
    /// consumer positions in stream `FOLDLOG_<log>_POSITIONS` (subjects `foldlog.<log>.c.<consumer>`),
    /// aggregate snapshots in stream `FOLDLOG_<log>_SNAPSHOTS` (subjects `foldlog.<log>.snap.<stream>`).
    pub log: String,
    /// Replicas of the log's streams when this call creates them (1, or 3 in a cluster).
    pub replicas: usize,
    /// How long the server remembers message ids, so a retried batch is recognised (2 minutes, as the
    /// server's default); a retry later than this is appended again or refused by its version check.
    pub duplicate_window: Duration,
    /// How long one request waits for the server.
    pub timeout: Duration,
    /// Also send `Nats-Expected-Last-Sequence` (the whole log's last sequence) with every append. Needed on
    /// replicated streams with nats-server 2.9: its leader checks the per-subject expectation only against
    /// messages already stored, so two appends in flight at once with the same expectation can both pass (the
    /// three-node test caught two acknowledged events with one version). The whole-log check counts
    /// messages in flight, so it holds; its cost is that an append to any other stream in between makes the
    /// client re-read and try again. Default: on when `replicas > 1`.
    pub whole_log_check: Option<bool>,
}

impl JetStreamOptions {
    /// Log `default` at `url`, one replica, a 2-minute duplicate window, 5-second requests.
    pub fn new(url: impl Into<String>) -> JetStreamOptions {
        JetStreamOptions {
            url: url.into(),
            log: "default".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            timeout: Duration::from_secs(5),
            whole_log_check: None,
        }
    }

    /// Sets [`whole_log_check`](field@JetStreamOptions::whole_log_check): on, off, or `None` for the default.
    #[must_use]
    pub fn whole_log_check(mut self, on: impl Into<Option<bool>>) -> Self {
        self.whole_log_check = on.into();
        self
    }

    /// Sets [`log`](field@JetStreamOptions::log).
    #[must_use]
    pub fn log(mut self, log: impl Into<String>) -> Self {
        self.log = log.into();
        self
    }

    /// Sets [`replicas`](field@JetStreamOptions::replicas).
    #[must_use]
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets [`duplicate_window`](field@JetStreamOptions::duplicate_window).
    #[must_use]
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Sets [`timeout`](field@JetStreamOptions::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A foldlog log in a JetStream stream.
///
/// Synchronous like the embedded store: it owns a tokio runtime with one worker thread (which keeps the
/// connection alive between calls: pings, reconnects) and every call blocks on it. Do not call it from inside
/// an async task; use `spawn_blocking` there.
pub struct JetStreamStore {
    rt: Runtime,
    js: Context,
    stream: stream::Stream,
    /// Consumer positions, one subject per consumer.
    positions: stream::Stream,
    /// `foldlog.<log>.c.`: a consumer's subject is this plus its escaped name.
    positions_prefix: String,
    /// Aggregate snapshots, one subject per foldlog stream, the last message kept.
    snapshots: stream::Stream,
    /// `foldlog.<log>.snap.`: a stream's snapshot subject is this plus its escaped id.
    snapshots_prefix: String,
    /// `foldlog.<log>.s.`: a foldlog stream's subject is this plus its escaped id.
    prefix: String,
    opts: JetStreamOptions,
}

impl std::fmt::Debug for JetStreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStore").field("options", &self.opts).finish_non_exhaustive()
    }
}

impl JetStreamStore {
    /// Connects and opens the log, creating its streams if they do not exist.
    pub fn connect(opts: JetStreamOptions) -> Result<JetStreamStore> {
        let valid = !opts.log.is_empty()
            && opts.log.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(foldlog::Error::InvalidArgument(format!(
                "log name {:?} must be non-empty [A-Za-z0-9_-]",
                opts.log
            ))
            .into());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("foldlog-jetstream")
            .enable_all()
            .build()
            .map_err(|e| Error::nats("start the client runtime", e))?;
        let (js, stream, positions, snapshots) = rt.block_on(async {
            // A comma-separated list: the client reconnects to another server of it when one dies.
            let servers = opts
                .url
                .split(',')
                .map(|u| u.trim().parse::<async_nats::ServerAddr>())
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| foldlog::Error::InvalidArgument(format!("server list {:?}: {e}", opts.url)))?;
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(opts.timeout)
                .request_timeout(Some(opts.timeout))
                .connect(servers)
                .await
                .map_err(|e| Error::nats("connect", e))?;
            let mut js = js::new(client);
            js.set_timeout(opts.timeout);
            let config = stream::Config {
                name: format!("FOLDLOG_{}", opts.log),
                subjects: vec![format!("foldlog.{}.s.>", opts.log)],
                num_replicas: opts.replicas,
                duplicate_window: opts.duplicate_window,
                storage: stream::StorageType::File,
                ..Default::default()
            };
            let stream = js
                .get_or_create_stream(config)
                .await
                .map_err(|e| Error::nats("create the log's stream", e))?;
            // Consumer positions: a stream of their own, one subject per consumer, only its last message kept,
            // and the same compare-and-set as events (Nats-Expected-Last-Subject-Sequence). Not a key-value
            // bucket: async-nats 0.42 cannot read 2.9's answer to creating one, and this needs nothing more.
            let positions = js
                .get_or_create_stream(stream::Config {
                    name: format!("FOLDLOG_{}_POSITIONS", opts.log),
                    subjects: vec![format!("foldlog.{}.c.>", opts.log)],
                    max_messages_per_subject: 1,
                    num_replicas: opts.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::nats("create the consumer-position stream", e))?;
            // Snapshots: a stream of their own (not the log's: they are derived data, replaced, never replayed),
            // one subject per foldlog stream, only the last message kept, so the newest snapshot is one
            // `last_by_subj` lookup. Not a key-value bucket, for the reason above (docs/jetstream.md).
            let snapshots = js
                .get_or_create_stream(stream::Config {
                    name: format!("FOLDLOG_{}_SNAPSHOTS", opts.log),
                    subjects: vec![format!("foldlog.{}.snap.>", opts.log)],
                    max_messages_per_subject: 1,
                    num_replicas: opts.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::nats("create the snapshot stream", e))?;
            Ok::<_, Error>((js, stream, positions, snapshots))
        })?;
        let prefix = format!("foldlog.{}.s.", opts.log);
        let positions_prefix = format!("foldlog.{}.c.", opts.log);
        let snapshots_prefix = format!("foldlog.{}.snap.", opts.log);
        Ok(JetStreamStore {
            rt,
            js,
            stream,
            positions,
            prefix,
            positions_prefix,
            snapshots,
            snapshots_prefix,
            opts,
        })
    }

    /// The options it was opened with.
    pub fn options(&self) -> &JetStreamOptions {
        &self.opts
    }

    /// The name of the server that leads the log's stream in a cluster (`None` on a single server): the one
    /// whose loss interrupts writes until the others elect another.
    pub fn stream_leader(&self) -> Result<Option<String>> {
        let mut stream = self.stream.clone();
        let info = self.rt.block_on(stream.info()).map_err(|e| Error::nats("read the stream's state", e))?;
        Ok(info.cluster.as_ref().and_then(|c| c.leader.clone()))
    }

    fn subject(&self, stream: &str) -> String {
        format!("{}{}", self.prefix, subject::escape(stream))
    }

    async fn last(&self, subject: &str) -> Result<Option<(u64, StoredBatch)>> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some((m.sequence, decoded(&m.payload, m.sequence)?))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(Error::nats("read a stream's last message", e)),
        }
    }

    async fn get(&self, seq: u64) -> Result<StoredBatch> {
        let m = self.stream.get_raw_message(seq).await.map_err(|e| Error::nats("read a message", e))?;
        decoded(&m.payload, seq)
    }

    async fn last_sequence(&self) -> Result<u64> {
        let mut stream = self.stream.clone();
        Ok(stream.info().await.map_err(|e| Error::nats("read the stream's state", e))?.state.last_sequence)
    }

    /// One stream's batch as one message; see `docs/jetstream.md` for the protocol.
    async fn append_one(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        first_version: u64,
        events: &[NewEvent<'_>],
    ) -> Result<Appended> {
        check_append(stream, events)?;
        let subject = self.subject(stream);
        // The batch's identity for the server's de-duplication: its first event id (docs/jetstream.md).
        let msg_id = events.iter().find_map(|e| e.event_id).map(|id| format!("{id:032x}"));
        let whole_log = self.opts.whole_log_check.unwrap_or(self.opts.replicas > 1);
        loop {
            // Read before the subject's last message: a message landing in between fails one of the checks.
            let log_last = if whole_log { Some(self.last_sequence().await?) } else { None };
            let last = self.last(&subject).await?;
            let last_seq = last.as_ref().map_or(0, |(s, _)| *s);
            let last_version = last.as_ref().map(|(_, b)| b.last_version());
            let passes = expected_matches(expected, last_version);
            if !passes && msg_id.is_none() {
                return Err(wrong(stream, expected, last_version));
            }
            let next_version = last_version.map_or(first_version, |v| v + 1);
            if events.is_empty() {
                // Nothing to store: the check alone, as on the embedded store.
                let at = position(self.last_sequence().await? + 1, 0);
                return Ok(Appended::new(at..at, next_version..next_version, false));
            }
            let n = events.len() as u64;
            if next_version.checked_add(n - 1).is_none_or(|v| v > foldlog::STREAM_VERSION_MAX) {
                return Err(foldlog::Error::InvalidArgument(format!(
                    "stream {stream:?}: {n} events from version {next_version} would pass the largest version"
                ))
                .into());
            }
            let body = codec::encode(stream, next_version, last_seq, events, now_micros());
            let mut headers = HeaderMap::new();
            // A failed check with an id is still sent, as a probe that can never be stored: the server
            // answers "duplicate" (then it is a retry of a stored batch) or refuses it.
            let expect = if passes { last_seq } else { NEVER_A_SEQUENCE };
            headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expect.to_string().as_str());
            if let Some(log_last) = log_last.filter(|_| passes) {
                headers.insert(NATS_EXPECTED_LAST_SEQUENCE, log_last.to_string().as_str());
            }
            if let Some(id) = &msg_id {
                headers.insert(NATS_MESSAGE_ID, id.as_str());
            }
            let sent = self
                .js
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
                .map_err(|e| Error::nats("publish a batch", e))?;
            match sent.await {
                Ok(ack) if ack.duplicate => return self.retried(ack.sequence, stream, events).await,
                Ok(ack) => {
                    let s = ack.sequence;
                    return Ok(Appended::new(
                        position(s, 0)..position(s, n),
                        next_version..next_version + n,
                        false,
                    ));
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    if !passes {
                        return Err(wrong(stream, expected, last_version));
                    }
                    // Another writer appended between our read and our publish (to this stream, or to any with
                    // the whole-log check). If the expectation still holds, go again on the new last message;
                    // otherwise it is a real conflict.
                    let actual = self.last(&subject).await?.map(|(_, b)| b.last_version());
                    if !expected_matches(expected, actual) {
                        return Err(wrong(stream, expected, actual));
                    }
                }
                Err(e) => return Err(Error::nats("publish a batch", e)),
            }
        }
    }

    /// The server recognised the batch's message id: the original result if the stored batch holds these
    /// very events, a `DuplicateEventId` otherwise (the rule of the embedded store).
    async fn retried(&self, seq: u64, stream: &str, events: &[NewEvent<'_>]) -> Result<Appended> {
        let stored = self.get(seq).await?;
        let same = stored.stream_id == stream
            && stored.events.len() == events.len()
            && stored.events.iter().zip(events).all(|(s, e)| {
                s.event_id == e.event_id
                    && s.event_type == e.event_type
                    && s.payload == e.payload
                    && s.metadata == e.metadata
            });
        if same {
            let n = events.len() as u64;
            let v = stored.first_version;
            return Ok(Appended::new(position(seq, 0)..position(seq, n), v..v + n, true));
        }
        let id = events.iter().find_map(|e| e.event_id).unwrap_or_default();
        let index = stored.events.iter().position(|s| s.event_id == Some(id)).unwrap_or(0);
        Err(foldlog::Error::DuplicateEventId { id, position: position(seq, index as u64) }.into())
    }

    /// The messages of `subject`, newest first, following the backward links until `enough` says stop.
    async fn walk_back(
        &self,
        subject: &str,
        mut enough: impl FnMut(&StoredBatch) -> bool,
    ) -> Result<Vec<StoredBatch>> {
        let mut out = Vec::new();
        let Some((_, mut batch)) = self.last(subject).await? else { return Ok(out) };
        loop {
            let stop = enough(&batch);
            let prev = batch.prev_seq;
            out.push(batch);
            if stop || prev == 0 {
                return Ok(out);
            }
            batch = self.get(prev).await?;
        }
    }

    /// An ordered consumer over the whole log from `start_seq` (messages arrive in sequence order, each once;
    /// the client re-creates the consumer on a gap).
    async fn ordered_from(&self, start_seq: u64) -> Result<Ordered> {
        let config = OrderedConfig {
            filter_subject: format!("{}>", self.prefix),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start_seq.max(1) },
            ..Default::default()
        };
        let consumer = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| Error::nats("create an ordered consumer", e))?;
        consumer.messages().await.map_err(|e| Error::nats("read from an ordered consumer", e))
    }

    async fn read_all_async(&self, opts: &ReadAll) -> Result<Vec<OwnedEvent>> {
        let mut out = Vec::new();
        let (start_seq, _) = split(opts.from);
        let mut end_seq = self.last_sequence().await?;
        if let Some(to) = opts.to_inclusive {
            end_seq = end_seq.min(split(to).0);
        }
        let limit = opts.limit.unwrap_or(u64::MAX);
        if start_seq.max(1) > end_seq || limit == 0 {
            return Ok(out);
        }
        let mut messages = self.ordered_from(start_seq).await?;
        while let Some(m) = tokio::time::timeout(self.opts.timeout, messages.next())
            .await
            .map_err(|e| Error::nats("read the log", e))?
        {
            let m = m.map_err(|e| Error::nats("read the log", e))?;
            let seq = m
                .info()
                .map_err(|source| Error::JetStream { op: "read a message's sequence", source })?
                .stream_sequence;
            if seq > end_seq {
                break;
            }
            for e in decoded(&m.payload, seq)?.events {
                let wanted = e.position >= opts.from
                    && opts.to_inclusive.is_none_or(|to| e.position <= to)
                    && opts.event_type.as_deref().is_none_or(|t| t == e.event_type);
                if wanted {
                    out.push(e);
                    if out.len() as u64 >= limit {
                        return Ok(out);
                    }
                }
            }
            if seq >= end_seq {
                break;
            }
        }
        Ok(out)
    }

    async fn position_of(&self, name: &str) -> Result<Option<(u64, u64)>> {
        let subject = format!("{}{}", self.positions_prefix, subject::escape(name));
        match self.positions.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(Some((m.sequence, parse_position(&m.payload, m.sequence)?))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(Error::nats("read a consumer position", e)),
        }
    }

    async fn save_position(&self, name: &str, position: u64) -> Result<()> {
        check_name("consumer name", name, 256)?;
        let subject = format!("{}{}", self.positions_prefix, subject::escape(name));
        loop {
            let current = self.position_of(name).await?;
            if let Some((_, current)) = current.filter(|&(_, p)| position <= p) {
                return Err(foldlog::Error::ConsumerPositionNotAdvanced {
                    name: name.to_owned(),
                    current,
                    proposed: position,
                }
                .into());
            }
            let mut headers = HeaderMap::new();
            let last_seq = current.map_or(0, |(seq, _)| seq);
            headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, last_seq.to_string().as_str());
            let sent = self
                .js
                .publish_with_headers(subject.clone(), headers, position.to_string().into())
                .await
                .map_err(|e| Error::nats("save a consumer position", e))?;
            match sent.await {
                Ok(_) => return Ok(()),
                // Another process moved the position between our read and write: judge it again.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                Err(e) => return Err(Error::nats("save a consumer position", e)),
            }
        }
    }
}

/// The header that names a snapshot message's stream version, readable when the body is not (a damaged
/// snapshot is reported under its version, as a damaged file is under its name).
const SNAPSHOT_VERSION_HEADER: &str = "Foldlog-Snapshot-Version";

impl JetStreamStore {
    fn snapshot_subject(&self, stream: &str) -> String {
        format!("{}{}", self.snapshots_prefix, subject::escape(stream))
    }

    /// The stream's stored snapshot: its message's sequence, its version (from the header) and the snapshot
    /// or why it cannot be used.
    async fn last_snapshot(&self, stream: &str) -> Result<Option<(u64, u64, SnapshotFound)>> {
        let m = match self.snapshots.get_last_raw_message_by_subject(&self.snapshot_subject(stream)).await {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(Error::nats("read a snapshot", e)),
        };
        let header = m.headers.get(SNAPSHOT_VERSION_HEADER).and_then(|v| v.as_str().parse::<u64>().ok());
        let found = SnapshotData::decode(&m.payload, stream).and_then(|snap| match header {
            Some(v) if v == snap.stream_version => Ok(snap),
            Some(v) => Err(SnapshotRefusal::NameMismatch { name: v, header: snap.stream_version }),
            None => Ok(snap),
        });
        let version = match (&found, header) {
            (Ok(snap), _) => snap.stream_version,
            (Err(_), Some(v)) => v,
            (Err(_), None) => 0,
        };
        Ok(Some((m.sequence, version, found)))
    }

    /// Replaces the stream's snapshot unless a newer usable one is stored (one at the same version is
    /// replaced: the same event, so the same state, or a refused one): compare-and-set on the subject's last
    /// sequence, so two writers cannot put an older snapshot over a newer one. The embedded store's files end
    /// the same way: an older snapshot than the `keep` newest is pruned as soon as it is written.
    async fn put_snapshot(&self, stream: &str, snapshot: &SnapshotData) -> Result<()> {
        let subject = self.snapshot_subject(stream);
        let body = bytes::Bytes::from(snapshot.encode(stream));
        loop {
            let current = self.last_snapshot(stream).await?;
            if current.as_ref().is_some_and(|(_, v, found)| found.is_ok() && *v > snapshot.stream_version) {
                return Ok(());
            }
            let mut headers = HeaderMap::new();
            headers
                .insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, current.map_or(0, |c| c.0).to_string().as_str());
            headers.insert(SNAPSHOT_VERSION_HEADER, snapshot.stream_version.to_string().as_str());
            let sent = self
                .js
                .publish_with_headers(subject.clone(), headers, body.clone())
                .await
                .map_err(|e| Error::nats("write a snapshot", e))?;
            match sent.await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                Err(e) => return Err(Error::nats("write a snapshot", e)),
            }
        }
    }
}

fn decoded(body: &[u8], seq: u64) -> Result<StoredBatch> {
    codec::decode(body, seq).map_err(|reason| Error::Decode { sequence: seq, reason })
}

fn parse_position(value: &[u8], sequence: u64) -> Result<u64> {
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or_else(|| Error::Decode {
        sequence,
        reason: format!("consumer position {:?} is not a number", String::from_utf8_lossy(value)),
    })
}

fn wrong(stream: &str, expected: ExpectedVersion, actual: Option<u64>) -> Error {
    foldlog::Error::WrongExpectedVersion { stream: stream.to_owned(), expected, actual }.into()
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn check_name(kind: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() || name.len() > max {
        return Err(foldlog::Error::InvalidArgument(format!(
            "{kind} must be 1..={max} bytes, got {}",
            name.len()
        ))
        .into());
    }
    Ok(())
}

/// The embedded store's argument checks (same limits, same error), made before anything is sent.
fn check_append(stream: &str, events: &[NewEvent<'_>]) -> Result<()> {
    check_name("stream id", stream, 1024)?;
    for e in events {
        check_name("event type", e.event_type, 256)?;
    }
    if events.len() > EVENTS_PER_MESSAGE_MAX {
        return Err(foldlog::Error::InvalidArgument(format!(
            "{} events in one batch; JetStream batches hold at most {EVENTS_PER_MESSAGE_MAX}",
            events.len()
        ))
        .into());
    }
    let ids: Vec<u128> = events.iter().filter_map(|e| e.event_id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(foldlog::Error::InvalidArgument(format!(
            "event id {:032x} appears twice in one batch",
            w[0]
        ))
        .into());
    }
    Ok(())
}

impl Backend for JetStreamStore {
    fn append(&self, stream: &str, expected: ExpectedVersion, events: &[NewEvent<'_>]) -> Result<Appended> {
        self.rt.block_on(self.append_one(stream, expected, 0, events))
    }

    fn append_batch(&self, batch: &Batch<'_>) -> Result<Vec<Appended>> {
        match (batch.streams, batch.consumer) {
            ([], None) => Ok(Vec::new()),
            ([], Some((name, position))) => {
                self.save_consumer_position(name, position)?;
                Ok(Vec::new())
            }
            ([one], None) => {
                let done = self.rt.block_on(self.append_one(one.stream, one.expected, one.first_version, one.events));
                Ok(vec![done?])
            }
            (streams, consumer) => Err(Error::Unsupported(format!(
                "an atomic append of {} streams{} needs one message per batch across subjects, which JetStream 2.9 \
                 cannot store atomically (docs/jetstream.md: atomic batch publish from server 2.12)",
                streams.len(),
                if consumer.is_some() { " with a consumer position" } else { "" },
            ))),
        }
    }

    fn read_stream(&self, stream: &str, from_version: u64, limit: Option<u64>) -> Result<Vec<OwnedEvent>> {
        let subject = self.subject(stream);
        let batches = self.rt.block_on(self.walk_back(&subject, |b| b.first_version <= from_version))?;
        let events =
            batches.into_iter().rev().flat_map(|b| b.events).filter(|e| e.stream_version >= from_version);
        Ok(events.take(limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))).collect())
    }

    fn read_stream_backward(
        &self,
        stream: &str,
        from_version: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<OwnedEvent>> {
        let subject = self.subject(stream);
        let limit = limit.unwrap_or(u64::MAX);
        let top = from_version.unwrap_or(u64::MAX);
        // Stop once the messages walked hold `limit` events at or below `top`.
        let mut found = 0u64;
        let batches = self.rt.block_on(self.walk_back(&subject, |b| {
            found += b.events.iter().filter(|e| e.stream_version <= top).count() as u64;
            found >= limit
        }))?;
        let events =
            batches.into_iter().flat_map(|b| b.events.into_iter().rev()).filter(|e| e.stream_version <= top);
        Ok(events.take(usize::try_from(limit).unwrap_or(usize::MAX)).collect())
    }

    fn read_all(&self, opts: &ReadAll) -> Result<Vec<OwnedEvent>> {
        self.rt.block_on(self.read_all_async(opts))
    }

    fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        Ok(self.rt.block_on(self.last(&self.subject(stream)))?.map(|(_, b)| b.last_version()))
    }

    fn next_position(&self) -> Result<u64> {
        Ok(position(self.rt.block_on(self.last_sequence())? + 1, 0))
    }

    fn consumer_position(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.rt.block_on(self.position_of(name))?.map(|(_, p)| p))
    }

    fn save_consumer_position(&self, name: &str, position: u64) -> Result<()> {
        self.rt.block_on(self.save_position(name, position))
    }

    fn snapshots(&self, stream: &str, at_most: u64) -> Result<Box<dyn Iterator<Item = FoundSnapshot> + '_>> {
        // One kept per stream: the newest, or nothing if it is newer than asked for.
        let found = self.rt.block_on(self.last_snapshot(stream))?;
        Ok(Box::new(found.into_iter().filter(move |(_, v, _)| *v <= at_most).map(|(_, v, found)| (v, found))))
    }

    fn write_snapshot(&self, stream: &str, snapshot: &SnapshotData, _keep: usize) -> Result<()> {
        check_name("stream id", stream, 1024)?;
        self.rt.block_on(self.put_snapshot(stream, snapshot))
    }

    fn subscribe(&self, from: u64) -> Result<Box<dyn EventSubscription + '_>> {
        Ok(Box::new(JetStreamSubscription {
            store: self,
            messages: None,
            pending: VecDeque::new(),
            next: from,
        }))
    }
}

/// Catch-up and live are one ordered consumer: it delivers the stored messages from the start sequence and
/// then each new one, in sequence order, so the switch has no gap and no duplicate.
struct JetStreamSubscription<'s> {
    store: &'s JetStreamStore,
    messages: Option<Pin<Box<Ordered>>>,
    /// Events of the last message not yet delivered, each with the position to resume from after it.
    pending: VecDeque<(OwnedEvent, u64)>,
    next: u64,
}

impl EventSubscription for JetStreamSubscription<'_> {
    fn next_event(&mut self, timeout: Duration) -> Result<Option<OwnedEvent>> {
        let store = self.store;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((event, after)) = self.pending.pop_front() {
                self.next = after;
                return Ok(Some(event));
            }
            if self.messages.is_none() {
                let ordered = store.rt.block_on(store.ordered_from(split(self.next).0))?;
                self.messages = Some(Box::pin(ordered));
            }
            let Some(messages) = self.messages.as_mut() else { continue };
            let got = store.rt.block_on(async { tokio::time::timeout_at(deadline, messages.next()).await });
            let Ok(Some(m)) = got else { return Ok(None) };
            let m = m.map_err(|e| Error::nats("read the log", e))?;
            let seq = m
                .info()
                .map_err(|source| Error::JetStream { op: "read a message's sequence", source })?
                .stream_sequence;
            let events = decoded(&m.payload, seq)?.events;
            let n = events.len() as u64;
            for (i, e) in events.into_iter().enumerate() {
                if e.position >= self.next {
                    // After a message's last event, resume at the next message.
                    let after = if i as u64 + 1 == n { position(seq + 1, 0) } else { e.position + 1 };
                    self.pending.push_back((e, after));
                }
            }
            if self.pending.is_empty() {
                self.next = self.next.max(position(seq + 1, 0));
            }
        }
    }

    fn position(&self) -> u64 {
        self.next
    }
}

impl Drop for JetStreamSubscription<'_> {
    fn drop(&mut self) {
        // The consumer's tasks belong to the runtime: drop them inside it.
        let _inside = self.store.rt.enter();
        self.messages = None;
    }
}
