//! Bounded bodies, in one place: every body Wharf reads whole is cut at a limit by
//! `http_body_util::Limited` here: a manifest PUT (4 MiB, `registry::manifests`' limit), a
//! token endpoint's form (64 KiB) and a manifest the pull-through cache fetches from its
//! upstream (the same 4 MiB). Blob bodies are streamed, never read whole, so they have none.

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The body was longer than the limit (what was read of it is dropped).
    TooLarge,
    /// The body itself failed (the client or upstream went away, an idle timeout, ...).
    Body(BoxError),
}

/// Read all of `body`, or fail as soon as it is longer than `limit` bytes. Pass `&mut body` to
/// drain (or otherwise use) what is left of it after a [`ReadError::TooLarge`].
pub async fn read<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Body(e)),
    }
}

/// `body`, failing once more than `limit` bytes were read of it, for an extractor that reads
/// it (axum's `Form` reports the overflow as its own "length limit exceeded" rejection, as it
/// does for `DefaultBodyLimit`).
pub fn limit(body: Body, limit: usize) -> Body {
    Body::new(Limited::new(body, limit))
}

/// Read and discard what is left of a refused body, up to `limit` bytes, so a client still
/// sending it gets to read the error instead of a broken pipe; past the limit (or at an error)
/// it stops and the connection is closed instead.
pub async fn drain(body: Body, limit: usize) {
    let mut stream = body.into_data_stream();
    let mut drained = 0;
    while drained < limit {
        match futures::StreamExt::next(&mut stream).await {
            Some(Ok(chunk)) => drained += chunk.len(),
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_up_to_the_limit_and_no_further() {
        assert_eq!(read(Body::from("abcd"), 4).await.unwrap(), "abcd");
        assert!(matches!(read(Body::from("abcde"), 4).await, Err(ReadError::TooLarge)));
        let chunks = futures::stream::iter(["ab", "cd", "e"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c))));
        let mut body = Body::from_stream(chunks);
        assert!(matches!(read(&mut body, 4).await, Err(ReadError::TooLarge)));
        let failing = futures::stream::iter([Err::<Bytes, _>(std::io::Error::other("gone"))]);
        match read(Body::from_stream(failing), 4).await {
            Err(ReadError::Body(e)) => assert_eq!(e.to_string(), "gone"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_limited_form_is_refused_as_axum_refuses_one_over_its_default_limit() {
        use axum::extract::FromRequest;
        let form = |body: Body| {
            axum::http::Request::post("/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .unwrap()
        };
        let ok = axum::Form::<Vec<(String, String)>>::from_request(form(limit(Body::from("a=b"), 4)), &()).await;
        assert_eq!(ok.unwrap().0, vec![("a".to_owned(), "b".to_owned())]);
        let big = axum::Form::<Vec<(String, String)>>::from_request(form(limit(Body::from("a=bcd"), 4)), &()).await;
        assert_eq!(
            big.unwrap_err().body_text(),
            "Failed to buffer the request body: length limit exceeded"
        );
    }
}
