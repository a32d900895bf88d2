//! `auth`: htpasswd or token authentication, the failed-login limits, and access rules.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{at_least_one, duration};

/// `auth`: at most one of `htpasswd` and `token` (as Distribution's `auth` map), plus Wharf's
/// access rules and groups.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub htpasswd: Option<HtpasswdConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenConfig>,
    /// Group name -> user names, for `groups` in access rules.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Access rules (`[[auth.access]]`). None: every authenticated user may do everything.
    pub access: Vec<AccessRuleConfig>,
    /// Limits on password guessing (`[auth.login]`), for Basic auth and the token endpoint.
    pub login: LoginConfig,
}

/// `[auth.login]`: how many failed password checks are evaluated before attempts are refused
/// (429 TOOMANYREQUESTS, at once and without checking the password), and how many password
/// hashes (bcrypt) are evaluated at once. See `auth::limiter`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Failed logins per user per window (from addresses the user has not logged in from).
    #[serde(with = "at_least_one")]
    pub maxfailures: u32,
    /// Failed logins per client address (IPv6: per /64) per window, all users together.
    #[serde(with = "at_least_one")]
    pub maxaddressfailures: u32,
    /// The counting window; a lockout ends at the latest one window after the first failure.
    #[serde(with = "duration::positive")]
    pub window: Duration,
    /// Password hashes evaluated at once, server-wide; further checks wait up to 10 s, then 429.
    #[serde(with = "at_least_one")]
    pub maxchecks: u32,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            maxfailures: 5,
            maxaddressfailures: 30,
            window: Duration::from_secs(60),
            maxchecks: 4,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HtpasswdConfig {
    pub realm: String,
    pub path: String,
}

impl Default for HtpasswdConfig {
    fn default() -> Self {
        HtpasswdConfig {
            realm: "Registry Realm".into(),
            path: String::new(),
        }
    }
}

/// Distribution's `auth.token`, plus Wharf's built-in issuer (`signingkey`, `htpasswd`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Token endpoint URL put in challenges. Empty with a built-in issuer: `http.host` +
    /// `/token`, else this server's `/token` at the address the client connected to.
    pub realm: String,
    /// The audience (`aud`) tokens must name.
    pub service: String,
    /// The issuer (`iss`) tokens must name.
    pub issuer: String,
    /// PEM certificates or public keys whose tokens are trusted (an external issuer).
    pub rootcertbundle: String,
    /// A JSON Web Key Set file whose keys are trusted (an external issuer).
    pub jwks: String,
    /// PEM private key (EC P-256 -> ES256, RSA -> RS256): enables the built-in `/token` issuer.
    pub signingkey: String,
    /// htpasswd file whose users the built-in issuer authenticates.
    pub htpasswd: String,
    /// Lifetime of issued access tokens.
    #[serde(with = "duration")]
    pub expiration: Duration,
    /// Lifetime of refresh tokens (OAuth2 `access_type=offline`, `offline_token=true`).
    #[serde(with = "duration")]
    pub refreshexpiration: Duration,
    /// Clock skew allowed when checking `exp` and `nbf`.
    #[serde(with = "duration")]
    pub leeway: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: String::new(),
            service: String::new(),
            issuer: String::new(),
            rootcertbundle: String::new(),
            jwks: String::new(),
            signingkey: String::new(),
            htpasswd: String::new(),
            expiration: Duration::from_secs(5 * 60),
            refreshexpiration: Duration::from_secs(720 * 3600),
            leeway: Duration::from_secs(60),
        }
    }
}

/// One `[[auth.access]]` rule: who (users, groups, anonymous) may do what (actions) where
/// (repository globs). Rules only grant; a caller gets the union of every rule that matches.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessRuleConfig {
    /// Globs: `*` matches within one path component, `**` any number of components.
    pub repositories: Vec<String>,
    /// User names; `"*"` is every authenticated user.
    pub users: Vec<String>,
    /// Group names from `[auth.groups]`.
    pub groups: Vec<String>,
    /// The rule also applies to callers without credentials.
    pub anonymous: bool,
    /// `pull`, `push`, `delete`, or `"*"` for all three.
    pub actions: Vec<String>,
}

impl AuthConfig {
    /// One auth type with what it needs; access rules that name defined groups.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let auth = self;
        let err = |k: &str, m: String| Err((k.to_owned(), m));
        if auth.htpasswd.is_some() && auth.token.is_some() {
            return err("auth", "configure one of auth.htpasswd and auth.token, not both".into());
        }
        if let Some(h) = &auth.htpasswd
            && h.path.is_empty()
        {
            return err("auth.htpasswd.path", "must be set (a bcrypt htpasswd file)".into());
        }
        if let Some(t) = &auth.token {
            for (k, v) in [("service", &t.service), ("issuer", &t.issuer)] {
                if v.is_empty() {
                    return err(&format!("auth.token.{k}"), "must be set".into());
                }
            }
            if t.signingkey.is_empty() && t.rootcertbundle.is_empty() && t.jwks.is_empty() {
                return err(
                    "auth.token",
                    "set signingkey (built-in issuer), or rootcertbundle or jwks (an external issuer)".into(),
                );
            }
            if t.signingkey.is_empty() && t.realm.is_empty() {
                return err("auth.token.realm", "must be set for an external issuer".into());
            }
            if !t.signingkey.is_empty() && t.htpasswd.is_empty() {
                return err(
                    "auth.token.htpasswd",
                    "must be set with signingkey (the users the built-in issuer authenticates)".into(),
                );
            }
        }
        if auth.htpasswd.is_none() && auth.token.is_none() && !auth.access.is_empty() {
            return err(
                "auth.access",
                "access rules need auth.htpasswd or auth.token (without auth everyone may do everything)".into(),
            );
        }
        for (i, rule) in auth.access.iter().enumerate() {
            let key = |k: &str| format!("auth.access[{i}].{k}");
            if rule.repositories.is_empty() {
                return err(&key("repositories"), "must list at least one pattern".into());
            }
            if let Some(bad) = rule.repositories.iter().find(|p| p.is_empty() || p.contains("//")) {
                return err(&key("repositories"), format!("{bad:?} is not a repository pattern"));
            }
            if let Some(bad) = rule
                .actions
                .iter()
                .find(|a| !["pull", "push", "delete", "*"].contains(&a.as_str()))
            {
                return err(&key("actions"), format!("{bad:?} is not one of pull, push, delete, *"));
            }
            if rule.users.is_empty() && rule.groups.is_empty() && !rule.anonymous {
                return err(
                    &key("users"),
                    "the rule names nobody: set users, groups or anonymous".into(),
                );
            }
            if let Some(g) = rule.groups.iter().find(|g| !auth.groups.contains_key(*g)) {
                return err(&key("groups"), format!("group {g:?} is not defined in [auth.groups]"));
            }
        }
        Ok(())
    }
}
