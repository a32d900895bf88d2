//! A conformance suite for the OCI Distribution Specification (v1.1.1, plus `?tag=` and
//! `digest-algorithm` from main), written from the spec's sentences. Each check is named after
//! the requirement it tests, grouped in the spec's four workflows: pull, push, content discovery,
//! content management.
//!
//! cargo test --test conformance                          start Wharf and test it, on the
//!                                                         filesystem and on the in-memory store
//! cargo test --test conformance -- --url http://HOST:PORT [--user U --password P] [--no-skips]
//!                                   [--known-failures FILE] [--junit FILE] [--name NAME]
//!
//! A check is skipped only where the registry answers with the status the spec gives for an
//! unsupported feature (deletion disabled: 400/405; no referrers API: 404). With --known-failures,
//! the run succeeds when the failing checks are exactly those listed in FILE (one `name  # reason`
//! per line). With --user/--password (or CONFORMANCE_USER/CONFORMANCE_PASSWORD) requests carry Basic
//! credentials, and a `Bearer` challenge is answered with a token from the realm it names.
//! CONFORMANCE_URL and CONFORMANCE_JUNIT stand for --url and --junit.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};

use common::{ClientError, header, location, noise, sha256_digest as sha256, to_bytes, with_query};

use common::media::*;

/// The spec's error-code table (code-1 .. code-14).
const SPEC_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

// ---------------------------------------------------------------- plumbing

enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

type CheckResult = Result<(), Outcome>;
type CheckFn = for<'a> fn(&'a Ctx) -> Pin<Box<dyn Future<Output = CheckResult> + 'a>>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Outcome::Fail(format!($($msg)+)));
        }
    };
}

// The workflows (after the macro, which they use).
mod discovery;
mod management;
mod pull;
mod push;

fn fail<T>(msg: impl Into<String>) -> Result<T, Outcome> {
    Err(Outcome::Fail(msg.into()))
}

/// The checks' client: the one test client of tests/common.
type Ctx = common::Api;

impl From<ClientError> for Outcome {
    fn from(e: ClientError) -> Outcome {
        Outcome::Fail(e.0)
    }
}

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// DELETE, where the spec's answers for "deletion disabled" make the check a skip.
trait Deletes {
    async fn delete(&self, path: &str) -> Result<Response, Outcome>;
}

impl Deletes for Ctx {
    async fn delete(&self, path: &str) -> Result<Response, Outcome> {
        let r = self.send(self.req(Method::DELETE, path)).await?;
        if r.status() == StatusCode::METHOD_NOT_ALLOWED || r.status() == StatusCode::BAD_REQUEST {
            // the spec's answers when deletion is disabled
            return Err(Outcome::Skip(format!("deletion unsupported ({})", r.status())));
        }
        Ok(r)
    }
}

/// The spec's error body: `{"errors":[{"code": ..}]}` with codes of [A-Z_]; returns the codes.
async fn error_codes(r: Response) -> Result<Vec<String>, Outcome> {
    let body = r.bytes().await.map_err(|e| Outcome::Fail(e.to_string()))?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| Outcome::Fail(format!("error body is not JSON: {:?}", String::from_utf8_lossy(&body))))?;
    let errors = v["errors"]
        .as_array()
        .ok_or_else(|| Outcome::Fail(format!("no errors array: {v}")))?;
    let codes: Vec<String> = errors
        .iter()
        .filter_map(|e| e["code"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        !codes.is_empty() && codes.len() == errors.len(),
        "every error needs a code: {v}"
    );
    ensure!(
        codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')),
        "codes must be [A-Z_]: {v}"
    );
    // "The code field MUST be one of the following"
    ensure!(
        codes.iter().all(|c| SPEC_CODES.contains(&c.as_str())),
        "a code outside the spec's table: {v}"
    );
    Ok(codes)
}

async fn expect_error(r: Response, status: StatusCode, code: &str) -> CheckResult {
    ensure!(r.status() == status, "expected {status} {code}, got {}", r.status());
    let codes = error_codes(r).await?;
    ensure!(codes.iter().any(|c| c == code), "expected code {code}, got {codes:?}");
    Ok(())
}

async fn body_of(r: Response) -> Result<Vec<u8>, Outcome> {
    r.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| Outcome::Fail(e.to_string()))
}

// ---------------------------------------------------------------- runner

struct Args {
    url: Option<String>,
    user: Option<(String, String)>,
    known: Option<String>,
    junit: Option<String>,
    name: String,
    /// `--no-skips`: a skip fails the run even against another registry.
    no_skips: bool,
}

fn args() -> Args {
    let mut a = Args {
        url: std::env::var("CONFORMANCE_URL").ok(),
        user: None,
        known: None,
        junit: std::env::var("CONFORMANCE_JUNIT").ok(),
        name: String::new(),
        no_skips: false,
    };
    let (mut user, mut pass) = (
        std::env::var("CONFORMANCE_USER").ok(),
        std::env::var("CONFORMANCE_PASSWORD").ok(),
    );
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--url" => a.url = it.next(),
            "--user" => user = it.next(),
            "--password" => pass = it.next(),
            "--known-failures" => a.known = it.next(),
            "--junit" => a.junit = it.next(),
            "--name" => a.name = it.next().unwrap_or_default(),
            "--no-skips" => a.no_skips = true,
            _ => {} // cargo test passes its own flags (e.g. --nocapture); ignore them
        }
    }
    if let (Some(u), Some(p)) = (user, pass) {
        a.user = Some((u, p));
    }
    if a.name.is_empty() {
        a.name = if a.url.is_some() {
            "registry".into()
        } else {
            "wharf".into()
        };
    }
    a
}

/// Start Wharf (deletes enabled) on a free port with a temporary store: the filesystem at `dir`,
/// or with `inmemory`, the in-memory object store (the object-store code paths S3 takes).
fn start_wharf(dir: &std::path::Path, inmemory: bool) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    if inmemory {
        cmd.env("WHARF_STORAGE", "inmemory");
    }
    let child = cmd
        .arg("serve")
        .env("WHARF_HTTP_ADDR", &addr)
        .env("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", dir)
        .env("WHARF_STORAGE_DELETE_ENABLED", "true")
        .env("WHARF_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wharf");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    (child, format!("http://{addr}"))
}

/// The workflow's name for the checks run on the in-memory store.
fn inmemory_label(workflow: &str) -> &'static str {
    match workflow {
        "pull" => "pull (inmemory)",
        "push" => "push (inmemory)",
        "content discovery" => "content discovery (inmemory)",
        _ => "content management (inmemory)",
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Run every check against the registry at `base`; results are (workflow, check, outcome).
async fn run_checks(a: &Args, base: &str) -> Vec<(&'static str, &'static str, Outcome)> {
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let mut ctx = Ctx::new(base);
    ctx.client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    ctx.user = a.user.clone();
    ctx.ns = format!("conformance/{run}");
    let workflows: [(&str, Vec<(&str, CheckFn)>); 4] = [
        ("pull", pull::checks()),
        ("push", push::checks()),
        ("content discovery", discovery::checks()),
        ("content management", management::checks()),
    ];
    let mut results = Vec::new();
    for (workflow, checks) in workflows {
        for (name, f) in checks {
            let outcome = match tokio::time::timeout(Duration::from_secs(120), f(&ctx)).await {
                Ok(Ok(())) => Outcome::Pass,
                Ok(Err(o)) => o,
                Err(_) => Outcome::Fail("timed out".into()),
            };
            results.push((workflow, name, outcome));
        }
    }
    results
}

#[tokio::main]
async fn main() {
    let a = args();
    let mut results = Vec::new();
    if let Some(u) = &a.url {
        let base = u.trim_end_matches('/').to_owned();
        println!("OCI distribution-spec conformance against {base} ({})\n", a.name);
        results = run_checks(&a, &base).await;
    } else {
        // Wharf twice: on the filesystem, then on the in-memory object store, whose checks are
        // listed under "<workflow> (inmemory)".
        for inmemory in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (mut child, base) = start_wharf(dir.path(), inmemory);
            let store = if inmemory { "in-memory store" } else { "filesystem" };
            println!("OCI distribution-spec conformance against {base} ({}, {store})", a.name);
            for (workflow, name, outcome) in run_checks(&a, &base).await {
                let workflow = if inmemory { inmemory_label(workflow) } else { workflow };
                results.push((workflow, name, outcome));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        println!();
    }
    let workflows: Vec<&str> = results.iter().fold(Vec::new(), |mut v, (w, _, _)| {
        if !v.contains(w) {
            v.push(*w);
        }
        v
    });

    // table per workflow
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut current = "";
    for (workflow, name, outcome) in &results {
        if *workflow != current {
            current = workflow;
            println!("{workflow}");
        }
        match outcome {
            Outcome::Pass => println!("  pass  {name}"),
            Outcome::Skip(why) => println!("  skip  {name}  ({why})"),
            Outcome::Fail(why) => {
                println!("  FAIL  {name}\n          {why}");
                failed.insert(name.to_string());
            }
        }
    }
    println!("\n{:<30} {:>6} {:>6} {:>7}", "workflow", "passed", "failed", "skipped");
    let (mut tp, mut tf, mut ts) = (0, 0, 0);
    for &w in &workflows {
        let of = |k: u8| {
            results
                .iter()
                .filter(|(wf, _, o)| {
                    *wf == w
                        && matches!(
                            (k, o),
                            (0, Outcome::Pass) | (1, Outcome::Fail(_)) | (2, Outcome::Skip(_))
                        )
                })
                .count()
        };
        let (p, f, s) = (of(0), of(1), of(2));
        (tp, tf, ts) = (tp + p, tf + f, ts + s);
        println!("{w:<30} {p:>6} {f:>6} {s:>7}");
    }
    println!("{:<30} {tp:>6} {tf:>6} {ts:>7}", "total");

    if let Some(path) = &a.junit {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"oci-conformance-{}\">\n",
            xml_escape(&a.name)
        );
        for &w in &workflows {
            let cases: Vec<_> = results.iter().filter(|(wf, _, _)| *wf == w).collect();
            let nf = cases.iter().filter(|c| matches!(c.2, Outcome::Fail(_))).count();
            let ns = cases.iter().filter(|c| matches!(c.2, Outcome::Skip(_))).count();
            xml += &format!(
                "  <testsuite name=\"{w}\" tests=\"{}\" failures=\"{nf}\" skipped=\"{ns}\">\n",
                cases.len()
            );
            for (_, name, o) in cases {
                xml += &format!("    <testcase classname=\"{w}\" name=\"{name}\">");
                match o {
                    Outcome::Pass => {}
                    Outcome::Fail(why) => xml += &format!("<failure message=\"{}\"/>", xml_escape(why)),
                    Outcome::Skip(why) => xml += &format!("<skipped message=\"{}\"/>", xml_escape(why)),
                }
                xml += "</testcase>\n";
            }
            xml += "  </testsuite>\n";
        }
        xml += "</testsuites>\n";
        std::fs::write(path, xml).expect("write JUnit report");
    }

    let ok = match &a.known {
        None => tf == 0 && (ts == 0 || (a.url.is_some() && !a.no_skips)),
        Some(file) => {
            let text = std::fs::read_to_string(file).expect("read known failures");
            let known: BTreeSet<String> = text
                .lines()
                .map(|l| l.split('#').next().unwrap().trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            let new: Vec<_> = failed.difference(&known).collect();
            let fixed: Vec<_> = known.difference(&failed).collect();
            for n in &new {
                println!("new failure (not in {file}): {n}");
            }
            for n in &fixed {
                println!("listed in {file} but passed: {n} (update the file)");
            }
            new.is_empty() && fixed.is_empty()
        }
    };
    println!("\n{tp} passed, {tf} failed, {ts} skipped");
    std::process::exit(if ok { 0 } else { 1 });
}
