//! foldlog names (stream ids, consumer names) as NATS subject tokens and key-value keys.
//!
//! A stream id is 1..=1024 bytes of any UTF-8; a subject token must not contain `.`, `*`, `>` or whitespace,
//! and a key-value key allows only `[-/_=.a-zA-Z0-9]`. The escape keeps ASCII letters, digits, `-` and `_`
//! and writes every other byte as `=XX` (two upper-case hex digits), `=` itself included, so it is injective
//! (two ids never share a token) and reversible, and the result is valid in both places.

/// The token for `name`.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push('=');
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0').to_ascii_uppercase());
            out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0').to_ascii_uppercase());
        }
    }
    out
}

/// The name a token came from; `None` if it is not an output of [`escape`].
pub fn unescape(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_subjects_and_keys_refuse_and_round_trips() {
        for name in ["account-42", "a.b", "a b", "*", ">", "=", "x=2E", "konto-ÄÖ", "tab\there", "a/b~c"] {
            let token = escape(name);
            assert!(
                token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{name:?} -> {token:?}"
            );
            assert_eq!(unescape(&token).as_deref(), Some(name));
        }
        // Injective where it matters: an id that looks like an escape is itself escaped.
        assert_ne!(escape("a.b"), escape("a=2Eb"));
        assert_eq!(escape("account-42"), "account-42");
        assert_eq!(unescape("=G0"), None);
    }
}
