//! htpasswd files with bcrypt hashes (as `htpasswd -B` writes them). Other hash kinds are
//! refused when the file is first read. The file is re-read when it changes (checked at most
//! once a second, on use), so adding a user needs no restart.
//!
//! Verification is bcrypt (constant-time in the `bcrypt` crate). Unknown users are checked
//! against a dummy hash of the same cost, so timing does not tell which users exist. Docker and
//! podman send Basic credentials on every request, so a successful check is remembered for a
//! few minutes as a salted SHA-256, compared in constant time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a verified password is remembered.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// How often, at most, the file's metadata is looked at.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Clone, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

struct Contents {
    users: HashMap<String, String>,
    /// A hash of a random password, verified for unknown users.
    dummy: String,
    stamp: Stamp,
}

/// A verified password: (SHA-256 of salt, user and password; when verified; the hash it matched).
type Remembered = ([u8; 32], Instant, String);

pub struct Htpasswd {
    path: PathBuf,
    contents: RwLock<Arc<Contents>>,
    last_check: Mutex<Instant>,
    cache: Mutex<HashMap<String, Remembered>>,
    salt: [u8; 16],
}

/// What an htpasswd line holds, for refusing anything that is not bcrypt by name.
fn hash_kind(hash: &str) -> &'static str {
    if hash.starts_with("$apr1$") {
        "MD5 (htpasswd -m)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 (htpasswd -s)"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt"
    } else if hash.starts_with('$') {
        "an unknown crypt scheme"
    } else {
        "crypt() or plain text"
    }
}

fn parse(path: &Path, text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let where_ = format!("{} line {}", path.display(), i + 1);
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("{where_}: expected user:hash"));
        };
        if user.is_empty() {
            return Err(format!("{where_}: empty user name"));
        }
        let bcrypt = ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| hash.starts_with(p));
        if !bcrypt {
            return Err(format!(
                "{where_} (user {user:?}): the hash is {}; only bcrypt is supported: create it with `htpasswd -B`",
                hash_kind(hash)
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(format!("{where_} (user {user:?}): malformed bcrypt hash"));
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

fn read(path: &Path) -> Result<Contents, String> {
    let st = stamp(path).map_err(|e| format!("cannot read htpasswd file {}: {e}", path.display()))?;
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read htpasswd file {}: {e}", path.display()))?;
    let users = parse(path, &text)?;
    let cost = users
        .values()
        .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
        .map(|p| p.get_cost())
        .max()
        .unwrap_or(bcrypt::DEFAULT_COST);
    let dummy = bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost).map_err(|e| format!("bcrypt: {e}"))?;
    Ok(Contents {
        users,
        dummy,
        stamp: st,
    })
}

impl Htpasswd {
    /// Read the file; any line that is not a bcrypt hash is an error.
    pub fn open(path: &Path) -> Result<Htpasswd, String> {
        let contents = read(path)?;
        tracing::info!(path = %path.display(), users = contents.users.len(), "htpasswd loaded");
        let mut salt = [0u8; 16];
        salt.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Ok(Htpasswd {
            path: path.to_owned(),
            contents: RwLock::new(Arc::new(contents)),
            last_check: Mutex::new(Instant::now()),
            cache: Mutex::new(HashMap::new()),
            salt,
        })
    }

    /// Re-read the file if it changed. A file that became invalid is logged and the previous
    /// users stay in force.
    fn refresh(&self) {
        {
            let mut last = self.last_check.lock().unwrap();
            if last.elapsed() < RECHECK {
                return;
            }
            *last = Instant::now();
        }
        let current = self.contents.read().unwrap().stamp.clone();
        match stamp(&self.path) {
            Ok(st) if st == current => {}
            Ok(_) => match read(&self.path) {
                Ok(c) => {
                    tracing::info!(path = %self.path.display(), users = c.users.len(), "htpasswd reloaded");
                    *self.contents.write().unwrap() = Arc::new(c);
                    self.cache.lock().unwrap().clear();
                }
                Err(e) => tracing::error!("keeping the previous users: {e}"),
            },
            Err(e) => tracing::error!(path = %self.path.display(), "keeping the previous users: {e}"),
        }
    }

    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// The user's current hash (what a refresh token is bound to), if the user exists.
    pub fn entry(&self, user: &str) -> Option<String> {
        self.refresh();
        self.contents.read().unwrap().users.get(user).cloned()
    }

    /// If this password was verified for this user within the last few minutes (and the file
    /// has not changed since): the hash it matched. No bcrypt.
    pub fn cached(&self, user: &str, password: &str) -> Option<String> {
        self.refresh();
        let fp = self.fingerprint(user, password);
        match self.cache.lock().unwrap().get(user) {
            Some((cached, at, hash)) if at.elapsed() < CACHE_TTL && bool::from(cached.ct_eq(&fp)) => Some(hash.clone()),
            _ => None,
        }
    }

    /// Check a user's password with bcrypt, on the blocking pool, holding `slot` (an
    /// evaluation permit) until bcrypt is done even if the caller goes away. Some(the hash it
    /// matched) if right.
    pub async fn check<S: Send + 'static>(&self, user: &str, password: &str, slot: S) -> Option<String> {
        self.refresh();
        let contents = self.contents.read().unwrap().clone();
        let (hash, known) = match contents.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (contents.dummy.clone(), false),
        };
        let pw = password.to_owned();
        let h = hash.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(pw.as_bytes(), &h).unwrap_or(false);
            crate::metrics::password_checked();
            drop(slot);
            ok
        })
        .await
        .unwrap_or(false);
        if !(ok && known) {
            return None;
        }
        let mut cache = self.cache.lock().unwrap();
        cache.retain(|_, (_, at, _)| at.elapsed() < CACHE_TTL);
        cache.insert(
            user.to_owned(),
            (self.fingerprint(user, password), Instant::now(), hash.clone()),
        );
        Some(hash)
    }

    /// Check a user's password: remembered, else bcrypt (no limits: see `auth::limiter`).
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        self.cached(user, password).is_some() || self.check(user, password, ()).await.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_is_accepted() {
        let p = Path::new("h");
        let good = bcrypt::hash("pw", 4).unwrap();
        let users = parse(p, &format!("# comment\n\nalice:{good}\n")).unwrap();
        assert_eq!(users.len(), 1);
        let e = parse(p, "bob:$apr1$abc$def\n").unwrap_err();
        assert!(
            e.contains("MD5") && e.contains("htpasswd -B") && e.contains("line 1"),
            "{e}"
        );
        let e = parse(p, "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap_err();
        assert!(e.contains("SHA-1"), "{e}");
        assert!(parse(p, "bob:plain\n").is_err());
        assert!(parse(p, "bob:$2y$05$short\n").unwrap_err().contains("malformed"));
        assert!(parse(p, "nocolon\n").is_err());
    }

    #[tokio::test]
    async fn verify_known_unknown_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("htpasswd");
        std::fs::write(&f, format!("alice:{}\n", bcrypt::hash("secret", 4).unwrap())).unwrap();
        let h = Htpasswd::open(&f).unwrap();
        assert!(h.verify("alice", "secret").await);
        assert!(h.verify("alice", "secret").await, "cached");
        assert!(!h.verify("alice", "wrong").await);
        assert!(!h.verify("mallory", "secret").await);
        assert!(h.entry("alice").is_some() && h.entry("mallory").is_none());
    }
}
