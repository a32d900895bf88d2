//! Helpers shared by the auth and TLS tests: htpasswd files, credentials on requests, and a
//! small image pushed with them.
#![allow(dead_code)]

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

use super::common::{random_bytes, sha256_digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An htpasswd file's text with bcrypt hashes (cost 4: fast, and still `$2b$`).
pub fn htpasswd(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect()
}

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

/// Statuses of a small image push: (config blob, layer blob, manifest). Stops at the first
/// status that is not 201 and returns it.
pub async fn push_image(c: &Client, base: &str, repo: &str, tag: &str, cred: &Cred, seed: u64) -> Result<String, u16> {
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let layer = random_bytes(2000, seed);
    let mut descs = Vec::new();
    for blob in [&config, &layer] {
        let d = sha256_digest(blob);
        let r = cred
            .apply(c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        if r.status() != 201 {
            return Err(r.status().as_u16());
        }
        descs.push(json!({"mediaType": "application/octet-stream", "digest": d, "size": blob.len()}));
    }
    let mut cfg = descs[0].clone();
    cfg["mediaType"] = Value::from("application/vnd.oci.image.config.v1+json");
    let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
        "layers": [descs[1]]}))
    .unwrap();
    let r = cred
        .apply(c.put(format!("{base}/v2/{repo}/manifests/{tag}")))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    if r.status() != 201 {
        return Err(r.status().as_u16());
    }
    Ok(sha256_digest(&m))
}

pub async fn status(rb: RequestBuilder) -> u16 {
    rb.send().await.unwrap().status().as_u16()
}

/// The `WWW-Authenticate` header of a response.
pub fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub async fn catalog(c: &Client, base: &str, cred: &Cred) -> Vec<String> {
    let r = cred.apply(c.get(format!("{base}/v2/_catalog"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}
