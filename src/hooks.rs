//! Test hooks and connection timeouts, read once at start-up from the environment
//! ([`Hooks::from_env`], called by `main.rs` beside the configuration loader) and passed down as
//! values: the server holds the [`Timeouts`], the registry holds the [`Hooks`]. Inert unless
//! their environment variable is set.
//!
//! - `WHARF_FAILPOINTS="name=action[,name=action…]"`: [`Hooks::failpoint`] at a named point in a
//!   write path runs the action. `pause` prints `wharf: failpoint <name> paused` on stderr and
//!   blocks the thread forever, so a crash test can SIGKILL the process at exactly that point;
//!   `pause@N` does so on the N-th time the point is reached (1 is the first); `sleep:<duration>`
//!   (e.g. `sleep:500ms`) only holds the thread that long, every time, to widen a race window
//!   for a test of concurrent requests. The points:
//!   `upload-data-written` (an upload's bytes are durable, before its hash-state checkpoint or
//!   its commit), `blob-after-commit` (a blob is in the content store, not yet linked into its
//!   repository), `manifest-before-tag` (a manifest's bytes and revision link are written, its
//!   tags not yet), `tag-link-write` (just before the tags' index links and `current` links, written together),
//!   `gc-sweep` (before each object garbage collection removes).
//! - `WHARF_FAILPOINT_GC_ABORT_AFTER=N`: garbage collection aborts the process (as if killed)
//!   just before its N+1-th removal.
//! - `WHARF_TIMEOUTS="header=1s,body-idle=2s"`: shorter connection timeouts than the defaults
//!   ([`HEADER_READ_TIMEOUT`], [`BODY_IDLE_TIMEOUT`]), so tests of slow clients run quickly;
//!   `catalog-index=1s` also sets how long a catalog index is used at most
//!   ([`CATALOG_INDEX_MAX_AGE`]), so tests of writers other than Wharf run quickly (or, set
//!   long, prove that only the store's generation marker makes a replica see a new repository).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence between two frames of a request body before the request is given up.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a filesystem catalog index is used at most before the store is walked again: the
/// staleness that writers other than Wharf (which write no generation marker) can see.
pub const CATALOG_INDEX_MAX_AGE: Duration = Duration::from_secs(5);

/// The timeouts a server and its registry run with: the defaults above, or `WHARF_TIMEOUTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Duration,
    pub body_idle: Duration,
    pub catalog_index_max_age: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: HEADER_READ_TIMEOUT,
            body_idle: BODY_IDLE_TIMEOUT,
            catalog_index_max_age: CATALOG_INDEX_MAX_AGE,
        }
    }
}

impl Timeouts {
    /// The defaults with the items of a `WHARF_TIMEOUTS` value applied (bad items are named on
    /// stderr and ignored, as a test hook should not stop a server).
    pub fn parse(spec: &str) -> Self {
        let mut t = Timeouts::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let parsed = item
                .split_once('=')
                .and_then(|(k, v)| Some((k.trim(), crate::config::parse_duration(v.trim()).ok()?)))
                .filter(|(_, d)| !d.is_zero());
            match parsed {
                Some(("header", d)) => t.header_read = d,
                Some(("body-idle", d)) => t.body_idle = d,
                Some(("catalog-index", d)) => t.catalog_index_max_age = d,
                _ => eprintln!("wharf: WHARF_TIMEOUTS: ignoring {item:?}"),
            }
        }
        t
    }
}

enum Action {
    /// Pause forever on the N-th arrival.
    Pause { nth: u64, seen: u64 },
    /// Sleep this long on every arrival.
    Sleep(Duration),
}

/// The test hooks a registry runs with. `Hooks::default()` has none (what production and
/// in-process tests use); cloning shares the failpoints' arrival counts.
#[derive(Clone, Default)]
pub struct Hooks {
    failpoints: Option<Arc<Mutex<HashMap<String, Action>>>>,
    gc_abort_after: Option<usize>,
    pub timeouts: Timeouts,
}

impl Hooks {
    /// The hooks named by `WHARF_FAILPOINTS`, `WHARF_FAILPOINT_GC_ABORT_AFTER` and
    /// `WHARF_TIMEOUTS` in `env` (the process's environment, as the configuration loader gets it).
    pub fn from_env(env: &[(String, String)]) -> Self {
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        Hooks {
            failpoints: var("WHARF_FAILPOINTS").map(|spec| Arc::new(Mutex::new(parse_failpoints(spec)))),
            gc_abort_after: var("WHARF_FAILPOINT_GC_ABORT_AFTER").and_then(|n| n.parse().ok()),
            timeouts: var("WHARF_TIMEOUTS").map(Timeouts::parse).unwrap_or_default(),
        }
    }

    /// A named crash point (see the module docs). Costs one branch when no failpoints are set.
    pub fn failpoint(&self, name: &str) {
        let Some(fp) = &self.failpoints else { return };
        let fire = {
            let mut points = fp.lock().unwrap_or_else(|p| p.into_inner());
            match points.get_mut(name) {
                Some(Action::Pause { nth, seen }) => {
                    *seen += 1;
                    *seen == *nth
                }
                Some(Action::Sleep(d)) => {
                    let d = *d;
                    drop(points);
                    std::thread::sleep(d);
                    false
                }
                None => false,
            }
        };
        if fire {
            eprintln!("wharf: failpoint {name} paused");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }

    /// Garbage collection's crash point: aborts the process before removal number `done + 1`
    /// when `WHARF_FAILPOINT_GC_ABORT_AFTER` is at most `done`.
    pub fn gc_removal(&self, done: usize) {
        self.failpoint("gc-sweep");
        if self.gc_abort_after.is_some_and(|n| done >= n) {
            eprintln!("failpoint: aborting garbage collection after {done} removals");
            std::process::abort();
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("failpoints", &self.failpoints.is_some())
            .field("gc_abort_after", &self.gc_abort_after)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

fn parse_failpoints(spec: &str) -> HashMap<String, Action> {
    let mut points = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, action) = item.split_once('=').unwrap_or((item, "pause"));
        let action = action.trim();
        let parsed = if let Some(n) = action.strip_prefix("pause") {
            let nth = if n.is_empty() {
                Some(1)
            } else {
                n.strip_prefix('@').and_then(|n| n.parse().ok())
            };
            nth.map(|nth| Action::Pause { nth, seen: 0 })
        } else {
            action
                .strip_prefix("sleep:")
                .and_then(|d| crate::config::parse_duration(d).ok())
                .map(Action::Sleep)
        };
        match parsed {
            Some(a) => {
                points.insert(name.trim().to_owned(), a);
            }
            None => eprintln!("wharf: WHARF_FAILPOINTS: unknown action {action:?} for {name:?}"),
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_known_items_and_skip_the_rest() {
        let t = Timeouts::parse("header=1s, body-idle=2s,catalog-index=3s,bogus=1s,header=0s");
        assert_eq!(t.header_read, Duration::from_secs(1));
        assert_eq!(t.body_idle, Duration::from_secs(2));
        assert_eq!(t.catalog_index_max_age, Duration::from_secs(3));
        assert_eq!(Timeouts::parse(""), Timeouts::default());
    }

    #[test]
    fn hooks_come_from_the_env_given() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let none = Hooks::from_env(&env(&[]));
        assert!(none.failpoints.is_none() && none.gc_abort_after.is_none());
        assert_eq!(none.timeouts, Timeouts::default());
        let some = Hooks::from_env(&env(&[
            ("WHARF_FAILPOINTS", "a=pause@2,b=sleep:1ms"),
            ("WHARF_FAILPOINT_GC_ABORT_AFTER", "3"),
            ("WHARF_TIMEOUTS", "body-idle=5s"),
        ]));
        assert_eq!(some.failpoints.as_ref().map(|f| f.lock().unwrap().len()), Some(2));
        assert_eq!(some.gc_abort_after, Some(3));
        assert_eq!(some.timeouts.body_idle, Duration::from_secs(5));
        some.failpoint("a"); // first arrival of pause@2: passes
        some.failpoint("b"); // sleeps 1 ms
        some.failpoint("unknown");
    }
}
