//! The `Range` request header, for the single byte ranges Zarr readers send (sharded arrays
//! read shard indexes and inner chunks this way).

use std::ops::Range;

/// What to send for a `Range` header and a body of some length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// The whole body (no header, or one we do not serve ranges for: several ranges, other
    /// units, bad syntax; RFC 9110 lets a server ignore those).
    Whole,
    /// These bytes (206).
    Part(Range<u64>),
    /// A range that starts past the end (416).
    Unsatisfiable,
}

/// Reads a `Range` header against a body of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // `bytes=-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(len.saturating_sub(n)..len)
            }
        }
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if start >= len {
                return Ranged::Unsatisfiable;
            }
            match end {
                Some(end) if end < start => Ranged::Whole,
                Some(end) => Ranged::Part(start..end.saturating_add(1).min(len)),
                None => Ranged::Part(start..len),
            }
        }
        _ => Ranged::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse(None, 10), Ranged::Whole);
        assert_eq!(parse(Some("bytes=0-3"), 10), Ranged::Part(0..4));
        assert_eq!(parse(Some("bytes=4-"), 10), Ranged::Part(4..10));
        assert_eq!(parse(Some("bytes=-3"), 10), Ranged::Part(7..10));
        assert_eq!(parse(Some("bytes=-30"), 10), Ranged::Part(0..10));
        assert_eq!(parse(Some("bytes=5-100"), 10), Ranged::Part(5..10));
        assert_eq!(parse(Some("bytes=10-"), 10), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Ranged::Unsatisfiable);
    }

    #[test]
    fn anything_else_is_the_whole_body() {
        for h in [
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=",
            "bytes=-",
        ] {
            assert_eq!(parse(Some(h), 10), Ranged::Whole, "{h}");
        }
    }
}
