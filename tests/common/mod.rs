//! Test harness: runs the real `wharf` binary on 127.0.0.1 with an ephemeral port and a
//! temporary storage root, and talks to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use sha2::{Digest as _, Sha256};

mod client;
#[allow(unused_imports)]
pub use client::*;

/// Media types of the manifests and blobs tests push.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
         application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
}

/// The storage a [`Server`] runs on: the filesystem (the default) or the in-memory object store
/// (`storage.inmemory`, the object-store driver S3 uses, in the server's memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Fs,
    InMemory,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Fs) };
}

impl Backend {
    /// Servers this thread starts from now on run on this backend ([`on_both_backends!`]).
    pub fn select(self) {
        BACKEND.with(|b| b.set(self));
    }
    pub fn current() -> Backend {
        BACKEND.with(|b| b.get())
    }
}

/// Run each test twice, once per [`Backend`]: `filesystem::name` and `inmemory::name`. Bodies
/// are unchanged; the servers they start run on the module's backend. For tests that neither
/// restart the server (the in-memory store is gone) nor look at files on disk.
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$m:meta])* async fn $name:ident() $body:block)*) => {
        mod filesystem {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$m])* async fn $name() { $crate::common::Backend::Fs.select(); $body } )*
        }
        mod inmemory {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$m])* async fn $name() { $crate::common::Backend::InMemory.select(); $body } )*
        }
    };
}

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Parent of everything: config file and storage root.
    pub dir: tempfile::TempDir,
    extra_toml: String,
    env: Vec<(String, String)>,
    pub backend: Backend,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Default configuration (deletes disabled, as in registry:2).
    pub fn start() -> Server {
        Server::start_with("", &[])
    }

    /// Deletes enabled.
    pub fn start_with_delete() -> Server {
        Server::start_with("[storage.delete]\nenabled = true\n", &[])
    }

    /// `extra_toml` is appended to the generated config; `env` is added to the process environment.
    pub fn start_with(extra_toml: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            dir,
            extra_toml: extra_toml.to_owned(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            backend: Backend::current(),
            logs: Arc::new(Mutex::new(Vec::new())),
        };
        s.spawn();
        s
    }

    /// The storage root directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("config.toml");
        let inmemory = match self.backend {
            Backend::Fs => "",
            Backend::InMemory => "[storage.inmemory]\n",
        };
        let toml = format!(
            "[http]\naddr = \"127.0.0.1:0\"\n{inmemory}[storage.filesystem]\nrootdirectory = {:?}\n{}",
            self.root().display().to_string(),
            self.extra_toml
        );
        // Keep user-supplied sections mergeable: if extra_toml redefines [storage.filesystem] or
        // [http], the later table wins in our loader only if keys differ, so callers should use env.
        std::fs::write(&config, toml).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .env("WHARF_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn wharf");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("addr=")
                    && line.contains("listening")
                    && let Some(t) = tx.take()
                {
                    let a = line[i + 5..].split_whitespace().next().unwrap_or("").to_owned();
                    let _ = t.send(a);
                }
                logs.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("wharf did not start; log:\n{}", self.logs.lock().unwrap().join("\n")));
        self.addr = addr.parse().expect("listening address");
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL the server (no graceful shutdown) and wait for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill and start again on the same storage (the port may change: use `url` afresh).
    pub fn restart(&mut self) {
        assert_eq!(
            self.backend,
            Backend::Fs,
            "the in-memory store does not survive a restart: keep this test filesystem-only"
        );
        self.kill();
        self.spawn();
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Peak resident set size of the server process in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    /// Current resident set size of the server process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift), so tests make their own data.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// All regular files under `dir`, relative paths, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Parse a spec error body and return its codes.
pub fn error_codes(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("error body is not JSON: {}", String::from_utf8_lossy(body)));
    v["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| e["code"].as_str().expect("code").to_owned())
        .collect()
}

/// Wait until `f` is true or the deadline passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

impl Server {
    /// Set an environment variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The generated configuration file (for running other subcommands on the same store).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }
}
