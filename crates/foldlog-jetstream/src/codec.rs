//! One stream's batch as one JetStream message body, so the batch is stored (and replicated) atomically.
//!
//! Layout (little-endian): `FLJ1`, first version (u64), the sequence of the stream's previous message (u64, 0
//! for none: the backward link that makes backward reads one lookup per message), the stream id (u32 length +
//! bytes), the event count (u32), then per event its type (u32 + bytes), schema version (u32), timestamp
//! (i64 microseconds), an id flag (u8) and the 16-byte id if set, metadata (u32 + bytes), payload (u32 +
//! bytes). The JetStream sequence and the event's index in the message give its global position.

use foldlog::{NewEvent, OwnedEvent};

const MAGIC: &[u8; 4] = b"FLJ1";

/// A decoded message: one stream's batch.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub stream_id: String,
    pub first_version: u64,
    pub prev_seq: u64,
    pub events: Vec<OwnedEvent>,
}

impl StoredBatch {
    /// The stream's version after this batch (batches are never empty).
    pub fn last_version(&self) -> u64 {
        self.first_version + self.events.len() as u64 - 1
    }
}

/// Encodes a batch; `timestamp` stamps events that carry none (the embedded store stamps at append too).
pub(crate) fn encode(
    stream: &str,
    first_version: u64,
    prev_seq: u64,
    events: &[NewEvent<'_>],
    timestamp: i64,
) -> Vec<u8> {
    let size: usize =
        events.iter().map(|e| 45 + e.event_type.len() + e.metadata.len() + e.payload.len()).sum();
    let mut out = Vec::with_capacity(28 + stream.len() + size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&first_version.to_le_bytes());
    out.extend_from_slice(&prev_seq.to_le_bytes());
    put_bytes(&mut out, stream.as_bytes());
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        put_bytes(&mut out, e.event_type.as_bytes());
        out.extend_from_slice(&e.schema_version.to_le_bytes());
        out.extend_from_slice(&e.timestamp_micros.unwrap_or(timestamp).to_le_bytes());
        match e.event_id {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_le_bytes());
            }
            None => out.push(0),
        }
        put_bytes(&mut out, e.metadata);
        put_bytes(&mut out, e.payload);
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Decodes a message body stored at `seq`; positions are `position(seq, index)`.
pub(crate) fn decode(body: &[u8], seq: u64) -> Result<StoredBatch, String> {
    let mut r = Reader { b: body };
    if r.take(4)? != MAGIC {
        return Err("bad magic".into());
    }
    let first_version = r.u64()?;
    let prev_seq = r.u64()?;
    let stream_id = r.string()?;
    let count = r.u32()? as usize;
    if count == 0 {
        return Err("empty batch".into());
    }
    let mut events = Vec::with_capacity(count.min(1 << 16));
    for i in 0..count {
        let event_type = r.string()?;
        let schema_version = r.u32()?;
        let timestamp = i64::from_le_bytes(r.take(8)?.try_into().map_err(|_| "short")?);
        let event_id = match r.take(1)?[0] {
            0 => None,
            1 => Some(u128::from_le_bytes(r.take(16)?.try_into().map_err(|_| "short")?)),
            f => return Err(format!("bad id flag {f}")),
        };
        let metadata = r.bytes()?.to_vec();
        let payload = r.bytes()?.to_vec();
        let mut e = OwnedEvent::new(
            crate::jetstream::position(seq, i as u64),
            stream_id.clone(),
            first_version + i as u64,
            event_type,
            payload,
        )
        .schema_version(schema_version)
        .timestamp_micros(timestamp)
        .event_id(event_id);
        e.metadata = metadata;
        events.push(e);
    }
    if !r.b.is_empty() {
        return Err(format!("{} bytes past the last event", r.b.len()));
    }
    Ok(StoredBatch { stream_id, first_version, prev_seq, events })
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!("truncated: needs {n} bytes, {} left", self.b.len()));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "short")?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "short")?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_with_every_field() {
        let events = [
            NewEvent::new("Opened", b"100").event_id(7).metadata(b"m").schema_version(2),
            NewEvent::new("Deposited", b"").timestamp_micros(5),
        ];
        let body = encode("account-1", 3, 9, &events, 42);
        let b = decode(&body, 11).unwrap();
        assert_eq!(
            (b.stream_id.as_str(), b.first_version, b.prev_seq, b.last_version()),
            ("account-1", 3, 9, 4)
        );
        let e = &b.events;
        assert_eq!((e[0].event_id, e[0].schema_version, e[0].timestamp_micros), (Some(7), 2, 42));
        assert_eq!((e[0].metadata.as_slice(), e[0].payload.as_slice()), (&b"m"[..], &b"100"[..]));
        assert_eq!(
            (e[1].event_type.as_str(), e[1].timestamp_micros, e[1].stream_version),
            ("Deposited", 5, 4)
        );
        assert_eq!(e[1].position, crate::jetstream::position(11, 1));
        assert!(decode(&body[..body.len() - 1], 11).is_err());
        assert!(decode(b"FLJ0", 1).is_err());
    }
}
