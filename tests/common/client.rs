//! The one test client: requests to a registry's `/v2/` API with the run's credentials, and the
//! pushes every test needs (blobs, manifests, small images). Promoted from the conformance
//! suite's `Ctx`, which is now this type; methods return [`ClientError`] instead of panicking so
//! the conformance suite can report a failed check and go on (tests `unwrap`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use super::media::{MANIFEST_ACCEPT, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use super::{Server, sha256_digest};

/// A request that did not get the answer a push needs (its status, when there was one), or did
/// not get one at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError(pub String, pub Option<u16>);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(ClientError(format!($($msg)+), None));
        }
    };
}

/// Credentials put on every request as they are (no challenge is answered).
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Cred {
    pub fn basic(u: &str, p: &str) -> Cred {
        Cred::Basic(u.into(), p.into())
    }

    pub fn apply(&self, rb: RequestBuilder) -> RequestBuilder {
        match self {
            Cred::None => rb,
            Cred::Basic(u, p) => rb.basic_auth(u, Some(p)),
            Cred::Bearer(t) => rb.bearer_auth(t),
        }
    }
}

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// A login: Basic first, and on a `Bearer` challenge a token from the realm it names.
    pub user: Option<(String, String)>,
    /// Fixed credentials for every request (when there is no `user`).
    pub cred: Cred,
    /// Every repository [`Api::repo`] names is under this prefix, so runs never collide.
    pub ns: String,
    /// Bearer tokens by the scope they were issued for.
    pub tokens: Mutex<HashMap<String, String>>,
}

impl Server {
    /// A client for this server (no credentials).
    pub fn api(&self) -> Api {
        Api::new(self.url(""))
    }
}

/// The repository a `/v2/<name>/{blobs,manifests,tags,referrers}/...` path names.
pub fn repository_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
        .map(|i| rest[..i].to_owned())
}

/// `key="value", key2=value2` (RFC 7235 auth-params) in order.
pub fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            value = q[..end].to_owned();
            rest = q.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((key, value));
        rest = rest.trim_start_matches([',', ' ']);
    }
    out
}

/// Deterministic pseudo-random bytes, one byte per xorshift step (the conformance suite's data).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub fn location(r: &Response) -> Result<String, ClientError> {
    header(r, "location").ok_or_else(|| ClientError(format!("no Location header ({})", r.status()), None))
}

pub fn with_query(loc: &str, q: &str) -> String {
    if loc.contains('?') {
        format!("{loc}&{q}")
    } else {
        format!("{loc}?{q}")
    }
}

/// An image [`Api::push_image`] pushed.
#[derive(Clone, Debug)]
pub struct PushedImage {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub config: String,
    pub layers: Vec<String>,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            base: base.into().trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .unwrap(),
            user: None,
            cred: Cred::None,
            ns: String::new(),
            tokens: Default::default(),
        }
    }

    /// Send through `client` (its timeouts, TLS roots) instead of a fresh one.
    pub fn with_client(mut self, client: &reqwest::Client) -> Api {
        self.client = client.clone();
        self
    }

    pub fn with_cred(mut self, cred: &Cred) -> Api {
        self.cred = cred.clone();
        self
    }

    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.ns)
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut r = self.cred.apply(self.client.request(method, url.as_str()));
        if url.contains("/manifests/") {
            // "The client SHOULD include an Accept header indicating which manifest content types
            // it supports": every client does, and registries may refuse a type not accepted.
            r = r.header("accept", MANIFEST_ACCEPT);
        }
        r
    }

    /// Send with the run's credentials: Basic first; on a `Bearer` challenge, a token from the
    /// realm it names (Docker token spec, cached per scope), and the request again.
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        let err = |e: reqwest::Error| ClientError(format!("request failed: {e}"), None);
        let Some((user, pass)) = &self.user else {
            return rb.send().await.map_err(err);
        };
        let Some(bare) = rb.try_clone() else {
            return rb.basic_auth(user, Some(pass)).send().await.map_err(err);
        };
        // A token this run already holds for the repository goes first, as clients do: a
        // registry that only takes tokens would otherwise refuse (and may cut off) every body
        // sent with Basic credentials first. Not for mounts, whose token must also cover `from`.
        let url = bare.try_clone().and_then(|b| b.build().ok()).map(|r| r.url().clone());
        let repo = url.as_ref().and_then(|u| {
            let mounts = u.query().is_some_and(|q| q.contains("mount="));
            repository_of(u.path()).filter(|_| !mounts)
        });
        if let Some(repo) = &repo {
            let cached = self.tokens.lock().unwrap().get(&format!("repo:{repo}")).cloned();
            if let Some(token) = cached {
                let retry = bare.try_clone().expect("cloned once already");
                let r = retry.bearer_auth(&token).send().await.map_err(err)?;
                if r.status() != StatusCode::UNAUTHORIZED {
                    return Ok(r);
                }
            }
        }
        let r = rb.basic_auth(user, Some(pass)).send().await.map_err(err)?;
        let challenge = header(&r, "www-authenticate").unwrap_or_default();
        if r.status() != StatusCode::UNAUTHORIZED || !challenge.to_ascii_lowercase().starts_with("bearer ") {
            return Ok(r);
        }
        let params = auth_params(&challenge["bearer ".len()..]);
        let scope = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        for fresh in [false, true] {
            let cached = self.tokens.lock().unwrap().get(&scope).cloned();
            let token = match cached {
                Some(t) if !fresh => t,
                _ => self.fetch_token(&params, user, pass).await?,
            };
            self.tokens.lock().unwrap().insert(scope.clone(), token.clone());
            if let Some(repo) = &repo {
                self.tokens
                    .lock()
                    .unwrap()
                    .insert(format!("repo:{repo}"), token.clone());
            }
            let retry = bare.try_clone().expect("cloned once already");
            let r = retry.bearer_auth(&token).send().await.map_err(err)?;
            if r.status() != StatusCode::UNAUTHORIZED || fresh {
                return Ok(r);
            }
        }
        unreachable!()
    }

    async fn fetch_token(&self, params: &[(String, String)], user: &str, pass: &str) -> Result<String, ClientError> {
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ClientError("Bearer challenge without a realm".into(), None))?;
        let query: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
            .flat_map(|(k, v)| {
                // a scope parameter may carry several space-separated scopes
                v.split(' ').map(move |one| (k.as_str(), one))
            })
            .collect();
        let r = self
            .client
            .get(&realm)
            .query(&query)
            .basic_auth(user, Some(pass))
            .send()
            .await
            .map_err(|e| ClientError(format!("token request failed: {e}"), None))?;
        check!(r.status() == StatusCode::OK, "token endpoint {realm}: {}", r.status());
        let body = r
            .bytes()
            .await
            .map_err(|e| ClientError(format!("token response: {e}"), None))?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| ClientError(format!("token response: {e}"), None))?;
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| ClientError(format!("no token in {v}"), None))
    }

    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.send(self.req(Method::GET, path)).await
    }

    /// Push a blob with POST then PUT (the flavour every registry must support).
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String, ClientError> {
        let d = sha256_digest(data);
        let r = self
            .send(self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
            .await?;
        check!(r.status() == StatusCode::ACCEPTED, "POST upload: {}", r.status());
        let loc = location(&r)?;
        let r = self
            .send(
                self.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                    .header("content-type", "application/octet-stream")
                    .body(data.to_vec()),
            )
            .await?;
        check!(r.status() == StatusCode::CREATED, "PUT upload: {}", r.status());
        Ok(d)
    }

    /// Push a blob in one request (`POST ?digest=` with the body); the answer's status.
    pub async fn post_blob_status(&self, repo: &str, data: &[u8]) -> Result<u16, ClientError> {
        let d = sha256_digest(data);
        let r = self
            .send(
                self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={d}"))
                    .header("content-type", "application/octet-stream")
                    .body(data.to_vec()),
            )
            .await?;
        Ok(r.status().as_u16())
    }

    /// Push a blob in one request (`POST ?digest=`), which must answer 201; returns its digest.
    pub async fn post_blob(&self, repo: &str, data: &[u8]) -> Result<String, ClientError> {
        match self.post_blob_status(repo, data).await? {
            201 => Ok(sha256_digest(data)),
            st => Err(ClientError(format!("push blob to {repo}: {st}"), Some(st))),
        }
    }

    /// [`Api::post_blob`], returning the blob's `{"digest", "size"}` (for a descriptor).
    pub async fn post_blob_desc(&self, repo: &str, data: &[u8]) -> Result<Value, ClientError> {
        let d = self.post_blob(repo, data).await?;
        Ok(json!({"digest": d, "size": data.len()}))
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        ct: &str,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        self.send(
            self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
                .header("content-type", ct)
                .body(body.to_vec()),
        )
        .await
    }

    pub async fn put_manifest_ok(
        &self,
        repo: &str,
        reference: &str,
        ct: &str,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        let r = self.put_manifest(repo, reference, ct, body).await?;
        if r.status() != StatusCode::CREATED {
            let st = r.status();
            let text = r.text().await.unwrap_or_default();
            return Err(ClientError(
                format!("PUT manifest {repo}:{reference}: {st} {text}"),
                Some(st.as_u16()),
            ));
        }
        Ok(r)
    }

    /// Push a config and layers, and return an image manifest using them (not pushed yet).
    pub async fn image(&self, repo: &str, seed: u64, layers: usize) -> Result<Value, ClientError> {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":{seed}}}"#
        );
        let cd = self.push_blob(repo, config.as_bytes()).await?;
        let mut descs = Vec::new();
        for i in 0..layers {
            let data = noise(2048 + i, seed * 100 + i as u64);
            let d = self.push_blob(repo, &data).await?;
            descs.push(json!({"mediaType": OCI_LAYER, "digest": d, "size": data.len()}));
        }
        Ok(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()}, "layers": descs}))
    }

    /// Push an image manifest and return (digest, bytes).
    pub async fn pushed_image(&self, repo: &str, tag: &str, seed: u64) -> Result<(String, Vec<u8>), ClientError> {
        let m = to_bytes(&self.image(repo, seed, 1).await?);
        self.put_manifest_ok(repo, tag, OCI_MANIFEST, &m).await?;
        Ok((sha256_digest(&m), m))
    }

    /// Push `layers` and `config` in one POST each, then an OCI image manifest of them under
    /// `reference`. The first answer that is not 201 is the error (its status in `.0`'s text).
    pub async fn push_image(
        &self,
        repo: &str,
        reference: &str,
        config: &[u8],
        layers: &[&[u8]],
    ) -> Result<PushedImage, ClientError> {
        let mut descs = Vec::new();
        let mut digests = Vec::new();
        for l in layers {
            let d = self.post_blob(repo, l).await?;
            descs.push(json!({"mediaType": OCI_LAYER, "digest": d, "size": l.len()}));
            digests.push(d);
        }
        let cd = self.post_blob(repo, config).await?;
        let bytes = to_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()},
            "layers": descs,
        }));
        self.put_manifest_ok(repo, reference, OCI_MANIFEST, &bytes).await?;
        Ok(PushedImage {
            digest: sha256_digest(&bytes),
            bytes,
            config: cd,
            layers: digests,
        })
    }

    /// Open an upload session (`POST` with `Content-Length: 0`) and return its `Location`.
    pub async fn start_upload(&self, repo: &str) -> Result<String, ClientError> {
        let r = self
            .send(
                self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                    .header("content-length", "0"),
            )
            .await?;
        check!(r.status() == StatusCode::ACCEPTED, "POST upload: {}", r.status());
        location(&r)
    }

    /// `PATCH` one chunk, with `Content-Range` when `range` is given.
    pub async fn patch(&self, loc: &str, range: Option<String>, data: &[u8]) -> Result<Response, ClientError> {
        let mut rb = self
            .req(Method::PATCH, loc)
            .header("content-type", "application/octet-stream")
            .body(data.to_vec());
        if let Some(range) = range {
            rb = rb.header("content-range", range);
        }
        self.send(rb).await
    }
}
