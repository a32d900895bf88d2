//! Limits on password guessing, for Basic auth on `/v2/` and the token endpoint alike.
//!
//! Failed password checks are counted per user, per client address (IPv6 addresses per /64) and
//! per (user, address) pair, each over a window (`auth.login.window`, counted from the first
//! failure in it). An attempt is refused at once with 429 TOOMANYREQUESTS and a `Retry-After`,
//! before any password hash is evaluated, when
//! - the address has not logged in as that user within [`TRUST_FOR`] and the user has
//!   `maxfailures` failures in the window, or the address `maxaddressfailures` (password
//!   spraying: one guess at each of many users);
//! - the address has logged in as that user (a *known* pair) and that pair has `maxfailures`.
//!
//! So a user gets at most `maxfailures` evaluated wrong guesses per window from every address
//! they never logged in from, taken together, plus `maxfailures` per address they did log in
//! from, whatever the number of connections: a check *reserves* its place before bcrypt runs
//! (and checks of one user run one at a time), so parallel guessers cannot all slip in before
//! the first failure is counted. No success resets a count (failures end with their window),
//! so neither the attacker's own account nor the victim's interleaved logins buy more guesses;
//! a success of user U from address A makes the pair (U, A) known.
//!
//! The trade-off behind a NAT (many honest users, one attacker, one address): the attacker can
//! lock out, for one window at a time, the users it guesses at, and (by spraying) every user
//! who has not logged in from that address in the last day; users who have keep working,
//! unless the attacker guesses at them in particular. Nobody waits: an attempt is evaluated at
//! once or refused at once.
//!
//! Password hash evaluations in flight are bounded server-wide (`maxchecks`); a check waits at
//! most [`QUEUE_WAIT`] for its turn, then is refused with 429. A check, once started, runs to
//! its end and its outcome is counted even if the client goes away. The tables are bounded
//! (the stalest entries go first).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::config::LoginConfig;

/// How long a successful login makes its (user, address) pair known.
pub const TRUST_FOR: Duration = Duration::from_secs(24 * 3600);
/// How long a check waits for its user's turn or for a free evaluation slot.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Entries per table.
const MAX_ENTRIES: usize = 100_000;
/// Per-user turns are striped (bounded memory; a collision only makes two users' cold checks
/// wait for each other).
const STRIPES: usize = 1024;

#[derive(Clone, Copy)]
struct Count {
    failures: u32,
    /// Checks reserved and not yet finished.
    pending: u32,
    /// When the window began (the first failure in it).
    since: Instant,
}

impl Count {
    fn new() -> Count {
        Count {
            failures: 0,
            pending: 0,
            since: Instant::now(),
        }
    }

    /// Forget failures of a past window.
    fn refresh(&mut self, window: Duration) {
        if self.failures > 0 && self.since.elapsed() >= window {
            self.failures = 0;
        }
    }

    /// How long until the lockout ends, if `max` is reached.
    fn locked(&self, max: u32, window: Duration) -> Option<Duration> {
        let expired = self.failures == 0 || self.since.elapsed() >= window;
        let failures = if expired { 0 } else { self.failures };
        if failures.saturating_add(self.pending) < max {
            return None;
        }
        if failures >= max {
            Some(window.saturating_sub(self.since.elapsed()).max(Duration::from_secs(1)))
        } else {
            // Full of checks in flight: try again in a moment.
            Some(Duration::from_secs(1))
        }
    }

    fn fail(&mut self, window: Duration) {
        self.refresh(window);
        if self.failures == 0 {
            self.since = Instant::now();
        }
        self.failures = self.failures.saturating_add(1);
    }

    fn stale(&self, window: Duration) -> bool {
        self.pending == 0 && (self.failures == 0 || self.since.elapsed() >= window)
    }
}

type Pair = (String, IpAddr);

#[derive(Default)]
struct Tables {
    users: HashMap<String, Count>,
    addrs: HashMap<IpAddr, Count>,
    pairs: HashMap<Pair, Count>,
    /// Pairs that logged in, and when last.
    known: HashMap<Pair, Instant>,
}

/// Make room in `map` for one more key: drop stale entries, then the stalest.
fn make_room<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, Count>, key: &K, window: Duration) {
    if map.len() < MAX_ENTRIES || map.contains_key(key) {
        return;
    }
    map.retain(|_, c| !c.stale(window));
    if map.len() >= MAX_ENTRIES
        && let Some(k) = map.iter().min_by_key(|(_, c)| c.since).map(|(k, _)| k.clone())
    {
        map.remove(&k);
    }
}

fn entry<'a, K: Clone + Eq + std::hash::Hash>(
    map: &'a mut HashMap<K, Count>,
    key: &K,
    window: Duration,
) -> &'a mut Count {
    make_room(map, key, window);
    map.entry(key.clone()).or_insert_with(Count::new)
}

/// The address whose failures count together: IPv4 as is, IPv6 by its /64.
fn client_key(ip: Option<IpAddr>) -> IpAddr {
    ip.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), client_network)
}

/// The network one client controls, for everything counted per client (failed logins, open
/// upload sessions): an IPv4 address (or an IPv4-mapped IPv6 one) as is, an IPv6 address by its
/// /64, which one host may hold whole and use any address of.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

pub struct Limiter {
    max_user: u32,
    max_addr: u32,
    window: Duration,
    tables: Mutex<Tables>,
    turns: Vec<Arc<tokio::sync::Mutex<()>>>,
    stripe_hasher: std::collections::hash_map::RandomState,
    checks: Arc<Semaphore>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(&LoginConfig::default())
    }
}

/// A reserved password check; say how it went with [`Ticket::succeeded`] or
/// [`Ticket::failed`] (dropped unsaid, the reservation is released and nothing counted).
pub struct Ticket {
    limiter: Arc<Limiter>,
    user: String,
    addr: IpAddr,
    done: bool,
}

impl Limiter {
    pub fn new(cfg: &LoginConfig) -> Limiter {
        Limiter {
            max_user: cfg.maxfailures.max(1),
            max_addr: cfg.maxaddressfailures.max(1),
            window: cfg.window,
            tables: Mutex::new(Tables::default()),
            turns: (0..STRIPES).map(|_| Arc::new(tokio::sync::Mutex::new(()))).collect(),
            stripe_hasher: Default::default(),
            checks: Arc::new(Semaphore::new(cfg.maxchecks.max(1) as usize)),
        }
    }

    fn lock_check(&self, t: &Tables, user: &str, addr: IpAddr) -> Option<Duration> {
        let pair = (user.to_owned(), addr);
        let known = t.known.get(&pair).is_some_and(|at| at.elapsed() < TRUST_FOR);
        if known {
            t.pairs.get(&pair).and_then(|c| c.locked(self.max_user, self.window))
        } else {
            let by_user = t.users.get(user).and_then(|c| c.locked(self.max_user, self.window));
            let by_addr = t.addrs.get(&addr).and_then(|c| c.locked(self.max_addr, self.window));
            by_user.max(by_addr)
        }
    }

    /// If attempts for `user` from `ip` are refused now: for how long.
    pub fn locked(&self, user: &str, ip: Option<IpAddr>) -> Option<Duration> {
        let t = self.tables.lock().unwrap();
        self.lock_check(&t, user, client_key(ip))
    }

    /// Wait (at most [`QUEUE_WAIT`]) until no other check of `user` runs.
    pub async fn turn(&self, user: &str) -> Option<OwnedMutexGuard<()>> {
        let i = (self.stripe_hasher.hash_one(user) as usize) % self.turns.len();
        tokio::time::timeout(QUEUE_WAIT, self.turns[i].clone().lock_owned())
            .await
            .ok()
    }

    /// Wait (at most [`QUEUE_WAIT`]) for a free evaluation slot.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(QUEUE_WAIT, self.checks.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Reserve a password check for `user` from `ip`, or say how long they are locked out.
    pub fn reserve(self: &Arc<Self>, user: &str, ip: Option<IpAddr>) -> Result<Ticket, Duration> {
        let addr = client_key(ip);
        let mut t = self.tables.lock().unwrap();
        if let Some(wait) = self.lock_check(&t, user, addr) {
            return Err(wait);
        }
        let w = self.window;
        entry(&mut t.users, &user.to_owned(), w).pending += 1;
        entry(&mut t.addrs, &addr, w).pending += 1;
        entry(&mut t.pairs, &(user.to_owned(), addr), w).pending += 1;
        Ok(Ticket {
            limiter: self.clone(),
            user: user.to_owned(),
            addr,
            done: false,
        })
    }

    /// A correct password (also one remembered by the htpasswd cache): the pair is known.
    pub fn known(&self, user: &str, ip: Option<IpAddr>) {
        let pair = (user.to_owned(), client_key(ip));
        let mut t = self.tables.lock().unwrap();
        // No count is reset: failures end with their window only, so successes interleaved
        // with guesses (an attacker behind the user's own NAT) buy no extra guesses.
        if t.known.len() >= MAX_ENTRIES && !t.known.contains_key(&pair) {
            t.known.retain(|_, at| at.elapsed() < TRUST_FOR);
            if t.known.len() >= MAX_ENTRIES
                && let Some(k) = t.known.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
            {
                t.known.remove(&k);
            }
        }
        t.known.insert(pair, Instant::now());
    }

    fn finish(&self, user: &str, addr: IpAddr, failed: bool) {
        fn settle<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, Count>, key: &K, w: Duration, failed: bool) {
            if failed {
                // (an entry evicted while its check ran is created again: the failure counts)
                let c = entry(map, key, w);
                c.pending = c.pending.saturating_sub(1);
                c.fail(w);
            } else if let Some(c) = map.get_mut(key) {
                c.pending = c.pending.saturating_sub(1);
            }
        }
        let w = self.window;
        let mut t = self.tables.lock().unwrap();
        let Tables {
            users, addrs, pairs, ..
        } = &mut *t;
        settle(users, &user.to_owned(), w, failed);
        settle(addrs, &addr, w, failed);
        settle(pairs, &(user.to_owned(), addr), w, failed);
    }
}

impl Ticket {
    pub fn succeeded(mut self, ip: Option<IpAddr>) {
        self.done = true;
        self.limiter.finish(&self.user, self.addr, false);
        self.limiter.known(&self.user, ip);
    }

    pub fn failed(mut self) {
        self.done = true;
        self.limiter.finish(&self.user, self.addr, true);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.finish(&self.user, self.addr, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_user: u32, max_addr: u32) -> Arc<Limiter> {
        Arc::new(Limiter::new(&LoginConfig {
            maxfailures: max_user,
            maxaddressfailures: max_addr,
            window: Duration::from_secs(3600),
            maxchecks: 2,
        }))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn reservations_count_before_the_check_ends() {
        let l = limiter(3, 100);
        let held: Vec<Ticket> = (0..3).map(|_| l.reserve("alice", ip("10.0.0.1")).unwrap()).collect();
        assert!(
            l.reserve("alice", ip("10.0.0.2")).is_err(),
            "three checks in flight fill the quota"
        );
        for t in held {
            t.failed();
        }
        let wait = l.reserve("alice", ip("10.0.0.3")).err().expect("locked");
        assert!(wait > Duration::from_secs(3000), "{wait:?}");
        assert!(l.reserve("bob", ip("10.0.0.1")).is_ok(), "another user is not locked");
    }

    #[test]
    fn another_accounts_success_resets_nothing_and_known_pairs_keep_working() {
        let l = limiter(2, 100);
        let home = ip("10.0.0.9");
        l.reserve("alice", home).unwrap().succeeded(home);
        for _ in 0..2 {
            l.reserve("alice", ip("10.0.0.1")).unwrap().failed();
        }
        l.reserve("mallory", ip("10.0.0.1")).unwrap().succeeded(ip("10.0.0.1"));
        assert!(
            l.locked("alice", ip("10.0.0.1")).is_some(),
            "mallory's success resets nothing"
        );
        assert!(l.locked("alice", home).is_none(), "alice's own address still gets in");
        // but her known address has its own quota
        for _ in 0..2 {
            l.reserve("alice", home).unwrap().failed();
        }
        assert!(l.locked("alice", home).is_some());
        l.known("alice", home);
        assert!(l.locked("alice", home).is_some(), "a success resets no count");
    }

    #[test]
    fn spraying_locks_the_address_for_unknown_pairs_only() {
        let l = limiter(5, 3);
        let nat = ip("192.0.2.1");
        l.reserve("carol", nat).unwrap().succeeded(nat);
        for u in ["u1", "u2", "u3"] {
            l.reserve(u, nat).unwrap().failed();
        }
        assert!(
            l.locked("dave", nat).is_some(),
            "a new user behind the busy address waits"
        );
        assert!(l.locked("dave", ip("192.0.2.2")).is_none(), "elsewhere not");
        assert!(l.locked("carol", nat).is_none(), "a user known at that address gets in");
    }

    #[test]
    fn dropped_reservations_are_released_and_ipv6_counts_per_64() {
        let l = limiter(1, 100);
        drop(l.reserve("alice", ip("10.0.0.1")).unwrap());
        assert!(l.locked("alice", ip("10.0.0.1")).is_none());
        let l = limiter(100, 2);
        l.reserve("a", ip("2001:db8::1")).unwrap().failed();
        l.reserve("b", ip("2001:db8::2:3")).unwrap().failed();
        assert!(l.locked("c", ip("2001:db8::ffff")).is_some());
        assert!(l.locked("c", ip("2001:db8:0:1::1")).is_none());
    }

    #[test]
    fn the_tables_are_bounded() {
        let l = limiter(u32::MAX, u32::MAX);
        for i in 0..(MAX_ENTRIES as u32 + 50) {
            l.reserve(&format!("u{}", i % 7), Some(IpAddr::from(i.to_be_bytes())))
                .unwrap()
                .failed();
        }
        let t = l.tables.lock().unwrap();
        assert!(t.addrs.len() <= MAX_ENTRIES && t.pairs.len() <= MAX_ENTRIES);
    }
}
