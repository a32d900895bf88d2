//! htpasswd Basic auth and access rules over real HTTP: challenges, refusals and grants,
//! catalog filtering, mount fallback, file reload, registry:2 variables, login slow-down.
mod auth_support;
mod common;
use auth_support::*;
use common::*;

use std::time::{Duration, Instant};

/// A server with htpasswd auth over `users`, `extra` TOML appended (rules, delete).
fn start(users: &[(&str, &str)], extra: &str) -> HtpasswdServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, htpasswd(users)).unwrap();
    let toml = format!(
        "[auth.htpasswd]\nrealm = \"wharf-test\"\npath = {:?}\n{extra}",
        path.display().to_string()
    );
    HtpasswdServer {
        server: Server::start_with(&toml, &[]),
        _dir: dir,
    }
}

/// The server and its htpasswd directory, removed after the server stops (fields drop in order).
struct HtpasswdServer {
    server: Server,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for HtpasswdServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

fn base(s: &Server) -> String {
    s.url("")
}

#[tokio::test]
async fn challenge_wrong_and_right_credentials() {
    let s = start(&[("alice", "correct horse 1")], "");
    let c = client();
    let r = c.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), "Basic realm=\"wharf-test\"");
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNAUTHORIZED"]);
    let r = c
        .get(s.url("/v2/a/tags/list"))
        .basic_auth("alice", Some("wrong horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), "Basic realm=\"wharf-test\"");
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body["errors"][0]["detail"][0],
        serde_json::json!({"Type": "repository", "Name": "a", "Action": "pull"})
    );
    assert_eq!(
        status(c.get(s.url("/v2/")).basic_auth("mallory", Some("correct horse 1"))).await,
        401
    );
    assert_eq!(status(c.get(s.url("/v2/")).bearer_auth("not.a.token")).await, 401);
    assert_eq!(
        status(c.get(s.url("/v2/")).basic_auth("alice", Some("correct horse 1"))).await,
        200
    );
    // With no rules, any authenticated user may do everything.
    let alice = Cred::basic("alice", "correct horse 1");
    push_image(&c, &base(&s), "any/repo", "v1", &alice, 1).await.unwrap();
    assert_eq!(
        push_image(&c, &base(&s), "any/repo", "v2", &Cred::None, 1).await,
        Err(401)
    );
    assert_eq!(catalog(&c, &base(&s), &alice).await, vec!["any/repo"]);
    // Passwords never reach the log.
    let logs = s.logs().join("\n");
    assert!(
        !logs.contains("correct horse") && !logs.contains("wrong horse"),
        "{logs}"
    );
    assert!(logs.contains("failed login"), "{logs}");
}

/// A client that sends a body before it knows it needs credentials reads the 401 (the body is
/// drained), rather than a broken pipe, and its pooled connection stays usable.
#[tokio::test]
async fn a_refused_body_is_drained_so_the_client_reads_the_401() {
    // (15 wrong passwords: more than the failed-login limit allows)
    let s = start(&[("alice", "pa")], "[auth.login]\nmaxfailures = 1000\n");
    let c = client();
    for (i, size) in [100usize, 70_000, 3 << 20].into_iter().cycle().take(30).enumerate() {
        let cred = if i % 2 == 0 {
            Cred::None
        } else {
            Cred::basic("alice", "wrong")
        };
        let r = cred
            .apply(c.put(s.url("/v2/a/manifests/v1")))
            .header("content-type", OCI_MANIFEST)
            .body(vec![b' '; size])
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} ({size} bytes): {e}"));
        assert_eq!(r.status(), 401);
        assert_eq!(
            status(Cred::basic("alice", "pa").apply(c.get(s.url("/v2/")))).await,
            200
        );
    }
}

#[tokio::test]
async fn rules_grant_and_refuse() {
    let users = [("alice", "pa"), ("bob", "pb"), ("carol", "pc"), ("admin", "px")];
    let s = start(&users, &format!("[storage.delete]\nenabled = true\n{RULES}"));
    let c = client();
    let b = base(&s);
    let alice = Cred::basic("alice", "pa");
    let bob = Cred::basic("bob", "pb");
    let carol = Cred::basic("carol", "pc");
    let admin = Cred::basic("admin", "px");

    let digest = push_image(&c, &b, "team-a/app", "v1", &alice, 1).await.unwrap();
    // bob has pull but not push: 403 DENIED (he is known, the rules refuse)
    let r = bob
        .apply(c.post(s.url("/v2/team-a/app/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["DENIED"]);
    assert_eq!(push_image(&c, &b, "team-a/app", "v2", &bob, 2).await, Err(403));
    assert_eq!(
        status(
            bob.apply(
                c.get(s.url("/v2/team-a/app/manifests/v1"))
                    .header("accept", OCI_MANIFEST)
            )
        )
        .await,
        200
    );
    // carol is in no group: nothing in team-a
    assert_eq!(status(carol.apply(c.get(s.url("/v2/team-a/app/tags/list")))).await, 403);
    // delete without delete: alice pushes but may not delete; admin may
    let del = |cred: &Cred| cred.apply(c.delete(s.url(&format!("/v2/team-a/app/manifests/{digest}"))));
    assert_eq!(status(del(&alice)).await, 403);
    assert_eq!(status(del(&bob)).await, 403);
    assert_eq!(status(del(&admin)).await, 202);

    // anonymous pull on public/**, but no push, and /v2/ still asks for credentials
    push_image(&c, &b, "public/tool", "v1", &admin, 3).await.unwrap();
    assert_eq!(
        status(
            c.get(s.url("/v2/public/tool/manifests/v1"))
                .header("accept", OCI_MANIFEST)
        )
        .await,
        200
    );
    let r = c.post(s.url("/v2/public/tool/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 401, "anonymous push is challenged");
    assert!(challenge(&r).starts_with("Basic "));
    assert_eq!(status(c.get(s.url("/v2/"))).await, 401);
    assert_eq!(status(c.get(s.url("/v2/team-a/app/tags/list"))).await, 401);

    // the catalog lists what the caller may pull
    push_image(&c, &b, "secret/db", "v1", &admin, 4).await.unwrap();
    push_image(&c, &b, "team-a/web", "v1", &alice, 5).await.unwrap();
    assert_eq!(
        catalog(&c, &b, &admin).await,
        vec!["public/tool", "secret/db", "team-a/app", "team-a/web"]
    );
    assert_eq!(
        catalog(&c, &b, &alice).await,
        vec!["public/tool", "team-a/app", "team-a/web"]
    );
    assert_eq!(catalog(&c, &b, &carol).await, vec!["public/tool"]);
    assert_eq!(catalog(&c, &b, &Cred::None).await, vec!["public/tool"]);
    // pagination counts only visible names
    let r = alice.apply(c.get(s.url("/v2/_catalog?n=2"))).send().await.unwrap();
    assert!(r.headers().get("link").is_some());
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["public/tool", "team-a/app"]));
}

#[tokio::test]
async fn a_mount_from_a_repository_the_caller_may_not_pull_falls_back_to_an_upload() {
    let users = [("alice", "pa"), ("admin", "px")];
    let s = start(&users, RULES);
    let c = client();
    let b = base(&s);
    let alice = Cred::basic("alice", "pa");
    let admin = Cred::basic("admin", "px");
    push_image(&c, &b, "secret/db", "v1", &admin, 7).await.unwrap();
    push_image(&c, &b, "team-a/app", "v1", &alice, 8).await.unwrap();
    let secret_layer = sha256_digest(&random_bytes(2000, 7));
    let team_layer = sha256_digest(&random_bytes(2000, 8));
    let mount = |cred: &Cred, from: &str, d: &str| {
        cred.apply(c.post(s.url(&format!("/v2/team-a/copy/blobs/uploads/?mount={d}&from={from}"))))
    };
    let r = mount(&alice, "secret/db", &secret_layer).send().await.unwrap();
    assert_eq!(r.status(), 202, "no pull on secret/db: a plain upload session");
    assert!(r.headers().get("location").is_some());
    assert_eq!(
        status(alice.apply(c.head(s.url(&format!("/v2/team-a/copy/blobs/{secret_layer}"))))).await,
        404
    );
    // without `from`, a mount could take any blob: also an upload session
    assert_eq!(
        status(alice.apply(c.post(s.url(&format!("/v2/team-a/copy/blobs/uploads/?mount={secret_layer}"))))).await,
        202
    );
    // from a repository she may pull, the mount happens
    assert_eq!(status(mount(&alice, "team-a/app", &team_layer)).await, 201);
    assert_eq!(
        status(alice.apply(c.head(s.url(&format!("/v2/team-a/copy/blobs/{team_layer}"))))).await,
        200
    );
    // admin may pull secret/db, so the same mount works for him (into his own target)
    assert_eq!(
        status(admin.apply(c.post(s.url(&format!("/v2/other/blobs/uploads/?mount={secret_layer}&from=secret/db")))))
            .await,
        201
    );
}

#[tokio::test]
async fn a_mount_without_from_takes_the_blob_from_a_repository_the_caller_may_pull() {
    let users = [("alice", "pa"), ("admin", "px")];
    let s = start(&users, RULES);
    let c = client();
    let b = base(&s);
    let alice = Cred::basic("alice", "pa");
    let admin = Cred::basic("admin", "px");
    push_image(&c, &b, "secret/db", "v1", &admin, 7).await.unwrap();
    push_image(&c, &b, "team-a/app", "v1", &alice, 8).await.unwrap();
    let secret_layer = sha256_digest(&random_bytes(2000, 7));
    let team_layer = sha256_digest(&random_bytes(2000, 8));
    let anonymous_mount = |d: &str| alice.apply(c.post(s.url(&format!("/v2/team-a/copy/blobs/uploads/?mount={d}"))));
    // team-a/app holds the layer and alice may pull it: mounted, as without auth
    let r = anonymous_mount(&team_layer).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers().get("location").unwrap().to_str().unwrap(),
        format!("/v2/team-a/copy/blobs/{team_layer}")
    );
    assert_eq!(
        status(alice.apply(c.head(s.url(&format!("/v2/team-a/copy/blobs/{team_layer}"))))).await,
        200
    );
    // only secret/db holds this one: an upload session, and nothing is linked
    assert_eq!(status(anonymous_mount(&secret_layer)).await, 202);
    assert_eq!(
        status(alice.apply(c.head(s.url(&format!("/v2/team-a/copy/blobs/{secret_layer}"))))).await,
        404
    );
    // a blob stored nowhere: an upload session
    let nowhere = sha256_digest(b"stored nowhere");
    assert_eq!(status(anonymous_mount(&nowhere)).await, 202);
}

#[tokio::test]
async fn the_htpasswd_file_is_reread_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, htpasswd(&[("alice", "pa")])).unwrap();
    let s = Server::start_with(
        "",
        &[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "reload"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", path.to_str().unwrap()),
            // this test polls with credentials the file does not hold yet: no lockout
            ("WHARF_AUTH_LOGIN_MAXFAILURES", "1000"),
        ],
    );
    let c = client();
    let ok = |u: &'static str, p: &'static str| {
        let c = c.clone();
        let url = s.url("/v2/");
        async move { c.get(url).basic_auth(u, Some(p)).send().await.unwrap().status() == 200 }
    };
    let r = c.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(
        challenge(&r),
        "Basic realm=\"reload\"",
        "registry:2 variables configure it"
    );
    assert!(ok("alice", "pa").await);
    assert!(!ok("carol", "pc").await);
    // add a user: no restart
    let tmp = dir.path().join("htpasswd.new");
    std::fs::write(&tmp, htpasswd(&[("alice", "pa"), ("carol", "pc")])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok("carol", "pc").await {
        assert!(Instant::now() < deadline, "carol never became valid");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // remove alice (and her cached verification goes with the old file)
    std::fs::write(&path, htpasswd(&[("carol", "pc")])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok("alice", "pa").await {
        assert!(Instant::now() < deadline, "alice was never removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a broken file is logged and the users in force stay
    std::fs::write(&path, "carol:$apr1$x$y\n").unwrap();
    // (requests trigger the re-check, and the server's log reaches the test through a pipe and
    // a reader thread: poll both rather than trust one moment on a loaded machine)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(ok("carol", "pc").await, "carol must stay valid");
        if s.logs().join("\n").contains("keeping the previous users") {
            break;
        }
        assert!(Instant::now() < deadline, "the broken file was never reported");
    }
}

#[test]
fn other_hash_kinds_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, "alice:$apr1$Vx1ABCDE$abcdefghijklmnopqrstu.\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", dir.path().join("data"))
        .env("REGISTRY_AUTH", "htpasswd")
        .env("REGISTRY_AUTH_HTPASSWD_PATH", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MD5") && err.contains("only bcrypt") && err.contains("alice"),
        "{err}"
    );
}

/// The debug listener's URL (`http.debug.addr = "127.0.0.1:0"`), from the server's log.
pub fn debug_url(s: &Server, path: &str) -> String {
    let mut addr = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            addr = s.logs().iter().find(|l| l.contains("debug listener")).and_then(|l| {
                let i = l.find("addr=")?;
                Some(l[i + 5..].split_whitespace().next()?.to_owned())
            });
            addr.is_some()
        }),
        "no debug listener in the log"
    );
    format!("http://{}{path}", addr.unwrap())
}

/// A counter's value on the debug listener's /metrics.
pub async fn metric(s: &Server, name: &str) -> u64 {
    let text = client()
        .get(debug_url(s, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} not in the metrics:\n{text}")) as u64
}

fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A 429 from the limiter: TOOMANYREQUESTS, with a Retry-After in seconds.
async fn assert_throttled(r: reqwest::Response) {
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["TOOMANYREQUESTS"]);
}

const LIMITS: &str = "[http.debug]\naddr = \"127.0.0.1:0\"\n[auth.login]\nwindow = \"1h\"\n";

/// 300 connections from one address guessing one user's password, 3 guesses each: at most
/// `maxfailures` (5) guesses are evaluated (counted by bcrypt evaluations, not by time); every
/// other attempt is refused at once with 429. The attacker's own account logging in resets
/// nothing; the victim still gets in from an address she logged in from before; other users
/// behind the attacker's address log in at once.
#[tokio::test]
async fn parallel_guessers_get_at_most_a_handful_of_guesses_evaluated_per_user() {
    let s = start(&[("alice", "pa"), ("mallory", "pm"), ("bob", "pb")], LIMITS);
    let attacker_ip = "127.0.0.1";
    let home = from("127.0.0.2");
    assert_eq!(
        status(home.get(s.url("/v2/")).basic_auth("alice", Some("pa"))).await,
        200
    );
    let before = metric(&s, "wharf_auth_password_checks_total").await;
    let url = s.url("/v2/");
    let guessers: Vec<_> = (0..300)
        .map(|g| {
            let (c, url) = (from(attacker_ip), url.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for n in 0..3 {
                    let r = c
                        .get(&url)
                        .basic_auth("alice", Some(format!("guess-{g}-{n}")))
                        .send()
                        .await;
                    out.push(r.expect("the server answers every guess"));
                }
                out
            })
        })
        .collect();
    let (mut refused, mut throttled) = (0, 0);
    let all = tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(guessers))
        .await
        .expect("the guessers finish");
    for r in all.into_iter().flat_map(|t| t.unwrap()) {
        match r.status().as_u16() {
            401 => refused += 1,
            429 => {
                throttled += 1;
                assert_throttled(r).await;
            }
            other => panic!("a guess got {other}"),
        }
    }
    let evaluated = metric(&s, "wharf_auth_password_checks_total").await - before;
    assert!(
        evaluated <= 5 && refused <= 5,
        "{evaluated} guesses evaluated, {refused} answered 401"
    );
    assert_eq!(refused + throttled, 900);
    assert!(metric(&s, "wharf_auth_logins_throttled_total").await >= 895);
    // the attacker's own account logs in: alice stays locked for the attacker's address
    let attacker = from(attacker_ip);
    assert_eq!(
        status(attacker.get(s.url("/v2/")).basic_auth("mallory", Some("pm"))).await,
        200
    );
    let r = attacker
        .get(s.url("/v2/"))
        .basic_auth("alice", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_throttled(r).await;
    let checks = metric(&s, "wharf_auth_password_checks_total").await;
    let r = attacker
        .get(s.url("/v2/"))
        .basic_auth("alice", Some("pa"))
        .send()
        .await
        .unwrap();
    assert_throttled(r).await;
    assert_eq!(
        metric(&s, "wharf_auth_password_checks_total").await,
        checks,
        "refused without bcrypt"
    );
    // and from an address she never logged in from
    let r = from("127.0.0.3")
        .get(s.url("/v2/"))
        .basic_auth("alice", Some("pa"))
        .send()
        .await
        .unwrap();
    assert_throttled(r).await;
    // alice from her own address, and bob behind the attacker's address, get in
    assert_eq!(
        status(home.get(s.url("/v2/")).basic_auth("alice", Some("pa"))).await,
        200
    );
    assert_eq!(
        status(attacker.get(s.url("/v2/")).basic_auth("bob", Some("pb"))).await,
        200
    );
}

/// One guess at each of many users from one address (spraying) locks that address out for
/// users who never logged in from it, once `maxaddressfailures` is reached; users who did,
/// and other addresses, are not affected.
#[tokio::test]
async fn spraying_many_users_from_one_address_is_limited_by_address() {
    let extra = format!("{LIMITS}maxaddressfailures = 10\n");
    let s = start(&[("carol", "pc"), ("dave", "pd")], &extra);
    let nat = from("127.0.0.1");
    assert_eq!(
        status(nat.get(s.url("/v2/")).basic_auth("carol", Some("pc"))).await,
        200
    );
    for i in 0..10 {
        let r = nat
            .get(s.url("/v2/"))
            .basic_auth(format!("user{i}"), Some("123456"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = nat
        .get(s.url("/v2/"))
        .basic_auth("user10", Some("123456"))
        .send()
        .await
        .unwrap();
    assert_throttled(r).await;
    let r = nat
        .get(s.url("/v2/"))
        .basic_auth("dave", Some("pd"))
        .send()
        .await
        .unwrap();
    assert_throttled(r).await;
    assert_eq!(
        status(nat.get(s.url("/v2/")).basic_auth("carol", Some("pc"))).await,
        200
    );
    assert_eq!(
        status(from("127.0.0.2").get(s.url("/v2/")).basic_auth("dave", Some("pd"))).await,
        200
    );
}

/// With authentication on, /metrics is not public: as with registry:2 it is served on
/// `http.debug.addr` only. The main listener answers 404 (UNSUPPORTED, with or without
/// credentials: no metrics there at all), and start-up warns when no debug address is set.
#[tokio::test]
async fn metrics_are_served_only_on_the_debug_listener_when_auth_is_on() {
    let c = client();
    let s = start(&[("alice", "pa")], "");
    for cred in [Cred::None, Cred::basic("alice", "pa")] {
        let r = cred.apply(c.get(s.url("/metrics"))).send().await.unwrap();
        assert_eq!(r.status(), 404, "{cred:?}");
        let body = r.bytes().await.unwrap();
        assert_eq!(
            error_codes(&body),
            vec!["UNSUPPORTED"],
            "the spec's code for an unknown path"
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("wharf_"),
            "no metrics on the main listener"
        );
    }
    assert!(
        s.logs()
            .iter()
            .any(|l| l.contains("metrics are served on http.debug.addr only")),
        "a start-up warning says where the metrics went"
    );
    drop(s);

    let s = start(&[("alice", "pa")], "[http.debug]\naddr = \"127.0.0.1:0\"\n");
    assert_eq!(status(c.get(s.url("/v2/")).basic_auth("alice", Some("pa"))).await, 200);
    assert_eq!(status(c.get(s.url("/metrics"))).await, 404);
    let r = c.get(debug_url(&s, "/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("wharf_http_requests_total{method=\"GET\",route=\"/v2/\",status=\"200\"}")
    );
}
