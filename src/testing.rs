//! The narrow surface the test kit (`crates/foldlog-testkit`) needs from inside the crate: the byte layouts
//! (`docs/format.md`), a frame's decoder checked against its encoder, a checkpoint made by the store's own
//! encoder, and the checkpoint forger the crate's own tests use too. Only with the `testing` feature, hidden
//! from the docs; not an API. The oracle, the model and the fuzz bodies live in the kit, which uses the
//! public API and this module.

use byteorder::{ByteOrder, LittleEndian as LE};

pub use crate::format::{
    ckpt, event_id_bytes, frame_crc, frame_len_field, padded, parse_segment_file_name, segment_file_name,
    SegmentName, CHECKPOINT_FILE, CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC, FORMAT_VERSION, FRAME_ALIGN,
    KIND_EVENT, KIND_MASK, KIND_NAME, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SLOT_LEN,
};
use crate::format::{frame, NAME_STREAM, NAME_TAG, NAME_TYPE};
use crate::index::{encode_checkpoint, FrameAt, Index, SegIndex};
use crate::record::{
    decode_frame, encode_control, encode_event, encode_gap, encode_name, Body, ControlRef, EventFields,
    GapRef, Place, SegView,
};
use crate::EventRef;

/// The number and base position a segment file's header names (read without checking its CRC).
fn file_name_fields(file: &[u8]) -> (u32, u64) {
    let seq = file.get(56..60).map_or(0, LE::read_u32);
    let base = file.get(32..40).map_or(0, LE::read_u64);
    (seq, base)
}

/// The valid frames of a segment file (`file` from offset 0, header included), as a walk accepts them from
/// the first on (CRC, fields and name references checked): (offset, padded length) of each, up to the first
/// that is not valid. Name definitions count as frames.
pub fn segment_frames(file: &[u8]) -> Vec<(usize, usize)> {
    let (seq, base) = file_name_fields(file);
    let bytes = file.get(SEGMENT_HEADER_LEN as usize..).unwrap_or_default();
    let view = SegView { bytes, seq, base, checked_below: 0, checked: None };
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let Ok(f) = decode_frame(&view, at) {
        out.push((at as usize, f.len as usize));
        at += f.len;
    }
    out
}

/// The kind (`KIND_*`) of the frame at `off` of a segment file, unchecked; 0 if out of bounds.
pub fn frame_kind(file: &[u8], off: usize) -> u8 {
    file.get(off + frame::HEAD).map_or(0, |h| h & KIND_MASK)
}

/// Recomputes the CRC of the frame at `off` of a segment file (header included, for the segment number the
/// CRC covers), if its length field fits the file; true if it did.
pub fn fix_frame_crc(file: &mut [u8], off: usize) -> bool {
    let (seq, _) = file_name_fields(file);
    let Some(len) = file.get(off..).and_then(frame_len_field) else { return false };
    let end = off + len as usize;
    let Ok(at) = u32::try_from(off) else { return false };
    if len < 8 || end > file.len() {
        return false;
    }
    let crc = frame_crc(&file[off + frame::LEN.start..end], seq, at);
    LE::write_u32(&mut file[off..off + 4], crc);
    true
}

/// Walks the frames of `buf`, taken as the bytes of segment number 0 (base position 0) after its header, and
/// checks what the decoder accepts: each frame lies inside `buf`, is a whole number of 8-byte units and
/// carries a matching CRC, and each event and stream control survives a round trip through the encoder (its
/// names defined in a fresh segment, then the frame). Panics on a violation (the `frame_decode` fuzz target); `each` sees every
/// accepted event.
pub fn check_frames(buf: &[u8], mut each: impl FnMut(&EventRef<'_>)) {
    let view = SegView { bytes: buf, seq: 0, base: 0, checked_below: 0, checked: None };
    let mut at = SEGMENT_HEADER_LEN;
    while let Ok(f) = decode_frame(&view, at) {
        let start = (at - SEGMENT_HEADER_LEN) as usize;
        let len = f.len as usize;
        assert!(start + len <= buf.len() && len.is_multiple_of(8) && len > 8, "frame length {len}");
        let field = frame_len_field(&buf[start..]).expect("a length field") as usize;
        let crc = frame_crc(&buf[start + 4..start + field], 0, at as u32);
        assert_eq!(crc, LE::read_u32(&buf[start..start + 4]), "accepted a bad CRC");
        match f.body {
            Body::Event(e) => {
                round_trip(&e);
                each(&e);
            }
            Body::Control(c) => round_trip_control(&c),
            Body::Gap(g) => round_trip_gap(g, f.commit),
            Body::Consumer(_) | Body::Name => {}
        }
        at += f.len;
    }
}

/// Encodes `e` again, with its own name definitions in a fresh segment, and checks it decodes to the same
/// event.
fn round_trip(e: &EventRef<'_>) {
    let mut out = vec![0u8; 4096 + 2 * (e.payload().len() + e.metadata().len()) + 300 * (e.tags().len() + 2)];
    let mut at = SEGMENT_HEADER_LEN;
    let define = |out: &mut [u8], what: u8, value: u64, name: &str, at: &mut u64| -> u32 {
        let place = Place { seq: 0, offset: *at };
        let start = (*at - SEGMENT_HEADER_LEN) as usize;
        let len = encode_name(what, value, name, place, &mut out[start..]).expect("a name fits");
        let def = *at as u32;
        *at += len;
        def
    };
    let stream_def = define(&mut out, NAME_STREAM, e.stream_version(), e.stream_id(), &mut at);
    let type_def = define(&mut out, NAME_TYPE, u64::from(e.schema_version()), e.event_type(), &mut at);
    let tag_defs: Vec<u32> = e.tags().map(|t| define(&mut out, NAME_TAG, 0, t, &mut at)).collect();
    let fields = EventFields {
        stream_def,
        type_def,
        version_delta: 0,
        position_delta: u32::try_from(e.position()).expect("a position relative to base 0"),
        timestamp_micros: e.timestamp_micros(),
        event_id: e.event_id(),
        tag_defs: &tag_defs,
        metadata: e.metadata(),
        payload: e.payload(),
    };
    let start = (at - SEGMENT_HEADER_LEN) as usize;
    let n = encode_event(&fields, true, Place { seq: 0, offset: at }, &mut out[start..]).expect("re-encode");
    let view =
        SegView { bytes: &out[..start + n as usize], seq: 0, base: 0, checked_below: 0, checked: None };
    match decode_frame(&view, at).expect("re-decode").body {
        Body::Event(again) => assert_eq!(again.to_owned(), e.to_owned(), "round trip changed the event"),
        _ => panic!("event came back as another kind of frame"),
    }
}

/// Encodes the gap `g` again (in a segment whose base is 0, as the checked one's) and checks it decodes the
/// same.
fn round_trip_gap(g: GapRef, commit: bool) {
    let mut out = vec![0u8; 64];
    let (delta, count) =
        (u32::try_from(g.first).expect("base 0"), u32::try_from(g.count).expect("u32 count"));
    let place = Place { seq: 0, offset: SEGMENT_HEADER_LEN };
    encode_gap(delta, count, commit, place, &mut out).expect("a gap fits");
    let view = SegView { bytes: &out, seq: 0, base: 0, checked_below: 0, checked: None };
    let again = decode_frame(&view, SEGMENT_HEADER_LEN).expect("the encoded gap decodes");
    assert!(
        matches!(again.body, Body::Gap(h) if h == g) && again.commit == commit,
        "round trip changed the gap"
    );
}

/// Encodes the stream control `c` again after a fresh definition of its stream, and checks it decodes the same.
fn round_trip_control(c: &ControlRef<'_>) {
    let mut out = vec![0u8; 2048];
    let def = encode_name(NAME_STREAM, 0, c.stream, Place { seq: 0, offset: SEGMENT_HEADER_LEN }, &mut out)
        .expect("a stream id fits");
    let at = SEGMENT_HEADER_LEN + def;
    let start = def as usize;
    let place = Place { seq: 0, offset: at };
    let n = encode_control(
        SEGMENT_HEADER_LEN as u32,
        c.truncate_before,
        c.deleted,
        true,
        place,
        &mut out[start..],
    )
    .expect("re-encode");
    let view =
        SegView { bytes: &out[..start + n as usize], seq: 0, base: 0, checked_below: 0, checked: None };
    match decode_frame(&view, at).expect("re-decode").body {
        Body::Control(again) => {
            let fields = |c: &ControlRef<'_>| (c.stream.to_owned(), c.truncate_before, c.deleted);
            assert_eq!(fields(&again), fields(c), "round trip changed the stream control");
        }
        _ => panic!("stream control came back as another kind of frame"),
    }
}

/// A valid checkpoint, made by the store's own encoder, for log `log_id` whose one segment (base 0) holds
/// events at chosen places: (stream, version, frame offset, frame length) for positions 0, 1, ..., each of
/// type `forged` with no tags. For tests of hostile files that need a checkpoint describing frames where no
/// writer would put them.
pub fn checkpoint_for(log_id: [u8; 16], events: &[(&str, u64, u64, u64)]) -> Vec<u8> {
    let mut ix = Index::new(0);
    ix.push_segment(SegIndex::new(0, 0, SEGMENT_HEADER_LEN));
    for (p, &(stream, version, offset, len)) in events.iter().enumerate() {
        let at = FrameAt { seg: 0, offset, len };
        assert!(ix.add_event(at, stream, version, p as u64, None).is_ok(), "versions follow");
        ix.add_labels(p as u64, "forged", []);
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
    // Each list is a table of per-chunk entries (chunks of 4,096 items: the chunk's CRC u32, where its bytes
    // end u64) followed by the chunks; the directory holds the table's CRC.
    const CHUNK: usize = 4096;
    const ENTRY: usize = 12;
    if bytes.len() < CHECKPOINT_HEADER_LEN {
        return;
    }
    let dir_len =
        (LE::read_u64(&bytes[ckpt::DIR_LEN]).min((bytes.len() - CHECKPOINT_HEADER_LEN) as u64)) as usize;
    LE::write_u64(&mut bytes[ckpt::DIR_LEN], dir_len as u64);
    let lists = CHECKPOINT_HEADER_LEN + dir_len;
    // Walk the directory: the offset of each list's `events` field.
    let mut at = CHECKPOINT_HEADER_LEN;
    let end = lists;
    let read = |bytes: &[u8], at: usize, n: usize| {
        bytes.get(at..at + n).filter(|_| at + n <= end).map(<[u8]>::to_vec)
    };
    let mut entries = Vec::new();
    // Sections: 0 segments, 1 streams, 2 consumers, 3 event ids (no lists), 4 event types, 5 tags.
    'walk: for section in 0..6 {
        let Some(count) = read(bytes, at, 8).map(|b| LE::read_u64(&b)) else { break };
        at += 8;
        for _ in 0..count.min(1 << 16) {
            if section == 3 {
                at += 24; // id (16), position (8)
                continue;
            }
            if section == 0 {
                at += 20; // base (8), seq (4), end (8)
            } else {
                let Some(n) = read(bytes, at, 4).map(|b| LE::read_u32(&b) as usize) else { break 'walk };
                at += 4 + n;
            }
            if section == 2 {
                at += 8; // position
                continue;
            }
            // Streams: first_version (8); then events (8), at (8), crc (4).
            let field = if section == 1 { at + 8 } else { at };
            if read(bytes, field, 20).is_none() {
                break 'walk;
            }
            entries.push(field);
            at = field + 20;
        }
    }
    for field in entries {
        let events = (LE::read_u64(&bytes[field..field + 8]) as usize).min(bytes.len());
        let start = LE::read_u64(&bytes[field + 8..field + 16]) as usize;
        let chunks = events.div_ceil(CHUNK);
        let table = lists.saturating_add(start);
        let body = table.saturating_add(chunks * ENTRY);
        if body > bytes.len() {
            continue;
        }
        let mut from = body;
        for k in 0..chunks {
            let entry = table + k * ENTRY;
            let end = body.saturating_add(LE::read_u64(&bytes[entry + 4..entry + 12]) as usize);
            if end >= from && end <= bytes.len() {
                let crc = crc32fast::hash(&bytes[from..end]);
                LE::write_u32(&mut bytes[entry..entry + 4], crc);
            }
            from = end;
        }
        let crc = crc32fast::hash(&bytes[table..body]);
        LE::write_u32(&mut bytes[field + 16..field + 20], crc);
    }
    let crc = crc32fast::hash(&bytes[CHECKPOINT_HEADER_LEN..lists]);
    LE::write_u32(&mut bytes[ckpt::DIR_CRC], crc);
    fix_checkpoint_header_crc(bytes);
}
