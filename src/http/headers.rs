//! Header grammars: `Range` on blob GET, `Content-Range` on upload chunks.

use crate::error::{Error, Result};

/// What a blob GET should send, given its `Range` header and the blob size.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable single range: send the whole blob with 200 (RFC 9110 lets a server ignore
    /// multi-range and malformed headers).
    Full,
    /// Send `[start, end)` with 206.
    Partial(u64, u64),
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), num(a), num(b)) {
        // bytes=-N: the last N bytes
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(size.saturating_sub(n), size)
            }
        }
        // bytes=A- or bytes=A-B
        (false, Some(start), end) if b.is_empty() || end.is_some() => {
            if let Some(end) = end
                && end < start
            {
                return RangeRequest::Full; // syntactically invalid: ignored
            }
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            let last = end.map_or(size - 1, |e| e.min(size - 1));
            RangeRequest::Partial(start, last + 1)
        }
        _ => RangeRequest::Full,
    }
}

/// `Content-Range` on an upload chunk: `<start>-<end>` inclusive (the spec's `^[0-9]+-[0-9]+$`;
/// a `bytes ` prefix and a `/<total>` suffix, as some clients send, are tolerated).
/// Returns (start, length); the length is `None` when it does not fit in a `u64` (`0-18446744073709551615`
/// covers 2^64 bytes), which no body can have: the caller refuses it with 416.
pub fn parse_content_range(v: &str) -> Result<(u64, Option<u64>)> {
    let bad = || Error::BlobUploadInvalid(format!("invalid Content-Range {v:?}: expected <start>-<end>"));
    let s = v.trim();
    let s = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    let s = s.split_once('/').map_or(s, |(r, _)| r);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let parse = |x: &str| -> Result<u64> {
        if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        x.parse().map_err(|_| bad())
    };
    let (start, end) = (parse(a)?, parse(b)?);
    if end < start {
        return Err(bad());
    }
    Ok((start, (end - start).checked_add(1)))
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Partial(0, 5));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Partial(5, 10));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Partial(5, 10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Partial(7, 10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Partial(0, 10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Full);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9").unwrap(), (0, Some(10)));
        assert_eq!(parse_content_range("bytes 10-19/*").unwrap(), (10, Some(10)));
        assert_eq!(parse_content_range("0-18446744073709551615").unwrap(), (0, None));
        assert_eq!(
            parse_content_range("1-18446744073709551615").unwrap(),
            (1, Some(u64::MAX))
        );
        assert!(parse_content_range("0-18446744073709551616").is_err());
        assert!(parse_content_range("9-0").is_err());
        assert!(parse_content_range("-5").is_err());
        assert!(parse_content_range("a-b").is_err());
    }
}
