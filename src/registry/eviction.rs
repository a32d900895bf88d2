//! Which repositories garbage collection may evict cached content from, and when: the
//! `proxy.evictafter` / `[[proxy.upstream]] evictafter` ages and the `proxy.maxsize` budget.
//! The eviction itself is part of the mark phase ([`crate::registry::gc`]). These options live
//! in the domain, beside the GC that applies them; the proxy (which routes the same prefixes)
//! is not needed to read them.

use std::time::{Duration, SystemTime};

use crate::config::{EvictAfter, ProxyConfig};
use crate::registry::names::RepoName;

/// Eviction settings for one garbage collection run.
#[derive(Clone, Debug)]
pub struct Eviction {
    /// Cached repositories by prefix ("" = every repository), in routing order, with their age
    /// limit (`None`: never by age).
    rules: Vec<(String, Option<Duration>)>,
    /// The budget for the content of all cached repositories together, in bytes.
    pub max_size: Option<u64>,
    /// Ages are measured from here.
    pub now: SystemTime,
}

impl Eviction {
    /// `None` when the registry is no cache, or neither an age nor a budget is configured.
    pub fn from_config(cfg: &ProxyConfig) -> Result<Option<Eviction>, String> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let mut rules = Vec::new();
        if !cfg.remoteurl.is_empty() {
            rules.push((String::new(), cfg.evictafter.or(EvictAfter::Never)));
        }
        for u in &cfg.upstream {
            rules.push((u.prefix.clone(), cfg.evict_after_of(u)));
        }
        let max_size = cfg.maxsize;
        if max_size.is_none() && rules.iter().all(|(_, age)| age.is_none()) {
            return Ok(None);
        }
        Ok(Some(Eviction {
            rules,
            max_size,
            now: SystemTime::now(),
        }))
    }

    /// `Some(age limit)` for a cached repository (as the proxy routes it), `None` for an
    /// ordinary one, which is never evicted from.
    pub fn cached(&self, repo: &RepoName) -> Option<Option<Duration>> {
        self.rules.iter().find_map(|(prefix, age)| {
            let rest = repo.as_str().strip_prefix(prefix.as_str())?;
            (!rest.is_empty()).then_some(*age)
        })
    }

    /// How long ago `t` was (zero for the future).
    pub fn age(&self, t: SystemTime) -> Duration {
        self.now.duration_since(t).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn only_cached_repositories_are_evicted_from() {
        let mut cfg = ProxyConfig {
            evictafter: EvictAfter::After(Duration::from_secs(720 * 3600)),
            ..Default::default()
        };
        assert!(Eviction::from_config(&cfg).unwrap().is_none(), "no cache, no eviction");
        cfg.upstream = vec![
            UpstreamConfig {
                prefix: "hub/".into(),
                url: "https://registry-1.docker.io".into(),
                ..Default::default()
            },
            UpstreamConfig {
                prefix: "quay/".into(),
                url: "https://quay.io".into(),
                evictafter: EvictAfter::Never,
                ..Default::default()
            },
        ];
        let e = Eviction::from_config(&cfg).unwrap().unwrap();
        assert_eq!(
            e.cached(&repo("hub/library/alpine")),
            Some(Some(Duration::from_secs(720 * 3600)))
        );
        assert_eq!(e.cached(&repo("quay/org/app")), Some(None));
        assert_eq!(e.cached(&repo("local/app")), None);
        assert_eq!(e.cached(&repo("hubx/app")), None);
        cfg.evictafter = EvictAfter::Unset;
        cfg.upstream[1].evictafter = EvictAfter::Unset;
        assert!(Eviction::from_config(&cfg).unwrap().is_none(), "nothing configured");
        cfg.maxsize = Some(1 << 30);
        let e = Eviction::from_config(&cfg).unwrap().unwrap();
        assert_eq!((e.max_size, e.cached(&repo("hub/a"))), (Some(1 << 30), Some(None)));
        let single = ProxyConfig {
            remoteurl: "https://registry-1.docker.io".into(),
            evictafter: EvictAfter::After(Duration::from_secs(48 * 3600)),
            ..Default::default()
        };
        let e = Eviction::from_config(&single).unwrap().unwrap();
        assert!(e.cached(&repo("anything/at/all")).is_some());
    }
}
