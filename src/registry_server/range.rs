//! `Range` requests on blobs (RFC 9110 §14): none → 200 with the whole blob; one range → 206 with
//! `Content-Range`; several → 206 `multipart/byteranges` (what stargz-snapshotter sends). A range
//! header that does not parse is ignored (the RFC allows it); ranges that all lie past the end
//! are 416. Parsing and validation are the `http-range-header` crate's.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt as _};
use std::ops::RangeInclusive;

use super::{headers, response, RegistryError};
use crate::image::oci::Descriptor;

/// Pieces of a blob: `read(start, len)` streams `len` bytes from `start`.
pub type Pieces = BoxStream<'static, std::io::Result<Bytes>>;

/// The ranges a request asks for, checked against the blob `size`; `None` means the whole blob.
pub fn requested(
    headers: &HeaderMap,
    size: u64,
) -> Result<Option<Vec<RangeInclusive<u64>>>, RegistryError> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let Ok(text) = value.to_str() else {
        return Ok(None);
    };
    let Ok(parsed) = http_range_header::parse_range_header(text) else {
        return Ok(None);
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.is_empty() => Ok(None),
        Ok(ranges) => Ok(Some(ranges)),
        Err(http_range_header::RangeUnsatisfiableError::Unsatisfiable) => {
            Err(RegistryError::range(size, text))
        }
        Err(_) => Ok(None),
    }
}

/// The response for `desc`'s bytes (or `ranges` of them), with the body from `read` unless
/// `head`. Also returns the number of body bytes it will send.
pub fn respond(
    desc: &Descriptor,
    content_type: &str,
    ranges: Option<Vec<RangeInclusive<u64>>>,
    head: bool,
    read: impl Fn(u64, u64) -> Pieces + Send + 'static,
) -> (Response, u64) {
    let size = u64::try_from(desc.size).unwrap_or(0);
    let body = |s: Pieces| {
        if head {
            Body::empty()
        } else {
            Body::from_stream(s)
        }
    };
    match ranges.as_deref() {
        None => {
            let h = headers(&desc.digest, content_type, size);
            (response(StatusCode::OK, h, body(read(0, size))), size)
        }
        Some([one]) => {
            let len = one.end() - one.start() + 1;
            let mut h = headers(&desc.digest, content_type, len);
            if let Ok(v) =
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", one.start(), one.end()))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
            let s = read(*one.start(), len);
            (response(StatusCode::PARTIAL_CONTENT, h, body(s)), len)
        }
        Some(many) => {
            // the blob's own digest as the boundary: it cannot be expected inside the blob
            let boundary = desc.digest.trim_start_matches("sha256:").to_string();
            let mut parts = Vec::new();
            let mut total = 0u64;
            for r in many {
                let head = format!(
                    "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                    r.start(),
                    r.end()
                );
                let len = r.end() - r.start() + 1;
                total += head.len() as u64 + len;
                parts.push((Bytes::from(head), *r.start(), len));
            }
            let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
            total += tail.len() as u64;
            let sent: u64 = many.iter().map(|r| r.end() - r.start() + 1).sum();
            let multipart = format!("multipart/byteranges; boundary={boundary}");
            let h = headers(&desc.digest, &multipart, total);
            let s = stream::iter(parts)
                .flat_map(move |(head, start, len)| {
                    stream::once(async move { Ok(head) }).chain(read(start, len))
                })
                .chain(stream::once(async move { Ok(tail) }))
                .boxed();
            (response(StatusCode::PARTIAL_CONTENT, h, body(s)), sent)
        }
    }
}
