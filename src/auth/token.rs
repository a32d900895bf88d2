//! Bearer tokens (docker-auth-jwt.md): the claims, issuing them with our signing key (ES256 or
//! RS256), and verifying tokens from us or from an external issuer trusted by its certificates,
//! public keys or JWKS. Only asymmetric algorithms are accepted (never `none`, never HMAC, so a
//! public key can never be used as an HMAC secret), and only from a key of the same family.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};

use super::scope::ResourceActions;
use crate::config::TokenConfig;

/// Algorithms a token may be signed with. No HMAC (and `none` is not even parsed).
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// The claims of an access token (and, with another audience, a refresh token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    /// A string or a list (checked by the verifier; kept as issued).
    pub aud: serde_json::Value,
    pub exp: u64,
    #[serde(default)]
    pub nbf: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// Refresh tokens: the credential they were issued for ([`Signer::credential_binding`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cred: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct TrustedKey {
    kid: Option<String>,
    key: DecodingKey,
}

/// Why a token was refused (logged at debug; the client only sees `invalid_token`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

pub struct Verifier {
    keys: Vec<TrustedKey>,
    issuer: String,
    service: String,
    leeway: u64,
}

/// Our signing key, and what we say about it.
pub struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: String,
    public: Jwk,
    /// HMAC key binding refresh tokens to credentials, derived from the signing key (so every
    /// replica with the same key agrees, and a new key ends every refresh token anyway).
    binding_key: [u8; 32],
}

/// HMAC-SHA256 (RFC 2104) with a key of at most one block.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    assert!(key.len() <= 64);
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let inner: [u8; 32] = inner.finalize().into();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

fn pem_to_public(spki: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem.into_bytes()
}

fn decoding_key_from_spki(spki: &[u8]) -> Option<DecodingKey> {
    let pem = pem_to_public(spki);
    DecodingKey::from_ec_pem(&pem)
        .or_else(|_| DecodingKey::from_rsa_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .ok()
}

/// Keys from a PEM bundle of certificates and/or public keys.
fn bundle_keys(path: &Path) -> Result<Vec<TrustedKey>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = item.map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
        let spki = match kind {
            SectionKind::Certificate => {
                let cert = CertificateDer::from(der);
                let ee = webpki::EndEntityCert::try_from(&cert)
                    .map_err(|e| format!("{}: bad certificate: {e}", path.display()))?;
                ee.subject_public_key_info().to_vec()
            }
            SectionKind::PublicKey => der,
            _ => continue,
        };
        let key = decoding_key_from_spki(&spki).ok_or_else(|| {
            format!(
                "{}: unsupported public key (EC, RSA or Ed25519 expected)",
                path.display()
            )
        })?;
        keys.push(TrustedKey { kid: None, key });
    }
    if keys.is_empty() {
        return Err(format!("{}: no certificate or public key found", path.display()));
    }
    Ok(keys)
}

fn jwks_keys(path: &Path) -> Result<Vec<TrustedKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| format!("{}: not a JWK set: {e}", path.display()))?;
    set.keys
        .iter()
        .filter(|k| k.is_supported())
        .map(|k| {
            Ok(TrustedKey {
                kid: k.common.key_id.clone(),
                key: DecodingKey::from_jwk(k).map_err(|e| format!("{}: {e}", path.display()))?,
            })
        })
        .collect()
}

impl Signer {
    /// A PKCS#8 PEM private key: EC P-256 signs ES256, EC P-384 ES384, RSA RS256.
    pub fn load(path: &Path) -> Result<Signer, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
        let candidates: Vec<(Algorithm, Result<EncodingKey, _>)> = vec![
            (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
            (Algorithm::ES384, EncodingKey::from_ec_pem(&pem)),
            (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
        ];
        for (alg, key) in candidates {
            let Ok(key) = key else { continue };
            // The public half (and so the key's curve) comes out of the JWK conversion.
            let Ok(public) = Jwk::from_encoding_key(&key, alg) else {
                continue;
            };
            if jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({}), &key).is_err() {
                continue;
            }
            let kid = public
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|e| format!("signing key {}: {e}", path.display()))?;
            let mut public = public;
            public.common.key_id = Some(kid.clone());
            let binding_key = {
                use sha2::{Digest, Sha256};
                let mut h = Sha256::new();
                h.update(b"wharf refresh-token credential binding v1\0");
                h.update(&pem);
                h.finalize().into()
            };
            return Ok(Signer {
                key,
                alg,
                kid,
                public,
                binding_key,
            });
        }
        Err(format!(
            "signing key {}: expected an EC (P-256, P-384) or RSA private key in PKCS#8 PEM \
             (-----BEGIN PRIVATE KEY-----; convert with `openssl pkcs8 -topk8 -nocrypt`)",
            path.display()
        ))
    }

    /// The public key as a JWK set, for `/token/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public.clone()],
        }
    }

    fn trusted(&self) -> Result<TrustedKey, String> {
        Ok(TrustedKey {
            kid: Some(self.kid.clone()),
            key: DecodingKey::from_jwk(&self.public).map_err(|e| format!("signing key: {e}"))?,
        })
    }

    /// What a refresh token carries about the credential it was issued for: a keyed hash of the
    /// user's htpasswd hash (which changes with the password, and is gone with the user). The
    /// token's holder learns nothing about the hash from it.
    pub fn credential_binding(&self, user: &str, hash: &str) -> String {
        let mac = hmac_sha256(
            &self.binding_key,
            &[&(user.len() as u64).to_be_bytes(), user.as_bytes(), hash.as_bytes()],
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
    }

    /// Sign claims valid from now for `ttl`.
    pub fn sign(&self, iss: &str, sub: &str, aud: &str, ttl: Duration, access: Vec<ResourceActions>) -> String {
        self.sign_bound(iss, sub, aud, ttl, access, String::new())
    }

    /// Sign claims with a credential binding (refresh tokens).
    pub fn sign_bound(
        &self,
        iss: &str,
        sub: &str,
        aud: &str,
        ttl: Duration,
        access: Vec<ResourceActions>,
        cred: String,
    ) -> String {
        let now = now();
        let claims = Claims {
            iss: iss.to_owned(),
            sub: sub.to_owned(),
            aud: serde_json::Value::from(aud),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            cred,
        };
        let mut header = Header::new(self.alg);
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("signing with a loaded key")
    }
}

impl Verifier {
    /// Trust the keys configured in `auth.token` (and our own signer's, if any).
    pub fn from_config(cfg: &TokenConfig, signer: Option<&Signer>) -> Result<Verifier, String> {
        let mut keys = Vec::new();
        if let Some(s) = signer {
            keys.push(s.trusted()?);
        }
        if !cfg.rootcertbundle.is_empty() {
            keys.extend(bundle_keys(Path::new(&cfg.rootcertbundle))?);
        }
        if !cfg.jwks.is_empty() {
            keys.extend(jwks_keys(Path::new(&cfg.jwks))?);
        }
        Ok(Verifier {
            keys,
            issuer: cfg.issuer.clone(),
            service: cfg.service.clone(),
            leeway: cfg.leeway.as_secs(),
        })
    }

    /// Verify an access token for our service.
    pub fn verify(&self, token: &str) -> Result<Claims, Invalid> {
        self.verify_for(token, &self.service, &self.keys)
    }

    /// Verify a refresh token: signed by `signer` only, for `audience`.
    pub fn verify_refresh(&self, token: &str, signer: &Signer, audience: &str) -> Result<Claims, Invalid> {
        let own = signer.trusted().map_err(Invalid)?;
        self.verify_for(token, audience, std::slice::from_ref(&own))
    }

    fn verify_for(&self, token: &str, audience: &str, keys: &[TrustedKey]) -> Result<Claims, Invalid> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Invalid(format!("bad header: {e}")))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let family = header.alg.family();
        let same_family = |k: &&TrustedKey| k.key.family() == family;
        let by_kid: Vec<&TrustedKey> = match &header.kid {
            Some(kid) => keys
                .iter()
                .filter(same_family)
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&TrustedKey> = if by_kid.is_empty() {
            keys.iter().filter(same_family).collect()
        } else {
            by_kid
        };
        if candidates.is_empty() {
            return Err(Invalid(format!("no trusted key for algorithm {:?}", header.alg)));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = Invalid("no key".into());
        for k in candidates {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    let signature = matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature);
                    last = Invalid(e.to_string());
                    // Claims errors are the same for every key: stop at the first.
                    if !signature {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
