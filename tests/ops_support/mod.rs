//! Running `wharf` with any arguments and environment (Distribution's YAML, JSON logs,
//! signals), for the operational tests. `tests/common` starts the usual TOML-configured server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A `wharf` command with no REGISTRY_*/WHARF_* variables from the test's own environment.
pub fn wharf_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k.starts_with("WHARF_") {
            c.env_remove(k);
        }
    }
    c
}

impl Proc {
    /// Start `wharf <args>` and wait for its "listening" line (text or JSON logs).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = wharf_cmd();
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn wharf");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening") && !line.contains("debug listener") {
                    let addr = listening_addr(&line);
                    if let (Some(a), Some(t)) = (addr, tx.take()) {
                        let _ = t.send(a);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("wharf did not start; log:\n{}", logs.lock().unwrap().join("\n"))
            }
        };
        Proc {
            child,
            addr: addr.parse().expect("listening address"),
            logs,
            reader: Some(reader),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the process to exit, up to `timeout`; then every line it logged is in `logs`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Some(st);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `addr=127.0.0.1:1234` (text) or `"addr":"127.0.0.1:1234"` (JSON).
fn listening_addr(line: &str) -> Option<String> {
    if let Some(i) = line.find("addr=") {
        return Some(line[i + 5..].split_whitespace().next()?.to_owned());
    }
    let i = line.find("\"addr\":\"")?;
    Some(line[i + 8..].split('"').next()?.to_owned())
}

/// Wait until `f` is true or the deadline passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
pub fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
