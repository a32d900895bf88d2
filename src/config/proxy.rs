//! `proxy`: the pull-through cache. Distribution's single-upstream keys (`remoteurl`), plus
//! Wharf's several upstreams by repository prefix (`[[proxy.upstream]]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{EvictAfter, duration, format_duration, size};

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
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// PEM CA certificates trusted for the upstream(s), beside the system's.
    pub cabundle: String,
    /// Upstreams by repository prefix (`dockerhub/` -> https://registry-1.docker.io).
    pub upstream: Vec<UpstreamConfig>,
    /// `garbage-collect` evicts cached tags not fetched, revalidated (or pulled after the TTL)
    /// for this long (e.g. "720h"); empty or "off": never by age. Must exceed the TTL.
    pub evictafter: EvictAfter,
    /// `garbage-collect` evicts the least recently used cached tags while the cached
    /// repositories' content exceeds this many bytes ("50GiB", "500MB", "1048576"); empty: no
    /// budget.
    #[serde(with = "size")]
    pub maxsize: Option<u64>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            remoteurl: String::new(),
            username: String::new(),
            password: String::new(),
            ttl: Duration::from_secs(5 * 60),
            cabundle: String::new(),
            upstream: Vec::new(),
            evictafter: EvictAfter::Unset,
            maxsize: None,
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
    /// The tag TTL for this upstream (empty: `proxy.ttl`); see [`ProxyConfig::ttl_of`].
    #[serde(with = "duration::optional")]
    pub ttl: Option<Duration>,
    /// PEM CA certificates for this upstream (default: `proxy.cabundle`).
    pub cabundle: String,
    /// Eviction by age for this upstream's repositories (empty: `proxy.evictafter`; "off":
    /// never); see [`ProxyConfig::evict_after_of`].
    pub evictafter: EvictAfter,
}

impl ProxyConfig {
    pub fn enabled(&self) -> bool {
        !self.remoteurl.is_empty() || !self.upstream.is_empty()
    }

    /// The tag TTL of an upstream: its own, else `proxy.ttl`.
    pub fn ttl_of(&self, u: &UpstreamConfig) -> Duration {
        u.ttl.unwrap_or(self.ttl)
    }

    /// The age after which an upstream's cached tags are evicted (None: never by age).
    pub fn evict_after_of(&self, u: &UpstreamConfig) -> Option<Duration> {
        u.evictafter.or(self.evictafter)
    }

    /// A tag in use is only refreshed once per TTL, so an eviction age not above the TTL could
    /// evict tags in use: refused.
    fn check_evict_after(limit: Option<Duration>, ttl: Duration) -> Result<(), String> {
        match limit {
            Some(d) if d <= ttl => Err(format!(
                "{:?} must be longer than the tag TTL ({}): a tag in use is refreshed only once per TTL",
                format_duration(d),
                humantime::format_duration(ttl)
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if self.enabled() {
            Self::check_evict_after(self.evictafter.or(EvictAfter::Never), self.ttl)
                .map_err(|e| ("proxy.evictafter".to_owned(), e))?;
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
            Self::check_evict_after(self.evict_after_of(u), self.ttl_of(u)).map_err(|e| (key("evictafter"), e))?;
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
