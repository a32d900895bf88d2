//! Helpers shared by the auth and TLS tests: htpasswd files, credentials on requests, and a
//! small image pushed with them.
#![allow(dead_code)]

use reqwest::{Client, RequestBuilder};
use serde_json::Value;

use super::common::{Api, random_bytes};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The access rules the auth tests share: team-a pulls (alice also pushes) under `team-a/`,
/// anyone pulls `public/`, admin does everything.
pub const RULES: &str = r#"
[auth.groups]
team-a = ["alice", "bob"]

[[auth.access]]
repositories = ["team-a/**"]
groups = ["team-a"]
actions = ["pull"]

[[auth.access]]
repositories = ["team-a/**"]
users = ["alice"]
actions = ["push"]

[[auth.access]]
repositories = ["public/**"]
anonymous = true
users = ["*"]
actions = ["pull"]

[[auth.access]]
repositories = ["**"]
users = ["admin"]
actions = ["*"]
"#;

/// An htpasswd file's text with bcrypt hashes (cost 4: fast, and still `$2b$`).
pub fn htpasswd(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect()
}

pub use super::common::Cred;

/// Statuses of a small image push: (config blob, layer blob, manifest). Stops at the first
/// status that is not 201 and returns it.
pub async fn push_image(c: &Client, base: &str, repo: &str, tag: &str, cred: &Cred, seed: u64) -> Result<String, u16> {
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let layer = random_bytes(2000, seed);
    let api = Api::new(base).with_client(c).with_cred(cred);
    match api.push_image(repo, tag, &config, &[&layer]).await {
        Ok(img) => Ok(img.digest),
        Err(e) => Err(e.1.unwrap_or_else(|| panic!("push {repo}:{tag}: {e}"))),
    }
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

/// A test CA that signs server and client certificates.
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        TestCa {
            pem: issuer.pem(),
            issuer,
        }
    }

    /// (certificate PEM, key PEM) for a server (SAN 127.0.0.1 and localhost) or a client.
    pub fn issue(&self, cn: &str, server: bool) -> (String, String) {
        let sans = if server {
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
        } else {
            Vec::new()
        };
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A rustls client configuration trusting `ca_pem`, optionally presenting a client certificate,
/// limited to `versions`.
pub fn tls_client_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    }
}

/// A reqwest client for HTTPS against the test CA.
pub fn https_client(ca_pem: &str, client: Option<(&str, &str)>) -> Client {
    Client::builder()
        .use_preconfigured_tls(tls_client_config(
            ca_pem,
            client,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        ))
        .build()
        .unwrap()
}
