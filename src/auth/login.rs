//! Password checks under the failed-login limits.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Auth;
use super::htpasswd::Htpasswd;
use crate::error::Error;

impl Auth {
    /// Check a password under the failed-login limits (`limiter`): Ok(Some(the matched hash))
    /// if right, Ok(None) if wrong, 429 TOOMANYREQUESTS at once (no bcrypt) while `user` is
    /// locked out for this client address.
    pub async fn login(
        &self,
        users: &Arc<Htpasswd>,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Option<String>, Error> {
        let l = &self.limiter;
        let throttled = |retry_after: Duration| {
            crate::metrics::login_throttled();
            tracing::debug!(user, client = %peer.map_or_else(String::new, |p| p.to_string()), "login refused: too many failed logins");
            Error::Throttled {
                reason: "too many failed logins: try again later".into(),
                retry_after,
            }
        };
        let busy = Duration::from_secs(1);
        // Locked out: refuse before anything, the remembered-password check included (it is
        // an oracle too).
        if let Some(wait) = l.locked(user, peer) {
            return Err(throttled(wait));
        }
        if let Some(hash) = users.cached(user, password) {
            l.known(user, peer);
            return Ok(Some(hash));
        }
        // One check per user at a time, so parallel guesses see each other's failures.
        let turn = l.turn(user).await.ok_or_else(|| throttled(busy))?;
        if let Some(hash) = users.cached(user, password) {
            l.known(user, peer);
            return Ok(Some(hash));
        }
        let ticket = l.reserve(user, peer).map_err(throttled)?;
        let slot = l.slot().await.ok_or_else(|| throttled(busy))?;
        // The check runs to its end, and is counted, even if the client goes away meanwhile.
        let (users, user, password) = (users.clone(), user.to_owned(), password.to_owned());
        let task = tokio::spawn(async move {
            let hash = users.check(&user, &password, slot).await;
            match &hash {
                Some(_) => ticket.succeeded(peer),
                None => {
                    tracing::warn!(user, client = %peer.map_or_else(String::new, |p| p.to_string()), "failed login");
                    ticket.failed();
                }
            }
            drop(turn);
            hash
        });
        Ok(task.await.unwrap_or(None))
    }
}
