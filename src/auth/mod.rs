//! Who is calling, and may they do what the request needs. Route parsing (`http::route`)
//! says which [`Access`]es a request needs; [`Auth::check`] authenticates the caller (htpasswd
//! Basic credentials, or anonymous) and authorizes every access against the [`rules`], or
//! answers with the spec's 401 challenge or 403. Nothing here knows HTTP routes.

pub mod htpasswd;
pub mod limiter;
pub mod rules;
pub mod scope;

use std::net::IpAddr;
use std::path::Path;

use axum::http::{HeaderMap, header};
use base64::Engine;

use crate::config::AuthConfig;
use crate::error::Error;
use htpasswd::Htpasswd;
use limiter::Limiter;
use rules::Rules;
pub use scope::Access;

/// What the request says about where it came from (for challenges and the login limiter).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestInfo<'a> {
    pub headers: Option<&'a HeaderMap>,
    pub peer: Option<IpAddr>,
}

/// An authenticated (or anonymous) caller.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// None: anonymous.
    pub user: Option<String>,
}

enum Mode {
    /// No auth configured: everyone may do everything.
    Off,
    Basic {
        realm: String,
        users: Htpasswd,
    },
}

pub struct Auth {
    mode: Mode,
    rules: Rules,
    limiter: Limiter,
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
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Auth {
    pub fn from_config(cfg: &AuthConfig) -> Result<Auth, String> {
        let mode = if let Some(h) = &cfg.htpasswd {
            Mode::Basic {
                realm: h.realm.clone(),
                users: Htpasswd::open(Path::new(&h.path))?,
            }
        } else {
            Mode::Off
        };
        Ok(Auth {
            mode,
            rules: Rules::from_config(cfg),
            limiter: Limiter::default(),
        })
    }

    /// No authentication at all (tests, and registries without `auth`).
    pub fn off() -> Auth {
        Auth {
            mode: Mode::Off,
            rules: Rules::from_config(&AuthConfig::default()),
            limiter: Limiter::default(),
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> &'static str {
        match self.mode {
            Mode::Off => "none",
            Mode::Basic { .. } => "htpasswd",
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// Authenticate the caller and authorize every access in `required` (an empty list, as
    /// for `/v2/`, still needs an authenticated caller).
    pub async fn check(&self, req: RequestInfo<'_>, required: &[Access]) -> Result<Caller, Error> {
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
                        if !self.login(users, &user, &password, req.peer).await {
                            return Err(challenge());
                        }
                        Caller { user: Some(user) }
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
        }
    }

    /// Check a password, slowing down clients that keep failing.
    pub async fn login(&self, users: &Htpasswd, user: &str, password: &str, peer: Option<IpAddr>) -> bool {
        if let Some(ip) = peer {
            let wait = self.limiter.delay(ip);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let ok = users.verify(user, password).await;
        if let Some(ip) = peer {
            if ok {
                self.limiter.succeeded(ip);
            } else {
                tracing::warn!(user, client = %ip, "failed login");
                self.limiter.failed(ip);
            }
        }
        ok
    }

    /// Whether `caller` may do `a` (the access rules; with auth off, everything).
    pub fn may(&self, caller: &Caller, a: &Access) -> bool {
        match self.mode {
            Mode::Off => true,
            _ => self.rules.allows(caller.user.as_deref(), a),
        }
    }

    /// Whether `caller` may pull from `repo` (catalog filtering, mount sources).
    pub fn may_pull(&self, caller: &Caller, repo: &str) -> bool {
        self.may(caller, &Access::repository(repo, scope::PULL))
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
