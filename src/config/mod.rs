//! Configuration: a typed tree shaped like Distribution's `config.yml` (keys are lowercase
//! words without underscores), loaded from defaults, then a TOML file, then environment
//! overrides (`REGISTRY_*` as `registry:2` users know them, then `WHARF_*`). See
//! `config.example.toml` for every key.

mod distribution;
mod load;
mod ops;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use load::{ConfigError, ConfigNote, load, load_with_notes};
pub use ops::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub version: String,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub health: HealthConfig,
    /// Pull-through cache: `remoteurl` (every repository mirrors one upstream, as registry:2) or
    /// `[[proxy.upstream]]` entries (repositories under a prefix mirror an upstream each).
    pub proxy: ProxyConfig,
    /// Caps on open upload sessions (Wharf's own; registry:2 has none).
    pub uploads: UploadsConfig,
}

/// `uploads`: how many upload sessions may be open at once, per repository and per client (the
/// authenticated user, else the address); beyond, a new session answers 429 TOOMANYREQUESTS.
/// 0: no cap.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    pub maxperrepository: usize,
    pub maxperclient: usize,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            maxperrepository: 1000,
            maxperclient: 100,
        }
    }
}

/// `proxy`: Distribution's single-upstream keys, plus Wharf's several upstreams by prefix.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// The upstream of every repository (registry:2's `proxy.remoteurl`); pushes are refused.
    pub remoteurl: String,
    pub username: String,
    pub password: String,
    /// How long a cached tag is served before it is checked upstream again (a HEAD). Digests
    /// never expire.
    pub ttl: String,
    /// PEM CA certificates trusted for the upstream(s), beside the system's.
    pub cabundle: String,
    /// Upstreams by repository prefix (`dockerhub/` -> https://registry-1.docker.io).
    pub upstream: Vec<UpstreamConfig>,
    /// `garbage-collect` evicts cached tags not fetched, revalidated (or pulled after the TTL)
    /// for this long (e.g. "720h"); empty: never by age. Must exceed the TTL.
    pub evictafter: String,
    /// `garbage-collect` evicts the least recently used cached tags while the cached
    /// repositories' content exceeds this ("50GiB", "500MB", bytes); empty: no budget.
    pub maxsize: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            remoteurl: String::new(),
            username: String::new(),
            password: String::new(),
            ttl: "5m".into(),
            cabundle: String::new(),
            upstream: Vec::new(),
            evictafter: String::new(),
            maxsize: String::new(),
        }
    }
}

/// One `[[proxy.upstream]]`: repositories named `<prefix><rest>` mirror `<url>`'s `<rest>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Ends with `/` (`dockerhub/`); stripped when forwarding.
    pub prefix: String,
    pub url: String,
    pub username: String,
    pub password: String,
    /// The tag TTL for this upstream (default: `proxy.ttl`).
    pub ttl: String,
    /// PEM CA certificates for this upstream (default: `proxy.cabundle`).
    pub cabundle: String,
    /// Eviction by age for this upstream's repositories (default: `proxy.evictafter`; "off":
    /// never).
    pub evictafter: String,
}

impl ProxyConfig {
    pub fn enabled(&self) -> bool {
        !self.remoteurl.is_empty() || !self.upstream.is_empty()
    }

    /// The age after which a cached tag is evicted, given an `evictafter` value and the TTL of
    /// its upstream: `None` for "" or "off". A tag in use is only refreshed once per TTL, so a
    /// limit not above the TTL could evict tags in use: refused.
    pub fn parse_evict_after(value: &str, ttl: std::time::Duration) -> Result<Option<std::time::Duration>, String> {
        let v = value.trim();
        if v.is_empty() || v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let d = parse_duration(v)?;
        if d <= ttl {
            return Err(format!(
                "{v:?} must be longer than the tag TTL ({}): a tag in use is refreshed only once per TTL",
                humantime::format_duration(ttl)
            ));
        }
        Ok(Some(d))
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        let ttl = parse_duration(&self.ttl).map_err(|e| ("proxy.ttl".to_owned(), e))?;
        if !self.upstream.is_empty() || !self.remoteurl.is_empty() {
            Self::parse_evict_after(&self.evictafter, ttl).map_err(|e| ("proxy.evictafter".to_owned(), e))?;
        } else if !self.evictafter.trim().is_empty() {
            parse_duration(&self.evictafter).map_err(|e| ("proxy.evictafter".to_owned(), e))?;
        }
        if !self.maxsize.trim().is_empty() {
            parse_size(&self.maxsize).map_err(|e| ("proxy.maxsize".to_owned(), e))?;
        }
        if !self.remoteurl.is_empty() {
            if !url_ok(&self.remoteurl) {
                return Err((
                    "proxy.remoteurl".into(),
                    format!("{:?} must start with http:// or https://", self.remoteurl),
                ));
            }
            if !self.upstream.is_empty() {
                return Err((
                    "proxy.upstream".into(),
                    "use proxy.remoteurl (every repository) or [[proxy.upstream]] (by prefix), not both".into(),
                ));
            }
        }
        for (i, u) in self.upstream.iter().enumerate() {
            let key = |k: &str| format!("proxy.upstream[{i}].{k}");
            let p = u.prefix.trim_end_matches('/');
            if u.prefix.is_empty() || !u.prefix.ends_with('/') || crate::registry::names::RepoName::parse(p).is_err() {
                return Err((
                    key("prefix"),
                    format!(
                        "{:?} must be a repository name followed by / (e.g. \"dockerhub/\")",
                        u.prefix
                    ),
                ));
            }
            if !url_ok(&u.url) {
                return Err((key("url"), format!("{:?} must start with http:// or https://", u.url)));
            }
            let u_ttl = if u.ttl.is_empty() {
                ttl
            } else {
                parse_duration(&u.ttl).map_err(|e| (key("ttl"), e))?
            };
            let evict = if u.evictafter.is_empty() {
                &self.evictafter
            } else {
                &u.evictafter
            };
            Self::parse_evict_after(evict, u_ttl).map_err(|e| (key("evictafter"), e))?;
            if let Some(j) = self.upstream[..i]
                .iter()
                .position(|o| o.prefix.starts_with(&u.prefix) || u.prefix.starts_with(&o.prefix))
            {
                return Err((
                    key("prefix"),
                    format!(
                        "{:?} overlaps proxy.upstream[{j}].prefix {:?}",
                        u.prefix, self.upstream[j].prefix
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub accesslog: AccessLogConfig,
    /// error | warn | info | debug | trace
    pub level: String,
    /// text | json
    pub formatter: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// After SIGTERM/SIGINT, how long in-flight requests may finish before they are cut ("30s").
    pub draintimeout: String,
    /// A connection whose client reads nothing of an answer for this long is closed ("60s").
    pub sendtimeout: String,
    /// Extra response headers (name -> values).
    pub headers: Headers,
    /// The debug listener and the metrics endpoint.
    pub debug: DebugConfig,
    /// `host:port` or `:port` (all interfaces), as in `registry:2`.
    pub addr: String,
    /// registry:2's externally-reachable URL (`https://registry.example.com`): the built-in
    /// token server's realm is this plus `/token`. Location headers stay relative.
    pub host: String,
    /// `http.tls`: serve HTTPS (absent: plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// Distribution's `http.tls`. Paths are empty when unset (so REGISTRY_HTTP_TLS_* can set them).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub certificate: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// PEM CA bundles: when set, clients must present a certificate signed by one of them (mTLS).
    pub clientcas: Vec<String>,
    /// "tls1.2" (default) or "tls1.3". Older versions are never offered.
    pub minimumtls: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificate: String::new(),
            key: String::new(),
            clientcas: Vec::new(),
            minimumtls: "tls1.2".into(),
        }
    }
}

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
    pub maxfailures: u32,
    /// Failed logins per client address (IPv6: per /64) per window, all users together.
    pub maxaddressfailures: u32,
    /// The counting window; a lockout ends at the latest one window after the first failure.
    pub window: String,
    /// Password hashes evaluated at once, server-wide; further checks wait up to 10 s, then 429.
    pub maxchecks: u32,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            maxfailures: 5,
            maxaddressfailures: 30,
            window: "1m".into(),
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
    pub expiration: String,
    /// Lifetime of refresh tokens (OAuth2 `access_type=offline`, `offline_token=true`).
    pub refreshexpiration: String,
    /// Clock skew allowed when checking `exp` and `nbf`.
    pub leeway: String,
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
            expiration: "5m".into(),
            refreshexpiration: "720h".into(),
            leeway: "60s".into(),
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub filesystem: FilesystemConfig,
    /// S3-compatible object storage; chosen instead of the filesystem when `bucket` is set.
    pub s3: S3Config,
    /// Distribution's `storage.inmemory`: an object store in the server's memory, lost when it
    /// exits. For tests; present (even empty) selects it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inmemory: Option<InMemoryConfig>,
    pub delete: DeleteConfig,
    pub maintenance: MaintenanceConfig,
    pub redirect: RedirectConfig,
}

/// Distribution's `storage.inmemory`, which has no settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InMemoryConfig {}

/// Distribution's `storage.s3` (its `s3-aws` driver's keys), plus a few of Wharf's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The bucket. Setting it selects this driver (as naming `s3:` does in registry:2's config).
    pub bucket: String,
    pub region: String,
    /// Endpoint URL of an S3-compatible service (`http://127.0.0.1:9000`); empty for AWS.
    pub regionendpoint: String,
    /// Credentials; empty for the environment's (`AWS_ACCESS_KEY_ID`, instance roles, ...).
    pub accesskey: String,
    pub secretkey: String,
    /// Key prefix inside the bucket (registry:2's `rootdirectory`).
    pub rootdirectory: String,
    /// Multipart part size in bytes (minimum 5 MiB, the S3 limit).
    pub chunksize: u64,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible services need.
    pub forcepathstyle: bool,
    /// Use https for AWS endpoints (ignored when `regionendpoint` names a scheme).
    pub secure: bool,
    /// Wharf: rely on conditional writes (`If-None-Match: *`, `If-Match`) for upload sessions and
    /// the garbage-collection lock. AWS S3 and SeaweedFS support them; turn off only for services
    /// that do not (Garage), accepting that concurrent writers to one upload are not detected.
    pub conditionalwrites: bool,
    /// Wharf: how long `garbage-collect` waits after taking its lock for writes that began
    /// before it to finish, before it marks.
    pub gcgrace: String,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            region: "us-east-1".into(),
            regionendpoint: String::new(),
            accesskey: String::new(),
            secretkey: String::new(),
            rootdirectory: String::new(),
            chunksize: 10 << 20,
            forcepathstyle: false,
            secure: true,
            conditionalwrites: true,
            gcgrace: "10s".into(),
        }
    }
}

impl S3Config {
    pub fn enabled(&self) -> bool {
        !self.bucket.is_empty()
    }
    pub fn gcgrace(&self) -> std::time::Duration {
        parse_duration(&self.gcgrace).expect("validated")
    }
}

/// Distribution's `storage.redirect`: with an object store, blob GETs answer 307 to a presigned
/// URL so the bytes flow from the store to the client directly. `disable = true` proxies them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectConfig {
    pub disable: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub uploadpurging: UploadPurgingConfig,
    pub readonly: ReadonlyConfig,
}

/// Distribution's `storage.maintenance.uploadpurging`: remove abandoned upload sessions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadPurgingConfig {
    pub enabled: bool,
    /// Sessions started longer ago than this are removed ("168h").
    pub age: String,
    /// How often the server looks ("24h").
    pub interval: String,
    /// Only log what would be removed.
    pub dryrun: bool,
}

/// Distribution's `storage.maintenance.readonly`: pulls work, writes answer 405 UNSUPPORTED.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadonlyConfig {
    pub enabled: bool,
}

impl Default for UploadPurgingConfig {
    fn default() -> Self {
        UploadPurgingConfig {
            enabled: true,
            age: "168h".into(),
            interval: "24h".into(),
            dryrun: false,
        }
    }
}

impl UploadPurgingConfig {
    pub fn age(&self) -> std::time::Duration {
        parse_duration(&self.age).expect("validated")
    }
    pub fn interval(&self) -> std::time::Duration {
        parse_duration(&self.interval).expect("validated")
    }
}

/// A size in bytes: a number, optionally followed by a unit: B, KB/MB/GB/TB (powers of 1000) or
/// KiB/MiB/GiB/TiB (powers of 1024); K, M, G, T alone are binary. "50GiB", "1.5 TB", "1048576".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?} (examples: 50GiB, 500MB, 1048576)");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Durations as Distribution writes them: "168h", "10m", "1h30m", "45s".
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e} (examples: 168h, 10m, 30s)"))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    pub rootdirectory: PathBuf,
    /// fsync data and directories before acknowledging a write. Turn off only for tmpfs or benchmarks.
    pub fsync: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeleteConfig {
    pub enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: "0.1".into(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            health: HealthConfig::default(),
            proxy: ProxyConfig::default(),
            uploads: UploadsConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            accesslog: AccessLogConfig::default(),
            level: "info".into(),
            formatter: "text".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            draintimeout: default_draintimeout(),
            sendtimeout: default_sendtimeout(),
            headers: Headers::new(),
            debug: DebugConfig::default(),
            addr: ":5000".into(),
            host: String::new(),
            tls: None,
        }
    }
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        FilesystemConfig {
            rootdirectory: default_root(),
            fsync: true,
        }
    }
}

/// Where data goes without configuration: a directory any user can write,
/// `$XDG_DATA_HOME/wharf`, else `$HOME/.local/share/wharf`, else `./wharf-data`.
pub fn default_root() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("wharf");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/wharf");
    }
    PathBuf::from("wharf-data")
}

impl HttpConfig {
    /// `http.host` without a trailing slash, checked: an http or https URL naming a host, with
    /// nothing after an optional path prefix (None when unset).
    pub fn base_url(&self) -> Result<Option<String>, String> {
        let h = self.host.trim();
        if h.is_empty() {
            return Ok(None);
        }
        let rest = h
            .strip_prefix("https://")
            .or_else(|| h.strip_prefix("http://"))
            .ok_or_else(|| format!("{h:?} must be an http:// or https:// URL, e.g. https://registry.example.com"))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty()
            || h.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"\\?#@".contains(c))
        {
            return Err(format!(
                "{h:?} is not a URL of this registry, e.g. https://registry.example.com"
            ));
        }
        Ok(Some(h.trim_end_matches('/').to_owned()))
    }

    /// Resolve `addr` (`:5000`, `0.0.0.0:5000`, `localhost:5000`, `[::1]:5000`).
    pub fn socket_addr(&self) -> Result<SocketAddr, String> {
        let a = self.addr.trim();
        let full = if a.starts_with(':') {
            format!("0.0.0.0{a}")
        } else {
            a.to_owned()
        };
        use std::net::ToSocketAddrs;
        full.to_socket_addrs()
            .map_err(|e| format!("invalid address {a:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("address {a:?} resolves to nothing"))
    }
}

impl Config {
    /// Checks that need more than types. Each error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.http.socket_addr().map_err(|e| ("http.addr".into(), e))?;
        self.http.base_url().map_err(|e| ("http.host".into(), e))?;
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err((
                "log.level".into(),
                format!("{:?} is not one of error, warn, info, debug, trace", self.log.level),
            ));
        }
        if !["text", "json"].contains(&self.log.formatter.as_str()) {
            return Err((
                "log.formatter".into(),
                format!("{:?} is not one of text, json", self.log.formatter),
            ));
        }
        self.validate_ops()?;
        let purging = &self.storage.maintenance.uploadpurging;
        parse_duration(&purging.age).map_err(|e| ("storage.maintenance.uploadpurging.age".to_owned(), e))?;
        match parse_duration(&purging.interval) {
            Ok(d) if d.is_zero() => {
                return Err((
                    "storage.maintenance.uploadpurging.interval".into(),
                    "must be greater than zero".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(("storage.maintenance.uploadpurging.interval".into(), e)),
        }
        let s3 = &self.storage.s3;
        if s3.enabled() && self.storage.inmemory.is_some() {
            return Err((
                "storage.inmemory".into(),
                "cannot be used with storage.s3: choose one storage driver".into(),
            ));
        }
        if s3.enabled() {
            if s3.chunksize < 5 << 20 {
                return Err((
                    "storage.s3.chunksize".into(),
                    format!("{} is below the S3 minimum part size of 5242880 bytes", s3.chunksize),
                ));
            }
            if s3.accesskey.is_empty() != s3.secretkey.is_empty() {
                return Err((
                    "storage.s3.accesskey".into(),
                    "set both accesskey and secretkey, or neither".into(),
                ));
            }
            if !s3.regionendpoint.is_empty() && !s3.regionendpoint.contains("://") {
                return Err((
                    "storage.s3.regionendpoint".into(),
                    format!("{:?} needs a scheme, e.g. http://127.0.0.1:9000", s3.regionendpoint),
                ));
            }
            parse_duration(&s3.gcgrace).map_err(|e| ("storage.s3.gcgrace".to_owned(), e))?;
        }
        if self.storage.filesystem.rootdirectory.as_os_str().is_empty() {
            return Err(("storage.filesystem.rootdirectory".into(), "must not be empty".into()));
        }
        self.validate_tls()?;
        self.proxy.validate()?;
        self.validate_auth()
    }

    fn validate_tls(&self) -> Result<(), (String, String)> {
        let Some(tls) = &self.http.tls else { return Ok(()) };
        match (tls.certificate.is_empty(), tls.key.is_empty()) {
            (false, false) => {}
            (true, true) if tls.clientcas.is_empty() => {}
            (true, _) => return Err(("http.tls.certificate".into(), "must be set with http.tls.key".into())),
            (false, true) => return Err(("http.tls.key".into(), "must be set with http.tls.certificate".into())),
        }
        if !["tls1.2", "tls1.3"].contains(&tls.minimumtls.as_str()) {
            return Err((
                "http.tls.minimumtls".into(),
                format!("{:?} is not one of tls1.2, tls1.3", tls.minimumtls),
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), (String, String)> {
        let auth = &self.auth;
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
            for (k, v) in [
                ("expiration", &t.expiration),
                ("refreshexpiration", &t.refreshexpiration),
                ("leeway", &t.leeway),
            ] {
                parse_duration(v).map_err(|e| (format!("auth.token.{k}"), e))?;
            }
        }
        let login = &auth.login;
        match parse_duration(&login.window) {
            Ok(d) if d.is_zero() => return err("auth.login.window", "must be greater than zero".into()),
            Ok(_) => {}
            Err(e) => return err("auth.login.window", e),
        }
        for (k, v) in [
            ("maxfailures", login.maxfailures),
            ("maxaddressfailures", login.maxaddressfailures),
            ("maxchecks", login.maxchecks),
        ] {
            if v == 0 {
                return err(&format!("auth.login.{k}"), "must be at least 1".into());
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
