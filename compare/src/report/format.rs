//! How numbers and names are written in the generated tables and on the plots' axes.
//!
//! The tables are compared by eye across runs and diffed across commits, so every figure keeps the shape the
//! report has always given it: about three significant digits with a `k` or `M` suffix.

use std::cmp::Ordering;

/// A value in a table cell: `1.62 M`, `781 k`, `9320`, `97.86`, `0.035`.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{} M", fixed(v / 1e6, 2))
    } else if a >= 1e4 {
        format!("{} k", fixed(v / 1e3, 0))
    } else if a >= 100.0 {
        fixed(v, 0)
    } else if a >= 1.0 {
        fixed(v, 2)
    } else {
        fixed(v, 3)
    }
}

/// An axis tick: `100 k`, `1 M`, `0.01`; shortest form, since ticks are round by construction.
pub fn fmt_tick(v: f64) -> String {
    for (div, suffix) in [(1e6, " M"), (1e3, " k")] {
        if v.abs() >= div {
            return format!("{}{suffix}", general(v / div));
        }
    }
    general(v)
}

/// A criterion median: `482 ns`, `2.86 µs`, `1.41 ms`, `1.11 s`.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{} s", fixed(ns / 1e9, 2))
    } else if ns >= 1e6 {
        format!("{} ms", fixed(ns / 1e6, 2))
    } else if ns >= 1e3 {
        format!("{} µs", fixed(ns / 1e3, 2))
    } else {
        format!("{} ns", fixed(ns, 0))
    }
}

/// `digits` decimals, rounded half to even on the exact binary value (what Rust's formatter does).
/// Not-a-number is written `nan`, so a broken measurement reads as one rather than as `NaN` in one cell
/// and something else in another.
pub fn fixed(v: f64, digits: usize) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    format!("{v:.digits$}")
}

/// Six significant digits, trailing zeros dropped, exponent form outside 1e-4..1e6 (C's `%g`).
pub fn general(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_nan() { "nan".into() } else { format!("{v}") };
    }
    // The exponent after rounding to six digits decides the form, as in C.
    let sci = format!("{v:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        trim_zeros(&format!("{v:.*}", (5 - exp) as usize))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs())
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Escapes the three characters that would otherwise be read as HTML in a markdown table.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Orders names with numbers in them by the numbers: `batch_10` after `batch_2`, `100000` before `1000000`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (pa, pb) = (chunks(a), chunks(b));
    for (i, (x, y)) in pa.iter().zip(&pb).enumerate() {
        // Chunks alternate text, digits, text, ..., so both sides hold the same kind at each index.
        let o = if i % 2 == 1 { numeric_cmp(x, y) } else { x.cmp(y) };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// Splits into text and digit runs, alternating and starting and ending with text (which may be empty),
/// so that `100_events` is `["", "100", "_events"]` and sorts before any name starting with text.
fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_digits = false;
    for (i, c) in s.char_indices() {
        if c.is_ascii_digit() != in_digits {
            out.push(&s[start..i]);
            start = i;
            in_digits = !in_digits;
        }
    }
    out.push(&s[start..]);
    if in_digits {
        out.push("");
    }
    out
}

/// Compares two digit runs by value, however long they are.
fn numeric_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_values_keep_three_digits() {
        let cases = [
            (1_615_849.2, "1.62 M"),
            (780_736.3, "781 k"),
            (9320.44, "9320"),
            (97.86, "97.86"),
            (0.0349, "0.035"),
            (39_554_228.6, "39.55 M"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt(v), want, "{v}");
        }
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(fmt_tick(1e5), "100 k");
        assert_eq!(fmt_tick(1e6), "1 M");
        assert_eq!(fmt_tick(1e9), "1000 M");
        assert_eq!(fmt_tick(0.01), "0.01");
        assert_eq!(fmt_tick(1.0), "1");
        assert_eq!(general(1e-5), "1e-05");
        assert_eq!(general(2.5), "2.5");
    }

    #[test]
    fn criterion_times_pick_a_unit() {
        assert_eq!(fmt_ns(482.4), "482 ns");
        assert_eq!(fmt_ns(2_860.0), "2.86 µs");
        assert_eq!(fmt_ns(1_110_000_000.0), "1.11 s");
    }

    #[test]
    fn numbers_sort_by_value() {
        let mut names = ["batch_1000", "batch_10", "batch_1", "batch_100", "first_event", "100_events"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["100_events", "batch_1", "batch_10", "batch_100", "batch_1000", "first_event"]);
        assert_eq!(chunks("payload_32"), ["payload_", "32", ""]);
        assert_eq!(natural_cmp("9x", "!a"), Ordering::Less, "a leading number sorts first");
    }
}
