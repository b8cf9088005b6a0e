//! The narrow surface the test kit (`crates/foldlog-testkit`) needs from inside the crate: the byte layouts
//! (`docs/format.md`), a frame's decoder checked against its encoder, a checkpoint made by the store's own
//! encoder, and the checkpoint forger the crate's own tests use too. Only with the `testing` feature, hidden
//! from the docs; not an API. The oracle, the model and the fuzz bodies live in the kit, which uses the
//! public API and this module.

use byteorder::{ByteOrder, LittleEndian as LE};
use rkyv::util::AlignedVec;

pub use crate::format::{
    ckpt, event_id_bytes, frame_crc, frame_len, parse_segment_file_name, segment_file_name, FrameHeader,
    SegmentName, CHECKPOINT_FILE, CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC, FORMAT_VERSION, FRAME_HEADER_LEN,
    KIND_EVENT, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SLOT_LEN,
};
use crate::index::{encode_checkpoint, FrameAt, Index, SegIndex};
use crate::record::{decode_frame, encode_event, Body, Envelope};
use crate::EventRef;

/// The length (padding included) of the valid frame at the start of `bytes`, which must start at a
/// 16-aligned address; `None` if the bytes there are not a valid frame.
pub fn decoded_frame_len(bytes: &[u8]) -> Option<u64> {
    decode_frame(bytes).ok().map(|f| f.len)
}

/// Decodes the frame at the start of `buf` (16-aligned) and, if the decoder accepts it, checks what it
/// accepted: the frame lies inside `buf`, is a whole number of 16-byte units, its CRC and header are right,
/// and an event survives a round trip through the encoder. Panics on a violation (the `frame_decode` fuzz
/// target). Returns the event, if the frame is one, for the caller's own checks.
pub fn check_frame(buf: &[u8]) -> Option<EventRef<'_>> {
    const LEN_AT: usize = 4;
    let frame = decode_frame(buf).ok()?;
    let len = frame.len as usize;
    assert!(
        len <= buf.len() && len.is_multiple_of(16) && len > FRAME_HEADER_LEN as usize,
        "frame length {len}"
    );
    let mut raw = [0u8; FRAME_HEADER_LEN as usize];
    raw.copy_from_slice(&buf[..FRAME_HEADER_LEN as usize]);
    let header = FrameHeader::read(&raw);
    let body_len = header.body_len as usize;
    assert_eq!(frame_len(body_len as u64), frame.len);
    assert_eq!(
        frame_crc(&buf[LEN_AT..FRAME_HEADER_LEN as usize + body_len]),
        header.crc,
        "accepted a bad CRC"
    );
    assert!(FrameHeader::well_formed(&raw));
    match frame.body {
        Body::Event(e) => {
            let owned: Envelope = e.to_envelope();
            assert_eq!(owned.position, e.position());
            // What the decoder accepted must be encodable and decode back to the same envelope.
            let mut out = AlignedVec::<16>::with_capacity(len + 4096);
            out.resize(len.max(owned.payload.len() + owned.metadata.len() + owned.stream_id.len() + 4096), 0);
            let n = encode_event(&owned, frame.commit, &mut out).expect("re-encode a decoded event") as usize;
            match decode_frame(&out[..n]).expect("re-decode").body {
                Body::Event(again) => assert_eq!(again.to_envelope(), owned, "round trip changed the event"),
                Body::Consumer(..) => panic!("event came back as a consumer frame"),
            }
            Some(e)
        }
        Body::Consumer(c) => {
            let _ = (c.name.len(), c.position, c.segment, c.offset);
            None
        }
    }
}

/// A valid checkpoint, made by the store's own encoder, for log `log_id` whose one segment (base 0) holds
/// events at chosen places: (stream, version, frame offset, frame length) for positions 0, 1, ... For tests
/// of hostile files that need a checkpoint describing frames where no writer would put them.
pub fn checkpoint_for(log_id: [u8; 16], events: &[(&str, u64, u64, u64)]) -> Vec<u8> {
    let mut ix = Index::new(0);
    ix.push_segment(SegIndex::new(0, 0, SEGMENT_HEADER_LEN));
    for (p, &(stream, version, offset, len)) in events.iter().enumerate() {
        let at = FrameAt { seg: 0, offset, len };
        assert!(ix.add_event(at, stream, version, p as u64, None).is_ok(), "versions follow");
    }
    encode_checkpoint(&ix, log_id).expect("a fresh index is never stale")
}

/// Recomputes a checkpoint's header CRC (after its header was edited).
pub fn fix_checkpoint_header_crc(bytes: &mut [u8]) {
    if bytes.len() >= CHECKPOINT_HEADER_LEN {
        let crc = crc32fast::hash(&bytes[..ckpt::HEADER_CRC.start]);
        LE::write_u32(&mut bytes[ckpt::HEADER_CRC], crc);
    }
}

/// Recomputes every CRC of a checkpoint, as a forger would (docs/format.md, "Index checkpoint"): each list's
/// CRC in the directory (for the lists that lie inside the file), the directory's CRC (its length clamped to
/// the file), then the header's. Directory fields that do not parse are left alone.
pub fn fix_checkpoint_crcs(bytes: &mut [u8]) {
    // Each list is a table of per-chunk CRCs (chunks of 4,096 items) followed by the items; the directory
    // holds the table's CRC.
    const CHUNK: usize = 4096;
    if bytes.len() < CHECKPOINT_HEADER_LEN {
        return;
    }
    let dir_len =
        (LE::read_u64(&bytes[ckpt::DIR_LEN]).min((bytes.len() - CHECKPOINT_HEADER_LEN) as u64)) as usize;
    LE::write_u64(&mut bytes[ckpt::DIR_LEN], dir_len as u64);
    let lists = CHECKPOINT_HEADER_LEN + dir_len;
    // Walk the directory: (offset of a list's `events` field, bytes per item).
    let mut at = CHECKPOINT_HEADER_LEN;
    let end = lists;
    let read = |bytes: &[u8], at: usize, n: usize| {
        bytes.get(at..at + n).filter(|_| at + n <= end).map(<[u8]>::to_vec)
    };
    let mut entries = Vec::new();
    'walk: for (section, item) in [(0, 4usize), (1, 8)] {
        let Some(count) = read(bytes, at, 8).map(|b| LE::read_u64(&b)) else { break };
        at += 8;
        for _ in 0..count.min(1 << 16) {
            if section == 1 {
                let Some(n) = read(bytes, at, 4).map(|b| LE::read_u32(&b) as usize) else { break 'walk };
                at += 4 + n;
            } else {
                // base (8), seq (4), end (8).
                at += 20;
            }
            // Streams: first_version (8); then events (8), at (8), crc (4).
            let field = if section == 1 { at + 8 } else { at };
            if read(bytes, field, 20).is_none() {
                break 'walk;
            }
            entries.push((field, item));
            at = field + 20;
        }
    }
    for (field, item) in entries {
        let events = (LE::read_u64(&bytes[field..field + 8]) as usize).min(bytes.len());
        let start = LE::read_u64(&bytes[field + 8..field + 16]) as usize;
        let chunks = events.div_ceil(CHUNK);
        let table = lists.saturating_add(start);
        let items = table.saturating_add(chunks * 4);
        if items.saturating_add(events.saturating_mul(item)) > bytes.len() {
            continue;
        }
        for k in 0..chunks {
            let from = items + k * CHUNK * item;
            let to = items + ((k + 1) * CHUNK).min(events) * item;
            let crc = crc32fast::hash(&bytes[from..to]);
            LE::write_u32(&mut bytes[table + k * 4..table + k * 4 + 4], crc);
        }
        let crc = crc32fast::hash(&bytes[table..items]);
        LE::write_u32(&mut bytes[field + 16..field + 20], crc);
    }
    let crc = crc32fast::hash(&bytes[CHECKPOINT_HEADER_LEN..lists]);
    LE::write_u32(&mut bytes[ckpt::DIR_CRC], crc);
    fix_checkpoint_header_crc(bytes);
}
