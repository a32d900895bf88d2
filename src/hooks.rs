//! Test hooks, compiled into every build and inert unless their environment variable is set
//! (each is read once, at first use):
//!
//! - `WHARF_FAILPOINTS="name=action[,name=action…]"`: [`failpoint`] at a named point in a write
//!   path runs the action. `pause` prints `wharf: failpoint <name> paused` on stderr and blocks
//!   the thread forever, so a crash test can SIGKILL the process at exactly that point;
//!   `pause@N` does so on the N-th time the point is reached (1 is the first); `sleep:<duration>`
//!   (e.g. `sleep:500ms`) only holds the thread that long, every time, to widen a race window
//!   for a test of concurrent requests. The points:
//!   `upload-data-written` (an upload's bytes are durable, before its hash-state checkpoint or
//!   its commit), `blob-after-commit` (a blob is in the content store, not yet linked into its
//!   repository), `manifest-before-tag` (a manifest's bytes and revision link are written, its
//!   tags not yet), `tag-link-write` (between a tag's index link and its `current` link),
//!   `gc-sweep` (before each object garbage collection removes).
//! - `WHARF_TIMEOUTS="header=1s,body-idle=2s"`: shorter connection timeouts than the defaults
//!   ([`header_read_timeout`], [`body_idle_timeout`]), so tests of slow clients run quickly;
//!   `catalog-index=1s` also sets how long a catalog index is used at most
//!   ([`catalog_index_max_age`]), so tests of writers other than Wharf run quickly (or, set
//!   long, prove that only the store's generation marker makes a replica see a new repository).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence between two frames of a request body before the request is given up.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a filesystem catalog index is used at most before the store is walked again: the
/// staleness that writers other than Wharf (which write no generation marker) can see.
pub const CATALOG_INDEX_MAX_AGE: Duration = Duration::from_secs(5);

enum Action {
    /// Pause forever on the N-th arrival.
    Pause { nth: u64, seen: u64 },
    /// Sleep this long on every arrival.
    Sleep(Duration),
}

struct Failpoints {
    points: Mutex<HashMap<String, Action>>,
}

fn failpoints() -> Option<&'static Failpoints> {
    static FP: OnceLock<Option<Failpoints>> = OnceLock::new();
    FP.get_or_init(|| {
        let spec = std::env::var("WHARF_FAILPOINTS")
            .ok()
            .filter(|s| !s.trim().is_empty())?;
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
        Some(Failpoints {
            points: Mutex::new(points),
        })
    })
    .as_ref()
}

/// A named crash point (see the module docs). Costs one atomic load when no failpoints are set.
pub fn failpoint(name: &str) {
    let Some(fp) = failpoints() else { return };
    let fire = {
        let mut points = fp.points.lock().unwrap_or_else(|p| p.into_inner());
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

fn timeouts() -> &'static HashMap<String, Duration> {
    static T: OnceLock<HashMap<String, Duration>> = OnceLock::new();
    T.get_or_init(|| {
        let Ok(spec) = std::env::var("WHARF_TIMEOUTS") else {
            return HashMap::new();
        };
        spec.split(',')
            .filter_map(|item| {
                let (k, v) = item.split_once('=')?;
                match crate::config::parse_duration(v.trim()) {
                    Ok(d) if !d.is_zero() => Some((k.trim().to_owned(), d)),
                    _ => {
                        eprintln!("wharf: WHARF_TIMEOUTS: ignoring {item:?}");
                        None
                    }
                }
            })
            .collect()
    })
}

pub fn header_read_timeout() -> Duration {
    timeouts().get("header").copied().unwrap_or(HEADER_READ_TIMEOUT)
}

pub fn body_idle_timeout() -> Duration {
    timeouts().get("body-idle").copied().unwrap_or(BODY_IDLE_TIMEOUT)
}

pub fn catalog_index_max_age() -> Duration {
    timeouts()
        .get("catalog-index")
        .copied()
        .unwrap_or(CATALOG_INDEX_MAX_AGE)
}
