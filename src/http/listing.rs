//! `GET /v2/<name>/tags/list`, `GET /v2/_catalog` (with `n`, `last` and `Link`), and
//! `GET /v2/<name>/referrers/<digest>`.

use std::collections::HashMap;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{App, hv};
use crate::error::{Error, Result};
use crate::header_names::OCI_FILTERS_APPLIED;
use crate::registry::digest::Digest;
use crate::registry::listing::Page;
use crate::registry::manifests::OCI_INDEX;
use crate::registry::names::RepoName;

/// Catalog pages hold at most this many names unless `n` asks for fewer (or more).
const CATALOG_DEFAULT_PAGE: usize = 1000;

fn page_params(q: &HashMap<String, String>) -> Result<(Option<usize>, Option<&str>)> {
    let n = q
        .get("n")
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| Error::PaginationInvalid(format!("n={v:?} is not a non-negative integer")))
        })
        .transpose()?;
    Ok((n, q.get("last").map(String::as_str).filter(|l| !l.is_empty())))
}

/// `Link: <path?last=..&n=..>; rel="next"` when more entries remain.
fn with_link(mut resp: Response, path: &str, page: &Page, n: usize) -> Response {
    if page.more
        && let Some(last) = page.items.last()
    {
        let q = serde_urlencoded_pair(last, n);
        resp.headers_mut()
            .insert(header::LINK, hv(&format!("<{path}?{q}>; rel=\"next\"")));
    }
    resp
}

fn serde_urlencoded_pair(last: &str, n: usize) -> String {
    // Repository names and tags only contain [A-Za-z0-9._/-]; '/' is the one to escape.
    format!("last={}&n={n}", last.replace('/', "%2F"))
}

fn json_response(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub async fn tags(app: &App, name: &RepoName, q: &HashMap<String, String>) -> Result<Response> {
    let (n, last) = page_params(q)?;
    let page = app.registry.list_tags(name, last, n).await?;
    let resp = json_response(json!({ "name": name.as_str(), "tags": page.items }));
    Ok(with_link(resp, &format!("/v2/{name}/tags/list"), &page, n.unwrap_or(0)))
}

/// `visible` says which repositories the caller may see (those it may pull).
pub async fn catalog(
    app: &App,
    q: &HashMap<String, String>,
    visible: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Response> {
    let (n, last) = page_params(q)?;
    let n = n.unwrap_or(CATALOG_DEFAULT_PAGE);
    let page = app.registry.catalog_filtered(last, Some(n), visible).await?;
    let resp = json_response(json!({ "repositories": page.items }));
    Ok(with_link(resp, "/v2/_catalog", &page, n))
}

pub async fn referrers(app: &App, name: &RepoName, digest: &Digest, q: &HashMap<String, String>) -> Result<Response> {
    let filter = q.get("artifactType").map(String::as_str).filter(|a| !a.is_empty());
    let manifests = app.registry.referrers(name, digest, filter).await?;
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
    if filter.is_some() {
        resp.headers_mut().insert(OCI_FILTERS_APPLIED, hv("artifactType"));
    }
    Ok(resp)
}
