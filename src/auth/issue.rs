//! The built-in token server: [`Auth::issue`] and what goes in and out of it.

use subtle::ConstantTimeEq;

use super::scope::{Access, ResourceActions};
use super::{Auth, Caller, Credentials, Mode, RequestInfo, quoted};
use crate::error::Error;

/// A request to the token endpoint.
pub struct TokenRequest {
    pub service: Option<String>,
    pub scopes: Vec<ResourceActions>,
    pub grant: Grant,
    /// Also return a refresh token (`offline_token=true`, `access_type=offline`).
    pub offline: bool,
}

pub enum Grant {
    /// `GET /token`: Basic credentials in `Authorization`, or none (anonymous).
    Header(Credentials),
    /// OAuth2 `grant_type=password`.
    Password { user: String, password: String },
    /// OAuth2 `grant_type=refresh_token`.
    Refresh(String),
}

/// What the token endpoint answers.
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: String,
    pub refresh_token: Option<String>,
    /// The granted scopes, space-separated (OAuth2's `scope`).
    pub scope: String,
}

impl Auth {
    /// The token endpoint: authenticate, then grant each requested scope intersected with what
    /// the rules allow the caller (a partial or empty grant is not an error).
    pub async fn issue(&self, req: RequestInfo<'_>, tr: TokenRequest) -> Result<Issued, Error> {
        let Mode::Token(t) = &self.mode else {
            return Err(Error::NotFound("/token".into()));
        };
        let Some(b) = &t.builtin else {
            return Err(Error::NotFound("/token".into()));
        };
        if let Some(service) = tr.service.as_deref().filter(|s| !s.is_empty())
            && service != t.service
        {
            return Err(Error::Denied {
                detail: vec![serde_json::json!({ "service": service, "expected": t.service })],
            });
        }
        let refused = || Error::Unauthorized {
            challenge: format!("Basic realm={}", quoted(&t.service)),
            detail: Vec::new(),
        };
        let refresh_audience = format!("{}#refresh", t.service);
        // The credential a refresh token is bound to: the user's htpasswd hash at login.
        let mut bound_to = None;
        let user = match tr.grant {
            Grant::Header(Credentials::None) => None,
            Grant::Header(Credentials::Basic { user, password }) | Grant::Password { user, password } => {
                let Some(hash) = self.login(&b.users, &user, &password, req.peer).await? else {
                    return Err(refused());
                };
                bound_to = Some(hash);
                Some(user)
            }
            Grant::Header(_) => return Err(refused()),
            Grant::Refresh(raw) => {
                let claims = t
                    .verifier
                    .verify_refresh(&raw, &b.signer, &refresh_audience)
                    .map_err(|e| {
                        tracing::info!(reason = %e, "refused a refresh token");
                        refused()
                    })?;
                // Bound to the credential it was issued for: a changed password or a removed
                // user ends it (tokens without a binding, from before, too).
                let current = b.users.entry(&claims.sub);
                let same = current.as_deref().is_some_and(|hash| {
                    let expected = b.signer.credential_binding(&claims.sub, hash);
                    !claims.cred.is_empty() && bool::from(expected.as_bytes().ct_eq(claims.cred.as_bytes()))
                });
                if claims.sub.is_empty() || !same {
                    tracing::info!(
                        user = claims.sub,
                        "refused a refresh token: the user's password changed or the user was removed"
                    );
                    return Err(refused());
                }
                bound_to = current;
                Some(claims.sub)
            }
        };
        let caller = Caller {
            user: user.clone(),
            token: None,
        };
        let granted: Vec<ResourceActions> = tr
            .scopes
            .into_iter()
            .map(|mut ra| {
                ra.actions.retain(|action| {
                    let a = Access {
                        typ: ra.typ.clone(),
                        name: ra.name.clone(),
                        action: action.clone(),
                    };
                    self.rules.allows(caller.user.as_deref(), &a)
                });
                ra
            })
            .collect();
        let scope = granted
            .iter()
            .filter(|ra| !ra.actions.is_empty())
            .map(|ra| format!("{}:{}:{}", ra.typ, ra.name, ra.actions.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let sub = user.as_deref().unwrap_or("");
        let token = b.signer.sign(&t.issuer, sub, &t.service, b.ttl, granted);
        let refresh_token = match (&user, bound_to) {
            (Some(u), Some(hash)) if tr.offline => Some(b.signer.sign_bound(
                &t.issuer,
                sub,
                &refresh_audience,
                b.refresh_ttl,
                Vec::new(),
                b.signer.credential_binding(u, &hash),
            )),
            _ => None,
        };
        tracing::info!(user = sub, scope = %scope, "token issued");
        Ok(Issued {
            token,
            expires_in: b.ttl.as_secs(),
            issued_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            refresh_token,
            scope,
        })
    }
}
