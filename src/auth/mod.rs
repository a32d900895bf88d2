//! Who is calling, and may they do what the request needs. Route parsing (`http::route`)
//! says which [`Access`]es a request needs; [`Auth::check`] authenticates the caller (htpasswd
//! Basic credentials, a bearer token, or anonymous) and authorizes every access against the
//! [`rules`] and the token's `access` claim, or answers with the spec's 401 challenge or 403.
//! [`Auth::issue`] is the built-in token server's logic. Nothing here knows HTTP routes.

pub mod htpasswd;
mod issue;
pub mod limiter;
mod login;
pub mod rules;
pub mod scope;
pub mod token;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine;

use crate::config::AuthConfig;
use crate::error::Error;
use htpasswd::Htpasswd;
pub use issue::{Grant, Issued, TokenRequest};
use limiter::Limiter;
use rules::Rules;
pub use scope::Access;
use scope::ResourceActions;
use token::{Signer, Verifier};

/// What the request says about where it came from (for challenges and the login limiter).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestInfo<'a> {
    pub headers: Option<&'a HeaderMap>,
    pub peer: Option<IpAddr>,
    /// The connection is TLS (challenges then name an https realm).
    pub tls: bool,
    /// This server's address as the client reached it (the realm's last resort; never the
    /// client's `Host` header, which the client chooses).
    pub local: Option<std::net::SocketAddr>,
}

/// An authenticated (or anonymous) caller.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// None: anonymous.
    pub user: Option<String>,
    /// A bearer caller's `access` claim.
    pub token: Option<Vec<ResourceActions>>,
}

enum Mode {
    /// No auth configured: everyone may do everything.
    Off,
    Basic {
        realm: String,
        users: Arc<Htpasswd>,
    },
    Token(Box<TokenMode>),
}

struct TokenMode {
    /// The realm: `auth.token.realm`, else `http.host` + `/token`; empty: this server's
    /// `/token` at the address the client connected to.
    realm: String,
    service: String,
    issuer: String,
    verifier: Verifier,
    builtin: Option<BuiltIn>,
}

/// The built-in token server.
struct BuiltIn {
    signer: Signer,
    users: Arc<Htpasswd>,
    ttl: Duration,
    refresh_ttl: Duration,
}

pub struct Auth {
    mode: Mode,
    rules: Rules,
    limiter: Arc<Limiter>,
}

/// Credentials as sent in `Authorization`.
pub enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
    Invalid,
}

impl std::fmt::Debug for Credentials {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user:?}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::Invalid => f.write_str("Invalid"),
        }
    }
}

pub fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(v) = v.to_str() else { return Credentials::Invalid };
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return Credentials::Invalid;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return Credentials::Invalid;
        };
        match text.split_once(':') {
            Some((u, p)) if !u.is_empty() => Credentials::Basic {
                user: u.to_owned(),
                password: p.to_owned(),
            },
            _ => Credentials::Invalid,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
        Credentials::Bearer(rest.trim().to_owned())
    } else {
        Credentials::Invalid
    }
}

fn details(required: &[Access]) -> Vec<serde_json::Value> {
    required.iter().map(Access::detail).collect()
}

/// A quoted-string for a challenge parameter.
pub fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Auth {
    pub fn from_config(cfg: &AuthConfig) -> Result<Auth, String> {
        let mode = if let Some(h) = &cfg.htpasswd {
            Mode::Basic {
                realm: h.realm.clone(),
                users: Arc::new(Htpasswd::open(Path::new(&h.path))?),
            }
        } else if let Some(t) = &cfg.token {
            let builtin = if t.signingkey.is_empty() {
                None
            } else {
                Some(BuiltIn {
                    signer: Signer::load(Path::new(&t.signingkey))?,
                    users: Arc::new(Htpasswd::open(Path::new(&t.htpasswd))?),
                    ttl: t.expiration,
                    refresh_ttl: t.refreshexpiration,
                })
            };
            let verifier = Verifier::from_config(t, builtin.as_ref().map(|b| &b.signer))?;
            Mode::Token(Box::new(TokenMode {
                realm: t.realm.clone(),
                service: t.service.clone(),
                issuer: t.issuer.clone(),
                verifier,
                builtin,
            }))
        } else {
            Mode::Off
        };
        Ok(Auth {
            mode,
            rules: Rules::from_config(cfg),
            limiter: Arc::new(Limiter::new(&cfg.login)),
        })
    }

    /// Take the built-in token server's realm from `http.host` (registry:2's externally
    /// reachable URL) when `auth.token.realm` is unset; with neither, warn: challenges then
    /// name the address each client connected to.
    pub fn with_host(mut self, base_url: Option<&str>) -> Auth {
        if let Mode::Token(t) = &mut self.mode
            && t.realm.is_empty()
        {
            match base_url {
                Some(base) => t.realm = format!("{base}/token"),
                None => tracing::warn!(
                    "neither auth.token.realm nor http.host is set: token challenges name this server's \
                     address as each client connected to it (scheme://ip:port/token); behind a proxy, \
                     load balancer or NAT set http.host (e.g. https://registry.example.com)"
                ),
            }
        }
        self
    }

    /// For the start-up log line.
    pub fn describe(&self) -> &'static str {
        match self.mode {
            Mode::Off => "none",
            Mode::Basic { .. } => "htpasswd",
            Mode::Token(ref t) if t.builtin.is_some() => "token (built-in issuer)",
            Mode::Token(_) => "token",
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// Authenticate the caller and authorize every access in `required` (an empty list, as
    /// for `/v2/`, still needs an authenticated caller). `also_ask` is not required but goes
    /// into a bearer challenge's scope, so the client's token can cover it (a mount's source).
    pub async fn check(&self, req: RequestInfo<'_>, required: &[Access], also_ask: &[Access]) -> Result<Caller, Error> {
        match &self.mode {
            Mode::Off => Ok(Caller::default()),
            Mode::Basic { realm, users } => {
                let challenge = || Error::Unauthorized {
                    challenge: format!("Basic realm={}", quoted(realm)),
                    detail: details(required),
                };
                let creds = req.headers.map(credentials).unwrap_or(Credentials::None);
                let caller = match creds {
                    Credentials::None => Caller::default(),
                    Credentials::Basic { user, password } => {
                        if self.login(users, &user, &password, req.peer).await?.is_none() {
                            return Err(challenge());
                        }
                        Caller {
                            user: Some(user),
                            token: None,
                        }
                    }
                    Credentials::Bearer(_) | Credentials::Invalid => return Err(challenge()),
                };
                let refused: Vec<Access> = required.iter().filter(|a| !self.may(&caller, a)).cloned().collect();
                match (&caller.user, refused.is_empty()) {
                    (None, _) if required.is_empty() => Err(challenge()),
                    (_, true) => Ok(caller),
                    (None, false) => Err(challenge()),
                    (Some(_), false) => Err(Error::Denied {
                        detail: details(&refused),
                    }),
                }
            }
            Mode::Token(t) => {
                let asked: Vec<Access> = required.iter().chain(also_ask).cloned().collect();
                let challenge = |error: Option<&str>| Error::Unauthorized {
                    challenge: self.bearer_challenge(t, &req, &asked, error),
                    detail: details(required),
                };
                let creds = req.headers.map(credentials).unwrap_or(Credentials::None);
                let Credentials::Bearer(raw) = creds else {
                    return Err(challenge(None));
                };
                let claims = match t.verifier.verify(&raw) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(reason = %e, "refused a bearer token");
                        return Err(challenge(Some("invalid_token")));
                    }
                };
                let caller = Caller {
                    user: Some(claims.sub).filter(|s| !s.is_empty()),
                    token: Some(claims.access),
                };
                if required.iter().all(|a| self.may(&caller, a)) {
                    Ok(caller)
                } else {
                    Err(challenge(Some("insufficient_scope")))
                }
            }
        }
    }

    fn bearer_challenge(
        &self,
        t: &TokenMode,
        req: &RequestInfo<'_>,
        required: &[Access],
        error: Option<&str>,
    ) -> String {
        let realm = if t.realm.is_empty() {
            // Configured nowhere: the address this connection reached (set by the server for
            // every connection), never the client's Host header.
            let local = req.local.map(|a| match a.ip() {
                std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => std::net::SocketAddr::new(v4.into(), a.port()),
                    None => a,
                },
                _ => a,
            });
            let local = local.map_or_else(|| "localhost".to_owned(), |a| a.to_string());
            format!("{}://{local}/token", if req.tls { "https" } else { "http" })
        } else {
            t.realm.clone()
        };
        let mut c = format!("Bearer realm={},service={}", quoted(&realm), quoted(&t.service));
        if !required.is_empty() {
            c.push_str(&format!(",scope={}", quoted(&scope::challenge_scope(required))));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error={}", quoted(e)));
        }
        c
    }

    /// Whether this server issues tokens (`/token` is served).
    pub fn issues_tokens(&self) -> bool {
        matches!(&self.mode, Mode::Token(t) if t.builtin.is_some())
    }

    /// The built-in issuer's public key set, for `/token/jwks.json`.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        match &self.mode {
            Mode::Token(t) => t
                .builtin
                .as_ref()
                .map(|b| serde_json::to_value(b.signer.jwks()).expect("json")),
            _ => None,
        }
    }

    /// Whether `caller` may do `a`. With auth off, everything. A bearer caller needs `a` in its
    /// token, and, when rules are configured, the rules too (so a changed rule takes effect
    /// before tokens expire; without rules the issuer's grant decides).
    pub fn may(&self, caller: &Caller, a: &Access) -> bool {
        match (&self.mode, &caller.token) {
            (Mode::Off, _) => true,
            (_, Some(access)) => {
                access.iter().any(|ra| ra.covers(a))
                    && (!self.rules.configured() || self.rules.allows(caller.user.as_deref(), a))
            }
            (_, None) => self.rules.allows(caller.user.as_deref(), a),
        }
    }

    /// Whether `caller` may pull from `repo` (mount sources).
    pub fn may_pull(&self, caller: &Caller, repo: &str) -> bool {
        self.may(caller, &Access::repository(repo, scope::PULL))
    }

    /// Whether the catalog shows `repo` to `caller`: the repositories the rules let it pull (a
    /// token holds `registry:catalog:*`, not every repository, so only the rules can say).
    pub fn catalog_shows(&self, caller: &Caller, repo: &str) -> bool {
        match (&self.mode, &caller.token) {
            (Mode::Off, _) => true,
            (_, Some(_)) if !self.rules.configured() => true,
            _ => self
                .rules
                .allows(caller.user.as_deref(), &Access::repository(repo, scope::PULL)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_and_never_print() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic YWxpY2U6czNjcjN0".parse().unwrap());
        let c = credentials(&h);
        assert!(matches!(&c, Credentials::Basic { user, password } if user == "alice" && password == "s3cr3t"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        h.insert(header::AUTHORIZATION, "Bearer abc.def.ghi".parse().unwrap());
        assert!(matches!(credentials(&h), Credentials::Bearer(t) if t == "abc.def.ghi"));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(matches!(credentials(&h), Credentials::Invalid));
        assert!(matches!(credentials(&HeaderMap::new()), Credentials::None));
    }
}
