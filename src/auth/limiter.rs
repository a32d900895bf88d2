//! Slowing down password guessing: after a few failed logins from one client address, each
//! further attempt from that address waits first (doubling, capped). Only that address waits;
//! the table is bounded (the stalest entries go first) and entries expire, so no client can
//! lock out another or grow memory without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before attempts are delayed.
const FREE_FAILURES: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(4);
/// A client with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(600);
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    failures: u32,
    last: Instant,
}

#[derive(Default)]
pub struct Limiter {
    clients: Mutex<HashMap<IpAddr, Entry>>,
}

impl Limiter {
    /// How long an attempt from `ip` must wait before its credentials are checked.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let clients = self.clients.lock().unwrap();
        match clients.get(&ip) {
            Some(e) if e.last.elapsed() < FORGET_AFTER && e.failures >= FREE_FAILURES => {
                let doublings = (e.failures - FREE_FAILURES).min(8);
                (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap();
        if !clients.contains_key(&ip) && clients.len() >= MAX_ENTRIES {
            clients.retain(|_, e| e.last.elapsed() < FORGET_AFTER);
            if clients.len() >= MAX_ENTRIES
                && let Some(stalest) = clients.iter().min_by_key(|(_, e)| e.last).map(|(ip, _)| *ip)
            {
                clients.remove(&stalest);
            }
        }
        let e = clients.entry(ip).or_insert(Entry {
            failures: 0,
            last: Instant::now(),
        });
        if e.last.elapsed() >= FORGET_AFTER {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = Instant::now();
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.clients.lock().unwrap().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_address_and_reset_on_success() {
        let l = Limiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(l.delay(a), Duration::ZERO);
            l.failed(a);
        }
        assert_eq!(l.delay(a), FIRST_DELAY);
        l.failed(a);
        assert_eq!(l.delay(a), FIRST_DELAY * 2);
        for _ in 0..20 {
            l.failed(a);
        }
        assert_eq!(l.delay(a), MAX_DELAY);
        assert_eq!(l.delay(b), Duration::ZERO, "another client is not slowed");
        l.succeeded(a);
        assert_eq!(l.delay(a), Duration::ZERO);
    }

    #[test]
    fn the_table_is_bounded() {
        let l = Limiter::default();
        for i in 0..(MAX_ENTRIES as u32 + 50) {
            l.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.clients.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
