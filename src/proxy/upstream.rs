//! The HTTP client of one upstream registry, with its authentication: Basic credentials, or
//! the Docker token flow (a `Bearer` challenge names a realm; a token is fetched there with the
//! credentials, cached per scope until it expires, and renewed when the upstream answers 401).

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use upstream_http::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use upstream_http::{Client, Method, Response, StatusCode};

use super::challenge::{Challenge, parse_challenge};

/// Why an upstream request gave no usable answer.
#[derive(Debug)]
pub enum Failure {
    /// Not reachable, timed out, or a 5xx: cached content may stand in.
    Unavailable(String),
    /// 429: cached content may stand in.
    RateLimited,
    /// 404: the upstream does not have it.
    NotFound,
    /// Any other refusal (401/403 after authenticating, 400, ...).
    Refused(String),
}

impl Failure {
    /// Whether a cached copy may be served instead (with a staleness warning).
    pub fn is_outage(&self) -> bool {
        matches!(self, Failure::Unavailable(_) | Failure::RateLimited)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unavailable(m) => write!(f, "unavailable: {m}"),
            Failure::RateLimited => f.write_str("rate limited (429 Too Many Requests)"),
            Failure::NotFound => f.write_str("not found"),
            Failure::Refused(m) => write!(f, "refused: {m}"),
        }
    }
}

/// Settings of one upstream.
pub struct UpstreamSettings {
    pub prefix: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub ttl: Duration,
    /// PEM CA certificates trusted beside the system's.
    pub ca_pem: Option<Vec<u8>>,
}

pub struct Upstream {
    /// Repositories `<prefix><rest>` mirror the upstream's `<rest>`; empty: every repository.
    pub prefix: String,
    /// Base URL without a trailing slash.
    pub url: String,
    /// How long a cached tag is served before it is checked again.
    pub ttl: Duration,
    creds: Option<(String, String)>,
    client: Client,
    /// Tokens by scope, with the instant they stop being used.
    tokens: StdMutex<HashMap<String, (String, Instant)>>,
    /// The upstream answered with a `Bearer` challenge: Basic credentials are not sent to it.
    bearer: AtomicBool,
    /// Docker Hub keeps official images under `library/`.
    docker_hub: bool,
}

/// Connect timeout, and the longest silence while reading a response.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tokens whose response names no lifetime last 60 s (the token spec's default).
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

impl Upstream {
    pub fn new(s: UpstreamSettings) -> Result<Upstream, String> {
        let mut b = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION"), " (pull-through cache)"));
        if let Some(pem) = &s.ca_pem {
            let certs = upstream_http::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("cannot read the CA bundle for {}: {e}", s.url))?;
            b = b.tls_certs_merge(certs);
        }
        let client = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client for {}: {e}", s.url))?;
        let url = s.url.trim_end_matches('/').to_owned();
        let docker_hub = [
            "https://registry-1.docker.io",
            "https://index.docker.io",
            "https://docker.io",
        ]
        .contains(&url.as_str());
        Ok(Upstream {
            prefix: s.prefix,
            url,
            ttl: s.ttl,
            creds: (!s.username.is_empty()).then_some((s.username, s.password)),
            client,
            tokens: StdMutex::new(HashMap::new()),
            bearer: AtomicBool::new(false),
            docker_hub,
        })
    }

    /// The upstream's name for a local repository name that has this upstream's prefix.
    pub fn remote_name(&self, local: &str) -> Option<String> {
        let rest = local.strip_prefix(&self.prefix)?;
        if rest.is_empty() {
            return None;
        }
        if self.docker_hub && !rest.contains('/') {
            return Some(format!("library/{rest}"));
        }
        Some(rest.to_owned())
    }

    /// `method` on `/v2/<remote>/<path>`, authenticated as the upstream asks.
    pub async fn send(&self, method: Method, remote: &str, path: &str, accept: &[&str]) -> Result<Response, Failure> {
        let url = format!("{}/v2/{remote}/{path}", self.url);
        let scope = format!("repository:{remote}:pull");
        let cached = self.cached_token(&scope);
        let mut resp = self
            .request(&method, &url, accept, cached.as_deref().map(Auth::Bearer))
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            match challenge {
                Some(Challenge::Bearer(params)) => {
                    self.bearer.store(true, Ordering::Relaxed);
                    // A cached token that is refused (expired early, revoked) is renewed here.
                    self.tokens.lock().expect("tokens").remove(&scope);
                    let token = self.fetch_token(&params, &scope).await?;
                    resp = self.request(&method, &url, accept, Some(Auth::Bearer(&token))).await?;
                }
                // Basic wanted, and our credentials were not sent (a token went instead).
                Some(Challenge::Basic)
                    if self.creds.is_some() && (cached.is_some() || self.bearer.swap(false, Ordering::Relaxed)) =>
                {
                    resp = self.request(&method, &url, accept, None).await?;
                }
                _ => {}
            }
        }
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND => Err(Failure::NotFound),
            StatusCode::TOO_MANY_REQUESTS => Err(Failure::RateLimited),
            s if s.is_server_error() => Err(Failure::Unavailable(format!("{method} {url}: {s}"))),
            s => Err(Failure::Refused(format!("{method} {url}: {s}"))),
        }
    }

    async fn request(
        &self,
        method: &Method,
        url: &str,
        accept: &[&str],
        auth: Option<Auth<'_>>,
    ) -> Result<Response, Failure> {
        let mut rb = self.client.request(method.clone(), url);
        if !accept.is_empty() {
            rb = rb.header(ACCEPT, accept.join(", "));
        }
        rb = match (auth, &self.creds) {
            (Some(Auth::Bearer(t)), _) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            // Basic credentials go along until the upstream turns out to want tokens.
            (None, Some((u, p))) if !self.bearer.load(Ordering::Relaxed) => rb.basic_auth(u, Some(p)),
            (None, _) => rb,
        };
        rb.send().await.map_err(|e| Failure::Unavailable(describe(&e)))
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().expect("tokens");
        match tokens.get(scope) {
            Some((t, until)) if Instant::now() < *until => Some(t.clone()),
            _ => None,
        }
    }

    /// A token from the challenge's realm for `scope` (ours, which is what we need; the
    /// challenge's own scope is added if it names another), with the configured credentials.
    async fn fetch_token(&self, params: &[(String, String)], scope: &str) -> Result<String, Failure> {
        let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        let realm = get("realm").ok_or_else(|| Failure::Refused("a Bearer challenge without a realm".into()))?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = get("service") {
            query.push(("service", service));
        }
        query.push(("scope", scope));
        if let Some(theirs) = get("scope") {
            query.extend(theirs.split(' ').filter(|s| *s != scope).map(|s| ("scope", s)));
        }
        let url = upstream_http::Url::parse_with_params(realm, &query)
            .map_err(|e| Failure::Refused(format!("the token realm {realm:?} is not a URL: {e}")))?;
        let mut rb = self.client.get(url);
        if let Some((u, p)) = &self.creds {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb.send().await.map_err(|e| Failure::Unavailable(describe(&e)))?;
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::RateLimited);
        }
        if status.is_server_error() {
            return Err(Failure::Unavailable(format!("token endpoint {realm}: {status}")));
        }
        if !status.is_success() {
            return Err(Failure::Refused(format!("token endpoint {realm}: {status}")));
        }
        let body = resp.bytes().await.map_err(|e| Failure::Unavailable(describe(&e)))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Failure::Refused(format!("token endpoint {realm}: invalid JSON: {e}")))?;
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::Refused(format!("token endpoint {realm}: no token in the response")))?
            .to_owned();
        let lifetime = v["expires_in"].as_u64().unwrap_or(DEFAULT_TOKEN_LIFETIME).max(1);
        // Stop using it a little early, so a request never carries a token about to expire.
        let margin = (lifetime / 10).min(10);
        let until = Instant::now() + Duration::from_secs(lifetime - margin);
        self.tokens
            .lock()
            .expect("tokens")
            .insert(scope.to_owned(), (token.clone(), until));
        tracing::debug!(upstream = %self.url, scope, lifetime, "upstream token fetched");
        Ok(token)
    }
}

enum Auth<'a> {
    Bearer(&'a str),
}

/// A reqwest error with its causes (the top level alone says little: "error sending request").
pub fn describe(e: &upstream_http::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(prefix: &str, url: &str) -> Upstream {
        Upstream::new(UpstreamSettings {
            prefix: prefix.into(),
            url: url.into(),
            username: String::new(),
            password: String::new(),
            ttl: Duration::from_secs(1),
            ca_pem: None,
        })
        .unwrap()
    }

    #[test]
    fn prefixes_are_stripped() {
        let u = upstream("quay/", "https://quay.io/");
        assert_eq!(u.url, "https://quay.io");
        assert_eq!(u.remote_name("quay/org/app").as_deref(), Some("org/app"));
        assert_eq!(u.remote_name("quay/app").as_deref(), Some("app"));
        assert_eq!(u.remote_name("quay"), None);
        assert_eq!(u.remote_name("quayx/app"), None);
        let hub = upstream("dockerhub/", "https://registry-1.docker.io");
        assert_eq!(hub.remote_name("dockerhub/alpine").as_deref(), Some("library/alpine"));
        assert_eq!(
            hub.remote_name("dockerhub/bitnami/redis").as_deref(),
            Some("bitnami/redis")
        );
        let all = upstream("", "http://127.0.0.1:5000");
        assert_eq!(all.remote_name("a/b").as_deref(), Some("a/b"));
    }
}
