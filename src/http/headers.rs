//! Header grammars: `Range` on blob GET, `Content-Range` on upload chunks, `If-None-Match` on
//! manifest GET.

use axum::http::HeaderMap;

use crate::error::{Error, Result};
use crate::header_names::IF_NONE_MATCH;
use crate::registry::digest::Digest;

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

/// The grammar (RFC 9110 §14.1.2: `A-B`, `A-`, `-N`, clamping to the blob, `-0` and a start
/// past the end unsatisfiable, a reversed range ignored) is `http-range-header`'s, the parser
/// tower-http's `ServeDir` uses. Wharf's own rules sit around it: a multi-range header (any
/// `,`) is answered with the whole blob rather than `multipart/byteranges`; the unit is
/// `bytes=` as sent (lower case); surrounding whitespace is trimmed; a number too large for a
/// `u64` makes the header ignored (the crate would clamp it to the end of the blob); and an
/// empty blob satisfies no range. (One difference from the hand-written parser this replaced:
/// a number written with more than 30 digits, leading zeros and all, is now ignored too.)
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    use http_range_header::RangeUnsatisfiableError;
    let Some(header) = header.map(str::trim) else {
        return RangeRequest::Full;
    };
    let Some(spec) = header.strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let fits = |n: &str| n.is_empty() || n.parse::<u64>().is_ok();
    if spec.contains(',') || !spec.split(|c: char| !c.is_ascii_digit()).all(fits) {
        return RangeRequest::Full;
    }
    let validated = http_range_header::parse_range_header(header).map(|r| r.validate(size));
    match validated {
        Ok(Ok(ranges)) => match ranges.first() {
            Some(r) => RangeRequest::Partial(*r.start(), r.end() + 1),
            // Only an empty blob validates to no range at all.
            None => RangeRequest::Unsatisfiable,
        },
        Ok(Err(RangeUnsatisfiableError::Unsatisfiable)) => RangeRequest::Unsatisfiable,
        // Malformed, reversed or refused: RFC 9110 lets a server ignore the header.
        Ok(Err(_)) | Err(_) => RangeRequest::Full,
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

/// Whether a manifest GET's `If-None-Match` matches the manifest `digest` (answered 304): any
/// listed tag that is `*`, the ETag `"<digest>"`, or the digest with its quotes left off (some
/// clients send it bare). A weak tag (`W/"..."`) does not match. Kept by hand: the `headers`
/// crate's `IfNoneMatch` compares weakly and drops a header with a bare digest, both of which
/// would change answers clients get today.
pub fn if_none_match(headers: &HeaderMap, digest: &Digest) -> bool {
    let digest = digest.to_string();
    let etag = format!("\"{digest}\"");
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t == etag || t.trim_matches('"') == digest)
        })
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

    #[test]
    fn if_none_match_tags() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let with = |vals: &[&str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(IF_NONE_MATCH, v.parse().unwrap());
            }
            if_none_match(&h, &d)
        };
        assert!(!with(&[]));
        assert!(with(&["*"]));
        assert!(with(&[&format!("\"{d}\"")]));
        assert!(with(&[&d.to_string()]));
        assert!(with(&["\"sha256:other\"", &format!(" \"other\", \"{d}\" ")]));
        assert!(!with(&["\"sha256:other\""]));
        assert!(!with(&[&format!("W/\"{d}\"")]));
    }
}
