//! Retention rules (issue 14, item 2): per stream or per stream-id prefix, a maximum count of events and a
//! maximum age, applied by every read at once, and kept in the log itself.
//!
//! **Where the rules live.** A rule is an ordinary event of foldlog's own stream [`RETENTION_STREAM`]
//! (type `RetentionRule`, its payload laid out in docs/format.md "System streams"); the latest rule for a
//! target wins, and one without limits clears it. Being events, the rules reach every reader of the log
//! (a reopen, read-only handles in other processes, backups, export and import) with no new frame kind and
//! no new checkpoint section. Streams whose id starts with [`SYSTEM_PREFIX`] are foldlog's: appends to them
//! through the public API are refused, and reads of the global log skip them unless asked for hidden events.
//!
//! **What a rule hides.** A stream's events are hidden from the first version on up to (not including) the
//! first version that passes every limit: `max_count` keeps the last `n` versions, `max_age` the versions
//! appended at or after `now - max_age` (found by binary search over the stream's timestamps, so exact while
//! they never decrease along the stream, as appends by one writer make them; docs/operations.md). Like a
//! truncation ([`Store::truncate_before`]), only reads change: the frames, positions and versions stay, and
//! appends go on. Unlike a truncation, a rule can be relaxed or cleared and the events come back, until a
//! scavenge removes them for good. A stream's own rule replaces any prefix rule; of several prefixes, the
//! longest wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::index::{Controls, Index, StreamIndex};
use crate::segment::now_micros;
use crate::store::{Inner, Store};
use crate::{Corruption, ExpectedVersion, NewEvent};

/// The stream that holds the retention rules.
pub const RETENTION_STREAM: &str = "$foldlog/retention";

/// Stream ids starting with this are foldlog's own (today only [`RETENTION_STREAM`]).
pub const SYSTEM_PREFIX: &str = "$foldlog/";

/// The event type of a rule in [`RETENTION_STREAM`].
const RULE_TYPE: &str = "RetentionRule";

/// The rule payload's fixed part: target kind, reserved, `max_count`, `max_age` in microseconds.
const RULE_FIXED: usize = 24;

/// "No limit" in a rule payload's count and age fields.
const NO_LIMIT: u64 = u64::MAX;

/// What a retention rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetentionTarget {
    /// The stream with exactly this id.
    Stream(String),
    /// Every stream whose id starts with this (a stream's own rule takes precedence).
    Prefix(String),
}

/// A retention rule's limits: how many of a stream's last events, and how old, reads keep. `None` is no limit;
/// a rule with neither clears the target's rule.
///
/// ```
/// use std::time::Duration;
/// use foldlog::{ExpectedVersion, NewEvent, Retention, RetentionTarget, Store};
///
/// # fn main() -> foldlog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let ticks: Vec<NewEvent> = (0..5).map(|_| NewEvent::new("Tick", b"")).collect();
/// store.append("session-1", ExpectedVersion::NoStream, &ticks)?;
/// let rule = Retention::default().max_count(2).max_age(Duration::from_secs(30 * 86_400));
/// store.set_retention(&RetentionTarget::Prefix("session-".into()), rule)?;
/// let versions: Vec<u64> =
///     store.read_stream("session-1", 0).map(|e| e.map(|e| e.stream_version())).collect::<foldlog::Result<_>>()?;
/// assert_eq!(versions, [3, 4], "the last two");
/// assert_eq!(store.stream_version("session-1"), Some(4), "versions go on");
/// // Rules hide at read time only: clearing it brings the events back (until a scavenge).
/// store.set_retention(&RetentionTarget::Prefix("session-".into()), Retention::default())?;
/// assert_eq!(store.read_stream("session-1", 0).count(), 5);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Keep at most this many of the stream's last events (`Some(0)` hides them all).
    pub max_count: Option<u64>,
    /// Keep the events appended at most this long ago (microsecond resolution).
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Sets [`max_count`](field@Retention::max_count).
    #[must_use]
    pub fn max_count(mut self, n: u64) -> Self {
        self.max_count = Some(n);
        self
    }

    /// Sets [`max_age`](field@Retention::max_age).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Whether the rule limits nothing (and so clears its target's rule).
    pub fn is_unlimited(&self) -> bool {
        self.max_count.is_none() && self.max_age.is_none()
    }
}

/// Encodes a rule event's payload (docs/format.md "System streams").
fn encode_rule(target: &RetentionTarget, rule: Retention) -> Vec<u8> {
    let (kind, name) = match target {
        RetentionTarget::Stream(s) => (0u8, s),
        RetentionTarget::Prefix(p) => (1u8, p),
    };
    let age = rule.max_age.map_or(NO_LIMIT, |a| u64::try_from(a.as_micros()).unwrap_or(NO_LIMIT - 1));
    let mut out = Vec::with_capacity(RULE_FIXED + name.len());
    out.push(kind);
    out.extend_from_slice(&[0; 7]);
    out.extend_from_slice(&rule.max_count.unwrap_or(NO_LIMIT).to_le_bytes());
    out.extend_from_slice(&age.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

/// Decodes a rule event's payload; the error says what is wrong with it.
fn decode_rule(payload: &[u8]) -> std::result::Result<(RetentionTarget, Retention), &'static str> {
    let (fixed, name) = payload.split_at_checked(RULE_FIXED).ok_or("shorter than its 24 fixed bytes")?;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&fixed[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if fixed[1..8].iter().any(|&b| b != 0) {
        return Err("reserved bytes are not zero");
    }
    let name = std::str::from_utf8(name).map_err(|_| "the target is not UTF-8")?.to_owned();
    let target = match fixed[0] {
        0 => RetentionTarget::Stream(name),
        1 => RetentionTarget::Prefix(name),
        _ => return Err("unknown target kind"),
    };
    let limit = |w: u64| (w != NO_LIMIT).then_some(w);
    let rule = Retention { max_count: limit(word(8)), max_age: limit(word(16)).map(Duration::from_micros) };
    Ok((target, rule))
}

/// Whether an event may go into system stream `stream` (an import): only a rule this build reads, into
/// [`RETENTION_STREAM`].
pub(crate) fn check_system_event(stream: &str, event_type: &str, payload: &[u8]) -> Result<(), &'static str> {
    if stream != RETENTION_STREAM {
        return Err("not a system stream this build knows");
    }
    if event_type != RULE_TYPE {
        return Err("not a retention rule's event type");
    }
    decode_rule(payload).map(drop)
}

/// The rules in force: the latest per target, unlimited ones dropped.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    streams: HashMap<Box<str>, Retention>,
    /// Longest first, so the first match is the most specific.
    prefixes: Vec<(Box<str>, Retention)>,
}

impl Rules {
    /// The rule for `stream`: its own, else the longest matching prefix's. System streams have none.
    pub fn rule_for(&self, stream: &str) -> Option<Retention> {
        if stream.starts_with(SYSTEM_PREFIX) {
            return None;
        }
        if let Some(&r) = self.streams.get(stream) {
            return Some(r);
        }
        self.prefixes.iter().find(|(p, _)| stream.starts_with(&**p)).map(|&(_, r)| r)
    }

    /// Every rule, streams then prefixes, each sorted.
    fn list(&self) -> Vec<(RetentionTarget, Retention)> {
        let mut out: Vec<_> =
            self.streams.iter().map(|(s, &r)| (RetentionTarget::Stream(s.to_string()), r)).collect();
        out.extend(self.prefixes.iter().map(|(p, r)| (RetentionTarget::Prefix(p.to_string()), *r)));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn set(&mut self, target: RetentionTarget, rule: Retention) {
        match target {
            RetentionTarget::Stream(s) if rule.is_unlimited() => {
                self.streams.remove(s.as_str());
            }
            RetentionTarget::Stream(s) => {
                self.streams.insert(s.into(), rule);
            }
            RetentionTarget::Prefix(p) => {
                self.prefixes.retain(|(q, _)| **q != *p);
                if !rule.is_unlimited() {
                    self.prefixes.push((p.into(), rule));
                    self.prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
                }
            }
        }
    }
}

/// The rules as last read from [`RETENTION_STREAM`], and that stream's last version then.
#[derive(Debug, Default)]
pub(crate) struct RuleCache {
    version: Option<u64>,
    rules: Option<Arc<Rules>>,
}

/// The first version of `stream` (indexed as `s`) that `rule` lets reads see at wall-clock time `now`
/// (microseconds). An event whose frame cannot be read here counts as young: the read that reaches it reports
/// the damage.
pub(crate) fn first_kept(inner: &Inner, ix: &Index, s: &StreamIndex, rule: Retention, now: i64) -> u64 {
    let (first, end) = (s.first_version, s.first_version + s.len());
    let mut from = first;
    if let Some(n) = rule.max_count {
        from = from.max(end.saturating_sub(n));
    }
    if let Some(age) = rule.max_age {
        let cutoff = now.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX));
        let old = |v: u64| -> bool {
            let Ok(Some(p)) = s.position(v - first) else { return false };
            inner.event_at(ix, p).is_some_and(|e| e.timestamp_micros() < cutoff)
        };
        // The first version at or after `from` that is not older than the cutoff.
        let (mut lo, mut hi) = (from, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if old(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        from = lo;
    }
    from
}

/// What a walk over the global log skips: the events that truncations and deletions hide, those that
/// retention rules hide, and foldlog's system streams. Made once per walk, from the controls and rules in force
/// then; a stream's first kept version is found the first time the walk meets the stream, and kept.
pub(crate) struct Hider {
    controls: Option<Arc<Controls>>,
    rules: Option<Arc<Rules>>,
    now: i64,
    kept_from: HashMap<Box<str>, u64>,
}

impl Hider {
    /// `None` when nothing is hidden (no stream controlled, no rule stream): the walk then asks nothing.
    pub fn new(inner: &Inner) -> Result<Option<Hider>> {
        let rules = inner.retention_rules()?;
        let controls = inner.read_index().controls();
        if controls.is_none() && rules.is_none() {
            return Ok(None);
        }
        Ok(Some(Hider { controls, rules, now: now_micros(), kept_from: HashMap::new() }))
    }

    /// Whether version `version` of `stream` is hidden from reads.
    pub fn hides(&mut self, inner: &Inner, stream: &str, version: u64) -> bool {
        if self.controls.as_ref().is_some_and(|c| c.hides(stream, version)) {
            return true;
        }
        let Some(rules) = &self.rules else { return false };
        if stream.starts_with(SYSTEM_PREFIX) {
            return true;
        }
        let Some(rule) = rules.rule_for(stream) else { return false };
        let kept_from = if let Some(&v) = self.kept_from.get(stream) {
            v
        } else {
            let ix = inner.read_index();
            let v = ix.stream(stream).map_or(0, |s| first_kept(inner, &ix, s, rule, self.now));
            self.kept_from.insert(stream.into(), v);
            v
        };
        version < kept_from
    }
}

impl Inner {
    /// The first version of `stream` that reads return: past its truncation point and what its retention rule
    /// hides (0 when nothing is hidden). `ix` is the index the caller holds; `rules` those in force.
    pub(crate) fn first_visible(&self, ix: &Index, rules: Option<&Rules>, stream: &str) -> u64 {
        let truncated = ix.control(stream).map_or(0, |c| c.truncate_before);
        let rule = rules.and_then(|r| r.rule_for(stream));
        match (rule, ix.stream(stream)) {
            (Some(rule), Some(s)) => truncated.max(first_kept(self, ix, s, rule, now_micros())),
            _ => truncated,
        }
    }

    /// The rules in force, read again from [`RETENTION_STREAM`] when it has changed since the last call;
    /// `None` while that stream has no events (nothing to hide, not even the stream itself).
    pub(crate) fn retention_rules(&self) -> Result<Option<Arc<Rules>>> {
        let version = self.read_index().stream(RETENTION_STREAM).and_then(StreamIndex::last_version);
        {
            let cache = self.retention.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.version == version {
                return Ok(cache.rules.clone());
            }
        }
        let rules = match version {
            None => None,
            Some(_) => Some(Arc::new(self.read_rules()?)),
        };
        let mut cache = self.retention.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another reader may have read a newer version meanwhile; a stale one only costs a reread.
        if cache.version.is_none_or(|v| version.is_some_and(|n| n >= v)) {
            *cache = RuleCache { version, rules: rules.clone() };
        }
        Ok(rules)
    }

    /// Folds every rule event, in order.
    fn read_rules(&self) -> Result<Rules> {
        let mut rules = Rules::default();
        for e in crate::read::stream_events_with_hidden(self, RETENTION_STREAM, 0) {
            let e = e?;
            let decoded =
                if e.event_type() == RULE_TYPE { decode_rule(e.payload()) } else { Err("unknown type") };
            let (target, rule) =
                decoded.map_err(|reason| self.bad_rule(e.position(), e.stream_version(), reason))?;
            rules.set(target, rule);
        }
        Ok(rules)
    }

    /// The error for a rule event that does not decode: the file and offset of its frame.
    fn bad_rule(&self, position: u64, version: u64, reason: &str) -> Error {
        let at = self.read_index().locate(position).ok().flatten();
        let (path, offset) =
            match at.and_then(|(seg, off)| Some((self.segment(seg)?.path().to_path_buf(), off))) {
                Some(p) => p,
                None => (self.dir().to_path_buf(), 0),
            };
        Error::Corrupt {
            path,
            offset,
            kind: Corruption::RetentionRule { version, reason: reason.to_owned() },
        }
    }
}

impl Store {
    /// Sets the retention rule of `target` (a stream, or every stream under a prefix), replacing its earlier
    /// one; a rule with no limit ([`Retention::default`]) clears it. Reads apply it at once: [`Store::read_stream`]
    /// and its backward twin, [`Store::read_all`], subscriptions, reads by query and the repository see only
    /// the events the rule keeps, and [`Store::stream_state`] reports the first one. Nothing is removed: the
    /// rule is an event of [`RETENTION_STREAM`], so followers, backups and a reopen see it too, and events
    /// come back when it is relaxed (a scavenge is what reclaims the space).
    ///
    /// Errors: [`Error::InvalidArgument`] for an empty target or one under [`SYSTEM_PREFIX`]; those of an
    /// append.
    pub fn set_retention(&self, target: &RetentionTarget, rule: Retention) -> Result<()> {
        let (RetentionTarget::Stream(name) | RetentionTarget::Prefix(name)) = target;
        if name.is_empty() || name.starts_with(SYSTEM_PREFIX) {
            return Err(Error::InvalidArgument(format!(
                "retention target {name:?}: must be non-empty and outside {SYSTEM_PREFIX:?}"
            )));
        }
        let payload = encode_rule(target, rule);
        let event = [NewEvent::new(RULE_TYPE, &payload)];
        let streams = [crate::StreamAppend::new(RETENTION_STREAM, ExpectedVersion::Any, &event)];
        let batch = crate::Batch::new(&streams).system();
        self.append_batch(&batch).map(drop)
    }

    /// The retention rules in force, streams first, each kind sorted by target.
    pub fn retention_rules(&self) -> Result<Vec<(RetentionTarget, Retention)>> {
        Ok(self.inner().retention_rules()?.map_or_else(Vec::new, |r| r.list()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_payload_round_trips_and_bad_ones_are_named() {
        for (target, rule) in [
            (RetentionTarget::Stream("s".into()), Retention::default().max_count(3)),
            (RetentionTarget::Prefix("p-".into()), Retention::default().max_age(Duration::from_micros(7))),
            (RetentionTarget::Prefix(String::new()), Retention::default()),
        ] {
            assert_eq!(decode_rule(&encode_rule(&target, rule)), Ok((target, rule)));
        }
        let good = encode_rule(&RetentionTarget::Stream("s".into()), Retention::default().max_count(1));
        assert_eq!(decode_rule(&good[..23]), Err("shorter than its 24 fixed bytes"));
        let mut bad = good.clone();
        bad[0] = 2;
        assert_eq!(decode_rule(&bad), Err("unknown target kind"));
        let mut bad = good.clone();
        bad[3] = 1;
        assert_eq!(decode_rule(&bad), Err("reserved bytes are not zero"));
        let mut bad = good;
        bad.push(0xff);
        assert_eq!(decode_rule(&bad), Err("the target is not UTF-8"));
    }

    #[test]
    fn a_streams_own_rule_beats_the_longest_prefix_which_beats_a_shorter_one() {
        let mut rules = Rules::default();
        let (one, two, three) = (
            Retention::default().max_count(1),
            Retention::default().max_count(2),
            Retention::default().max_count(3),
        );
        rules.set(RetentionTarget::Prefix("a".into()), one);
        rules.set(RetentionTarget::Prefix("ab".into()), two);
        rules.set(RetentionTarget::Stream("abc".into()), three);
        assert_eq!(rules.rule_for("abc"), Some(three));
        assert_eq!(rules.rule_for("abd"), Some(two));
        assert_eq!(rules.rule_for("ax"), Some(one));
        assert_eq!(rules.rule_for("b"), None);
        assert_eq!(rules.rule_for("$foldlog/retention"), None);
        rules.set(RetentionTarget::Prefix("ab".into()), Retention::default());
        assert_eq!(rules.rule_for("abd"), Some(one), "cleared");
        assert_eq!(rules.list().len(), 2);
    }
}
