//! Caps on open upload sessions (issue 17): at most `uploads.maxperrepository` per repository
//! and `uploads.maxperclient` per client (the authenticated user, else the client's address;
//! an IPv6 address counts by its /64, which one host can fill with addresses at will). Beyond
//! either, opening a session answers 429 TOOMANYREQUESTS with a Retry-After.
//!
//! The counts are this process's: every session it opened and has not seen end. A session
//! ends when this process finishes, cancels or purges it, or finds it gone (a request on it
//! answers BLOB_UPLOAD_UNKNOWN). A session that ends elsewhere (another replica on the same
//! store finished it, an operator removed it) is still counted here until a cap is reached:
//! then, before refusing, the sessions counted against that cap are checked in storage (at
//! most once a second per repository or client, so refused requests cannot make the server
//! stat storage without bound), and those gone are dropped. The counts are therefore never
//! below the sessions this process opened that still exist, and a refusal is only ever based
//! on sessions that existed a moment ago. Sessions opened before a restart, or by another
//! replica, are not counted: they end by the purge (`storage.maintenance.uploadpurging`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::names::{RepoName, UploadId};
use super::{Registry, paths};
use crate::error::{Error, Result};

/// What a client refused for too many sessions is told to wait.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The sessions counted against one cap are checked in storage at most this often.
const RECHECK: Duration = Duration::from_secs(1);

/// The caps (0: none) and this process's open sessions.
#[derive(Default)]
pub struct UploadLimits {
    per_repository: usize,
    per_client: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each counted session (by id): its repository and client.
    sessions: HashMap<String, (RepoName, String)>,
    by_repository: HashMap<RepoName, HashSet<String>>,
    by_client: HashMap<String, HashSet<String>>,
    /// When the sessions of a repository (`Ok`) or client (`Err`) were last checked in storage.
    checked: HashMap<std::result::Result<RepoName, String>, Instant>,
}

impl State {
    fn count(&self, repo: &RepoName, client: &str) -> (usize, usize) {
        (
            self.by_repository.get(repo).map_or(0, HashSet::len),
            self.by_client.get(client).map_or(0, HashSet::len),
        )
    }

    fn insert(&mut self, id: &str, repo: &RepoName, client: &str) {
        self.sessions.insert(id.to_owned(), (repo.clone(), client.to_owned()));
        self.by_repository
            .entry(repo.clone())
            .or_default()
            .insert(id.to_owned());
        self.by_client
            .entry(client.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    fn remove(&mut self, id: &str) {
        let Some((repo, client)) = self.sessions.remove(id) else {
            return;
        };
        if let Some(set) = self.by_repository.get_mut(&repo) {
            set.remove(id);
            if set.is_empty() {
                self.by_repository.remove(&repo);
                self.checked.remove(&Ok(repo));
            }
        }
        if let Some(set) = self.by_client.get_mut(&client) {
            set.remove(id);
            if set.is_empty() {
                self.by_client.remove(&client);
                self.checked.remove(&Err(client));
            }
        }
    }
}

/// A session counted before it exists in storage; uncounted again when dropped unless kept
/// (so a failed or abandoned start, even a cancelled request future, frees its place).
pub(crate) struct Slot<'a> {
    limits: &'a UploadLimits,
    id: String,
    kept: bool,
}

impl Slot<'_> {
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.limits.ended(&self.id);
        }
    }
}

impl UploadLimits {
    pub fn new(per_repository: usize, per_client: usize) -> Self {
        UploadLimits {
            per_repository,
            per_client,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the session is counted here.
    pub fn counts(&self, id: &UploadId) -> bool {
        self.state().sessions.contains_key(id.as_str())
    }

    /// The session ended: it no longer counts.
    pub fn ended(&self, id: &str) {
        self.state().remove(id);
    }

    fn over(&self, (repo_count, client_count): (usize, usize)) -> (bool, bool) {
        (
            self.per_repository > 0 && repo_count >= self.per_repository,
            self.per_client > 0 && client_count >= self.per_client,
        )
    }
}

impl Registry {
    /// Count a session about to be opened as `id`, or refuse it with 429 when the repository
    /// or the client has as many open as allowed (after dropping those gone from storage).
    pub(crate) async fn reserve_upload(&self, repo: &RepoName, client: &str, id: &UploadId) -> Result<Slot<'_>> {
        let limits = &self.upload_limits;
        let mut rechecked = false;
        loop {
            let suspects: Vec<(RepoName, String)> = {
                let mut st = limits.state();
                let (repo_full, client_full) = limits.over(st.count(repo, client));
                if !repo_full && !client_full {
                    st.insert(id.as_str(), repo, client);
                    return Ok(Slot {
                        limits,
                        id: id.to_string(),
                        kept: false,
                    });
                }
                let now = Instant::now();
                let mut due = |key: std::result::Result<RepoName, String>| {
                    let fresh = st.checked.get(&key).is_some_and(|at| now.duration_since(*at) < RECHECK);
                    if !fresh {
                        st.checked.insert(key, now);
                    }
                    !fresh
                };
                let repo_due = repo_full && due(Ok(repo.clone()));
                let client_due = client_full && due(Err(client.to_owned()));
                if rechecked || (repo_full && !repo_due) || (client_full && !client_due) {
                    return Err(refusal(repo, limits, repo_full));
                }
                let mut ids: HashSet<&String> = HashSet::new();
                if repo_full {
                    ids.extend(st.by_repository.get(repo).into_iter().flatten());
                }
                if client_full {
                    ids.extend(st.by_client.get(client).into_iter().flatten());
                }
                ids.into_iter()
                    .filter_map(|i| Some((st.sessions.get(i)?.0.clone(), i.clone())))
                    .collect()
            };
            rechecked = true;
            let gone: Vec<String> = futures::stream::iter(suspects)
                .map(|(r, i)| async move {
                    let Some(uid) = UploadId::parse(&i) else { return Some(i) };
                    match self.exists(&paths::upload_startedat(&r, &uid)).await {
                        Ok(false) => Some(i),
                        _ => None, // there, or unknown: still counts
                    }
                })
                .buffer_unordered(16)
                .filter_map(|g| async move { g })
                .collect()
                .await;
            if !gone.is_empty() {
                tracing::debug!(
                    count = gone.len(),
                    "upload sessions ended elsewhere are no longer counted"
                );
            }
            let mut st = limits.state();
            for i in &gone {
                st.remove(i);
            }
        }
    }

    /// After a request on a counted session failed: stop counting it if it is gone.
    /// Keep the caps in step with what a request on session `id` did (`r`): a request that
    /// `ends` the session (finish, cancel) frees its place when it succeeds, and any request
    /// that finds the session gone, or ends it by failing, frees it too.
    pub(crate) async fn track_session<T>(&self, repo: &RepoName, id: &UploadId, r: Result<T>, ends: bool) -> Result<T> {
        match &r {
            Ok(_) if ends => self.upload_limits.ended(id.as_str()),
            Ok(_) => {}
            Err(e @ Error::BlobUploadUnknown(_)) => self.settle_upload(repo, id, e).await,
            Err(e) if ends => self.settle_upload(repo, id, e).await,
            Err(_) => {}
        }
        r
    }

    async fn settle_upload(&self, repo: &RepoName, id: &UploadId, failed: &Error) {
        if !self.upload_limits.counts(id) {
            return;
        }
        let gone = match failed {
            Error::BlobUploadUnknown(_) => true,
            _ => matches!(self.exists(&paths::upload_startedat(repo, id)).await, Ok(false)),
        };
        if gone {
            self.upload_limits.ended(id.as_str());
        }
    }
}

fn refusal(repo: &RepoName, limits: &UploadLimits, repo_full: bool) -> Error {
    let reason = if repo_full {
        format!(
            "repository {repo} has {} upload sessions open (uploads.maxperrepository); finish or cancel one, or \
             wait for abandoned ones to be purged",
            limits.per_repository
        )
    } else {
        format!(
            "this client has {} upload sessions open (uploads.maxperclient); finish or cancel one, or wait for \
             abandoned ones to be purged",
            limits.per_client
        )
    };
    Error::Throttled {
        reason,
        retry_after: RETRY_AFTER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_sessions_and_slots() {
        let limits = UploadLimits::new(2, 1);
        let repo = RepoName::parse("a").unwrap();
        let mut st = limits.state();
        st.insert("1", &repo, "alice");
        st.insert("2", &repo, "bob");
        assert_eq!(limits.over(st.count(&repo, "alice")), (true, true));
        assert_eq!(limits.over(st.count(&repo, "carol")), (true, false));
        st.remove("1");
        st.remove("1");
        assert_eq!(st.count(&repo, "alice"), (1, 0));
        assert!(!st.by_client.contains_key("alice"));
        drop(st);
        let slot = Slot {
            limits: &limits,
            id: "2".into(),
            kept: false,
        };
        drop(slot); // a slot not kept uncounts its session
        assert_eq!(limits.state().count(&repo, "bob"), (0, 0));
        assert!(limits.state().sessions.is_empty());
    }
}
