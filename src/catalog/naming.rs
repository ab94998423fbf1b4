//! Public names: how an upstream tool or prompt name becomes a name every client and every
//! LLM provider accepts, and stays unique across backends.
//!
//! A public name is `prefix + separator + upstream`, with every character outside
//! `[A-Za-z0-9_-]` replaced by `_`, shortened to 64 characters with a stable hash suffix when
//! longer. The mapping back to the upstream name is kept by the catalog, never recomputed.

/// The longest public tool name LLM providers accept.
pub const MAX_NAME_LEN: usize = 64;
/// Hex digits of the hash suffix used when shortening.
const HASH_LEN: usize = 8;

/// `prefix + separator + upstream` (or `upstream` alone when the prefix is empty), made valid.
pub fn public_name(prefix: &str, separator: &str, upstream: &str) -> String {
    let mut raw = String::with_capacity(prefix.len() + separator.len() + upstream.len());
    if !prefix.is_empty() {
        raw.push_str(prefix);
        raw.push_str(separator);
    }
    raw.push_str(upstream);
    valid_name(&raw)
}

/// Make `raw` match `^[A-Za-z0-9_-]{1,64}$`: replace other characters with `_`, and shorten
/// names over 64 characters to 55 characters + `_` + 8 hex digits of a hash of `raw`. The hash
/// is of the raw text, so two long names that differ only after the cut stay distinct.
pub fn valid_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    if name.len() > MAX_NAME_LEN {
        // Every char is ASCII now, so byte indices are char boundaries.
        name.truncate(MAX_NAME_LEN - HASH_LEN - 1);
        name.push('_');
        name.push_str(&hash_hex(raw));
    }
    name
}

/// A name for the loser of a collision: the contested name with a suffix derived from the
/// backend, so it is stable whatever order backends start in.
pub fn disambiguated(name: &str, backend: &str) -> String {
    let suffix = hash_hex(backend);
    let room = MAX_NAME_LEN - HASH_LEN - 1;
    let mut out: String = name.chars().take(room).collect();
    out.push('_');
    out.push_str(&suffix);
    out
}

pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

pub fn is_valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(is_name_char)
}

/// 32 bits of FNV-1a 64 as 8 hex digits: stable across runs, platforms and releases.
fn hash_hex(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names() {
        let cases = [
            ("github", "__", "create_issue", "github__create_issue"),
            ("", "__", "echo", "echo"),
            ("fs", "__", "read.file", "fs__read_file"),
            ("a b", "__", "x/y", "a_b__x_y"),
            ("srv", ".", "tool", "srv_tool"),
            ("srv", "-", "tool", "srv-tool"),
            ("", "__", "", "_"),
            ("ü", "__", "wörk", "___w_rk"),
        ];
        for (prefix, sep, upstream, want) in cases {
            let got = public_name(prefix, sep, upstream);
            assert_eq!(got, want, "{prefix:?} {sep:?} {upstream:?}");
            assert!(is_valid(&got));
        }
    }

    #[test]
    fn long_names_are_shortened_stably_and_distinctly() {
        let long_a = format!("{}a", "x".repeat(80));
        let long_b = format!("{}b", "x".repeat(80));
        let a = public_name("backend", "__", &long_a);
        let b = public_name("backend", "__", &long_b);
        assert_eq!(a.len(), MAX_NAME_LEN);
        assert!(is_valid(&a) && is_valid(&b));
        assert_ne!(a, b);
        assert_eq!(a, public_name("backend", "__", &long_a), "stable");
        // Exactly 64 is left alone.
        let exact = "y".repeat(64);
        assert_eq!(valid_name(&exact), exact);
    }

    #[test]
    fn hash_is_fixed_across_releases() {
        // Public names end up in users' agent configs: the hash must never change.
        assert_eq!(hash_hex(""), "4fd0bfc1");
        assert_eq!(hash_hex("a"), "296230c0");
        assert_eq!(
            disambiguated("echo", "b"),
            format!("echo_{}", hash_hex("b"))
        );
    }

    #[test]
    fn disambiguated_names_are_valid_and_differ_per_backend() {
        let long = "z".repeat(64);
        let a = disambiguated(&long, "a");
        let b = disambiguated(&long, "b");
        assert!(is_valid(&a) && is_valid(&b));
        assert_ne!(a, b);
    }
}
