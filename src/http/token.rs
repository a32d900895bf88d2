//! The built-in token server (docker-auth-token.md): `GET /token?service=&scope=` with Basic
//! credentials (or none, for an anonymous token), the OAuth2 `POST /token` form flow
//! (`grant_type=password` or `refresh_token`), and `GET /token/jwks.json`, the public key.
//! The logic is `Auth::issue`; this only reads the request and writes the JSON.

use axum::Form;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, request_info};
use crate::auth::scope::parse_scopes;
use crate::auth::{Grant, Issued, TokenRequest, credentials};
use crate::error::{Error, Result};

fn answer(issued: Issued) -> Response {
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
        "scope": issued.scope,
    });
    if let Some(r) = issued.refresh_token {
        body["refresh_token"] = json!(r);
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The most a `POST /token` form may hold.
const FORM_LIMIT: usize = 64 * 1024;

fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub async fn get(State(app): State<AppState>, req: Request) -> Response {
    let pairs: Vec<(String, String)> = Query::try_from_uri(req.uri()).map(|Query(p)| p).unwrap_or_default();
    let tr = TokenRequest {
        service: last(&pairs, "service").map(str::to_owned),
        scopes: pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| parse_scopes(v))
            .collect(),
        grant: Grant::Header(credentials(req.headers())),
        offline: last(&pairs, "offline_token") == Some("true"),
    };
    match app.auth.issue(request_info(&req), tr).await {
        Ok(issued) => answer(issued),
        Err(e) => e.into_response(),
    }
}

pub async fn post(State(app): State<AppState>, req: Request) -> Response {
    match post_inner(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn post_inner(app: &AppState, req: Request) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let body = crate::body_limit::limit(body, FORM_LIMIT);
    let info_req = Request::from_parts(parts.clone(), axum::body::Body::empty());
    let Form(pairs): Form<Vec<(String, String)>> = Form::from_request(Request::from_parts(parts, body), &())
        .await
        .map_err(|e| Error::TokenRequestInvalid(e.body_text()))?;
    let field = |k: &str| last(&pairs, k).map(str::to_owned);
    let grant = match field("grant_type").as_deref() {
        Some("password") => Grant::Password {
            user: field("username").ok_or_else(|| Error::TokenRequestInvalid("username is missing".into()))?,
            password: field("password").unwrap_or_default(),
        },
        Some("refresh_token") => Grant::Refresh(
            field("refresh_token").ok_or_else(|| Error::TokenRequestInvalid("refresh_token is missing".into()))?,
        ),
        other => {
            return Err(Error::TokenRequestInvalid(format!(
                "grant_type {:?} is not supported (password, refresh_token)",
                other.unwrap_or("")
            )));
        }
    };
    let tr = TokenRequest {
        service: field("service"),
        scopes: field("scope").map(|s| parse_scopes(&s)).unwrap_or_default(),
        grant,
        offline: field("access_type").as_deref() == Some("offline"),
    };
    Ok(answer(app.auth.issue(request_info(&info_req), tr).await?))
}

pub async fn jwks(State(app): State<AppState>) -> Response {
    match app.auth.jwks() {
        Some(set) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            set.to_string(),
        )
            .into_response(),
        None => Error::NotFound("/token/jwks.json".into()).into_response(),
    }
}
