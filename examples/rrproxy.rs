//! A tiny round-robin HTTP proxy for tests: each request goes to the next backend in turn, with
//! bodies streamed both ways and redirects passed through untouched. It stands in for the load
//! balancer in front of several Wharf replicas (tests/s3/run.sh, bench/s3.sh).
//!
//!   cargo run --example rrproxy -- LISTEN_ADDR BACKEND_URL [BACKEND_URL...]
//!
//! Prints `listening on ADDR` once it accepts connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

struct Proxy {
    backends: Vec<String>,
    next: AtomicUsize,
    client: reqwest::Client,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade" | "host"
    )
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let i = p.next.fetch_add(1, Ordering::Relaxed) % p.backends.len();
    let url = format!(
        "{}{}",
        p.backends[i],
        req.uri().path_and_query().map(|x| x.as_str()).unwrap_or("/")
    );
    let (parts, body) = req.into_parts();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).expect("method");
    let mut out = p.client.request(method, &url);
    for (k, v) in parts.headers.iter().filter(|(k, _)| !hop_by_hop(k)) {
        out = out.header(k.as_str(), v.as_bytes());
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let out = out.body(reqwest::Body::wrap_stream(stream));
    match out.send().await {
        Ok(r) => {
            let mut resp = Response::builder().status(r.status().as_u16());
            for (k, v) in r.headers().iter() {
                if !matches!(k.as_str(), "connection" | "keep-alive" | "transfer-encoding") {
                    resp = resp.header(k.as_str(), v.as_bytes());
                }
            }
            resp.body(Body::from_stream(r.bytes_stream()))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("backend {url}: {e}\n")).into_response(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: rrproxy LISTEN_ADDR BACKEND_URL [BACKEND_URL...]");
        std::process::exit(2);
    }
    let proxy = Arc::new(Proxy {
        backends: args[1..].iter().map(|b| b.trim_end_matches('/').to_owned()).collect(),
        next: AtomicUsize::new(0),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    });
    let listener = tokio::net::TcpListener::bind(&args[0]).await.expect("bind");
    println!("listening on {}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    axum::serve(listener, app).await.expect("serve");
}
